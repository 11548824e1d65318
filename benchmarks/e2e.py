"""End-to-end helpers shared by ``benchmarks.bench_job`` and ``benchmarks/locustfile.py``.

- ``LakeVisibility``: lists a lake prefix and records, for every *committed* data file of the main and late
  tables, when it was first seen (and reads its row count from the Parquet footer, or its changes: binlog
  coordinates, transaction GTID, processing time).
- ``read_topic_changes``: the orders changes Debezium published in a topic range, read from the broker, up to
  a binlog position (so the count is what the topic holds, not what the benchmark meant to write).
- ``checkpoint_stats``: the job's checkpoint counts, durations and sizes (latest completed checkpoint, and the
  state size of its stateful operators, the deduplication's among them) from Flink's REST API.
- ``LakePoller``: runs a ``LakeVisibility`` from a background thread every ``interval_s``.
- ``start_job`` / ``attach_current``: a fresh job into its own lake prefix at given topic offsets; a handle on
  the stack ``./run cdc-chaos up`` started.
- ``binlog_end``: the database's binlog position now (``SHOW MASTER STATUS``).
- ``CpuMeter``: CPU per stack process and per TaskManager thread between two points, and RSS.
- ``latency_summary``: count, p50/p95/p99/max/mean of a list of milliseconds (nearest rank).

The job a locust run watches is started with the CLI: ``./run cdc-chaos job submit --name locust --prefix
bench/locust-1 --from now``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import requests

from benchmarks.baseline import BaselineJob
from flink_job.sql import JobConfig
from harness import kafka_client
from harness.lake import LakeFile, LakeReader
from harness.lake_schema import LATE_TABLE, MAIN_TABLE
from harness.pipeline import Pipeline
from harness.rundir import current_run_dir
from harness.runner import new_job_config
from harness.stack import Stack
from harness.topic import ORDERS_TABLE, envelope
from harness.truth import coordinate_key

#: a source change's identity, as the job and the checker use it: its place in the binlog
#: ``(src_file, src_pos, src_row, op)`` (``harness.lake_schema.CHANGE_KEY``; a primary-key update is a delete and
#: an insert at the same place, hence ``op``).  Snapshot rows (op ``r``) share one place: the benchmarks write
#: none, they only read changes they made themselves.
ChangeId = tuple[str, int, int, str]


@dataclass(frozen=True)
class LakeChange:
    """One row of a change table: its identity, its transaction's GTID and when the job processed it."""

    cid: ChangeId
    gtid: str | None
    processed_ms: int

#: tables that hold source changes (the dead-letter table does not)
CHANGE_TABLES = (MAIN_TABLE, LATE_TABLE)


def now_ms() -> int:
    return int(time.time() * 1000)


# --- lake visibility -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SeenFile:
    path: str
    table: str
    size: int
    first_seen_ms: int      # end of the first listing that showed it: an upper bound on when it became visible
    unseen_ms: int          # start of the listing before that one (did not show it): a lower bound


