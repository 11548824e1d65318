"""The checker's rules on small hand-built tables: a correct lake is CLEAN, and each planted fault shows as
exactly its class.  Truth, customers and topic are Arrow tables built here; the lake is Parquet in a temporary
directory read back with ``LakeReader`` on the local filesystem, file mtimes set with ``os.utime`` so the
lake objects' commit times (``last_modified_ms``) are under the test's control.

The fixture's binlog (file ``mysql-bin.000001``, B = 5 s, T0 = 2026-01-01T00:00Z):

- pos 1000 rows 0..2: one multi-row INSERT of orders 1, 2, 3 (customers 7, 8, 7)
- pos 2000: order 1 -> v2 paid;  pos 3000: order 1 quantity changed *without* a version bump
- pos 4000: primary-key update 2 -> 20 (``d`` of 2 and ``c`` of 20 at the same coordinates)
- pos 5000: delete order 3; pos 6000: re-insert order 3
- pos 6500: customer 7 moves EU -> APAC (customers table); pos 7000: order 1 -> v3 (enriched APAC)
- pos 8000: order 20 -> v2 with an event time 21.9 s behind its commit: a late change (late table)
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from harness.checker import ANOMALY_CLASSES, SCHEMA_VERSION, ExactlyOnceChecker, Verdict
from harness.kafka_client import Record
from harness.lake import LakeReader
from harness.lake_schema import CHANGE_SCHEMA, change_schema
from harness.topic import TOPIC_SCHEMA, parse_records, skipped_counts

T0 = 1_767_225_600_000          # 2026-01-01T00:00:00Z
B = 5000
FILE = "mysql-bin.000001"
HOUR = 3_600_000
MARKER_MS = T0 + HOUR + 60_000  # the _SUCCESS of hour 00 is written a minute after the hour
FLINK_WM = T0 + HOUR + 30_000   # past hour 00's end + B: its _SUCCESS is due

CHANGES_SCHEMA = pa.schema([
    ("seq", pa.int64()), ("src_file", pa.string()), ("src_pos", pa.int64()), ("src_row", pa.int32()),
    ("op", pa.string()), ("gtid", pa.string()), ("server_id", pa.int64()), ("ts_ms", pa.int64()),
    ("order_id", pa.int64()), ("customer_id", pa.int32()), ("product", pa.string()), ("quantity", pa.int32()),
    ("unit_price", pa.decimal128(10, 2)), ("status", pa.string()), ("version", pa.int32()),
    ("event_time_ms", pa.int64()), ("created_at_ms", pa.int64()), ("updated_at_ms", pa.int64()),
])
CUSTOMERS_SCHEMA = pa.schema([
    ("seq", pa.int64()), ("src_file", pa.string()), ("src_pos", pa.int64()), ("src_row", pa.int32()),
    ("op", pa.string()), ("gtid", pa.string()), ("ts_ms", pa.int64()), ("customer_id", pa.int32()),
    ("customer_name", pa.string()), ("region", pa.string()), ("segment", pa.string()),
])
STATE_SCHEMA = pa.schema([CHANGES_SCHEMA.field(c) for c in (
    "order_id", "customer_id", "product", "quantity", "unit_price", "status", "version", "event_time_ms",
    "created_at_ms", "updated_at_ms")])

# the test's own statement of the derived columns
CATEGORY = {"pending": "open", "paid": "open", "shipped": "in_flight", "delivered": "done",
            "cancelled": "cancelled", "returned": "cancelled"}


def _order(oid: int, cust: int, product: str, qty: int, price: str, status: str, version: int,
           event_ms: int, created_ms: int, updated_ms: int) -> dict[str, Any]:
    return {"order_id": oid, "customer_id": cust, "product": product, "quantity": qty,
            "unit_price": Decimal(price), "status": status, "version": version, "event_time_ms": event_ms,
            "created_at_ms": created_ms, "updated_at_ms": updated_ms}


def _build_truth() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(orders changes, customers changes), seq shared in binlog order."""
    seq = iter(range(1, 100))
    orders: list[dict[str, Any]] = []
    customers: list[dict[str, Any]] = []

    def order_change(op: str, pos: int, row: int, ts: int, image: dict[str, Any], gtid: int) -> None:
        orders.append({"seq": next(seq), "src_file": FILE, "src_pos": pos, "src_row": row, "op": op,
                       "gtid": f"0-1-{gtid}", "server_id": 1, "ts_ms": ts, **image})

    def customer_change(op: str, pos: int, ts: int, cid: int, region: str | None, segment: str | None,
                        gtid: int) -> None:
        customers.append({"seq": next(seq), "src_file": FILE, "src_pos": pos, "src_row": 0, "op": op,
                          "gtid": f"0-1-{gtid}", "ts_ms": ts, "customer_id": cid, "customer_name": f"c{cid}",
                          "region": region, "segment": segment})

    customer_change("c", 400, T0 + 1000, 7, "EU", "smb", 1)
    customer_change("c", 600, T0 + 1000, 8, "NA", "consumer", 2)
    o1 = _order(1, 7, "tea", 2, "3.50", "pending", 1, T0 + 1500, T0 + 1500, T0 + 1500)
    o2 = _order(2, 8, "jam", 1, "4.25", "pending", 1, T0 + 1600, T0 + 1600, T0 + 1600)
    o3 = _order(3, 7, "cup", 3, "9.99", "pending", 1, T0 + 1700, T0 + 1700, T0 + 1700)
    for row, o in enumerate((o1, o2, o3)):                       # one multi-row event
        order_change("c", 1000, row, T0 + 2000, o, 3)
    o1 = {**o1, "status": "paid", "version": 2, "event_time_ms": T0 + 4500, "updated_at_ms": T0 + 4500}
    order_change("u", 2000, 0, T0 + 5000, o1, 4)
    o1 = {**o1, "quantity": 5, "event_time_ms": T0 + 5500, "updated_at_ms": T0 + 5500}   # no version bump
    order_change("u", 3000, 0, T0 + 6000, o1, 5)
    order_change("d", 4000, 0, T0 + 8000, o2, 6)                 # primary-key update 2 -> 20
    o20 = {**o2, "order_id": 20, "event_time_ms": T0 + 7500, "updated_at_ms": T0 + 7500}
    order_change("c", 4000, 0, T0 + 8000, o20, 6)
    order_change("d", 5000, 0, T0 + 9000, o3, 7)                 # delete and re-insert of id 3
    o3 = _order(3, 8, "pot", 1, "12.00", "pending", 1, T0 + 9600, T0 + 9600, T0 + 9600)
    order_change("c", 6000, 0, T0 + 10_000, o3, 8)
    customer_change("u", 6500, T0 + 20_000, 7, "APAC", "smb", 9)   # region change mid-run
    o1 = {**o1, "status": "shipped", "version": 3, "event_time_ms": T0 + 20_500, "updated_at_ms": T0 + 20_500}
    order_change("u", 7000, 0, T0 + 21_000, o1, 10)
    o20 = {**o20, "status": "cancelled", "version": 2, "event_time_ms": T0 + 100, "updated_at_ms": T0 + 100}
    order_change("u", 8000, 0, T0 + 22_000, o20, 11)             # 21.9 s behind its commit: late
    return orders, customers


