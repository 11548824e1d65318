"""End-to-end helpers shared by ``benchmarks.bench_job`` and ``benchmarks/locustfile.py``.

- ``LakeVisibility``: lists a lake prefix and records, for every *committed* data file of the main and late
  tables, when it was first seen (and reads its row count from the Parquet footer, or its change identities).
- ``LakePoller``: runs a ``LakeVisibility`` from a background thread every ``interval_s``.
- ``start_job`` / ``attach_current``: a fresh job into its own lake prefix at given topic offsets; a handle on
  the stack ``./run cdc-chaos up`` started.
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
from typing import Any

import pyarrow.parquet as pq
import requests

from flink_job.sql import JobConfig
from harness import kafka_client
from harness.lake import LakeFile, LakeReader
from harness.lake_schema import LATE_TABLE, MAIN_TABLE
from harness.pipeline import Pipeline
from harness.rundir import current_run_dir
from harness.runner import new_job_config
from harness.stack import Stack

#: a source change's identity, as the checker uses it: (order_id, version, is_delete)
ChangeId = tuple[int, int, bool]

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
    in a native thread); ``row_count`` and ``change_ids`` may run from any thread.
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

    def changes(self, f: SeenFile) -> list[tuple[ChangeId, int]]:
        """Each row's change identity and its ``processed_ms`` (when the job processed it)."""
        with self.reader.fs.open_input_file(f.path) as fh:
            t = pq.read_table(fh, columns=["order_id", "version", "op", "processed_ms"])
        return [((int(o), int(v), op == "d"), int(p)) for o, v, op, p in
                zip(*(t[c].to_pylist() for c in ("order_id", "version", "op", "processed_ms")), strict=True)]

    def change_ids(self, f: SeenFile) -> list[ChangeId]:
        return [cid for cid, _ in self.changes(f)]


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


def start_job(stack: Stack, lake_prefix: str, start_offsets: dict[int, int], *, parallelism: int = 1,
              checkpoint_interval_ms: int = 3000, name: str = "bench") -> RunningJob:
    """A fresh job (no state) reading ``orders_cdc`` from ``start_offsets`` into ``s3://<bucket>/<lake_prefix>``;
    returns once the job and every task is RUNNING."""
    pipeline = Pipeline(stack)
    cfg = new_job_config(stack, lake_prefix, name, start_offsets, via_proxy=False,
                         checkpoint_interval_ms=checkpoint_interval_ms, parallelism=parallelism)
    t0 = time.monotonic()
    job_id = pipeline.submit(cfg)
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


def attach_current() -> Stack:
    """The stack ``./run cdc-chaos up`` started (or ``$CDC_CHAOS_RUN_DIR``'s)."""
    return Stack.attach(current_run_dir())


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
