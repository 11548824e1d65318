"""Workload: a seeded generator of order changes and a client that applies them and records a history.

Determinism (Hypothesis-style): every random choice comes from ``random.Random(seed)`` and a Faker
seeded with the same seed, and time is virtual.  Operation *i* is scheduled ``at_s`` seconds after the
start and carries an event time ``anchor_ms + at_s*1000 + offset`` where the offset depends on its
event class (on-time, out-of-order within the watermark bound, or far late).  The client runs each
transaction with ``SET TIMESTAMP`` at its virtual commit time, so even the binlog's commit times (which
Debezium reports as ``source.ts_ms`` and the job uses as a delete's event time) follow the seed.
Same seed and anchor => the same operations, values and event times.
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
from faker import Faker

from harness.enrichment import STATUSES, customer_region, customer_segment

OP_KINDS = ("insert", "update", "delete")
EVENT_CLASSES = ("on_time", "out_of_order", "late")


@dataclass(frozen=True)
class WorkloadConfig:
    seed: int
    duration_s: float = 20.0
    rate: float = 100.0                   # operations per second (all workers together)
    concurrency: int = 2                  # client connections; a key always goes to the same one
    txn_size: int = 1                     # operations per transaction
    mix: tuple[float, float, float] = (0.5, 0.35, 0.15)   # insert, update, delete weights
    anchor_ms: int | None = None          # event-time clock at t=0; None = wall clock at generation
    out_of_order_fraction: float = 0.2
    out_of_order_max_ms: int = 4000       # keep below the job's watermark bound (5 s) to stay on time
    late_fraction: float = 0.02
    late_min_ms: int = 2 * 3600 * 1000    # far behind any watermark: lands in past partitions
    late_max_ms: int = 3 * 86400 * 1000
    warmup_s: float = 5.0                 # no late events before the watermark exists everywhere
    rollback_fraction: float = 0.02       # transactions deliberately rolled back (must never reach the lake)
    customers: int = 200
    first_order_id: int = 1

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration_s <= 0:
            raise ValueError("workload rate and duration must be positive")
        if self.concurrency < 1 or self.txn_size < 1:
            raise ValueError("workload concurrency and txn_size must be at least 1")
        if len(self.mix) != 3 or min(self.mix) < 0 or sum(self.mix) <= 0:
            raise ValueError("workload mix is three non-negative weights (insert, update, delete)")


@dataclass(frozen=True)
class Operation:
    index: int
    worker: int
    txn: int                 # global transaction number
    kind: str                # insert | update | delete
    order_id: int
    version: int             # the row's version after this change (a delete: the version it deletes)
    at_s: float              # scheduled offset from the start
    commit_ms: int           # virtual commit time (SET TIMESTAMP), whole seconds like the binlog header
    event_time_ms: int       # the event_time column written (a delete: equals commit_ms)
    event_class: str         # on_time | out_of_order | late
    rollback: bool           # part of a transaction the client rolls back on purpose
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def is_delete(self) -> bool:
        return self.kind == "delete"


@dataclass
class Workload:
    config: WorkloadConfig
    anchor_ms: int
    operations: list[Operation]
    customers: list[dict[str, Any]]

    def transactions(self) -> dict[int, list[Operation]]:
        txns: dict[int, list[Operation]] = {}
        for op in self.operations:
            txns.setdefault(op.txn, []).append(op)
        return txns


def generate(config: WorkloadConfig) -> Workload:
    """The whole operation list for a seed; pure, no I/O."""
    rng = random.Random(config.seed)
    fake = Faker()
    fake.seed_instance(config.seed)
    anchor = config.anchor_ms if config.anchor_ms is not None else int(time.time()) * 1000
    customers = [
        {"customer_id": cid, "customer_name": fake.name()[:128], "region": customer_region(cid),
         "segment": customer_segment(cid)}
        for cid in range(1, config.customers + 1)
    ]
    products = [f"{fake.color_name()} {fake.word()} {fake.word()}"[:128] for _ in range(200)]
    total = max(1, int(config.duration_s * config.rate))
    live: list[list[int]] = [[] for _ in range(config.concurrency)]   # per worker: live order ids
    versions: dict[int, int] = {}
    next_id = config.first_order_id
    ops: list[Operation] = []
    txn_of_worker: dict[int, tuple[int, int]] = {}   # worker -> (txn id, ops in it)
    next_txn = 0
    rollback_txns: set[int] = set()
    for i in range(total):
        at_s = i / config.rate
        kind = rng.choices(OP_KINDS, weights=config.mix)[0]
        worker = rng.randrange(config.concurrency)
        if kind != "insert" and not live[worker]:
            kind = "insert"
        if kind == "insert":
            order_id = next_id
            next_id += 1
            worker = order_id % config.concurrency       # a key always belongs to one worker
            live[worker].append(order_id)
            version = 1
        else:
            pos = rng.randrange(len(live[worker]))
            order_id = live[worker][pos]
            if kind == "delete":
                live[worker][pos] = live[worker][-1]
                live[worker].pop()
                version = versions[order_id]
            else:
                version = versions[order_id] + 1
        versions[order_id] = version
        # transactions group consecutive operations of one worker
        txn, count = txn_of_worker.get(worker, (-1, config.txn_size))
        if count >= config.txn_size:
            txn, count = next_txn, 0
            next_txn += 1
            if rng.random() < config.rollback_fraction:
                rollback_txns.add(txn)
        txn_of_worker[worker] = (txn, count + 1)
        commit_ms = (anchor + int(at_s * 1000)) // 1000 * 1000
        r = rng.random()
        if at_s >= config.warmup_s and r < config.late_fraction:
            event_class = "late"
            offset = -rng.randrange(config.late_min_ms, config.late_max_ms)
        elif r < config.late_fraction + config.out_of_order_fraction:
            event_class = "out_of_order"
            offset = -rng.randrange(0, config.out_of_order_max_ms)
        else:
            event_class = "on_time"
            offset = rng.randrange(0, 50)
        event_time_ms = anchor + int(at_s * 1000) + offset
        values: dict[str, Any] = {}
        if kind == "delete":
            event_time_ms = commit_ms
            event_class = "on_time"
        else:
            cid = rng.randrange(1, config.customers + 1)
            values = {
                "customer_id": cid,
                "product": rng.choice(products),
                "quantity": rng.randrange(1, 21),
                "unit_price": str(Decimal(rng.randrange(100, 50000)) / 100),
                "status": rng.choice(STATUSES),
            }
        ops.append(Operation(i, worker, txn, kind, order_id, version, at_s, commit_ms, event_time_ms,
                             event_class, False, values))
    # A rolled-back transaction leaves no trace; later operations on its keys still run and the history
    # records what they really changed (the checker's truth is the binlog, not this list).
    ops = [dataclasses.replace(op, rollback=op.txn in rollback_txns) for op in ops]
    return Workload(config, anchor, ops, customers)


# --- history -------------------------------------------------------------------------------------------

@dataclass
class HistoryEntry:
    txn: int
    worker: int
    op_indexes: list[int]
    invoke_ms: int
    complete_ms: int | None = None
    outcome: str = "pending"          # ok | fail | info (indeterminate) | rolled_back
    rowcounts: list[int] = field(default_factory=list)
    error: str | None = None


class History:
    """Every transaction the client attempted, in invocation order (Jepsen's history)."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.entries: list[HistoryEntry] = []
        self._lock = threading.Lock()

    def add(self, entry: HistoryEntry) -> None:
        with self._lock:
            self.entries.append(entry)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.outcome] = out.get(e.outcome, 0) + 1
        return out

    def operations(self) -> Iterator[tuple[Operation, HistoryEntry, int]]:
        """(operation, its transaction's entry, rows it changed)."""
        ops = self.workload.operations
        for e in self.entries:
            for k, idx in enumerate(e.op_indexes):
                yield ops[idx], e, (e.rowcounts[k] if k < len(e.rowcounts) else -1)

    def dump(self, path: Path) -> None:
        with open(path, "w") as fh:
            fh.write(json.dumps({"seed": self.workload.config.seed, "anchor_ms": self.workload.anchor_ms,
                                 "config": dataclasses.asdict(self.workload.config)}) + "\n")
            for e in self.entries:
                fh.write(json.dumps(dataclasses.asdict(e)) + "\n")


