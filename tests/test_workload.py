"""The seeded workload: reproducible, realistic in what it writes, and applied by a client whose Jepsen-style
history matches what a real MariaDB committed (markers, GTIDs, final tables)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pymysql

from harness.components.database import Database
from harness.config import StackConfig
from harness.workload import (
    EVENT_CLASSES,
    MARKER_SQL,
    OP_KINDS,
    OUTCOMES,
    Operation,
    Workload,
    WorkloadClient,
    WorkloadConfig,
    generate,
    statement,
    summarize,
)

ANCHOR = 1_767_225_600_000
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def _big(seed: int, **kw: Any) -> Workload:
    return generate(WorkloadConfig(seed=seed, duration_s=60, rate=200, anchor_ms=ANCHOR, **kw))


# --- generator -------------------------------------------------------------------------------------------

def test_same_seed_same_operations(seed: int) -> None:
    cfg = WorkloadConfig(seed=seed, duration_s=10, rate=200, anchor_ms=ANCHOR)
    a, b = generate(cfg), generate(cfg)
    assert [dataclasses.asdict(o) for o in a.operations] == [dataclasses.asdict(o) for o in b.operations]
    assert [(t.txn, t.at_s, t.rollback, [o.index for o in t.ops]) for t in a.transactions] == \
        [(t.txn, t.at_s, t.rollback, [o.index for o in t.ops]) for t in b.transactions]
    assert a.customers == b.customers
    c = generate(dataclasses.replace(cfg, seed=seed + 1))
    assert [dataclasses.asdict(o) for o in c.operations] != [dataclasses.asdict(o) for o in a.operations]
    assert c.customers != a.customers


def test_transactions_and_marker_ids(seed: int) -> None:
    cfg = WorkloadConfig(seed=seed, duration_s=30, rate=200, anchor_ms=ANCHOR, first_order_id=7_000_001)
    w = generate(cfg)
    assert len(w.operations) == cfg.operations == 6000
    assert [o.index for t in w.transactions for o in t.ops] == list(range(len(w.operations)))
    assert [t.txn for t in w.transactions] == [cfg.txn_id_base + n for n in range(len(w.transactions))]
    assert cfg.txn_id_base == 7_000_001 * 1000
    for t in w.transactions:
        assert 1 <= len(t.ops) <= cfg.txn_size
        assert all(o.txn == t.txn and o.rollback == t.rollback for o in t.ops)
        assert t.at_s == t.ops[0].at_s and w.transaction(t.txn) is t
    assert set(Counter(len(t.ops) for t in w.transactions)) == set(range(1, cfg.txn_size + 1))
    # new order ids come from [first_order_id, first_order_id + operations): marker ids never collide
    ids = {i for o in w.operations for i in o.order_ids}
    assert min(ids) >= cfg.first_order_id and max(ids) < cfg.first_order_id + cfg.operations
    # hot keys: many rows are written by several transactions close together (by different workers then)
    last: dict[int, float] = {}
    close = 0
    for o in w.operations:
        for i in o.order_ids:
            close += i in last and o.at_s - last[i] < 0.05 and o.txn != w.operations[o.index - 1].txn
            last[i] = o.at_s
    assert close > 100


def test_mix_contains_what_real_applications_write(seed: int) -> None:
    w = _big(seed)
    ops = w.operations
    kinds = Counter(o.kind for o in ops)
    assert set(kinds) == set(OP_KINDS), kinds
    # updates: a random subset of ordinary columns; leaving version alone is the majority
    updates = [o for o in ops if o.kind in ("update", "bulk_update")]
    assert sum(not o.bump_version for o in updates) > 0.7 * len(updates)
    assert sum(o.bump_version for o in updates) > 0.05 * len(updates)
    assert any(o.same_value for o in updates)
    set_columns = Counter(frozenset(o.columns) for o in ops if o.kind == "update")
    assert len(set_columns) > 20
    for o in updates:
        assert "version" not in o.values and o.columns
        sql, params = statement(o)
        assert ("version=version+1" in sql) == o.bump_version
        assert len(params) == len(o.values) + (o.event_time_ms is not None) + len(o.order_ids)
    # bulk statements touch several distinct rows
    for o in ops:
        if o.kind.startswith("bulk_"):
            assert len(set(o.order_ids)) == len(o.order_ids) >= 2
            assert " IN (" in statement(o)[0]
    # delete, then later re-insert of the same id with fresh values
    last_delete: dict[int, int] = {}
    reinserts = 0
    for o in ops:
        if o.rollback:
            continue
        if o.is_delete:
            for i in o.order_ids:
                last_delete[i] = o.index
        if o.kind == "insert" and o.reinsert:
            assert o.order_ids[0] in last_delete
            reinserts += 1
    assert reinserts > 50
    # one row changed twice inside one transaction, in each pattern
    patterns: set[tuple[str, str]] = set()
    for t in w.transactions:
        seen: dict[int, str] = {}
        for o in t.ops:
            if o.order_id is not None:
                if o.order_id in seen:
                    patterns.add((seen[o.order_id], o.kind))
                seen[o.order_id] = o.kind
    assert {("insert", "update"), ("update", "update"), ("update", "delete")} <= patterns
    # deliberate rollbacks, a few per cent
    rolled = sum(t.rollback for t in w.transactions)
    assert 0.005 * len(w.transactions) < rolled < 0.1 * len(w.transactions)
    # customers change; some orders reference a customer id that does not exist (yet)
    cust = [o for o in ops if o.kind in ("customer_update", "customer_insert")]
    assert {o.values["region"] for o in cust} == {"EU", "NA", "APAC", "LATAM"}
    assert {o.values["segment"] for o in cust} == {"consumer", "smb", "enterprise"}
    known = w.config.customers
    unknown_refs = 0
    for o in ops:
        if o.kind == "customer_insert":
            assert o.customer_id is not None and o.customer_id > w.config.customers
            known = max(known, o.customer_id)
        elif "customer_id" in o.values and o.values["customer_id"] > known:
            unknown_refs += 1
    assert unknown_refs > 0
    assert {c["region"] for c in w.customers} == {"EU", "NA", "APAC", "LATAM"}


def test_event_time_classes(seed: int) -> None:
    w = _big(seed, late_fraction=0.05, warmup_s=5)
    classes = Counter(o.event_class for o in w.operations if o.event_time_ms is not None)
    assert set(classes) == set(EVENT_CLASSES)
    for o in w.operations:
        assert (o.event_time_ms is None) == (o.event_class is None)
        if o.kind == "insert":
            assert o.event_time_ms is not None
        if o.is_delete or o.kind.startswith("customer_"):
            assert o.event_time_ms is None
        if o.event_time_ms is None:
            continue
        behind = o.scheduled_ms - o.event_time_ms
        if o.event_class == "on_time":
            assert -50 <= behind <= 0
        elif o.event_class == "out_of_order":
            assert 0 <= behind < w.config.out_of_order_max_ms
        else:
            assert o.at_s >= w.config.warmup_s
            lo, hi = (MINUTE, 2 * HOUR) if o.event_class == "late_minutes" else (DAY, 3 * DAY)
            assert lo <= behind <= hi
    # named profiles: overrides still steer the mix
    late = _big(seed, late_fraction=0.2)
    timed = [o for o in late.operations if o.event_time_ms is not None and o.at_s >= late.config.warmup_s]
    share = sum(o.event_class in ("late_minutes", "late_days") for o in timed) / len(timed)
    assert 0.15 < share < 0.25
    ooo = _big(seed, out_of_order_fraction=0.6)
    timed = [o for o in ooo.operations if o.event_time_ms is not None]
    assert sum(o.event_class == "out_of_order" for o in timed) / len(timed) > 0.5
    deletes = _big(seed, mix=(0.3, 0.45, 0.25))
    assert Counter(o.kind for o in deletes.operations)["delete"] > Counter(o.kind for o in w.operations)["delete"]


def test_generator_is_fast() -> None:
    t0 = time.process_time()
    w = generate(WorkloadConfig(seed=3, duration_s=500, rate=200, anchor_ms=ANCHOR))
    assert len(w.operations) == 100_000
    assert time.process_time() - t0 < 15      # about 3 s of CPU on a loaded 2-core machine


# --- client without a database: errors become outcomes, never exceptions -----------------------------------

class _FakeCursor:
    def __init__(self, conn: _FakeConn) -> None:
        self.conn = conn
        self._row: tuple[Any, ...] | None = None

    def __enter__(self) -> _FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, params: Any = None) -> int:
        if self.conn.closed:
            raise pymysql.err.InterfaceError(0, "")
        if sql == MARKER_SQL:
            self.conn.txn = params[0]
        elif sql.startswith(("UPDATE", "DELETE", "INSERT")):
            fault = self.conn.server.faults.get(self.conn.txn)
            if fault == "deadlock":
                raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
            if fault == "lost_in_statement":
                self.conn.closed = True
                raise pymysql.err.OperationalError(2013, "Lost connection to server during query")
            if fault == "bug":
                raise RuntimeError("unexpected")
        elif sql == "SELECT @@last_gtid":
            self.conn.server.seq += 1
            self._row = (f"0-1-{self.conn.server.seq}",)
        return 1

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._row


class _FakeConn:
    def __init__(self, server: _FakeServer) -> None:
        self.server = server
        self.closed = False
        self.txn: int | None = None

    def cursor(self) -> _FakeCursor:
        return _FakeCursor(self)

    def commit(self) -> None:
        if self.server.faults.get(self.txn) == "lost_in_commit":
            self.closed = True
            raise pymysql.err.OperationalError(2013, "Lost connection to server during query")
        self.server.committed.append(self.txn)

    def get_autocommit(self) -> bool:
        return False

    def rollback(self) -> None:
        if self.closed:
            raise pymysql.err.InterfaceError(0, "")

    def close(self) -> None:
        self.closed = True


class _FakeServer:
    def __init__(self, faults: dict[int, str]) -> None:
        self.faults = faults
        self.seq = 0
        self.connects = 0
        self.committed: list[int | None] = []

    def connect(self) -> Any:
        self.connects += 1
        return _FakeConn(self)


def test_client_records_errors_as_outcomes() -> None:
    w = generate(WorkloadConfig(seed=11, duration_s=1, rate=60, concurrency=1, rollback_fraction=0.0,
                                anchor_ms=ANCHOR, first_order_id=5))
    t = [x.txn for x in w.transactions]
    faults = {t[1]: "deadlock", t[2]: "lost_in_commit", t[3]: "lost_in_statement", t[4]: "bug"}
    server = _FakeServer(faults)
    client = WorkloadClient(w, server.connect, "inventory")
    history = client.run(start_at=time.monotonic() - 10)      # all due: run back to back
    outcome = {e.txn: e for e in history.entries}
    assert len(history.entries) == len(w.transactions)
    assert outcome[t[1]].outcome == "fail" and outcome[t[1]].error_code == 1213
    assert outcome[t[2]].outcome == "info" and outcome[t[2]].error_code == 2013
    assert outcome[t[3]].outcome == "fail" and outcome[t[3]].error_code == 2013
    assert outcome[t[4]].outcome == "fail" and client.errors
    oks = [e for e in history.entries if e.outcome == "ok"]
    assert len(oks) == len(w.transactions) - 4 and all(e.gtid for e in oks)
    assert server.committed == [e.txn for e in oks]
    assert server.connects == 3          # first connection, after the lost commit, after the lost statement
    stats = summarize(history)
    assert stats["transactions"] == {"ok": len(oks), "fail": 3, "info": 1}
    assert stats["gtids"] == len(oks)


def test_client_stop_returns_promptly() -> None:
    w = generate(WorkloadConfig(seed=2, duration_s=600, rate=2, anchor_ms=ANCHOR))
    client = WorkloadClient(w, _FakeServer({}).connect, "inventory")
    done = threading.Event()
    runner = threading.Thread(target=lambda: (client.run(), done.set()), daemon=True)
    runner.start()
    time.sleep(0.5)
    client.stop()
    assert done.wait(5)
    assert 0 < len(client.history.entries) < len(w.transactions)


# --- against a real MariaDB --------------------------------------------------------------------------------

def _ms_datetime(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).replace(tzinfo=None)


def _replay(workload: Workload, order: list[int], rowcounts: dict[int, list[int]]) -> tuple[
        dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Apply the committed transactions serially in commit (GTID) order; check each statement's rowcount."""
    orders: dict[int, dict[str, Any]] = {}
    customers = {c["customer_id"]: {k: v for k, v in c.items() if k != "customer_id"} for c in workload.customers}
    for txn in order:
        t = workload.transaction(txn)
        for op, seen in zip(t.ops, rowcounts[txn], strict=True):
            rows = _apply_one(op, orders, customers)
            assert rows == seen, (op, rows, seen)
    return orders, customers