class LakeVisibility:
    """First-seen times of the committed data files under one lake prefix.

    Committed = what ``harness.lake.LakeReader`` classifies as ``data`` (not hidden, not in progress); the
    Flink S3 sink only makes a file visible when the checkpoint that covers it completes.  ``poll_once`` is
    called from one thread at a time (no lock: under locust, threading locks are gevent's, and the listing runs
    in a native thread); ``row_count``, ``changes`` and ``gtids`` may run from any thread.
    """

    def __init__(self, reader: LakeReader) -> None:
        self.reader = reader
        self.seen: dict[str, SeenFile] = {}
        self.listing_ms: list[int] = []          # how long each listing took
        self._previous_start_ms = now_ms()

    @classmethod
    def for_stack(cls, stack: Stack, prefix: str) -> LakeVisibility:
        return cls(LakeReader.for_s3(stack.s3.endpoints(), prefix))

    def poll_once(self) -> list[SeenFile]:
        """List the lake once; the committed data files not seen before, stamped with this listing."""
        started = now_ms()
        files: list[LakeFile] = self.reader.list_files()
        ended = now_ms()
        new: list[SeenFile] = []
        for f in files:
            if f.kind == "data" and f.table in CHANGE_TABLES and f.path not in self.seen:
                seen = SeenFile(f.path, f.table, f.size, first_seen_ms=ended, unseen_ms=self._previous_start_ms)
                self.seen[f.path] = seen
                new.append(seen)
        self._previous_start_ms = started
        self.listing_ms.append(ended - started)
        return new

    def row_count(self, f: SeenFile) -> int:
        """Rows in a file, from its Parquet footer only (range reads, no data pages)."""
        with self.reader.fs.open_input_file(f.path) as fh:
            return int(pq.read_metadata(fh).num_rows)

    def column(self, f: SeenFile, name: str) -> list[Any]:
        with self.reader.fs.open_input_file(f.path) as fh:
            return list(pq.read_table(fh, columns=[name])[name].to_pylist())

    def changes(self, f: SeenFile) -> list[LakeChange]:
        """Each row's change identity (binlog coordinates), transaction GTID and ``processed_ms``."""
        cols = ("src_file", "src_pos", "src_row", "op", "src_gtid", "processed_ms")
        with self.reader.fs.open_input_file(f.path) as fh:
            t = pq.read_table(fh, columns=list(cols))
        return [LakeChange((str(fi), int(po), int(ro or 0), str(op)), g, int(pr)) for fi, po, ro, op, g, pr in
                zip(*(t[c].to_pylist() for c in cols), strict=True)]

    def gtids(self, f: SeenFile) -> list[str | None]:
        """The transaction GTID of each row (``src_gtid``)."""
        return [str(g) if g is not None else None for g in self.column(f, "src_gtid")]


class LakePoller:
    """Polls a ``LakeVisibility`` every ``interval_s`` from a thread; ``on_new`` runs per new file in a pool,
    so reading files never delays the next listing (which would inflate first-seen times)."""

    def __init__(self, watch: LakeVisibility, interval_s: float = 0.2,
                 on_new: Callable[[SeenFile], None] | None = None, workers: int = 4) -> None:
        self.watch = watch
        self.interval_s = interval_s
        self.on_new = on_new
        self.errors: list[str] = []
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lake-read")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lake-poller")

    def __enter__(self) -> LakePoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                new = self.watch.poll_once()
            except Exception as exc:  # noqa: BLE001 - a failed listing is a gap in the samples, not the end
                self.errors.append(f"listing: {type(exc).__name__}: {exc}"[:300])
                new = []
            if self.on_new is not None:
                for f in new:
                    self._pool.submit(self._handle, f)
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0)))

    def _handle(self, f: SeenFile) -> None:
        assert self.on_new is not None
        try:
            self.on_new(f)
        except Exception as exc:  # noqa: BLE001 - recorded and reported; one bad read must not stop polling
            self.errors.append(f"{f.path}: {type(exc).__name__}: {exc}"[:300])

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)


# --- jobs ----------------------------------------------------------------------------------------------------

@dataclass
class RunningJob:
    pipeline: Pipeline
    job_id: str
    config: JobConfig
    lake_prefix: str
    submit_s: float          # PyFlink planning + submission
    running_ms: int          # when the job switched to RUNNING (Flink's own timestamp; tasks deploy after it)
    tasks_running_ms: int    # when this process saw the job and every task RUNNING (polled, so a bit late)

    def cancel(self) -> None:
        self.pipeline.cancel(self.job_id)

    def state(self) -> str:
        """The job's state (RUNNING, RESTARTING, FAILED, ...), or UNKNOWN while the REST API does not answer."""
        try:
            r = requests.get(f"{self.pipeline.rest}/jobs/{self.job_id}", timeout=5)
            r.raise_for_status()
            return str(r.json()["state"])
        except (requests.RequestException, KeyError, ValueError):
            return "UNKNOWN"