def _final(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    state: dict[int, dict[str, Any]] = {}
    for c in orders:
        if c["op"] == "d":
            state.pop(c["order_id"], None)
        else:
            state[c["order_id"]] = {k: c[k] for k in STATE_SCHEMA.names}
    return [state[k] for k in sorted(state)]


def _region(customers: list[dict[str, Any]], cid: int, *, seq: int | None = None,
            pos: int | None = None) -> tuple[str | None, str | None]:
    """The customer as the change committed: its last change before ``seq`` (a change) or before binlog
    position ``pos`` of FILE (a snapshot's consistent point) -- log order, not timestamps."""
    before = [c for c in customers if c["customer_id"] == cid
              and (c["seq"] < seq if seq is not None else c["src_pos"] < (pos or 0))]
    if not before or before[-1]["op"] == "d":
        return None, None
    return before[-1]["region"], before[-1]["segment"]


def _hour(ms: int) -> tuple[str, str]:
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return t.strftime("%Y-%m-%d"), t.strftime("%H")


@dataclass
class Fixture:
    orders: list[dict[str, Any]]
    customers: list[dict[str, Any]]
    topic_rows: list[dict[str, Any]]
    #: lake rows: CHANGE_SCHEMA columns + "_table" (orders|orders_late), "_part" (file name), "_mtime" (ms)
    rows: list[dict[str, Any]]
    markers: dict[tuple[str, str, str], int] = field(default_factory=dict)   # (table, dt, hr) -> mtime ms
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    final: list[dict[str, Any]] | None = None       # the database's final table (default: the fold of orders)

    def truth(self) -> SimpleNamespace:
        return SimpleNamespace(
            changes=pa.Table.from_pylist(self.orders, schema=CHANGES_SCHEMA),
            customers=pa.Table.from_pylist(self.customers, schema=CUSTOMERS_SCHEMA),
            final_state=pa.Table.from_pylist(self.final if self.final is not None else _final(self.orders),
                                              schema=STATE_SCHEMA),
            history_anomalies=self.history)

    def topic(self) -> pa.Table:
        return pa.Table.from_pylist(self.topic_rows, schema=TOPIC_SCHEMA)

    def row(self, seq: int) -> dict[str, Any]:
        """The lake row of the orders change with ``seq``."""
        (c,) = [c for c in self.orders if c["seq"] == seq]
        (r,) = [r for r in self.rows if (r["src_file"], r["src_pos"], r["src_row"], r["op"]) ==
                (c["src_file"], c["src_pos"], c["src_row"], c["op"])]
        return r

    def write(self, root: Path) -> Path:
        """Parquet files + _SUCCESS markers under ``root``, mtimes set."""
        if root.exists():
            shutil.rmtree(root)
        files: dict[Path, list[dict[str, Any]]] = {}
        for r in self.rows:
            d, h = _hour(r["event_time_ms"]) if "_dt" not in r else (r["_dt"], r["_hr"])
            files.setdefault(root / r["_table"] / f"dt={d}" / f"hr={h}" / r["_part"], []).append(r)
        for path, rows in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            # a file of rows carrying price_tier was written by job version 2 (lake schema 2), else version 1
            schema = change_schema(2) if any("price_tier" in r for r in rows) else CHANGE_SCHEMA
            pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows],
                                                schema=schema), path)
            mtime = max(r["_mtime"] for r in rows) / 1000
            os.utime(path, (mtime, mtime))
        for (table, d, h), ms in self.markers.items():
            path = root / table / f"dt={d}" / f"hr={h}" / "_SUCCESS"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            os.utime(path, (ms / 1000, ms / 1000))
        (root / "orders_dlq").mkdir(parents=True, exist_ok=True)
        return root

    def check(self, root: Path, topic: bool = True, flink_watermark_ms: int | None = FLINK_WM) -> Verdict:
        lake = LakeReader(pafs.LocalFileSystem(), str(self.write(root))).snapshot()
        return ExactlyOnceChecker(bound_ms=B).check(self.truth(), lake, topic=self.topic() if topic else None,
                                                    flink_watermark_ms=flink_watermark_ms)


