"""Workload: a seeded generator of what real applications write, and a client that applies it and records
a Jepsen-style history.

Determinism: every random choice comes from ``random.Random(seed)`` and a Faker seeded with the same seed,
so the same seed and anchor give the same transactions, statements, values and event times
(:func:`generate` is pure).  Operation *i* is *scheduled* ``at_s = i / rate`` seconds after the start; a
transaction starts at its first operation's time.  Commit times are the server's real clock (no
``SET TIMESTAMP``), exactly like a real application.

What the workload writes (weights in :class:`WorkloadConfig`):

* single-row inserts, updates and deletes (``mix``); an update sets a random subset of the ordinary
  columns (product, quantity, unit_price, status, customer_id, event_time), only a minority also bumps
  ``version`` (``version_bump_fraction``), some set a column to the value it (probably) already has;
* re-inserts of order ids deleted earlier, with fresh values (``reinsert_fraction``) — so neither
  ``version`` nor ``(order_id, version, is_delete)`` identifies a change;
* transactions of 1..``txn_size`` statements, some changing the same row twice (insert+update,
  update+update, update+delete: ``same_row_fraction``);
* bulk ``UPDATE ... WHERE order_id IN (...)`` and ``DELETE ... WHERE order_id IN (...)`` (``bulk_fraction``);
* transactions rolled back on purpose (``rollback_fraction``);
* customer changes: ``UPDATE customers SET region, segment`` and occasionally a new customer
  (``customer_fraction``); orders may reference a customer id that does not exist yet (no FK);
* event times on time (now + 0..50 ms), out of order (0..``out_of_order_max_ms`` behind), late by
  minutes to two hours, or late by 1..3 days (``late_fraction`` is the total of both late classes, none
  before ``warmup_s``).  Each operation records the class of the ``event_time`` it writes.

Keys are not pinned to a worker: ``concurrency`` connections take the transactions from one queue in
schedule order and write the same (hot) keys at the same time, so lock waits, deadlocks and the odd
duplicate key of a reordered re-insert happen; they are recorded as ``fail`` and the worker moves on.
Taking from one queue bounds the reordering to the transactions in flight, even when the client lags.

Transaction markers: every transaction first runs ``INSERT INTO workload_txns (txn_id, worker)``, so the
binlog names the history's transaction.  ``txn_id = first_order_id * 1000 + n`` for the workload's
n-th transaction (n = 0, 1, ...).  A workload has at most one transaction per operation and takes its
new order ids from ``[first_order_id, first_order_id + operations)``, so workloads whose order-id ranges
do not overlap (which they must not anyway) never share a marker id on one database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pymysql
from faker import Faker

#: every kind of operation (one SQL statement each)
OP_KINDS = ("insert", "update", "delete", "bulk_update", "bulk_delete", "customer_update", "customer_insert")
ORDER_KINDS = frozenset(OP_KINDS[:5])
#: the class of the event_time an operation writes (None when it writes none)
EVENT_CLASSES = ("on_time", "out_of_order", "late_minutes", "late_days")
OUTCOMES = ("ok", "fail", "info", "rolled_back")
STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "returned")
NEW_ORDER_STATUSES = ("pending", "paid")
REGIONS = ("EU", "NA", "APAC", "LATAM")
SEGMENTS = ("consumer", "smb", "enterprise")
#: ordinary order columns an update may set, each with the chance it is among the set columns
UPDATE_COLUMNS: dict[str, float] = {
    "product": 0.12, "quantity": 0.3, "unit_price": 0.25, "status": 0.6, "customer_id": 0.1, "event_time": 0.4,
}
SAME_ROW_PATTERNS = ("insert_update", "update_update", "update_delete")
TXN_ID_MULTIPLIER = 1000
MARKER_SQL = "INSERT INTO workload_txns (txn_id, worker) VALUES (%s, %s)"
MARKER_TABLE_DDL = ("CREATE TABLE IF NOT EXISTS workload_txns (txn_id BIGINT NOT NULL PRIMARY KEY, "
                    "worker INT NOT NULL)")

T = TypeVar("T")
_SETTLED_S = 0.5        # schedule distance after which a row's insert has surely committed
_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class WorkloadConfig:
    seed: int
    duration_s: float = 20.0
    rate: float = 100.0                   # operations (statements) per second, all workers together
    concurrency: int = 3                  # client connections; any of them may write any key
    txn_size: int = 5                     # statements per transaction: uniform in 1..txn_size
    mix: tuple[float, float, float] = (0.4, 0.45, 0.15)   # single-row insert, update, delete weights
    anchor_ms: int | None = None          # event-time clock at t=0; None = wall clock at generation
    out_of_order_fraction: float = 0.2
    out_of_order_max_ms: int = 4000       # keep below the job's watermark bound (5 s) to stay on time
    late_fraction: float = 0.02           # late_minutes + late_days together
    late_days_share: float = 0.5          # of the late events, the share that is 1..3 days late
    warmup_s: float = 5.0                 # no late events before the watermark exists everywhere
    rollback_fraction: float = 0.03       # transactions deliberately rolled back (must never reach the lake)
    customers: int = 200
    first_order_id: int = 1
    version_bump_fraction: float = 0.15   # updates that also set version = version + 1
    noop_update_fraction: float = 0.1     # updates that set a column to the value the row already has
    reinsert_fraction: float = 0.25       # inserts that re-insert an order id deleted earlier (if any)
    reinsert_after_s: float = 1.0         # ... deleted at least this long before (by schedule)
    same_row_fraction: float = 0.25       # transactions (of 2+ statements) changing one row twice
    bulk_fraction: float = 0.04           # statements that are bulk UPDATE/DELETE ... WHERE order_id IN (...)
    bulk_delete_share: float = 0.3        # of the bulk statements, the share that deletes
    bulk_max_rows: int = 6                # rows per bulk statement: 2..bulk_max_rows
    customer_fraction: float = 0.03       # statements that change the customers table
    customer_insert_share: float = 0.2    # of those, the share that inserts a new customer
    unknown_customer_fraction: float = 0.02   # orders that reference a customer id not inserted yet
    hot_keys: int = 32                    # recently touched order ids that get half of the row picks
    lock_wait_timeout_s: int = 5          # session innodb_lock_wait_timeout of the client's connections

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration_s <= 0:
            raise ValueError("workload rate and duration must be positive")
        if self.concurrency < 1 or self.txn_size < 1:
            raise ValueError("workload concurrency and txn_size must be at least 1")
        if len(self.mix) != 3 or min(self.mix) < 0 or sum(self.mix) <= 0:
            raise ValueError("workload mix is three non-negative weights (insert, update, delete)")
        if self.customers < 1 or self.first_order_id < 1 or self.bulk_max_rows < 2:
            raise ValueError("workload customers and first_order_id must be >= 1, bulk_max_rows >= 2")
        if (self.first_order_id + self.operations) * TXN_ID_MULTIPLIER >= 2**63:
            raise ValueError("first_order_id too large: txn ids (first_order_id * 1000 + n) overflow BIGINT")

    @property
    def operations(self) -> int:
        """How many operations (statements) the workload has."""
        return max(1, int(self.duration_s * self.rate))

    @property
    def txn_id_base(self) -> int:
        """The marker id of the workload's first transaction (see the module docstring)."""
        return self.first_order_id * TXN_ID_MULTIPLIER


