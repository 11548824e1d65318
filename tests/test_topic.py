"""The topic evidence parses each record once: envelopes become rows, tombstones and non-envelopes are counted,
and what the fast parser (orjson, strict RFC 8259) refuses but Python's own reads is not lost; a read of the real
topic cut short by its timeout keeps its progress."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import kafka_client
from harness.kafka_client import Record
from harness.stack import Stack
from harness.topic import TopicEvidence, TopicReader, parse_records, skipped_counts


def _envelope(op: str = "c", table: str = "orders", **after: object) -> bytes:
    image = {"order_id": 7, "event_time": 1_767_225_600_000, **after}
    return json.dumps({"before": None, "after": image, "op": op,
                       "source": {"table": table, "file": "binlog.000002", "pos": 400, "row": 1,
                                  "ts_ms": 1_767_225_601_000, "snapshot": "false"}}).encode()


def test_each_record_is_one_row_and_skips_are_counted() -> None:
    records = [Record(0, 10, None, _envelope(), 1), Record(0, 11, None, None, 2),
               Record(1, 5, None, b"not json at all", 3), Record(1, 6, None, b'{"op": "c"}', 4)]
    evidence = TopicEvidence()
    rows = evidence.add(records)
    assert [(r["src_file"], r["src_pos"], r["src_row"], r["op"], r["order_id"]) for r in rows] == \
        [("binlog.000002", 400, 1, "c", 7)]
    table = evidence.table()
    assert table.num_rows == 1 and table.column("kafka_offset").to_pylist() == [10]
    assert skipped_counts(table) == {"tombstones": 1, "unparsable": 2}
    # one pass or two: the same table
    assert parse_records(records).equals(table)


def test_what_orjson_refuses_python_json_still_reads() -> None:
    nan = _envelope(unit_price=float("nan"))     # json.dumps writes NaN, which RFC 8259 does not allow
    assert b"NaN" in nan
    table = parse_records([Record(2, 0, None, nan, 1)])
    assert table.num_rows == 1 and table.column("order_id").to_pylist() == [7]


def test_the_typed_fast_path_reads_every_record_as_the_general_reader_does() -> None:
    """Envelopes of every shape seen or plausible: the typed decoder's fields equal the general reader's,
    or the record goes the general way (seeded variations, replayable)."""
    import random

    from harness.topic import _fields_of_any, envelope_fields

    rng = random.Random(20261127)
    values: list[object] = [None, True, 0, -1, 2**40, 2**70, 1.5, "12", "", "x", "2026-01-01T00:00:00Z",
                            "2026-01-01 00:00:00.123", [], {}, {"order_id": 3}]
    records = [b'{"op": "c"}', b"[]", b"null", b"{}", b"not json", _envelope(), _envelope(op="d"),
               _envelope(table="customers"), b'{"payload": ' + _envelope() + b"}",
               b'{"schema": {}, "payload": ' + _envelope(op="r") + b"}"]
    typed = {"table": ["orders", "customers", "cdc_heartbeat", None], "file": ["binlog.000002", None],
             "pos": [400, 0, None], "row": [0, 3, None], "ts_ms": [1_767_225_601_000, None],
             "snapshot": ["false", "LAST", "true", None], "order_id": [7, None],
             "event_time": [1_767_225_600_000, "2026-01-01T00:00:00Z", "2026-01-01 00:00:00.5", "bad", None]}

    def pick(field: str) -> object:     # mostly what Debezium sends, sometimes anything
        return rng.choice(typed[field]) if rng.random() < 0.93 else rng.choice(values)

    for _ in range(3000):
        src = {k: pick(k) for k in ("table", "file", "pos", "row", "ts_ms", "snapshot") if rng.random() < 0.95}
        env: dict[str, object] = {"op": rng.choice(["c", "u", "d", "r"]) if rng.random() < 0.95
                                  else rng.choice(["x", None, 1]), "source": src}
        for side in ("before", "after"):
            if rng.random() < 0.9:
                env[side] = {k: pick(k) for k in ("order_id", "event_time") if rng.random() < 0.95} \
                    if rng.random() < 0.9 else rng.choice([None, [], 5])
        if rng.random() < 0.02:
            env["source"] = rng.choice(values)
        records.append(json.dumps(env).encode())
    for value in records:
        assert envelope_fields(value) == _fields_of_any(value), value


def test_a_read_cut_short_keeps_what_it_read_and_the_next_goes_on(stack: Stack,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A topic read that times out part-way (quiescence reads with a 30 s timeout) keeps every batch it read and
    where each partition got to; the next read goes on from there, each record once.  Before, a failed read kept
    nothing, and a topic that took longer than the timeout to read was read from its start until the deadline."""
    bootstrap, topic = stack.kafka.bootstrap, f"reader-cut-{int(time.time() * 1000)}"
    kafka_client.produce(bootstrap, topic, [(str(i).encode(), _envelope(order_id=i)) for i in range(600)])
    ends = kafka_client.end_offsets(bootstrap, topic)
    real = kafka_client.iter_range

    def cut_short(*args: Any, **kw: Any) -> Iterator[list[Any]]:
        # the real records from the real broker, in slices of 50; the read's time runs out after the third
        messages = [m for batch in real(*args, **kw) for m in batch]
        pieces = [messages[i:i + 50] for i in range(0, len(messages), 50)]
        yield from pieces[:3]
        raise TimeoutError("could not read the topic within its timeout (cut short by the test)")

    reader = TopicReader(bootstrap, topic, {p: 0 for p in ends})
    monkeypatch.setattr(kafka_client, "iter_range", cut_short)
    with pytest.raises(TimeoutError):
        reader.read(ends, timeout=30)
    assert len(reader.evidence) == 150 and sum(reader.position.values()) == 150
    monkeypatch.setattr(kafka_client, "iter_range", real)
    reader.read(ends, timeout=30)
    table = reader.table()
    seen = list(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True))
    assert sorted(seen) == sorted((p, o) for p, e in ends.items() for o in range(e)), "each record exactly once"