def build() -> Fixture:
    """A correct pipeline's output: topic records for every change (plus customers and heartbeats), lake rows
    routed with the job's floor watermark, one file per 2 s "checkpoint" committed 0.2 s after it."""
    orders, customers = _build_truth()
    topic: list[dict[str, Any]] = []
    offset = 0
    events = sorted([("orders", c) for c in orders] + [("customers", c) for c in customers], key=lambda x: x[1]["seq"])
    coords: dict[int, tuple[int, int]] = {}
    for table, c in events:
        e = (c["ts_ms"] if c["op"] == "d" else c["event_time_ms"]) if table == "orders" else None
        topic.append({"kafka_partition": 0, "kafka_offset": offset, "kafka_ts_ms": c["ts_ms"] + 100,
                      "src_table": table, "op": c["op"], "src_file": c["src_file"], "src_pos": c["src_pos"],
                      "src_row": c["src_row"], "src_ts_ms": c["ts_ms"],
                      "order_id": c["order_id"] if table == "orders" else None, "event_time_ms": e})
        if table == "orders":
            coords[c["seq"]] = (0, offset)
        offset += 1
    for i in range(1, 30):   # heartbeats, every second
        topic.append({"kafka_partition": 0, "kafka_offset": offset, "kafka_ts_ms": T0 + i * 1000 + 50,
                      "src_table": "cdc_heartbeat", "op": "u", "src_file": FILE, "src_pos": 90_000 + i,
                      "src_row": 0, "src_ts_ms": T0 + i * 1000, "order_id": None, "event_time_ms": None})
        offset += 1
    # the source keeps ticking: a heartbeat past hour 00's end + B, appended before that hour's marker
    topic.append({"kafka_partition": 0, "kafka_offset": offset, "kafka_ts_ms": T0 + HOUR + 40_050,
                  "src_table": "cdc_heartbeat", "op": "u", "src_file": FILE, "src_pos": 99_000, "src_row": 0,
                  "src_ts_ms": T0 + HOUR + 40_000, "order_id": None, "event_time_ms": None})
    rows: list[dict[str, Any]] = []
    for c in orders:
        e = c["ts_ms"] if c["op"] == "d" else c["event_time_ms"]
        wm = c["ts_ms"] - B                      # the job's floor (its Flink watermark is behind it here)
        late = e <= wm
        checkpoint = (c["ts_ms"] - T0) // 2000
        region, segment = _region(customers, c["customer_id"], seq=c["seq"])
        rows.append({
            **{k: c[k] for k in ("order_id", "customer_id", "product", "quantity", "unit_price", "status",
                                 "version", "created_at_ms", "updated_at_ms", "op", "src_file", "src_pos",
                                 "src_row")},
            "event_time_ms": e, "line_total": (c["quantity"] * c["unit_price"]).quantize(Decimal("0.01")),
            "status_category": CATEGORY.get(c["status"], "unknown"), "customer_region": region,
            "customer_segment": segment, "src_server_id": c["server_id"], "src_gtid": c["gtid"],
            "src_ts_ms": c["ts_ms"], "src_snapshot": "false", "kafka_partition": coords[c["seq"]][0],
            "kafka_offset": coords[c["seq"]][1], "watermark_ms": wm, "processed_ms": c["ts_ms"] + 300,
            "_table": "orders_late" if late else "orders", "_part": f"part-{checkpoint}-0.parquet",
            "_mtime": T0 + (checkpoint + 1) * 2000 + 200,
        })
    markers = {("orders", "2026-01-01", "00"): MARKER_MS}
    return Fixture(orders, customers, topic, rows, markers)


def _seq(fx: Fixture, op: str, pos: int, row: int = 0) -> int:
    (c,) = [c for c in fx.orders if (c["op"], c["src_pos"], c["src_row"]) == (op, pos, row)]
    return int(c["seq"])