@dataclass(frozen=True, slots=True)
class Operation:
    """One SQL statement of a transaction.

    ``order_ids`` are the rows an orders statement targets (one, or several for bulk statements; empty
    for customer statements); ``values`` the columns it sets besides ``event_time`` (an insert: all of
    them, with ``version`` 1; a customer statement: the customers columns).  ``event_time_ms`` is the
    ``event_time`` written (None: not written) and ``event_class`` its class.
    """

    index: int
    txn: int                 # the transaction's marker id (workload_txns.txn_id)
    kind: str                # one of OP_KINDS
    order_ids: tuple[int, ...]
    customer_id: int | None  # the customers row a customer statement targets
    values: dict[str, Any]
    bump_version: bool       # an update also sets version = version + 1
    same_value: bool         # an update sets at least one column to the value the generator's model holds
    reinsert: bool           # an insert of an order id that was deleted earlier
    at_s: float              # scheduled offset from the start
    scheduled_ms: int        # anchor_ms + at_s (the nominal "now" of the event time)
    event_time_ms: int | None
    event_class: str | None  # on_time | out_of_order | late_minutes | late_days | None (no event_time)
    rollback: bool           # part of a transaction the client rolls back on purpose

    @property
    def order_id(self) -> int | None:
        """The row of a single-row orders statement (None for bulk and customer statements)."""
        return self.order_ids[0] if len(self.order_ids) == 1 and self.kind in ("insert", "update", "delete") else None

    @property
    def is_delete(self) -> bool:
        return self.kind in ("delete", "bulk_delete")

    @property
    def table(self) -> str:
        return "orders" if self.kind in ORDER_KINDS else "customers"

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the statement sets (``version`` included when it is written or bumped)."""
        cols = [*self.values]
        if self.event_time_ms is not None:
            cols.append("event_time")
        if self.bump_version:
            cols.append("version")
        return tuple(cols)


@dataclass(frozen=True, slots=True)
class Transaction:
    txn: int                 # marker id: config.txn_id_base + seq
    seq: int                 # 0, 1, ... in schedule order
    at_s: float
    rollback: bool
    ops: tuple[Operation, ...]


@dataclass
class Workload:
    config: WorkloadConfig
    anchor_ms: int
    operations: list[Operation]
    transactions: list[Transaction]
    customers: list[dict[str, Any]]     # the initial customers (seed_customers)

    def transaction(self, txn: int) -> Transaction:
        return self.transactions[txn - self.config.txn_id_base]


# --- generator -------------------------------------------------------------------------------------------

class _Random(random.Random):
    """``random.Random`` with cheap integer picks built on ``random()`` (deterministic for a seed)."""

    def below(self, n: int) -> int:
        """Uniform in 0..n-1."""
        return int(self.random() * n)

    def span(self, a: int, b: int) -> int:
        """Uniform in a..b-1."""
        return a + int(self.random() * (b - a))

    def between(self, a: int, b: int) -> int:
        """Uniform in a..b (both included)."""
        return a + int(self.random() * (b - a + 1))

    def pick(self, seq: Sequence[T]) -> T:
        return seq[int(self.random() * len(seq))]


class _Model:
    """The generator's sequential picture of the tables: which order ids live, their values, what may be
    re-inserted.  Changes are journaled so a deliberately rolled-back transaction leaves no trace."""

    def __init__(self, cfg: WorkloadConfig, rng: _Random) -> None:
        self.cfg = cfg
        self.rng = rng
        self.live: list[int] = []
        self.pos: dict[int, int] = {}
        self.rows: dict[int, dict[str, Any]] = {}
        self.deleted: deque[tuple[float, int]] = deque()     # (deleted at, id), schedule order
        self.deleted_at: dict[int, float] = {}
        self.reinsertable: list[int] = []
        self.recent: deque[int] = deque(maxlen=max(1, cfg.hot_keys))
        self.next_id = cfg.first_order_id
        self.max_customer = cfg.customers
        self.journal: list[Callable[[], None]] = []
        self.txn_seq = -1
        self.born: dict[int, tuple[float, int]] = {}           # id -> (scheduled insert time, txn seq)

    # live set with O(1) add/remove/pick
    def _add_live(self, oid: int) -> None:
        self.pos[oid] = len(self.live)
        self.live.append(oid)

    def _remove_live(self, oid: int) -> None:
        i = self.pos.pop(oid)
        last = self.live.pop()
        if last != oid:
            self.live[i] = last
            self.pos[last] = i

    def pick_live(self, exclude: set[int]) -> int | None:
        if not self.live:
            return None
        for _ in range(4):
            if self.recent and self.rng.random() < 0.5:
                oid = self.recent[self.rng.below(len(self.recent))]
                if oid not in self.pos:
                    continue
            else:
                oid = self.live[self.rng.below(len(self.live))]
            if oid not in exclude:
                return oid
        return None

    def pick_reinsertable(self, at_s: float) -> int | None:
        while self.deleted and at_s - self.deleted[0][0] >= self.cfg.reinsert_after_s:
            t, oid = self.deleted.popleft()
            if self.deleted_at.get(oid) == t:
                self.reinsertable.append(oid)
        while self.reinsertable:
            i = self.rng.below(len(self.reinsertable))
            oid = self.reinsertable[i]
            self.reinsertable[i] = self.reinsertable[-1]
            self.reinsertable.pop()
            if oid in self.deleted_at:     # a rolled-back delete may have put it back
                return oid
        return None

    def insert(self, oid: int, row: dict[str, Any], at_s: float) -> None:
        was_deleted = self.deleted_at.pop(oid, None)
        was_born = self.born.get(oid)
        self._add_live(oid)
        self.rows[oid] = row
        self.born[oid] = (at_s, self.txn_seq)
        self.recent.append(oid)

        def undo() -> None:
            self._remove_live(oid)
            self.rows.pop(oid, None)
            if was_born is not None:
                self.born[oid] = was_born
            if was_deleted is not None:
                self.deleted_at[oid] = was_deleted
                self.reinsertable.append(oid)
        self.journal.append(undo)

    def update(self, oid: int, changes: dict[str, Any]) -> None:
        row = self.rows[oid]
        before = {k: row.get(k) for k in changes}
        row.update(changes)
        self.recent.append(oid)
        self.journal.append(lambda: row.update(before))

    def delete(self, oid: int, at_s: float) -> None:
        self._remove_live(oid)
        row = self.rows.pop(oid)
        self.deleted_at[oid] = at_s
        born_at, born_txn = self.born[oid]
        # Only a row that has surely been inserted by now may come back later: a concurrent worker's delete
        # racing the insert (scheduled a few ms after it) may find no row, and the later re-insert would
        # then be a duplicate key.
        if born_txn == self.txn_seq or at_s - born_at >= _SETTLED_S:
            self.deleted.append((at_s, oid))

        def undo() -> None:
            self.deleted_at.pop(oid, None)
            self._add_live(oid)
            self.rows[oid] = row
        self.journal.append(undo)

    def begin(self, txn_seq: int) -> None:
        self.journal = []
        self.txn_seq = txn_seq

    def rollback(self) -> None:
        for undo in reversed(self.journal):
            undo()
        self.journal = []


class _Generator:
    def __init__(self, cfg: WorkloadConfig) -> None:
        self.cfg = cfg
        self.rng = _Random(cfg.seed)
        fake = Faker()
        fake.seed_instance(cfg.seed)
        self.anchor = cfg.anchor_ms if cfg.anchor_ms is not None else int(time.time()) * 1000
        self.customers = [
            {"customer_id": cid, "customer_name": fake.name()[:128], "region": self.rng.pick(REGIONS),
             "segment": self.rng.pick(SEGMENTS)}
            for cid in range(1, cfg.customers + 1)
        ]
        self.names = [fake.name()[:128] for _ in range(100)]
        self.products = [f"{fake.color_name()} {fake.word()} {fake.word()}"[:128] for _ in range(200)]
        self.model = _Model(cfg, self.rng)
        self.ops: list[Operation] = []
        self.txns: list[Transaction] = []
        total_late = cfg.late_fraction
        self.late_days = total_late * cfg.late_days_share
        self.single_weights = list(cfg.mix)

    # values
    def _price(self) -> str:
        cents = self.rng.span(100, 50000)
        return f"{cents // 100}.{cents % 100:02d}"

    def _customer_ref(self) -> int:
        rng, m = self.rng, self.model
        if rng.random() < self.cfg.unknown_customer_fraction:
            return m.max_customer + 1 + rng.below(3)     # may be inserted later, or never
        return rng.between(1, m.max_customer)

    def _event_time(self, at_s: float) -> tuple[int, str]:
        rng, cfg = self.rng, self.cfg
        now = self.anchor + int(at_s * 1000)
        r = rng.random()
        if at_s >= cfg.warmup_s and r < cfg.late_fraction:
            if r < self.late_days:
                return now - rng.span(_DAY_MS, 3 * _DAY_MS + 1), "late_days"
            return now - rng.span(_MINUTE_MS, 2 * _HOUR_MS + 1), "late_minutes"
        if r < cfg.late_fraction + cfg.out_of_order_fraction:
            return now - rng.span(0, max(1, cfg.out_of_order_max_ms)), "out_of_order"
        return now + rng.span(0, 51), "on_time"

    def _column_value(self, col: str) -> Any:
        rng = self.rng
        if col == "product":
            return rng.pick(self.products)
        if col == "quantity":
            return rng.span(1, 21)
        if col == "unit_price":
            return self._price()
        if col == "status":
            return rng.pick(STATUSES)
        return self._customer_ref()

    # operations: each returns the operation's fields except index/txn/worker/at/rollback
    def _insert(self, at_s: float, exclude: set[int]) -> dict[str, Any]:
        rng, m = self.rng, self.model
        oid = m.pick_reinsertable(at_s) if rng.random() < self.cfg.reinsert_fraction else None
        if oid is not None and oid in exclude:
            m.reinsertable.append(oid)
            oid = None
        reinsert = oid is not None
        if oid is None:
            oid = m.next_id
            m.next_id += 1
        values = {"customer_id": self._customer_ref(), "product": rng.pick(self.products),
                  "quantity": rng.span(1, 21), "unit_price": self._price(),
                  "status": rng.pick(NEW_ORDER_STATUSES), "version": 1}
        et, ec = self._event_time(at_s)
        m.insert(oid, {**values, "event_time_ms": et}, at_s)
        return {"kind": "insert", "order_ids": (oid,), "values": values, "reinsert": reinsert,
                "event_time_ms": et, "event_class": ec}

    def _set_columns(self) -> list[str]:
        cols = [c for c, p in UPDATE_COLUMNS.items() if self.rng.random() < p]
        return cols or ["status"]

    def _update(self, at_s: float, oid: int) -> dict[str, Any]:
        rng, m = self.rng, self.model
        cols = self._set_columns()
        row = m.rows[oid]
        values: dict[str, Any] = {}
        same_value = False
        noop_col = None
        if rng.random() < self.cfg.noop_update_fraction:
            ordinary = [c for c in cols if c != "event_time"]
            if ordinary:
                noop_col = rng.pick(ordinary)
        for c in cols:
            if c == "event_time":
                continue
            if c == noop_col:
                values[c] = row[c]
                same_value = True
            else:
                values[c] = self._column_value(c)
        et, ec = self._event_time(at_s) if "event_time" in cols else (None, None)
        bump = rng.random() < self.cfg.version_bump_fraction
        changes = dict(values)
        if et is not None:
            changes["event_time_ms"] = et
        if bump:
            changes["version"] = row["version"] + 1
        m.update(oid, changes)
        return {"kind": "update", "order_ids": (oid,), "values": values, "bump_version": bump,
                "same_value": same_value, "event_time_ms": et, "event_class": ec}

    def _delete(self, at_s: float, oid: int) -> dict[str, Any]:
        self.model.delete(oid, at_s)
        return {"kind": "delete", "order_ids": (oid,)}

    def _bulk(self, at_s: float, exclude: set[int]) -> dict[str, Any] | None:
        rng, m = self.rng, self.model
        want = rng.between(2, self.cfg.bulk_max_rows)
        ids: list[int] = []
        for _ in range(want * 2):
            oid = m.pick_live(exclude | set(ids))
            if oid is not None:
                ids.append(oid)
            if len(ids) == want:
                break
        if len(ids) < 2:
            return None
        if rng.random() < self.cfg.bulk_delete_share:
            for oid in ids:
                m.delete(oid, at_s)
            return {"kind": "bulk_delete", "order_ids": tuple(ids)}
        # a bulk update sets the same values on every row (e.g. "these orders shipped")
        cols = [c for c in ("status", "event_time", "unit_price", "quantity") if rng.random() < UPDATE_COLUMNS[c]]
        cols = cols or ["status"]
        values = {c: self._column_value(c) for c in cols if c != "event_time"}
        et, ec = self._event_time(at_s) if "event_time" in cols else (None, None)
        bump = rng.random() < self.cfg.version_bump_fraction
        for oid in ids:
            changes = dict(values)
            if et is not None:
                changes["event_time_ms"] = et
            if bump:
                changes["version"] = m.rows[oid]["version"] + 1
            m.update(oid, changes)
        return {"kind": "bulk_update", "order_ids": tuple(ids), "values": values, "bump_version": bump,
                "event_time_ms": et, "event_class": ec}

    def _customer(self) -> dict[str, Any]:
        rng, m = self.rng, self.model
        values = {"region": rng.pick(REGIONS), "segment": rng.pick(SEGMENTS)}
        if rng.random() < self.cfg.customer_insert_share:
            m.max_customer += 1      # not journaled: ids stay fresh even when rolled back
            return {"kind": "customer_insert", "customer_id": m.max_customer,
                    "values": {"customer_name": rng.pick(self.names), **values}}
        return {"kind": "customer_update", "customer_id": rng.between(1, m.max_customer), "values": values}

    def _random_op(self, at_s: float, exclude: set[int]) -> dict[str, Any]:
        rng, cfg = self.rng, self.cfg
        r = rng.random()
        if r < cfg.customer_fraction:
            return self._customer()
        if r < cfg.customer_fraction + cfg.bulk_fraction:
            bulk = self._bulk(at_s, exclude)
            if bulk is not None:
                return bulk
        w = self.single_weights
        x = rng.random() * sum(w)
        kind = "insert" if x < w[0] else "update" if x < w[0] + w[1] else "delete"
        if kind != "insert":
            oid = self.model.pick_live(exclude)
            if oid is not None:
                return self._update(at_s, oid) if kind == "update" else self._delete(at_s, oid)
        return self._insert(at_s, exclude)

    def _same_row_pair(self, at_s: float, pattern: str, exclude: set[int]) -> tuple[dict[str, Any], int | None]:
        if pattern == "insert_update":
            first = self._insert(at_s, exclude)
            return first, first["order_ids"][0]
        oid = self.model.pick_live(exclude)
        if oid is None:
            first = self._insert(at_s, exclude)
            return first, first["order_ids"][0]
        return self._update(at_s, oid), oid

    def run(self) -> Workload:
        cfg, rng, m = self.cfg, self.rng, self.model
        total = cfg.operations
        i = 0
        while i < total:
            seq = len(self.txns)
            txn_id = cfg.txn_id_base + seq
            size = min(rng.between(1, cfg.txn_size), total - i)
            rollback = rng.random() < cfg.rollback_fraction
            pair: tuple[int, int, str] | None = None
            if size >= 2 and rng.random() < cfg.same_row_fraction:
                a = rng.below(size - 1)
                pair = (a, rng.span(a + 1, size), rng.pick(SAME_ROW_PATTERNS))
            m.begin(seq)
            reserved: set[int] = set()
            pair_key: int | None = None
            fields: list[dict[str, Any]] = []
            txn_at = i / cfg.rate
            for k in range(size):
                at_s = (i + k) / cfg.rate
                if pair is not None and k == pair[0]:
                    f, pair_key = self._same_row_pair(at_s, pair[2], reserved)
                    if pair_key is not None:
                        reserved.add(pair_key)
                elif pair is not None and k == pair[1] and pair_key is not None and pair_key in m.pos:
                    reserved.discard(pair_key)
                    f = (self._delete(at_s, pair_key) if pair[2] == "update_delete"
                         else self._update(at_s, pair_key))
                else:
                    f = self._random_op(at_s, reserved)
                f["at_s"] = at_s
                fields.append(f)
            if rollback:
                m.rollback()
            ops = []
            for k, f in enumerate(fields):
                at_s = f.pop("at_s")
                op = Operation(index=i + k, txn=txn_id, kind=f["kind"],
                               order_ids=f.get("order_ids", ()), customer_id=f.get("customer_id"),
                               values=f.get("values", {}), bump_version=f.get("bump_version", False),
                               same_value=f.get("same_value", False), reinsert=f.get("reinsert", False),
                               at_s=at_s, scheduled_ms=self.anchor + int(at_s * 1000),
                               event_time_ms=f.get("event_time_ms"), event_class=f.get("event_class"),
                               rollback=rollback)
                ops.append(op)
            self.ops.extend(ops)
            self.txns.append(Transaction(txn_id, seq, txn_at, rollback, tuple(ops)))
            i += size
        return Workload(cfg, self.anchor, self.ops, self.txns, self.customers)


def generate(config: WorkloadConfig) -> Workload:
    """The whole workload for a seed: pure, no I/O (same seed and anchor => same result)."""
    return _Generator(config).run()


# --- SQL ---------------------------------------------------------------------------------------------

def datetime_literal(ms: int) -> str:
    """A DATETIME(3) literal in UTC for epoch milliseconds."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _set_clause(op: Operation) -> tuple[list[str], list[Any]]:
    sets = [f"{c}=%s" for c in op.values]
    params: list[Any] = list(op.values.values())
    if op.event_time_ms is not None:
        sets.append("event_time=%s")
        params.append(datetime_literal(op.event_time_ms))
    if op.bump_version:
        sets.append("version=version+1")
    return sets, params