def _apply_one(op: Operation, orders: dict[int, dict[str, Any]], customers: dict[int, dict[str, Any]]) -> int:
    v = op.values
    if op.kind == "insert":
        oid = op.order_ids[0]
        assert oid not in orders, f"committed insert of an existing order {oid}"
        assert op.event_time_ms is not None
        orders[oid] = {"customer_id": v["customer_id"], "product": v["product"], "quantity": v["quantity"],
                       "unit_price": Decimal(v["unit_price"]), "status": v["status"],
                       "event_time": _ms_datetime(op.event_time_ms), "version": 1}
        return 1
    if op.kind in ("update", "bulk_update"):
        changed = 0
        for oid in op.order_ids:
            old = orders.get(oid)
            if old is None:
                continue
            new = {**old, **{k: Decimal(x) if k == "unit_price" else x for k, x in v.items()}}
            if op.event_time_ms is not None:
                new["event_time"] = _ms_datetime(op.event_time_ms)
            if op.bump_version:
                new["version"] += 1
            changed += new != old
            orders[oid] = new
        return changed
    if op.kind in ("delete", "bulk_delete"):
        return sum(orders.pop(oid, None) is not None for oid in op.order_ids)
    assert op.customer_id is not None
    old_c = customers.get(op.customer_id)
    if op.kind == "customer_update":
        if old_c is None:
            return 0
        new_c = {**old_c, **v}
        customers[op.customer_id] = new_c
        return int(new_c != old_c)
    if old_c is None:       # INSERT ... ON DUPLICATE KEY UPDATE: 1 inserted, 2 updated, 0 unchanged
        customers[op.customer_id] = dict(v)
        return 1
    customers[op.customer_id] = dict(v)
    return 0 if dict(v) == old_c else 2