# ---------------------------------------------------------------------------------------------------- clean

def test_fixture_has_the_shapes_the_rules_need() -> None:
    fx = build()
    assert {r["_table"] for r in fx.rows} == {"orders", "orders_late"}
    assert [c["src_row"] for c in fx.orders if c["src_pos"] == 1000] == [0, 1, 2]
    assert [c["op"] for c in fx.orders if c["src_pos"] == 4000] == ["d", "c"]
    assert fx.row(_seq(fx, "u", 7000))["customer_region"] == "APAC"
    assert fx.row(_seq(fx, "u", 2000))["customer_region"] == "EU"


def test_correct_lake_is_clean(tmp_path: Path) -> None:
    v = build().check(tmp_path / "lake")
    assert v.clean, v.summary()
    assert v.verdict == "CLEAN"
    d = v.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION == 2
    assert list(d["anomalies"]) == list(ANOMALY_CLASSES)
    assert all(set(a) >= {"count", "examples"} for a in d["anomalies"].values())
    assert v.counts["topic_checks"] == "done"
    assert v.counts["matched_rows"] == len(build().orders)
    assert v.counts["routing"]["rows_without_highest"] == 0
    v.to_json()


def test_without_topic_the_topic_rules_are_skipped(tmp_path: Path) -> None:
    v = build().check(tmp_path / "lake", topic=False)
    assert v.clean, v.summary()
    assert v.counts["topic_checks"] == "skipped"


# ---------------------------------------------------------------------------------------------------- faults

def _only(v: Verdict, *classes: str) -> None:
    assert v.found() == set(classes), v.summary()


def test_changed_column_in_an_intermediate_change_is_change_mismatch(tmp_path: Path) -> None:
    fx = build()
    fx.row(_seq(fx, "u", 2000))["product"] = "coffee"
    v = fx.check(tmp_path / "lake")
    _only(v, "CHANGE_MISMATCH")
    (ex,) = v.anomalies["CHANGE_MISMATCH"]["examples"]
    assert ex["columns"] == {"product": {"lake": "coffee", "truth": "tea"}}
    assert ex["chain"].startswith(f"binlog {FILE}:2000#0 op=u -> p0@") and "-> main:" in ex["chain"]


def test_wrong_gtid_and_kafka_offset_are_change_mismatch(tmp_path: Path) -> None:
    fx = build()
    fx.row(_seq(fx, "u", 2000))["src_gtid"] = "0-1-999"
    fx.row(_seq(fx, "c", 6000))["kafka_offset"] = 0      # a record of another change
    v = fx.check(tmp_path / "lake")
    _only(v, "CHANGE_MISMATCH")
    assert v.anomalies["CHANGE_MISMATCH"]["count"] == 2
    cols = [set(e["columns"]) for e in v.anomalies["CHANGE_MISMATCH"]["examples"]]
    assert {"src_gtid"} in cols and {"kafka_partition/kafka_offset"} in cols


def test_flipped_op_is_phantom_and_lost(tmp_path: Path) -> None:
    fx = build()
    fx.row(_seq(fx, "u", 2000))["op"] = "c"
    v = fx.check(tmp_path / "lake")
    _only(v, "PHANTOM", "LOST")
    assert v.anomalies["PHANTOM"]["count"] == 1 and v.anomalies["LOST"]["count"] == 1
    lost = v.anomalies["LOST"]["examples"][0]
    assert lost["lake"] == "not in the lake" and lost["topic"][0]["partition"] == 0


def test_forged_coordinates_are_phantom_and_lost(tmp_path: Path) -> None:
    fx = build()
    fx.row(_seq(fx, "u", 3000))["src_pos"] = 3001
    v = fx.check(tmp_path / "lake")
    _only(v, "PHANTOM", "LOST")
    ph = v.anomalies["PHANTOM"]["examples"][0]
    assert ph["topic"] == [] and "no topic record" in ph["chain"]
    assert {"src_file": FILE, "src_pos": 3000, "src_row": 0, "op": "u"} in ph["truth_changes_of_order_version"]


def test_added_row_with_forged_coordinates_is_phantom(tmp_path: Path) -> None:
    fx = build()
    fx.rows.append({**fx.row(_seq(fx, "u", 3000)), "src_pos": 3500, "status": "returned",
                    "status_category": "cancelled"})
    v = fx.check(tmp_path / "lake")
    _only(v, "PHANTOM")


def test_shifted_event_time_moved_to_its_partition_is_change_mismatch(tmp_path: Path) -> None:
    fx = build()
    r = fx.row(_seq(fx, "c", 4000))          # order 20 inserted by the primary-key update
    r["event_time_ms"] += HOUR                 # now hour 01, and written there
    v = fx.check(tmp_path / "lake")
    _only(v, "CHANGE_MISMATCH")
    (ex,) = v.anomalies["CHANGE_MISMATCH"]["examples"]
    assert set(ex["columns"]) == {"event_time_ms"}
    assert "hr=01" in ex["file"]


