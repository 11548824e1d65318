"""Property (Hypothesis): for random histories of what applications write — updates that may or may not bump
`version`, deletes and re-inserts of an id, primary-key updates, several rows per event — a lake holding
exactly one correct row per change is CLEAN whatever files its rows sit in and in whatever order, and taking
one row away (any change, not only a key's last) is exactly one LOST, never anything else; one row too many
is exactly one DUPLICATE."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.checker import ExactlyOnceChecker
from harness.lake import LakeSnapshot, _lake_schema
from harness.lake_schema import DLQ_SCHEMA
from harness.truth import CUSTOMERS_TRUTH_SCHEMA, ORDERS_TRUTH_SCHEMA, STATE_SCHEMA, GroundTruth

T0 = 1_767_225_600_000
B = 5000
CATEGORY = {"pending": "open", "paid": "open", "shipped": "in_flight"}

values = st.fixed_dictionaries({
    "product": st.sampled_from(["tea", "jam", "cup"]), "quantity": st.integers(1, 20),
    "unit_price": st.decimals(Decimal("0.01"), Decimal("999.99"), places=2),
    "status": st.sampled_from(sorted(CATEGORY)), "bump": st.booleans(),
})
# a statement: (kind, key index, values, rows in its event); kinds as applications issue them
statement = st.tuples(st.sampled_from(["insert", "update", "update", "delete", "rekey"]), st.integers(0, 5), values,
                      st.integers(1, 3))


def _history(statements: list[tuple[str, int, dict[str, Any], int]]) -> tuple[GroundTruth, list[dict[str, Any]]]:
    """Apply statements to an in-memory table; return the truth and one correct lake row per change."""
    table: dict[int, dict[str, Any]] = {}
    changes: list[dict[str, Any]] = []
    pos, seq, next_id = 4, 0, 1000
    for n, (kind, k, v, rows) in enumerate(statements):
        ts = T0 + n * 1000
        pos += 100
        keys = sorted(table)
        targets = [keys[(k + i) % len(keys)] for i in range(min(rows, len(keys)))] if keys else []
        event: list[tuple[str, dict[str, Any]]] = []
        if not targets:
            kind = "insert"   # nothing to change yet
        if kind == "insert":
            for _ in range(rows):
                next_id += 1
                table[next_id] = {"order_id": next_id, "customer_id": 1, "product": v["product"],
                                  "quantity": v["quantity"], "unit_price": v["unit_price"], "status": v["status"],
                                  "version": 1, "event_time_ms": ts, "created_at_ms": ts, "updated_at_ms": ts}
                event.append(("c", table[next_id]))
        elif kind == "update":
            for key in targets:
                row = table[key] = {**table[key], "quantity": v["quantity"], "status": v["status"],
                                    "version": table[key]["version"] + (1 if v["bump"] else 0), "updated_at_ms": ts}
                event.append(("u", row))
        elif kind == "delete":
            for key in targets:
                event.append(("d", table.pop(key)))
        else:   # a primary-key update: a delete and an insert at one place
            key = targets[0]
            next_id += 1
            old = table.pop(key)
            table[next_id] = {**old, "order_id": next_id, "updated_at_ms": ts}
            event += [("d", old), ("c", table[next_id])]
        for i, (op, image) in enumerate(event):
            row_index = 0 if kind == "rekey" else i   # a primary-key update's d and c share one row
            changes.append({"seq": seq, "src_file": "binlog.000001", "src_pos": pos, "src_row": row_index, "op": op,
                            "gtid": f"0-1-{n + 1}", "server_id": 1, "ts_ms": ts, **image})
            seq += 1
    truth = GroundTruth(
        changes=pa.Table.from_pylist(changes, schema=ORDERS_TRUTH_SCHEMA),
        customers=CUSTOMERS_TRUTH_SCHEMA.empty_table(),
        final_state=pa.Table.from_pylist([table[k] for k in sorted(table)], schema=STATE_SCHEMA))
    lake = []
    for c in changes:
        e = c["ts_ms"] if c["op"] == "d" else c["event_time_ms"]
        t = dt.datetime.fromtimestamp(e / 1000, tz=dt.UTC)
        lake.append({**{k: c[k] for k in ("order_id", "customer_id", "product", "quantity", "unit_price", "status",
                                          "version", "created_at_ms", "updated_at_ms", "op", "src_file", "src_pos",
                                          "src_row")},
                     "event_time_ms": e, "line_total": (c["quantity"] * c["unit_price"]).quantize(Decimal("0.01")),
                     "status_category": CATEGORY[c["status"]], "customer_region": None, "customer_segment": None,
                     "src_server_id": 1, "src_gtid": c["gtid"], "src_ts_ms": c["ts_ms"], "src_snapshot": "false",
                     "kafka_partition": 0, "kafka_offset": c["seq"], "watermark_ms": c["ts_ms"] - B,
                     "processed_ms": c["ts_ms"] + 100, "dt": t.strftime("%Y-%m-%d"), "hr": t.strftime("%H"),
                     "tbl": "late" if e <= c["ts_ms"] - B else "main", "file_mtime_ms": c["ts_ms"] + 3000})
    return truth, lake


def _snapshot(rows: list[dict[str, Any]], files: int) -> LakeSnapshot:
    def table(tbl: str) -> pa.Table:
        name = "orders" if tbl == "main" else "orders_late"
        placed = [{**r, "file": f"lake/{name}/dt={r['dt']}/hr={r['hr']}/part-{i % files}"}
                  for i, r in enumerate(rows) if r["tbl"] == tbl]
        return pa.Table.from_pylist(placed, schema=_lake_schema())
    return LakeSnapshot(main=table("main"), late=table("late"), dlq=DLQ_SCHEMA.empty_table())


@settings(max_examples=12, deadline=None)
@given(st.lists(statement, min_size=1, max_size=25), st.randoms(use_true_random=False), st.integers(1, 4))
def test_exactly_once_lake_is_clean_and_each_missing_or_extra_row_is_named(
        statements: list[tuple[str, int, dict[str, Any], int]], rng: random.Random, files: int) -> None:
    truth, rows = _history(statements)
    checker = ExactlyOnceChecker(bound_ms=B)
    shuffled = rows[:]
    rng.shuffle(shuffled)
    verdict = checker.check(truth, _snapshot(shuffled, files))
    assert verdict.clean, verdict.summary()

    gone = rng.randrange(len(rows))
    verdict = checker.check(truth, _snapshot(shuffled[:gone] + shuffled[gone + 1:], files))
    assert verdict.found() == {"LOST"} and verdict.anomalies["LOST"]["count"] == 1, verdict.summary()

    verdict = checker.check(truth, _snapshot([*shuffled, shuffled[gone]], files))
    assert verdict.found() == {"DUPLICATE"} and verdict.anomalies["DUPLICATE"]["count"] == 1, verdict.summary()
