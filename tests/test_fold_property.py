"""Property (Hypothesis): for random per-key change sequences, the checker's fold of the lake in source
order gives the final row, whatever order the rows sit in the files; and a missing last change is
reported as LOST, never as a state mismatch."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.checker import ExactlyOnceChecker
from harness.enrichment import STATUSES
from harness.lake import LakeSnapshot, _lake_schema
from harness.lake_schema import DLQ_SCHEMA, partition_of
from harness.model import reference_job
from harness.truth import STATE_SCHEMA, TRUTH_SCHEMA, GroundTruth

T0 = 1_767_225_600_000

values = st.fixed_dictionaries({
    "customer_id": st.integers(1, 50), "product": st.sampled_from(["tea", "jam", "cup"]),
    "quantity": st.integers(1, 20), "unit_price": st.decimals(Decimal("0.01"), Decimal("999.99"), places=2),
    "status": st.sampled_from(STATUSES),
})
# per key: 1..6 versions, optionally deleted at the end
key_history = st.tuples(st.lists(values, min_size=1, max_size=6), st.booleans())


def _build(histories: list[tuple[list[dict[str, Any]], bool]], order: list[int]) -> tuple[GroundTruth, list[dict]]:
    changes: list[dict[str, Any]] = []
    final: dict[int, dict[str, Any]] = {}
    # interleave keys by the drawn order, keeping each key's own sequence
    cursors = [0] * len(histories)
    t = T0
    for k in order:
        versions, deleted = histories[k]
        i = cursors[k]
        total = len(versions) + (1 if deleted else 0)
        if i >= total:
            continue
        cursors[k] += 1
        t += 1000
        oid = k + 1
        if i < len(versions):
            row = {"order_id": oid, "version": i + 1, **versions[i], "event_time_ms": t}
            final[oid] = row
            op = "c" if i == 0 else "u"
        else:
            row = {**final.pop(oid), "event_time_ms": t}
            op = "d"
        changes.append({**row, "is_delete": op == "d", "op": op, "commit_ms": t, "seq": len(changes),
                        "event_class": "on_time"})
    truth = GroundTruth(pa.Table.from_pylist(changes, schema=TRUTH_SCHEMA),
                        pa.Table.from_pylist([{c: r[c] for c in STATE_SCHEMA.names} for r in final.values()],
                                             schema=STATE_SCHEMA), {})
    return truth, reference_job(changes)


def _snapshot(rows: list[dict[str, Any]]) -> LakeSnapshot:
    lake_rows = [{**r, "dt": partition_of(r["event_time_ms"])[0], "hr": partition_of(r["event_time_ms"])[1],
                  "file": "mem://part-0"} for r in rows]
    table = pa.Table.from_pylist(lake_rows, schema=_lake_schema())
    return LakeSnapshot(main=table.filter(pa.compute.equal(table["tbl"], "main")),
                        late=table.filter(pa.compute.equal(table["tbl"], "late")), dlq=DLQ_SCHEMA.empty_table())


@settings(max_examples=60, deadline=None)
@given(histories=st.lists(key_history, min_size=1, max_size=8), data=st.data())
def test_fold_in_source_order_gives_final_state(histories: list, data: st.DataObject) -> None:
    order = data.draw(st.lists(st.integers(0, len(histories) - 1), min_size=60, max_size=60))
    order = order + [k for k in range(len(histories)) for _ in range(8)]   # every sequence runs to its end
    truth, rows = _build(histories, order)
    shuffled = data.draw(st.permutations(rows))
    verdict = ExactlyOnceChecker().check(truth, _snapshot(list(shuffled)))
    assert verdict.clean, verdict.summary()


@settings(max_examples=40, deadline=None)
@given(histories=st.lists(key_history, min_size=1, max_size=6), victim=st.integers(0, 100))
def test_missing_last_change_is_lost_not_mismatch(histories: list, victim: int) -> None:
    order = [k for k in range(len(histories)) for _ in range(8)]
    truth, rows = _build(histories, order)
    key = rows[victim % len(rows)]["order_id"]
    last = max(i for i, r in enumerate(rows) if r["order_id"] == key)
    verdict = ExactlyOnceChecker().check(truth, _snapshot(rows[:last] + rows[last + 1:]))
    assert verdict.found() == {"LOST"}, verdict.summary()
    assert verdict.anomalies["LOST"]["count"] == 1