def test_dropped_update_without_version_bump_is_lost(tmp_path: Path) -> None:
    fx = build()
    fx.rows.remove(fx.row(_seq(fx, "u", 3000)))
    v = fx.check(tmp_path / "lake")
    _only(v, "LOST")
    (ex,) = v.anomalies["LOST"]["examples"]
    assert ex["binlog"]["src_pos"] == 3000 and ex["version"] == 2
    assert ex["chain"].endswith("-> not in the lake") and "p0@" in ex["chain"]


def test_duplicated_row_is_duplicate(tmp_path: Path) -> None:
    fx = build()
    fx.rows.append({**fx.row(_seq(fx, "u", 2000)), "_part": "part-9-9.parquet"})
    v = fx.check(tmp_path / "lake")
    _only(v, "DUPLICATE")
    (ex,) = v.anomalies["DUPLICATE"]["examples"]
    assert ex["extra_copies"] == 1 and len(ex["lake"]) == 2


def test_late_change_in_main_with_forged_watermark_is_late_misrouted(tmp_path: Path) -> None:
    fx = build()
    r = fx.row(_seq(fx, "u", 8000))
    assert r["_table"] == "orders_late"
    r["_table"], r["watermark_ms"] = "orders", r["event_time_ms"] - 1
    v = fx.check(tmp_path / "lake")
    _only(v, "LATE_MISROUTED")
    (ex,) = v.anomalies["LATE_MISROUTED"]["examples"]
    assert ex["tbl"] == "main" and any("lowest" in rule for rule in ex["rules"])
    assert f"{FILE}:8000#0 op=u" in ex["chain"]


def test_every_change_routed_late_with_forged_watermarks_is_late_misrouted(tmp_path: Path) -> None:
    fx = build()
    for r in fx.rows:
        r["_table"], r["watermark_ms"] = "orders_late", r["event_time_ms"]
    v = fx.check(tmp_path / "lake")
    _only(v, "LATE_MISROUTED")
    assert v.anomalies["LATE_MISROUTED"]["count"] >= len(fx.rows) - 1
    assert any("highest" in rule for ex in v.anomalies["LATE_MISROUTED"]["examples"] for rule in ex["rules"])


def test_every_change_routed_late_without_topic_is_still_caught_by_the_floor(tmp_path: Path) -> None:
    fx = build()
    for r in fx.rows:   # late with a watermark below the documented floor
        r["_table"], r["watermark_ms"] = "orders_late", r["event_time_ms"] + 1
    for r in fx.rows:
        if r["watermark_ms"] >= r["src_ts_ms"] - B:
            r["watermark_ms"] = r["src_ts_ms"] - B
    v = fx.check(tmp_path / "lake", topic=False)
    assert "LATE_MISROUTED" in v.found(), v.summary()


def test_early_success_is_premature_success(tmp_path: Path) -> None:
    fx = build()
    fx.markers[("orders", "2026-01-01", "00")] = T0 + 15_000   # before the file committed at 22.2 s
    v = fx.check(tmp_path / "lake")
    _only(v, "PREMATURE_SUCCESS")
    (ex,) = v.anomalies["PREMATURE_SUCCESS"]["examples"]
    assert ex["success_last_modified_ms"] == T0 + 15_000 and "appended to the topic after the marker" in ex["why"]
    # without the topic, the file committed after the marker is the evidence
    (ex,) = fx.check(tmp_path / "lake2", topic=False).anomalies["PREMATURE_SUCCESS"]["examples"]
    assert ex["file_last_modified_ms"] == T0 + 22_200


def test_success_for_an_hour_not_yet_over_is_premature_success(tmp_path: Path) -> None:
    fx = build()
    fx.markers[("orders", "2026-01-01", "01")] = MARKER_MS    # hour 01: no watermark can have passed its end
    v = fx.check(tmp_path / "lake")
    _only(v, "PREMATURE_SUCCESS")
    (ex,) = v.anomalies["PREMATURE_SUCCESS"]["examples"]
    assert ex["hr"] == "01" and "passed the hour's end" in ex["why"]


def test_a_rewritten_data_file_is_not_premature_success(tmp_path: Path) -> None:
    """A data file of a committed hour rewritten later (same rows) says nothing about the marker."""
    fx = build()
    for r in fx.rows:
        if r["_table"] == "orders":
            r["_mtime"] = MARKER_MS + 600_000
    assert fx.check(tmp_path / "lake").clean


def test_missing_success_is_missing_success(tmp_path: Path) -> None:
    fx = build()
    fx.markers.clear()
    v = fx.check(tmp_path / "lake")
    _only(v, "MISSING_SUCCESS")
    assert v.anomalies["MISSING_SUCCESS"]["examples"][0]["hr"] == "00"
    # not yet due: the job's watermark has not passed hour end + lag
    assert fx.check(tmp_path / "lake2", flink_watermark_ms=T0 + HOUR + B).clean
    assert fx.check(tmp_path / "lake3", flink_watermark_ms=None).clean