def key_values(options: list[str], flag: str) -> dict[str, str]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}``, for the benchmarks' repeated ``--flag KEY=VALUE``; an
    option without ``=`` is an error naming it (it was dropped without a word before)."""
    pairs = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not (sep and key):
            raise SystemExit(f"{flag} {option!r}: use KEY=VALUE, e.g. execution.checkpointing.interval=2s")
        pairs[key] = value
    return pairs


def stack_overrides(options: list[str]) -> dict[str, dict[str, Any]]:
    """``flink.heartbeat_timeout_ms=3000`` -> ``{"flink": {"heartbeat_timeout_ms": 3000}}``; values are TOML-ish
    (an integer stays an integer, true/false are booleans), the config's own types check them."""
    sections: dict[str, dict[str, Any]] = {}
    for option in options:
        key, sep, value = option.partition("=")
        section, dot, name = key.partition(".")
        if not (sep and dot and section and name):
            raise SystemExit(f"--stack-option {option!r}: use SECTION.KEY=VALUE, e.g. flink.heartbeat_timeout_ms=3000")
        typed: Any = int(value) if value.lstrip("-").isdigit() else \
            {"true": True, "false": False}.get(value.lower(), value)
        sections.setdefault(section, {})[name] = typed
    return sections


def start_job(stack: Stack, lake_prefix: str, start_offsets: dict[int, int], *, parallelism: int = 1,
              checkpoint_interval_ms: int = 3000, name: str = "bench", baseline: BaselineJob | None = None,
              **options: Any) -> RunningJob:
    """A fresh job (no state) reading ``orders_cdc`` from ``start_offsets`` into ``s3://<bucket>/<lake_prefix>``;
    returns once the job and every task is RUNNING.  ``baseline``: an older revision's job instead of today's
    (``options`` are further JobConfig fields of today's job)."""
    pipeline = Pipeline(stack)
    cfg = new_job_config(stack, lake_prefix, name, start_offsets, via_proxy=False,
                         checkpoint_interval_ms=checkpoint_interval_ms, parallelism=parallelism, **options)
    t0 = time.monotonic()
    if baseline is None:
        job_id = pipeline.submit(cfg)
    else:
        job_id = pipeline.submit_code(baseline.code_root, baseline.config(cfg), pipeline.checkpoint_dir(cfg))
    submit_s = time.monotonic() - t0
    try:
        pipeline.wait_running(job_id)
        tasks_running_ms = now_ms()
        r = requests.get(f"{pipeline.rest}/jobs/{job_id}", timeout=5)
        r.raise_for_status()
        running_ms = int(r.json()["timestamps"]["RUNNING"])
    except BaseException:
        pipeline.cancel(job_id)
        raise
    return RunningJob(pipeline, job_id, cfg, lake_prefix, round(submit_s, 1), running_ms, tasks_running_ms)


def topic_end(stack: Stack) -> dict[int, int]:
    return kafka_client.end_offsets(stack.kafka.bootstrap, stack.config.kafka.topic)


def binlog_end(stack: Stack) -> tuple[str, int]:
    """The binlog position now: every change committed before this call lies before it."""
    with stack.database.root_connection() as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    if row is None:
        raise RuntimeError("the database has no binlog")
    return str(row[0]), int(row[1])


@dataclass
class TopicChange:
    """One orders change as Debezium published it."""

    cid: ChangeId
    gtid: str | None
    src_ts_ms: int | None
    kafka_ts_ms: int
    partition: int
    offset: int
    row_key: tuple[int, int, bool]    # (order_id, version, is_delete): the identity of the pre-issue-12 job


@dataclass
class TopicChanges:
    changes: list[TopicChange]
    records: int                      # every record read (all tables, tombstones included)
    per_table: dict[str, int]         # records per source.table (heartbeats, customers, ...)
    start_offsets: dict[int, int]
    end_offsets: dict[int, int]       # where reading stopped (exclusive)
    seconds: float                    # from the call until every partition was past the binlog mark

    @property
    def distinct(self) -> set[ChangeId]:
        return {c.cid for c in self.changes}