# --- client --------------------------------------------------------------------------------------------

ConnectFn = Callable[[], pymysql.connections.Connection]
# errors that mean "the connection (or server) went away": the outcome of an in-flight commit is unknown
_CONNECTION_LOST = {2006, 2013, 2003, 2055, 1927, 1053}


class WorkloadClient:
    """Applies a workload to the database from ``concurrency`` threads, recording the history."""

    def __init__(self, workload: Workload, connect: ConnectFn, database: str) -> None:
        self.workload = workload
        self.connect = connect
        self.database = database
        self.history = History(workload)
        self._stop = threading.Event()

    def seed_customers(self) -> None:
        conn = self._connect_retry(deadline=time.monotonic() + 60)
        with conn, conn.cursor() as cur:
            cur.executemany(
                "REPLACE INTO customers (customer_id, customer_name, region, segment) VALUES (%s,%s,%s,%s)",
                [(c["customer_id"], c["customer_name"], c["region"], c["segment"]) for c in self.workload.customers],
            )
            conn.commit()

    def stop(self) -> None:
        self._stop.set()

    def run(self, start_at: float | None = None) -> History:
        txns = self.workload.transactions()
        by_worker: dict[int, list[list[Operation]]] = {}
        for ops in txns.values():
            by_worker.setdefault(ops[0].worker, []).append(ops)
        start = start_at if start_at is not None else time.monotonic()
        threads = [threading.Thread(target=self._worker, args=(w, t, start), daemon=True, name=f"workload-{w}")
                   for w, t in sorted(by_worker.items())]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.history

    def _connect_retry(self, deadline: float) -> pymysql.connections.Connection:
        delay = 0.1
        while True:
            try:
                return self.connect()
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _worker(self, worker: int, txns: list[list[Operation]], start: float) -> None:
        conn: pymysql.connections.Connection | None = None
        for ops in txns:
            if self._stop.is_set():
                return
            wait = start + ops[0].at_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            entry = HistoryEntry(txn=ops[0].txn, worker=worker, op_indexes=[o.index for o in ops],
                                 invoke_ms=int(time.time() * 1000))
            try:
                if conn is None:
                    conn = self._connect_retry(deadline=time.monotonic() + 120)
                self._apply(conn, ops, entry)
            except pymysql.err.MySQLError as exc:
                code = exc.args[0] if exc.args else None
                entry.error = f"{type(exc).__name__}: {exc}"
                # A lost connection during COMMIT leaves the outcome unknown (resolved later from the
                # binlog); any other error means the server rolled the transaction back.
                entry.outcome = "info" if entry.outcome == "committing" and code in _CONNECTION_LOST else "fail"
                try:
                    if conn is not None:
                        conn.close()
                except Exception:  # noqa: BLE001 - the connection is already broken
                    pass
                conn = None
            entry.complete_ms = int(time.time() * 1000)
            self.history.add(entry)
        if conn is not None:
            conn.close()

    def _apply(self, conn: pymysql.connections.Connection, ops: list[Operation], entry: HistoryEntry) -> None:
        with conn.cursor() as cur:
            cur.execute("SET TIMESTAMP = %s", (ops[0].commit_ms / 1000,))
            cur.execute("BEGIN")
            for op in ops:
                entry.rowcounts.append(cur.execute(*_statement(op)))
            if ops[0].rollback:
                conn.rollback()
                entry.outcome = "rolled_back"
                return
            entry.outcome = "committing"
            conn.commit()
            entry.outcome = "ok"