def test_client_against_real_database(database: Database, stack_config: StackConfig, seed: int) -> None:
    cfg = WorkloadConfig(seed=seed, duration_s=5, rate=200, warmup_s=1, rollback_fraction=0.05,
                         first_order_id=1_000_001)
    workload = generate(cfg)
    client = WorkloadClient(workload, database.connect, "inventory")
    client.seed_customers()
    history = client.run()
    stats = summarize(history)
    print(stats)
    assert not client.errors
    entries = {e.txn: e for e in history.entries}
    assert len(entries) == len(history.entries) == len(workload.transactions)
    assert {e.outcome for e in history.entries} <= set(OUTCOMES)
    counts = stats["transactions"]
    assert counts.get("ok", 0) > 0.8 * len(workload.transactions)
    assert counts.get("rolled_back", 0) == sum(t.rollback for t in workload.transactions)
    assert counts.get("info", 0) == 0                      # no faults injected: every outcome is known
    for e in history.entries:
        assert e.complete_ms is not None and e.complete_ms >= e.invoke_ms
        if e.outcome in ("ok", "rolled_back"):
            assert len(e.rowcounts) == len(e.op_indexes)
        if e.outcome == "fail":    # lock waits, deadlocks, duplicate keys of reordered concurrent writers
            assert e.error_code in (1205, 1213, 1062), e.error
    ok = [e for e in history.entries if e.outcome == "ok"]
    # no key is pinned to a worker: every worker ran transactions and many rows were written by several
    assert {e.worker for e in history.entries} == set(range(cfg.concurrency))
    writers: dict[int, set[int]] = {}
    for op, e, _rows in history.operations():
        for i in op.order_ids:
            writers.setdefault(i, set()).add(e.worker)
    assert sum(len(s) > 1 for s in writers.values()) > 20
    if stack_config.database.kind == "mariadb":
        assert all(e.gtid and re.fullmatch(r"\d+-\d+-\d+", e.gtid) for e in ok)
        assert len({e.gtid for e in ok}) == len(ok)
    else:
        assert all(e.gtid is None for e in ok)
    conn = database.connect()
    try:
        with conn.cursor() as cur:
            lo, hi = cfg.txn_id_base, cfg.txn_id_base + len(workload.transactions)
            cur.execute("SELECT txn_id FROM workload_txns WHERE txn_id >= %s AND txn_id < %s", (lo, hi))
            markers = {r[0] for r in cur.fetchall()}
            lo, hi = cfg.first_order_id, cfg.first_order_id + cfg.operations
            cur.execute("SELECT order_id, customer_id, product, quantity, unit_price, status, event_time, version "
                        "FROM orders WHERE order_id >= %s AND order_id < %s", (lo, hi))
            table = {r[0]: dict(zip(("customer_id", "product", "quantity", "unit_price", "status", "event_time",
                                     "version"), r[1:], strict=True)) for r in cur.fetchall()}
            cur.execute("SELECT customer_id, customer_name, region, segment FROM customers")
            cust_table = {r[0]: {"customer_name": r[1], "region": r[2], "segment": r[3]} for r in cur.fetchall()}
    finally:
        conn.close()
    # the marker table holds exactly the committed transactions: no rolled-back or failed one
    assert markers == {e.txn for e in ok}
    assert not markers & {e.txn for e in history.entries if e.outcome in ("rolled_back", "fail")}
    # the final tables are what the committed transactions give, applied serially in commit order
    if stack_config.database.kind == "mariadb":
        order = [e.txn for e in sorted(ok, key=lambda e: int((e.gtid or "0-0-0").split("-")[2]))]
        orders, customers = _replay(workload, order, {e.txn: e.rowcounts for e in ok})
        assert table == orders
        assert {k: cust_table[k] for k in customers if k in cust_table} == customers
        assert set(customers) <= set(cust_table)
    # every kind of statement committed something
    assert set(stats["committed_changes"]) >= {"insert", "update", "delete"}
