"""Reference model of the system: what the database commits and what a correct job writes.

Used where the harness must know the right answer without running the pipeline: the checker's mutation
self-tests (a clean lake in the exact format, then one fault planted), the Hypothesis property of the
fold, and the checker benchmark (a million changes).  The real scenarios never use it.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from harness.enrichment import customer_region, customer_segment, line_total, status_category
from harness.lake_schema import CHANGE_SCHEMA, LATE_TABLE, MAIN_TABLE, partition_of
from harness.truth import STATE_SCHEMA, TRUTH_SCHEMA, GroundTruth
from harness.workload import Workload

HOUR_MS = 3_600_000


def simulate_database(workload: Workload) -> GroundTruth:
    """Apply the workload in schedule order to an in-memory table: the changes a database would commit."""
    rows: dict[int, dict[str, Any]] = {}
    changes: list[dict[str, Any]] = []
    for op in workload.operations:
        if op.rollback:
            continue
        cur = rows.get(op.order_id)
        if op.kind == "insert" and cur is None:
            new = {"order_id": op.order_id, **op.values, "unit_price": Decimal(op.values["unit_price"]),
                   "version": op.version, "event_time_ms": op.event_time_ms}
            rows[op.order_id] = new
            changes.append(_truth_row(new, "c", op.commit_ms, len(changes), op.event_class))
        elif op.kind == "update" and cur is not None:
            new = {**cur, **op.values, "unit_price": Decimal(op.values["unit_price"]), "version": op.version,
                   "event_time_ms": op.event_time_ms}
            rows[op.order_id] = new
            changes.append(_truth_row(new, "u", op.commit_ms, len(changes), op.event_class))
        elif op.kind == "delete" and cur is not None:
            del rows[op.order_id]
            changes.append(_truth_row({**cur, "event_time_ms": op.commit_ms}, "d", op.commit_ms, len(changes),
                                      "on_time"))
    final = pa.Table.from_pylist([{k: r[k] for k in STATE_SCHEMA.names} for _, r in sorted(rows.items())],
                                 schema=STATE_SCHEMA)
    return GroundTruth(pa.Table.from_pylist(changes, schema=TRUTH_SCHEMA), final, {})


def _truth_row(row: dict[str, Any], op: str, commit_ms: int, seq: int, event_class: str) -> dict[str, Any]:
    return {"order_id": row["order_id"], "version": row["version"], "is_delete": op == "d", "op": op,
            "customer_id": row["customer_id"], "product": row["product"], "quantity": row["quantity"],
            "unit_price": row["unit_price"], "status": row["status"], "event_time_ms": row["event_time_ms"],
            "commit_ms": commit_ms, "seq": seq, "event_class": event_class}


def reference_job(changes: Iterable[dict[str, Any]], bound_ms: int = 5000) -> list[dict[str, Any]]:
    """What a correct job emits for changes in source order: one enriched, routed row per change.

    The watermark is the highest event time seen minus the bound; a change at or behind the watermark
    current when it arrives is late.  ``tbl`` is main|late.
    """
    out: list[dict[str, Any]] = []
    max_seen: int | None = None
    for i, c in enumerate(changes):
        watermark = None if max_seen is None else max_seen - bound_ms
        late = watermark is not None and c["event_time_ms"] <= watermark
        out.append({
            "order_id": c["order_id"], "customer_id": c["customer_id"], "product": c["product"],
            "quantity": c["quantity"], "unit_price": c["unit_price"], "status": c["status"],
            "version": c["version"], "created_at_ms": c["commit_ms"], "updated_at_ms": c["commit_ms"],
            "op": c["op"], "event_time_ms": c["event_time_ms"],
            "line_total": line_total(c["quantity"], c["unit_price"]),
            "status_category": status_category(c["status"]),
            "customer_region": customer_region(c["customer_id"]),
            "customer_segment": customer_segment(c["customer_id"]),
            "src_file": "binlog.000001", "src_pos": 4 + 100 * i, "src_row": 0, "src_server_id": 184054,
            "src_gtid": f"0-184054-{i + 1}", "src_ts_ms": c["commit_ms"], "src_snapshot": "false",
            "kafka_partition": c["order_id"] % 3, "kafka_offset": i, "watermark_ms": watermark,
            "processed_ms": c["commit_ms"] + 100, "tbl": "late" if late else "main",
        })
        max_seen = c["event_time_ms"] if max_seen is None else max(max_seen, c["event_time_ms"])
    return out


def write_lake(rows: list[dict[str, Any]], fs: pafs.FileSystem, root: str, rows_per_file: int = 50_000,
               success: bool = True) -> dict[str, Any]:
    """Write job rows in the lake's exact layout (Parquet part files + ``_SUCCESS`` where due)."""
    by_part: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        d, h = partition_of(r["event_time_ms"])
        by_part.setdefault((MAIN_TABLE if r["tbl"] == "main" else LATE_TABLE, d, h), []).append(r)
    watermarks = {t: max((r["watermark_ms"] for r in rows if r["watermark_ms"] is not None
                          and (MAIN_TABLE if r["tbl"] == "main" else LATE_TABLE) == t), default=None)
                  for t in (MAIN_TABLE, LATE_TABLE)}
    files = 0
    for (table, d, h), part_rows in sorted(by_part.items()):
        directory = f"{root}/{table}/dt={d}/hr={h}"
        fs.create_dir(directory, recursive=True)
        for n, start in enumerate(range(0, len(part_rows), rows_per_file)):
            chunk = part_rows[start:start + rows_per_file]
            table_data = pa.Table.from_pylist([{k: r[k] for k in CHANGE_SCHEMA.names} for r in chunk],
                                              schema=CHANGE_SCHEMA)
            write_parquet(fs, f"{directory}/part-{n:05d}-0.parquet", table_data)
            files += 1
        wm = watermarks[table]
        start_ms = int(dt.datetime.strptime(f"{d} {h}", "%Y-%m-%d %H").replace(tzinfo=dt.UTC).timestamp() * 1000)
        if success and wm is not None and start_ms + HOUR_MS < wm:
            with fs.open_output_stream(f"{directory}/_SUCCESS") as fh:
                fh.write(b"")
    return {"files": files, "partitions": len(by_part), "watermarks": watermarks}


def write_parquet(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    with fs.open_output_stream(path) as fh:
        fh.write(buf.getvalue())