def statement(op: Operation) -> tuple[str, tuple[Any, ...]]:
    """The SQL statement and parameters of one operation."""
    v = op.values
    if op.kind == "insert":
        assert op.event_time_ms is not None
        return ("INSERT INTO orders (order_id, customer_id, product, quantity, unit_price, status, event_time, "
                "version) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                (op.order_ids[0], v["customer_id"], v["product"], v["quantity"], v["unit_price"], v["status"],
                 datetime_literal(op.event_time_ms), v["version"]))
    if op.kind in ("update", "bulk_update"):
        sets, params = _set_clause(op)
        where = "order_id=%s" if op.kind == "update" else f"order_id IN ({','.join(['%s'] * len(op.order_ids))})"
        return f"UPDATE orders SET {', '.join(sets)} WHERE {where}", (*params, *op.order_ids)
    if op.kind == "delete":
        return "DELETE FROM orders WHERE order_id=%s", (op.order_ids[0],)
    if op.kind == "bulk_delete":
        return (f"DELETE FROM orders WHERE order_id IN ({','.join(['%s'] * len(op.order_ids))})", op.order_ids)
    if op.kind == "customer_update":
        return ("UPDATE customers SET region=%s, segment=%s WHERE customer_id=%s",
                (v["region"], v["segment"], op.customer_id))
    if op.kind == "customer_insert":
        # an upsert: a later run on the same database may already have this customer id
        return ("INSERT INTO customers (customer_id, customer_name, region, segment) VALUES (%s,%s,%s,%s) "
                "ON DUPLICATE KEY UPDATE customer_name=%s, region=%s, segment=%s",
                (op.customer_id, v["customer_name"], v["region"], v["segment"], v["customer_name"], v["region"],
                 v["segment"]))
    raise ValueError(f"unknown operation kind {op.kind!r}")