def read_topic_changes(stack: Stack, start_offsets: dict[int, int], until: tuple[str, int],
                       timeout_s: float = 900, poll_s: float = 0.5) -> TopicChanges:
    """The orders changes (``source.table = 'orders'``) in the topic from ``start_offsets``, read until every
    partition holds a record at or past the binlog position ``until`` (the database's heartbeat writes every
    partition each second, and Debezium publishes each partition in binlog order, so by then every change
    committed before ``until`` is in).  Reads as Debezium publishes, so it doubles as the wait for it."""
    bootstrap, topic = stack.kafka.bootstrap, stack.config.kafka.topic
    t0 = time.monotonic()
    pos = dict(start_offsets)
    passed: set[int] = set()
    mark = coordinate_key(*until)
    changes: list[TopicChange] = []
    per_table: dict[str, int] = {}
    records = 0
    while True:
        ends = kafka_client.end_offsets(bootstrap, topic)
        for rec in kafka_client.read_range(bootstrap, topic, pos, ends, timeout=120):
            records += 1
            env = envelope(rec.value)
            if env is None:
                continue
            src = env["source"]
            table = str(src.get("table"))
            per_table[table] = per_table.get(table, 0) + 1
            file, p = src.get("file"), src.get("pos")
            if file is not None and p is not None and coordinate_key(str(file), int(p)) >= mark:
                passed.add(rec.partition)
            if table == ORDERS_TABLE and env.get("op") in ("c", "u", "d", "r"):
                op = str(env["op"])
                cid = (str(file), int(p or 0), int(src.get("row") or 0), op)
                image = (env.get("before") if op == "d" else env.get("after")) or {}
                row_key = (int(image.get("order_id") or 0), int(image.get("version") or 0), op == "d")
                changes.append(TopicChange(cid, src.get("gtid"), src.get("ts_ms"), rec.timestamp_ms,
                                           rec.partition, rec.offset, row_key))
        pos = {p: max(pos.get(p, 0), ends[p]) for p in ends}
        if passed >= set(ends):
            return TopicChanges(changes, records, per_table, dict(start_offsets), pos,
                                round(time.monotonic() - t0, 1))
        if time.monotonic() > t0 + timeout_s:
            raise TimeoutError(f"the topic did not reach binlog position {until} in {timeout_s:.0f}s on partitions "
                               f"{sorted(set(ends) - passed)} ({len(changes)} orders changes read)")
        time.sleep(poll_s)


def checkpoint_stats(job: RunningJob) -> dict[str, Any]:
    """Checkpoint counts and durations, and the sizes of the latest completed checkpoint: ``state_size`` (the
    full state) and ``checkpointed_size`` (what that checkpoint uploaded; equal without incremental
    checkpoints), in bytes, plus ``state_size`` per stateful operator (job vertex).  ``dedup_state`` sums the
    ``Deduplicate`` vertices: the change deduplication (by far the larger: one entry per change within the TTL)
    and, in the enriching job, the dimension's latest-version view (one entry per customer)."""
    rest = job.pipeline.rest
    try:
        r = requests.get(f"{rest}/jobs/{job.job_id}/checkpoints", timeout=5)
        r.raise_for_status()
        cps = r.json()
    except requests.RequestException as exc:
        return {"error": str(exc)}
    summary = cps.get("summary") or {}
    e2e = summary.get("end_to_end_duration") or {}
    out: dict[str, Any] = {"completed": cps.get("counts", {}).get("completed"),
                           "failed": cps.get("counts", {}).get("failed"),
                           "duration_ms_avg": e2e.get("avg"), "duration_ms_max": e2e.get("max"),
                           "state_size_max": (summary.get("state_size") or {}).get("max")}
    latest = (cps.get("latest") or {}).get("completed") or {}
    if latest:
        out.update({"latest_id": latest.get("id"), "latest_state_size": latest.get("state_size"),
                    "latest_checkpointed_size": latest.get("checkpointed_size"),
                    "latest_duration_ms": latest.get("end_to_end_duration")})
        out["operators"] = _operator_state(rest, job.job_id, latest.get("id"))
        dedup = {k: v for k, v in out["operators"].items() if "deduplicate" in k.lower()}
        out["dedup_state"] = sum(dedup.values()) if dedup else None
    return out