def _statement(op: Operation) -> tuple[str, tuple[Any, ...]]:
    v = op.values
    et = _datetime_literal(op.event_time_ms)
    if op.kind == "insert":
        return ("INSERT IGNORE INTO orders (order_id, customer_id, product, quantity, unit_price, status, "
                "event_time, version) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                (op.order_id, v["customer_id"], v["product"], v["quantity"], v["unit_price"], v["status"], et,
                 op.version))
    if op.kind == "update":
        return ("UPDATE orders SET customer_id=%s, product=%s, quantity=%s, unit_price=%s, status=%s, "
                "event_time=%s, version=%s WHERE order_id=%s",
                (v["customer_id"], v["product"], v["quantity"], v["unit_price"], v["status"], et, op.version,
                 op.order_id))
    return "DELETE FROM orders WHERE order_id=%s", (op.order_id,)


def _datetime_literal(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def summarize(history: History) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    classes: dict[str, int] = {}
    for op, entry, rows in history.operations():
        if entry.outcome == "ok" and rows > 0:
            kinds[op.kind] = kinds.get(op.kind, 0) + 1
            classes[op.event_class] = classes.get(op.event_class, 0) + 1
    return {"seed": history.workload.config.seed, "anchor_ms": history.workload.anchor_ms,
            "transactions": history.counts(), "committed_changes": kinds, "event_classes": classes}