# --- history -------------------------------------------------------------------------------------------

@dataclass
class HistoryEntry:
    txn: int                          # the marker txn_id (workload_txns), = Transaction.txn
    worker: int
    op_indexes: list[int]
    invoke_ms: int
    complete_ms: int | None = None
    outcome: str = "pending"          # ok | fail | info (indeterminate) | rolled_back
    rowcounts: list[int] = field(default_factory=list)   # rows each statement changed (marker excluded)
    error: str | None = None
    error_code: int | None = None
    gtid: str | None = None           # MariaDB @@last_gtid after an ok COMMIT; None on MySQL or otherwise


class History:
    """Every transaction the client attempted, in completion order (Jepsen's history)."""

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
        """(operation, its transaction's entry, rows it changed or -1 if it never ran)."""
        ops = self.workload.operations
        for e in self.entries:
            for k, idx in enumerate(e.op_indexes):
                yield ops[idx], e, (e.rowcounts[k] if k < len(e.rowcounts) else -1)

    def dump(self, path: Path) -> None:
        """JSON lines: a header (seed, anchor, config, txn id base), then one line per entry."""
        with open(path, "w") as fh:
            fh.write(json.dumps({"seed": self.workload.config.seed, "anchor_ms": self.workload.anchor_ms,
                                 "txn_id_base": self.workload.config.txn_id_base,
                                 "config": dataclasses.asdict(self.workload.config)}) + "\n")
            for e in self.entries:
                fh.write(json.dumps(dataclasses.asdict(e)) + "\n")