def _operator_state(rest: str, job_id: str, checkpoint_id: Any) -> dict[str, int]:
    """``state_size`` per job vertex (named after its operator chain) in one checkpoint; stateless ones left out."""
    try:
        names = {v["id"]: v["name"] for v in requests.get(f"{rest}/jobs/{job_id}", timeout=5).json()["vertices"]}
        d = requests.get(f"{rest}/jobs/{job_id}/checkpoints/details/{checkpoint_id}", timeout=5).json()
    except (requests.RequestException, KeyError, ValueError):
        return {}
    out = {}
    for vid, t in (d.get("tasks") or {}).items():
        size = int(t.get("state_size") or 0)
        if size:
            out[str(names.get(vid, vid))[:120]] = size
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def human_bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def attach_current() -> Stack:
    """The stack ``./run cdc-chaos up`` started (or ``$CDC_CHAOS_RUN_DIR``'s)."""
    return Stack.attach(current_run_dir())


# --- what limited it: CPU per component and per TaskManager thread, checkpoint durations ---------------------

class CpuMeter:
    """CPU used between start() and stop(): per stack process (and this benchmark process), and per thread of
    each TaskManager JVM.  Flink names its task threads after their operator chain ("Source: cdc_typed...",
    "Deduplicate[4]..."), so the hottest thread says which part of the job limits throughput.  (Flink's REST
    rate metrics are no use for a run of seconds: the REST metric cache refreshes every 10 s.)"""

    SELF = "bench (python)"

    def __init__(self, stack: Stack) -> None:
        self.procs: dict[str, psutil.Process] = {self.SELF: psutil.Process()}
        for name, comp in stack.components.items():
            for member, proc in comp.processes.items():
                if proc.pid and psutil.pid_exists(proc.pid):
                    self.procs[f"{name}/{member}"] = psutil.Process(proc.pid)

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, p in self.procs.items():
            try:
                total = sum(p.cpu_times()[:2])
                if name != self.SELF:   # the stack's processes are this process's children: not ours to count
                    total += sum(sum(c.cpu_times()[:2]) for c in p.children(recursive=True))
            except psutil.Error:
                continue
            out[name] = total
        return out

    def _threads(self) -> dict[str, dict[str, float]]:
        """CPU seconds per thread name (/proc comm, 15 characters) of each TaskManager."""
        out: dict[str, dict[str, float]] = {}
        for name, p in self.procs.items():
            if "taskmanager" not in name:
                continue
            per: dict[str, float] = {}
            try:
                for t in p.threads():
                    try:
                        comm = Path(f"/proc/{p.pid}/task/{t.id}/comm").read_text().strip()
                    except OSError:
                        continue
                    per[comm] = per.get(comm, 0.0) + t.user_time + t.system_time
            except psutil.Error:
                continue
            out[name] = per
        return out

    def rss(self) -> dict[str, int]:
        """Resident memory now per stack process (with its children), in bytes."""
        out = {}
        for name, p in self.procs.items():
            if name == self.SELF:
                continue
            try:
                out[name] = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            except psutil.Error:
                continue
        return out

    def start(self) -> None:
        self._t0, self._cpu0, self._threads0 = time.monotonic(), self._cpu(), self._threads()
        psutil.cpu_percent(None)

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        cpu1, threads1 = self._cpu(), self._threads()
        per = {k: round(100 * (cpu1[k] - v) / wall) for k, v in self._cpu0.items() if k in cpu1}
        hot: dict[str, dict[str, int]] = {}
        for tm, threads in threads1.items():
            before = self._threads0.get(tm, {})
            pct = {n: round(100 * (s - before.get(n, 0.0)) / wall) for n, s in threads.items()}
            hot[tm] = dict(sorted(((n, v) for n, v in pct.items() if v >= 2), key=lambda kv: -kv[1])[:8])
        return {"seconds": round(wall, 1), "machine_cpu_pct_of_all_cores": psutil.cpu_percent(None),
                "cores": psutil.cpu_count(), "process_cpu_pct": dict(sorted(per.items(), key=lambda kv: -kv[1])),
                "taskmanager_thread_cpu_pct": hot}


# --- statistics ----------------------------------------------------------------------------------------------

def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(values_ms: list[int]) -> dict[str, Any]:
    if not values_ms:
        return {"count": 0}
    s = sorted(values_ms)
    return {"count": len(s), "p50": percentile(s, 50), "p95": percentile(s, 95), "p99": percentile(s, 99),
            "max": s[-1], "mean": round(sum(s) / len(s))}
