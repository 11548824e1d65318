"""Locust load on a running stack, with end-to-end latency: database commit -> row visible in the lake.

Users (one pymysql connection each) insert orders and update their own orders (``version`` is an ordinary
column: a minority of updates bump it, as in ``harness.workload``) in the database of a stack ``./run
cdc-chaos up`` started; every commit is a locust request (type ``mysql``, names ``insert`` / ``update``), and
the user records the transaction's GTID (``SELECT @@last_gtid`` right after COMMIT).  Each transaction is one
single-row statement, so one change per GTID.  A freshness probe lists the lake prefix the job writes to every
``--e2e-poll-ms``, reads the ``src_gtid`` of every newly committed Parquet file and fires, per change of this
run, a request of type ``e2e`` named ``commit->lake`` whose response time is commit -> first seen in committed
Parquet (an upper bound: resolution = the poll interval).  A commit whose GTID could not be read is a failed
``mysql`` request named ``gtid`` (it cannot be matched).  A change not
visible after ``--e2e-timeout-s`` is a failure of that request.  So locust's own stats show e2e p50/p99.

Run it (from the repository root, with the project's venv):

    ./run cdc-chaos up                       # a stack in the background; its run dir: ~/.cache/cdc-chaos/runs/current
    ./run cdc-chaos job submit --name locust --prefix bench/locust-1 --from now   # the job the probe watches
    ~/.cache/cdc-chaos/venv/bin/locust -f benchmarks/locustfile.py --headless -u 10 -r 10 -t 20s \
        --lake-prefix bench/locust-1
    ./run cdc-chaos job cancel --name locust && ./run cdc-chaos down

``job submit --from now`` starts a fresh job at the topic's current end writing under ``s3://lake/<prefix>``; the probe
needs that prefix (``--lake-prefix`` or ``$CDC_CHAOS_LAKE_PREFIX``), and without one runs no probe.  Another
stack than runs/current: ``--cdc-run-dir`` or ``$CDC_CHAOS_RUN_DIR`` (read by every ``cdc-chaos`` command too).
Options: ``--orders-per-user-per-s`` (default 10), ``--load-seed`` (random if unset; printed),
``--e2e-poll-ms`` (200), ``--e2e-timeout-s`` (60), ``--e2e-drain-s`` (15: after the users stop, how long the
probe keeps waiting for the last changes before locust prints its stats).  The probe runs in every process
that runs users (standalone, or each worker with --master/--worker).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import gevent
import pymysql
from locust import User, constant_throughput, events, task
from locust.env import Environment
from locust.runners import MasterRunner

from benchmarks.e2e import LakeVisibility, now_ms
from harness.rundir import current_run_dir
from harness.stack import Stack
from harness.workload import STATUSES

#: order ids of this locust process: above anything the harness or the benchmarks use, and a range of 10**9 of
#: its own per (start second, pid), so runs and worker processes never collide; each user has 10**6 of them
ID_BASE = 5 * 10**18 + ((now_ms() // 1000 % 10**6) * 1000 + os.getpid() % 1000) * 10**9
IDS_PER_USER = 10**6
_user_numbers = itertools.count()
VERSION_BUMP_FRACTION = 0.15     # updates that also bump ``version`` (an ordinary column)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--lake-prefix", default=os.environ.get("CDC_CHAOS_LAKE_PREFIX", ""),
                        help="lake prefix the running job writes to (cdc-chaos job submit --prefix)")
    parser.add_argument("--cdc-run-dir", default="", help="run dir of the stack (default: runs/current)")
    parser.add_argument("--orders-per-user-per-s", type=float, default=10.0)
    parser.add_argument("--load-seed", type=int, default=None, help="seed of the users' values (random if unset)")
    parser.add_argument("--e2e-poll-ms", type=int, default=200, help="lake listing interval of the probe")
    parser.add_argument("--e2e-timeout-s", type=float, default=60.0, help="not visible after this = a failure")
    parser.add_argument("--e2e-drain-s", type=float, default=15.0, help="wait for the last changes after stop")


@dataclass
class ProcessState:
    """What the users and the probe of this locust process share."""

    stack: Stack | None = None
    seed: int = 0
    pending: dict[str, int] = field(default_factory=dict)   # transaction GTID -> commit wall time (ms), until seen
    probe: FreshnessProbe | None = None


STATE = ProcessState()


@events.init.add_listener
def _init(environment: Environment, **kw: Any) -> None:
    opts = environment.parsed_options
    if opts is None:
        return
    if opts.cdc_run_dir:
        os.environ["CDC_CHAOS_RUN_DIR"] = opts.cdc_run_dir
    run_dir = current_run_dir()
    STATE.stack = Stack.attach(run_dir)
    STATE.seed = opts.load_seed if opts.load_seed is not None else random.randrange(1, 2**31)
    print(f"cdc-chaos locust: stack {run_dir}, seed {STATE.seed} (replay with --load-seed {STATE.seed}), "
          f"lake prefix {opts.lake_prefix or '(none: no e2e probe)'}", file=sys.stderr)


@events.test_start.add_listener
def _start_probe(environment: Environment, **kw: Any) -> None:
    opts = environment.parsed_options
    if isinstance(environment.runner, MasterRunner) or opts is None or not opts.lake_prefix or STATE.stack is None:
        return
    STATE.probe = FreshnessProbe(environment, LakeVisibility.for_stack(STATE.stack, opts.lake_prefix.strip("/")),
                                  opts.e2e_poll_ms / 1000, opts.e2e_timeout_s)
    STATE.probe.start()


@events.test_stop.add_listener
def _drain_probe(environment: Environment, **kw: Any) -> None:
    if STATE.probe is not None and environment.parsed_options is not None:
        STATE.probe.finish(environment.parsed_options.e2e_drain_s)
        STATE.probe = None


class FreshnessProbe:
    """Lists the lake from a greenlet; the S3 listing and Parquet reads (pyarrow, C++: they would block the
    gevent loop) run in gevent's native thread pool, the locust events are fired from the greenlet."""

    def __init__(self, environment: Environment, watch: LakeVisibility, interval_s: float, timeout_s: float) -> None:
        self.environment = environment
        self.watch = watch
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.drain_until: float | None = None
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        # files already in the prefix hold no change of this run: note them without reading them
        gevent.get_hub().threadpool.apply(self.watch.poll_once)
        self.greenlet = gevent.spawn(self._run)

    def finish(self, drain_s: float) -> None:
        """After the users stopped: keep probing until every change was seen or ``drain_s`` passed."""
        self.drain_until = time.monotonic() + drain_s
        if self.greenlet is not None:
            self.greenlet.join(timeout=drain_s + 30)
            self.greenlet.kill()
        self._expire(force=True)

    def _run(self) -> None:
        pool = gevent.get_hub().threadpool
        while self.drain_until is None or (STATE.pending and time.monotonic() < self.drain_until):
            t0 = time.monotonic()
            try:
                for f in pool.apply(self.watch.poll_once):
                    for gtid in pool.apply(self.watch.gtids, (f,)):
                        commit_ms = STATE.pending.pop(gtid, None) if gtid is not None else None
                        if commit_ms is not None:   # else: not a change of this run
                            self._fire(f.first_seen_ms - commit_ms, None)
            except Exception as exc:  # noqa: BLE001 - an S3 hiccup is a gap in the probe, not the end of it
                print(f"cdc-chaos locust: e2e probe: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._expire()
            gevent.sleep(max(0.0, self.interval_s - (time.monotonic() - t0)))

    def _expire(self, force: bool = False) -> None:
        """Changes not visible after the timeout (or, at the very end, at all) are failures."""
        limit = now_ms() - int(self.timeout_s * 1000)
        for gtid, commit_ms in list(STATE.pending.items()):
            if force or commit_ms < limit:
                del STATE.pending[gtid]
                waited = now_ms() - commit_ms
                self._fire(waited, RuntimeError(f"change of transaction {gtid} not visible in the lake after "
                                                f"{waited} ms"))

    def _fire(self, response_time_ms: int, exception: Exception | None) -> None:
        self.environment.events.request.fire(request_type="e2e", name="commit->lake",
                                             response_time=response_time_ms, response_length=0,
                                             exception=exception, context={})


class OrderWriter(User):
    """One database connection; inserts orders and updates the ones it inserted."""

    def on_start(self) -> None:
        assert STATE.stack is not None
        opts = self.environment.parsed_options
        self.pacing = constant_throughput(opts.orders_per_user_per_s if opts is not None else 10.0)
        number = next(_user_numbers)
        self.rng = random.Random(STATE.seed * 100_003 + number)
        self.next_id = ID_BASE + number * IDS_PER_USER
        self.orders: list[int] = []
        self.conn: pymysql.connections.Connection | None = None

    def wait_time(self) -> float:
        return float(self.pacing(self))

    def on_stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @task
    def write(self) -> None:
        if self.orders and self.rng.random() < 0.4:
            self._commit("update", self.rng.choice(self.orders))
        else:
            self.next_id += 1
            self._commit("insert", self.next_id)

    def _commit(self, kind: str, order_id: int) -> None:
        event_time = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        status, quantity = self.rng.choice(STATUSES), self.rng.randrange(1, 21)
        t0 = time.perf_counter()
        try:
            if self.conn is None:
                assert STATE.stack is not None
                self.conn = STATE.stack.database.connect()
            with self.conn.cursor() as cur:
                if kind == "insert":
                    cur.execute("INSERT INTO orders (order_id, customer_id, product, quantity, unit_price, status, "
                                "event_time, version) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                                (order_id, self.rng.randrange(1, 201), f"locust-{self.rng.randrange(1000):03d}",
                                 quantity, f"{self.rng.randrange(100, 50000) / 100:.2f}", status, event_time, 1))
                else:
                    bump = ", version=version+1" if self.rng.random() < VERSION_BUMP_FRACTION else ""
                    cur.execute(f"UPDATE orders SET status=%s, quantity=%s, event_time=%s{bump} WHERE order_id=%s",
                                (status, quantity, event_time, order_id))
            self.conn.commit()
        except pymysql.MySQLError as exc:
            self._request(kind, t0, exc)
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            return
        committed_ms, t1 = now_ms(), time.perf_counter()
        if kind == "insert":
            self.orders.append(order_id)
        self._request(kind, t0, None, t1)
        if STATE.probe is None:
            return
        gtid = self._last_gtid()
        if gtid is None:
            self.environment.events.request.fire(request_type="mysql", name="gtid", response_time=0,
                                                 response_length=0, context={},
                                                 exception=RuntimeError("no @@last_gtid after COMMIT"))
        else:
            STATE.pending[gtid] = committed_ms

    def _last_gtid(self) -> str | None:
        """The GTID of the transaction this connection just committed (None if it cannot be read: the commit
        stands, only its change cannot be matched)."""
        if self.conn is None:
            return None
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT @@last_gtid")
                row = cur.fetchone()
        except pymysql.MySQLError:
            return None
        return str(row[0]) if row and row[0] else None

    def _request(self, kind: str, t0: float, exception: Exception | None, t1: float | None = None) -> None:
        """A ``mysql`` request: statement + COMMIT, from ``t0`` to ``t1`` (perf_counter; default now)."""
        end = time.perf_counter() if t1 is None else t1
        self.environment.events.request.fire(request_type="mysql", name=kind, response_time=(end - t0) * 1000,
                                             response_length=1, exception=exception, context={})
