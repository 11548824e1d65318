"""The topic evidence parses each record once: envelopes become rows, tombstones and non-envelopes are counted,
and what the fast parser (orjson, strict RFC 8259) refuses but Python's own reads is not lost."""

from __future__ import annotations

import json

from harness.kafka_client import Record
from harness.topic import TopicEvidence, parse_records, skipped_counts


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