def test_late_table_is_exempt_from_success(tmp_path: Path) -> None:
    fx = build()
    fx.markers[("orders_late", "2026-01-01", "00")] = T0   # early, in the late table: not judged
    assert fx.check(tmp_path / "lake").clean


def test_stale_enrichment_is_enrichment_wrong(tmp_path: Path) -> None:
    fx = build()
    fx.row(_seq(fx, "u", 7000))["customer_region"] = "EU"   # the region before customer 7 moved
    v = fx.check(tmp_path / "lake")
    _only(v, "ENRICHMENT_WRONG")
    (ex,) = v.anomalies["ENRICHMENT_WRONG"]["examples"]
    assert ex["columns"] == {"customer_region": {"lake": "EU", "expected": "APAC"}}


def _late_committed_customer_change(fx: Fixture) -> None:
    """Customer 7 -> LATAM in a statement that began at 20.9 s (before order 1's update at 21 s) but committed
    after every order change: later in the binlog, earlier by timestamp."""
    fx.customers.append({"seq": 100, "src_file": FILE, "src_pos": 9000, "src_row": 0, "op": "u", "gtid": "0-1-12",
                         "ts_ms": T0 + 20_900, "customer_id": 7, "customer_name": "c7", "region": "LATAM",
                         "segment": "smb"})


def test_enrichment_follows_commit_order_not_timestamps(tmp_path: Path) -> None:
    """The customers row an order change carries is the one its commit saw.  A customers change committed
    later is not it, even when its binlog timestamp (the second its statement began) is earlier."""
    fx = build()
    _late_committed_customer_change(fx)
    assert fx.check(tmp_path / "lake").clean


def test_enrichment_by_timestamp_is_enrichment_wrong(tmp_path: Path) -> None:
    """A job that picks the customer version by timestamp gives order 1's update the change committed after it."""
    fx = build()
    _late_committed_customer_change(fx)
    fx.row(_seq(fx, "u", 7000))["customer_region"] = "LATAM"
    v = fx.check(tmp_path / "lake")
    _only(v, "ENRICHMENT_WRONG")
    (ex,) = v.anomalies["ENRICHMENT_WRONG"]["examples"]
    assert ex["columns"] == {"customer_region": {"lake": "LATAM", "expected": "APAC"}}
    assert ex["dimension_change"] == {"src_file": FILE, "src_pos": 6500, "ts_ms": T0 + 20_000}


def test_wrong_line_total_is_enrichment_wrong(tmp_path: Path) -> None:
    fx = build()
    fx.row(_seq(fx, "u", 3000))["line_total"] = Decimal("7.00")   # the quantity before the change
    v = fx.check(tmp_path / "lake")
    _only(v, "ENRICHMENT_WRONG")
    assert set(v.anomalies["ENRICHMENT_WRONG"]["examples"][0]["columns"]) == {"line_total"}


def _tier(price: Decimal | None) -> str | None:
    """The test's own statement of price_tier (lake schema version 2 on)."""
    return None if price is None else "low" if price < 20 else "mid" if price < 100 else "high"


def _upgrade(fx: Fixture, at_ms: int = T0 + 10_000) -> None:
    """The job upgraded to version 2 at ``at_ms``: files committed after it carry price_tier, those before not."""
    for r in fx.rows:
        if r["_mtime"] > at_ms:
            r["price_tier"] = _tier(r["unit_price"])


def test_files_with_and_without_price_tier_read_side_by_side(tmp_path: Path) -> None:
    fx = build()
    _upgrade(fx)
    assert {"price_tier" in r for r in fx.rows} == {True, False}
    root = fx.write(tmp_path / "lake")
    lake = LakeReader(pafs.LocalFileSystem(), str(root)).snapshot()
    by_version = {(r["lake_version"], r["price_tier"] is None) for r in lake.changes().to_pylist()}
    assert by_version == {(1, True), (2, False)}
    assert fx.check(tmp_path / "lake").clean


def test_wrong_price_tier_is_enrichment_wrong(tmp_path: Path) -> None:
    fx = build()
    _upgrade(fx)
    r = fx.row(_seq(fx, "u", 7000))                # 3.50: low
    assert r["price_tier"] == "low"
    r["price_tier"] = "mid"
    v = fx.check(tmp_path / "lake")
    _only(v, "ENRICHMENT_WRONG")
    (ex,) = v.anomalies["ENRICHMENT_WRONG"]["examples"]
    assert ex["columns"] == {"price_tier": {"lake": "mid", "expected": "low"}}


def test_the_checkers_price_tier_rule_at_its_bounds() -> None:
    import duckdb

    from harness.checker import _sql_price_tier

    prices = [None, Decimal("0.00"), Decimal("19.99"), Decimal("20.00"), Decimal("99.99"), Decimal("100.00"),
              Decimal("99999999.99")]
    got = [duckdb.execute(f"SELECT {_sql_price_tier('p')} FROM (SELECT CAST(? AS DECIMAL(10, 2)) AS p)",
                          [p]).fetchall()[0][0] for p in prices]
    assert got == [_tier(p) for p in prices]