# --- client --------------------------------------------------------------------------------------------

Connection = pymysql.connections.Connection
ConnectFn = Callable[[], Connection]
# errors that mean "the connection (or server) went away": the outcome of an in-flight commit is unknown
_CONNECTION_LOST = {2006, 2013, 2003, 2055, 1927, 1053}
_UNKNOWN_VARIABLE = 1193


class WorkloadClient:
    """Applies a workload from ``concurrency`` threads (one connection each), recording the history.

    Worker threads never raise: every error becomes the transaction's outcome (``fail``, or ``info`` when
    the connection was lost during COMMIT) and the worker goes on with its next transaction.
    """

    def __init__(self, workload: Workload, connect: ConnectFn, database: str) -> None:
        self.workload = workload
        self.connect = connect
        self.database = database
        self.history = History(workload)
        self._stop = threading.Event()
        self._gtid_supported: bool | None = None
        self._queue_lock = threading.Lock()
        self._next = 0
        self.errors: list[str] = []       # unexpected (non-database) errors caught in worker threads

    def seed_customers(self) -> None:
        """Create the marker table if an older schema lacks it and upsert the initial customers."""
        conn = self._connect_retry(deadline=time.monotonic() + 60)
        with conn, conn.cursor() as cur:
            cur.execute(MARKER_TABLE_DDL)
            cur.executemany(
                "INSERT INTO customers (customer_id, customer_name, region, segment) VALUES (%s,%s,%s,%s) "
                "ON DUPLICATE KEY UPDATE customer_name=VALUES(customer_name), region=VALUES(region), "
                "segment=VALUES(segment)",
                [(c["customer_id"], c["customer_name"], c["region"], c["segment"]) for c in self.workload.customers],
            )
            conn.commit()

    def stop(self) -> None:
        self._stop.set()

    def run(self, start_at: float | None = None) -> History:
        """Apply every transaction at its scheduled time (``start_at``: a time.monotonic() value)."""
        self._next = 0
        start = start_at if start_at is not None else time.monotonic()
        threads = [threading.Thread(target=self._worker, args=(w, start), daemon=True, name=f"workload-{w}")
                   for w in range(self.workload.config.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.history

    def _connect_retry(self, deadline: float) -> pymysql.connections.Connection:
        delay = 0.1
        while True:
            try:
                conn = self.connect()
                with conn.cursor() as cur:
                    cur.execute("SET SESSION innodb_lock_wait_timeout = %s",
                                (self.workload.config.lock_wait_timeout_s,))
                return conn
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                self._stop.wait(delay)
                delay = min(delay * 2, 1.0)

    def _take(self) -> Transaction | None:
        """The next transaction in schedule order (one queue for all workers)."""
        with self._queue_lock:
            if self._next >= len(self.workload.transactions):
                return None
            self._next += 1
            return self.workload.transactions[self._next - 1]

    def _worker(self, worker: int, start: float) -> None:
        conn: pymysql.connections.Connection | None = None
        while (t := self._take()) is not None:
            wait = start + t.at_s - time.monotonic()
            if (wait > 0 and self._stop.wait(wait)) or self._stop.is_set():
                break
            entry = HistoryEntry(txn=t.txn, worker=worker, op_indexes=[o.index for o in t.ops],
                                 invoke_ms=int(time.time() * 1000))
            try:
                if conn is None:
                    conn = self._connect_retry(deadline=time.monotonic() + 120)
                self._apply(conn, worker, t, entry)
            except Exception as exc:  # noqa: BLE001 - a worker thread records every error, never raises
                code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
                entry.error = f"{type(exc).__name__}: {exc}"
                entry.error_code = code if isinstance(code, int) else None
                if not isinstance(exc, pymysql.err.MySQLError):
                    self.errors.append(entry.error)
                # A lost connection during COMMIT leaves the outcome unknown (resolved from the binlog);
                # any other error means the transaction did not commit (deadlock, lock wait timeout,
                # duplicate key, lost connection before COMMIT: the server rolls back).
                entry.outcome = "info" if entry.outcome == "committing" and code in _CONNECTION_LOST else "fail"
                conn = self._after_error(conn, code)
            entry.complete_ms = int(time.time() * 1000)
            self.history.add(entry)
        if conn is not None:
            _close(conn)

    def _after_error(self, conn: pymysql.connections.Connection | None, code: Any) -> Connection | None:
        """Roll back what is left of the transaction (1205 only rolls back the statement); drop a broken
        connection so the next transaction reconnects."""
        if conn is None:
            return None
        if code not in _CONNECTION_LOST:
            try:
                conn.rollback()
                return conn
            except Exception:  # noqa: BLE001 - the connection is broken: reconnect next time
                pass
        _close(conn)
        return None

    def _apply(self, conn: pymysql.connections.Connection, worker: int, t: Transaction,
               entry: HistoryEntry) -> None:
        with conn.cursor() as cur:
            if conn.get_autocommit():    # else (pymysql's default) the marker starts the transaction
                cur.execute("BEGIN")
            cur.execute(MARKER_SQL, (t.txn, worker))
            for op in t.ops:
                entry.rowcounts.append(cur.execute(*statement(op)))
            if t.rollback:
                conn.rollback()
                entry.outcome = "rolled_back"
                return
            entry.outcome = "committing"
            conn.commit()
            entry.outcome = "ok"
            entry.gtid = self._last_gtid(cur)

    def _last_gtid(self, cur: Any) -> str | None:
        if self._gtid_supported is False:
            return None
        try:
            cur.execute("SELECT @@last_gtid")
            row = cur.fetchone()
        except pymysql.err.MySQLError as exc:
            if exc.args and exc.args[0] == _UNKNOWN_VARIABLE:    # MySQL: no @@last_gtid
                self._gtid_supported = False
            return None    # committed: an error reading the gtid must not change the outcome
        self._gtid_supported = True
        return str(row[0]) if row and row[0] else None


def _close(conn: pymysql.connections.Connection) -> None:
    with contextlib.suppress(Exception):   # already broken
        conn.close()


def summarize(history: History) -> dict[str, Any]:
    """Counts per outcome, per operation kind and per event class.

    ``operations``: every attempted statement by kind and its transaction's outcome; ``committed_changes``
    / ``committed_rows``: statements of ok transactions that changed rows, and the rows they changed, by
    kind; ``event_classes``: those committed statements by the class of the event_time they wrote.
    """
    ops: dict[str, dict[str, int]] = {}
    kinds: dict[str, int] = {}
    rows_by_kind: dict[str, int] = {}
    classes: dict[str, int] = {}
    for op, entry, rows in history.operations():
        per = ops.setdefault(op.kind, {})
        per[entry.outcome] = per.get(entry.outcome, 0) + 1
        if entry.outcome == "ok" and rows > 0:
            kinds[op.kind] = kinds.get(op.kind, 0) + 1
            rows_by_kind[op.kind] = rows_by_kind.get(op.kind, 0) + rows
            if op.event_class is not None:
                classes[op.event_class] = classes.get(op.event_class, 0) + 1
    errors: dict[str, int] = {}
    for e in history.entries:
        if e.error_code is not None:
            errors[str(e.error_code)] = errors.get(str(e.error_code), 0) + 1
    return {"seed": history.workload.config.seed, "anchor_ms": history.workload.anchor_ms,
            "txn_id_base": history.workload.config.txn_id_base,
            "first_order_id": history.workload.config.first_order_id,
            "transactions": history.counts(), "operations": ops, "committed_changes": kinds,
            "committed_rows": rows_by_kind, "event_classes": classes, "error_codes": errors,
            "gtids": sum(1 for e in history.entries if e.gtid)}