def test_wrong_partition_is_wrong_partition(tmp_path: Path) -> None:
    fx = build()
    r = fx.row(_seq(fx, "c", 6000))
    r["_dt"], r["_hr"] = "2026-01-01", "01"
    v = fx.check(tmp_path / "lake")
    _only(v, "WRONG_PARTITION")


def test_corrupt_file_is_corrupt_file_not_lost(tmp_path: Path) -> None:
    fx = build()
    root = fx.write(tmp_path / "lake")
    victim = root / "orders" / "dt=2026-01-01" / "hr=00" / "part-1-0.parquet"   # the multi-row insert
    stat = victim.stat()
    victim.write_bytes(b"PAR1 this is not parquet")
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    lake = LakeReader(pafs.LocalFileSystem(), str(root)).snapshot()
    v = ExactlyOnceChecker(bound_ms=B).check(fx.truth(), lake, topic=fx.topic(), flink_watermark_ms=FLINK_WM)
    _only(v, "CORRUPT_FILE")
    assert v.anomalies["CORRUPT_FILE"]["changes_unaccounted"] == 3


def test_history_anomalies_count_against_clean(tmp_path: Path) -> None:
    fx = build()
    fx.history = {"HISTORY_OK_NOT_COMMITTED": [{"txn": 7, "op": "update", "order_id": 1}],
                  "HISTORY_FAILED_BUT_COMMITTED": [], "resolved_indeterminate": [{"txn": 9, "committed": True}]}
    v = fx.check(tmp_path / "lake")
    _only(v, "HISTORY_OK_NOT_COMMITTED")
    assert not v.clean and v.verdict == "ANOMALIES"
    assert v.history["resolved_indeterminate"]


def test_final_table_disagreeing_with_the_lake_fold_is_state_mismatch(tmp_path: Path) -> None:
    fx = build()
    fx.final = [{**r, "status": "returned"} if r["order_id"] == 1 else r for r in _final(fx.orders)
                if r["order_id"] != 3]
    v = fx.check(tmp_path / "lake")
    _only(v, "STATE_MISMATCH")
    problems = {e["order_id"]: e["problem"] for e in v.anomalies["STATE_MISMATCH"]["examples"]}
    assert problems == {1: "values differ", 3: "in lake, absent from database"}


def test_stalled_is_stalled(tmp_path: Path) -> None:
    fx = build()
    lake = LakeReader(pafs.LocalFileSystem(), str(fx.write(tmp_path / "lake"))).snapshot()
    v = ExactlyOnceChecker(bound_ms=B).check(fx.truth(), lake, topic=fx.topic(), stalled="lag 3")
    assert v.verdict == "STALLED" and not v.clean


# ---------------------------------------------------------------------------------------------------- snapshot

def _snapshot_row(fx: Fixture, order_id: int, pos: int) -> dict[str, Any]:
    """A correct snapshot read of ``order_id`` at (FILE, pos): the last change before it, op r."""
    (last,) = [c for c in fx.orders if c["order_id"] == order_id and c["src_pos"] < pos][-1:]
    base = next(r for r in fx.rows if (r["src_pos"], r["src_row"], r["op"]) ==
                (last["src_pos"], last["src_row"], last["op"]))
    offset = len(fx.topic_rows)
    fx.topic_rows.append({"kafka_partition": 1, "kafka_offset": offset, "kafka_ts_ms": T0 + 31_000,
                          "src_table": "orders", "op": "r", "src_file": FILE, "src_pos": pos, "src_row": 0,
                          "src_ts_ms": T0 + 31_000, "order_id": order_id, "event_time_ms": last["event_time_ms"]})
    region, segment = _region(fx.customers, last["customer_id"], pos=pos)
    return {**base, "op": "r", "src_pos": pos, "src_row": 0, "src_snapshot": "true", "src_ts_ms": T0 + 31_000,
            "src_gtid": None, "event_time_ms": last["event_time_ms"], "customer_region": region,
            "customer_segment": segment, "kafka_partition": 1, "kafka_offset": offset, "_table": "orders",
            "_part": "part-snap-0.parquet", "_mtime": T0 + 31_500}


def test_snapshot_reads_judged_against_their_consistent_point(tmp_path: Path) -> None:
    fx = build()
    fx.rows.append(_snapshot_row(fx, 1, 7500))       # order 1 after v3
    fx.rows.append(_snapshot_row(fx, 3, 6200))       # the re-inserted order 3
    v = fx.check(tmp_path / "lake")
    assert v.clean, v.summary()
    assert v.counts["lake_snapshot_rows"] == 2

    fx.rows[-2]["product"] = "mug"                    # not order 1's state at pos 7500
    bad = _snapshot_row(fx, 2, 4500)                  # order 2 no longer exists at pos 4500
    fx.rows.append(bad)
    v = fx.check(tmp_path / "lake2")
    _only(v, "SNAPSHOT_MISMATCH")
    problems = sorted(e["problem"] for e in v.anomalies["SNAPSHOT_MISMATCH"]["examples"])
    assert problems == ["deleted at its consistent point", "values differ"]


# ---------------------------------------------------------------------------------------------------- topic

def test_parse_records_reads_debezium_envelopes() -> None:
    import json

    def env(table: str, op: str, before: Any, after: Any, pos: int, row: int = 0) -> bytes:
        return json.dumps({"before": before, "after": after, "op": op, "ts_ms": T0 + 9,
                           "source": {"ts_ms": T0, "snapshot": "false", "db": "shop", "table": table,
                                      "server_id": 1, "gtid": "0-1-3", "file": FILE, "pos": pos,
                                      "row": row}}).encode()

    records = [
        Record(0, 0, b"k", env("orders", "c", None, {"order_id": 5, "event_time": T0 - 10}, 100, 1), T0 + 50),
        Record(0, 1, b"k", env("orders", "d", {"order_id": 5, "event_time": T0 - 10}, None, 200), T0 + 60),
        Record(0, 2, b"k", None, T0 + 61),                                             # tombstone
        Record(1, 0, None, env("customers", "u", {"customer_id": 7}, {"customer_id": 7}, 300), T0 + 70),
        Record(1, 1, None, b"\xff not json", T0 + 80),
        Record(1, 2, None, env("cdc_heartbeat", "u", {"id": 1}, {"id": 1}, 400), T0 + 90),
    ]
    t = parse_records(records)
    assert t.schema.equals(TOPIC_SCHEMA)
    assert skipped_counts(t) == {"tombstones": 1, "unparsable": 1}
    rows = t.to_pylist()
    assert [(r["src_table"], r["op"], r["order_id"], r["event_time_ms"]) for r in rows] == [
        ("orders", "c", 5, T0 - 10), ("orders", "d", 5, T0), ("customers", "u", None, None),
        ("cdc_heartbeat", "u", None, None)]
    assert rows[0]["src_row"] == 1 and rows[0]["kafka_ts_ms"] == T0 + 50 and rows[3]["kafka_partition"] == 1


def test_every_class_is_always_reported(tmp_path: Path) -> None:
    v = build().check(tmp_path / "lake")
    for cls in ANOMALY_CLASSES:
        assert v.anomalies[cls]["count"] == 0 and v.anomalies[cls]["examples"] == [], cls


def test_empty_lake_loses_every_change(tmp_path: Path) -> None:
    fx = build()
    fx.rows.clear()
    fx.markers.clear()
    v = fx.check(tmp_path / "lake")
    _only(v, "LOST")
    assert v.anomalies["LOST"]["count"] == len(fx.orders)


# ---------------------------------------------------------------------------------------------- re-snapshot

def _resnapshot(fx: Fixture, complete: bool = True, drop_order: int | None = None) -> None:
    """Debezium away, the binlog purged behind it, a new snapshot at pos 9000: order 3 updated (pos 8500) and
    order 20 deleted (pos 8600) in the gap were never published; the snapshot re-reads orders 1 and 3."""
    reads = [_snapshot_row(fx, 1, 9000), _snapshot_row(fx, 3, 9000)]
    reads[1]["status"] = "paid"
    marks = ["first_in_data_collection", "last_in_data_collection" if complete else "true"]
    for rec, mark in zip(fx.topic_rows[-2:], marks, strict=True):
        rec["src_snapshot"] = mark
    fx.rows.extend(r for r in reads if r["order_id"] != drop_order)
    (last3,) = [c for c in fx.orders if c["order_id"] == 3][-1:]
    (last20,) = [c for c in fx.orders if c["order_id"] == 20][-1:]
    fx.orders.append({**last3, "seq": 60, "src_pos": 8500, "op": "u", "status": "paid", "gtid": "0-1-20"})
    fx.orders.append({**last20, "seq": 61, "src_pos": 8600, "op": "d", "gtid": "0-1-21", "ts_ms": T0 + 23_000})


def test_changes_a_complete_resnapshot_covers_are_superseded_not_lost(tmp_path: Path) -> None:
    fx = build()
    _resnapshot(fx)
    v = fx.check(tmp_path / "lake")
    assert v.clean, v.summary()
    assert v.counts["changes_superseded_by_snapshot"] == 2
    assert [e["complete"] for e in v.counts["snapshot_epochs"]] == [True]


def test_changes_before_an_incomplete_snapshot_are_lost(tmp_path: Path) -> None:
    fx = build()
    _resnapshot(fx, complete=False)
    v = fx.check(tmp_path / "lake")
    _only(v, "LOST")
    assert v.anomalies["LOST"]["count"] == 2 and v.counts["changes_superseded_by_snapshot"] == 0


def test_a_complete_snapshot_replaces_the_key_set(tmp_path: Path) -> None:
    """A key the complete snapshot lacks is deleted in the fold: a lake that dropped a state read says the
    order is gone, and the final table says otherwise."""
    fx = build()
    _resnapshot(fx, drop_order=3)
    v = fx.check(tmp_path / "lake")
    _only(v, "STATE_MISMATCH")
    (ex,) = v.anomalies["STATE_MISMATCH"]["examples"]
    assert ex["order_id"] == 3 and ex["problem"] == "in database, absent or deleted in lake"
