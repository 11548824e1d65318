"""One chaos run, end to end: generator -> database -> pipeline -> lake -> checker -> report.

Isolation between runs on one stack (measured cheaper than a fresh stack, and honest): the previous run's
rows are deleted, the binlog position and the topic's end offsets are captured, and a fresh job (no state)
starts reading exactly at those offsets into its own lake prefix; truth is read from that binlog position,
and order ids are disjoint per run.  Nothing of an earlier run is in this run's truth, topic range or lake.
"""

from __future__ import annotations

import abc
import json
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import requests

from flink_job.sql import JobConfig
from harness import kafka_client, log, truth
from harness.checker import ExactlyOnceChecker, Verdict
from harness.lake import LakeReader, LakeSnapshot
from harness.nemesis import FaultEvent, NemesisRunner, Schedule
from harness.pipeline import Pipeline, sink_watermark_ms
from harness.result import RecoveryFigure, RunResult, RunStats
from harness.rundir import file_lock
from harness.stack import Stack
from harness.topic import TopicReader
from harness.workload import History, Workload, WorkloadClient, WorkloadConfig, generate, summarize

_LOG = log.get("runner")


@dataclass(frozen=True)
class RunSpec:
    name: str
    seed: int
    duration_s: float = 20.0
    rate: float = 100.0
    workload: dict[str, Any] = field(default_factory=dict)      # WorkloadConfig overrides
    schedule: Callable[[random.Random, float], Schedule] = lambda rng, d: Schedule.none()
    job_variant: str = "correct"
    # Flink options for this run's job (JobConfig.extra), over the job's own: e.g. a restart strategy
    job_options: dict[str, str] = field(default_factory=dict)
    checkpoint_interval_ms: int = 3000
    quiesce_timeout_s: float = 240.0   # a job that restarts after a fault may need a while under load
    replay: str = ""
    # runs after the workload and the final heal, before judging (e.g. one change that pushes the watermark)
    finale: Callable[[Stack, Workload], None] | None = None


@dataclass
class LagSample:
    t: float
    lag: int
    end: int


class Sampler(abc.ABC):
    """A background thread that calls :meth:`sample` every ``interval_s`` from :meth:`start` to :meth:`stop`;
    sample times are seconds since the run's ``t0``."""

    def __init__(self, interval_s: float, name: str) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:   # started
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample(time.monotonic() - self.t0)

    @abc.abstractmethod
    def sample(self, t: float) -> None:
        """Take one sample at ``t`` seconds since t0 (a failed read is a gap, not an error)."""


class LagMonitor(Sampler):
    """Samples the job's consumer lag (topic end - offsets committed on checkpoint) while a run goes on."""

    def __init__(self, bootstrap: str, group: str, topic: str, interval_s: float = 0.5) -> None:
        super().__init__(interval_s, "lag-monitor")
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self.samples: list[LagSample] = []

    def sample(self, t: float) -> None:
        try:
            ends = kafka_client.end_offsets(self.bootstrap, self.topic, timeout=2)
            done = kafka_client.committed_offsets(self.bootstrap, self.group, self.topic, timeout=2)
        except Exception:  # noqa: BLE001 - the broker may be down during a fault; that is a gap, not an error
            return
        lag = sum(max(0, e - max(0, done.get(p, -1))) for p, e in ends.items())
        self.samples.append(LagSample(t, lag, sum(ends.values())))

    def baseline(self, until: float, warmup_s: float = 2.0) -> int | None:
        """The highest lag sampled in steady state before ``until`` (the first fault): with offsets committed
        once per checkpoint, a healthy job's lag under load swings between zero and about a checkpoint
        interval's worth of changes, so "recovered" means back within that swing, not zero."""
        lags = [s.lag for s in self.samples if warmup_s <= s.t < until]
        return max(lags) if lags else None

    def recovery_after(self, t: float, threshold: int = 0) -> float | None:
        """Seconds from ``t`` until the lag was first at or below ``threshold`` (None if never, while sampled)."""
        for s in self.samples:
            if s.t >= t and s.lag <= threshold:
                return round(s.t - t, 2)
        return None


@dataclass
class ConsumptionSample:
    t: float
    consumed: int | None   # records the change reader's subtasks report consumed (None: no subtask reporting)
    job_id: str | None
    all_running: bool | None = None   # every task of the job RUNNING (None: no answer)


#: one sample of Prometheus's text format: ``name{label="value",...} number`` (label values may hold escapes)
_PROM_LINE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_PROM_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def prometheus_samples(text: str, name_suffix: str) -> list[tuple[dict[str, str], float]]:
    """The samples of every metric whose name ends with ``name_suffix`` in a Prometheus text exposition, as
    (labels, value); comments and other metrics are skipped, a value that is not a number too."""
    out = []
    for line in text.splitlines():
        m = _PROM_LINE.match(line)
        if not m or not m.group(1).endswith(name_suffix):
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append(({k: v for k, v in _PROM_LABEL.findall(m.group(2) or "")}, value))
    return out


@dataclass
class _Consumed:
    """Records consumed by one job, summed over the series (one per reader, subtask and attempt) ever seen."""
    total: float = 0.0
    last: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    seen: bool = False

    def add(self, labels: dict[str, str], value: float) -> None:
        key = tuple(sorted(labels.items()))
        before = self.last.get(key)
        self.total += value - before if before is not None and value >= before else value
        self.last[key] = value
        self.seen = True


class ConsumptionMonitor(Sampler):
    """Samples how many records the job's Kafka readers have consumed: Flink's own ``records-consumed-total``
    of its Kafka consumers, summed over every reader that reports it and over subtasks.  No operator of the job
    is named: a job that reads the topic more than once counts each reading, and the figures are ratios to the
    pre-fault rate, which counts them the same way.

    Unlike the consumer lag (offsets are committed once per checkpoint), this moves with every record the job
    reads, so it shows when a job that lost a TaskManager or a broker reads at its pre-fault rate again.

    Where each TaskManager serves its own metrics (``metric_urls``: the local stack's Prometheus reporters), they
    are read there, live.  The JobManager's REST API is the fallback, and it lies after a TaskManager kill: its
    metric fetcher waits for an answer from every TaskManager it asked, up to ``web.timeout`` (10 s), so an ask
    on its way to the killed one froze every metric for up to 10 s (bench_recovery: 4 of 10 kills read "nothing
    consumed" until 10.4 s after the kill, then 24,000 records at once).  Directly, each series (reader,
    subtask, attempt) counts from its first value: a restarted subtask is a new series, and a series that
    vanishes with its TaskManager keeps what it counted.  Through REST, a sample below the previous one of the
    same job, or of another job, starts a new count."""

    METRIC = "records-consumed-total"
    PROM_METRIC = "records_consumed_total"

    def __init__(self, pipeline: Pipeline, job_id: Callable[[], str | None], interval_s: float = 0.5,
                 metric_urls: Callable[[], list[str]] | None = None) -> None:
        super().__init__(interval_s, "consumption-monitor")
        self.pipeline, self.job_id, self.metric_urls = pipeline, job_id, metric_urls
        self.samples: list[ConsumptionSample] = []
        self._ids: dict[str, list[tuple[str, list[str]]]] = {}   # job id -> [(vertex id, metric ids)]
        self._direct: dict[str, _Consumed] = {}                  # job id -> what its readers consumed

    def sample(self, t: float) -> None:
        job_id = self.job_id()
        consumed, running = None, None
        try:
            if job_id:
                running = self.all_running(job_id)
        except Exception:  # noqa: BLE001 - the JobManager may be down or the job restarting: a gap
            pass
        try:
            if job_id:
                consumed = self.read_direct(job_id) if self.metric_urls else self.read(job_id)
        except Exception:  # noqa: BLE001 - as above
            pass
        self.samples.append(ConsumptionSample(round(t, 2), consumed, job_id, running))

    def all_running(self, job_id: str) -> bool:
        job = self.pipeline._get(f"/jobs/{job_id}", timeout=2)
        return job.get("state") == "RUNNING" and all(
            v.get("tasks", {}).get("RUNNING", 0) == v.get("parallelism", -1) for v in job.get("vertices", []))

    def read_direct(self, job_id: str) -> int | None:
        """The records consumed so far by ``job_id``'s readers, from each TaskManager's own metrics; a
        TaskManager that does not answer (killed, restarting) adds nothing.  None while none has reported."""
        consumed = self._direct.setdefault(job_id, _Consumed())
        for url in self.metric_urls() if self.metric_urls else []:
            try:
                text = requests.get(url, timeout=0.4).text
            except requests.RequestException:
                continue
            for labels, value in prometheus_samples(text, self.PROM_METRIC):
                if labels.get("job_id") == job_id:
                    consumed.add(labels, value)
        return int(consumed.total) if consumed.seen else None

    def read(self, job_id: str) -> int | None:
        """The records consumed now, summed over the job's readers and their subtasks; None while none reports."""
        readers = self._ids.get(job_id)
        if not readers:
            job = self.pipeline._get(f"/jobs/{job_id}", timeout=2)
            readers = []
            for v in job.get("vertices", []):
                names = self.pipeline._get(f"/jobs/{job_id}/vertices/{v['id']}/subtasks/metrics", timeout=2)
                ids = [m["id"] for m in names if m["id"].endswith(self.METRIC)]
                if ids:
                    readers.append((v["id"], ids))
            if not readers:
                return None   # not running yet: Flink lists a subtask's metrics once it has reported them
            self._ids[job_id] = readers
        values = [m for vertex, ids in readers for m in self.pipeline._get(
            f"/jobs/{job_id}/vertices/{vertex}/subtasks/metrics?get={','.join(ids)}&agg=sum", timeout=2)]
        return int(sum(float(m.get("sum", 0)) for m in values)) if values else None

    def rates(self, window_s: float = 1.0) -> list[tuple[float, float]]:
        """(sample time since t0, records per second since the last sample at least ``window_s`` earlier),
        one per sample after the first window: a restart's reset is counted from zero, and a sample with no
        answer (no subtask reporting, the JobManager away) counts as nothing read."""
        points: list[tuple[float, int]] = []   # (t, records read by the job since the first sample)
        total, last = 0, None
        for s in self.samples:
            if s.consumed is not None:
                if last is not None and s.job_id == last.job_id and s.consumed >= (last.consumed or 0):
                    total += s.consumed - (last.consumed or 0)
                elif last is not None:
                    total += s.consumed   # a new count (restart or resume) began since the last answer
                last = s
            points.append((s.t, total))
        out, k = [], -1
        for t, c in points:
            while k + 1 < len(points) and points[k + 1][0] <= t - window_s + 1e-6:
                k += 1
            if k >= 0:
                t_a, c_a = points[k]
                out.append((t, (c - c_a) / (t - t_a)))
        return out

    def baseline_rate(self, until: float, warmup_s: float = 2.0) -> float | None:
        """The median rate the job read at in steady state before ``until`` (the first fault)."""
        values = sorted(r for t, r in self.rates() if warmup_s <= t < until)
        return values[len(values) // 2] if values else None

    def restart_after(self, injected_at: float, give_up_at: float) -> tuple[float | None, float | None]:
        """Seconds from ``injected_at`` until the job was seen restarting (not every task RUNNING) and then
        until every task was RUNNING again: where a recovery's time goes before the job reads."""
        down = next((s.t for s in self.samples if injected_at < s.t <= give_up_at and s.all_running is False), None)
        if down is None:
            return None, None
        up = next((s.t for s in self.samples if s.t > down and s.all_running), None)
        return round(down - injected_at, 2), (round(up - injected_at, 2) if up is not None else None)

    def back_after(self, injected_at: float, baseline: float, give_up_at: float,
                   low: float = 0.5, back: float = 0.9) -> tuple[float | None, bool]:
        """Seconds from ``injected_at`` until the job read at ``back`` x ``baseline`` again, after the fault
        first pushed it below ``low`` x ``baseline``; (0.0, False) when reading never dipped before
        ``give_up_at``, (None, True) when it dipped and never came back while sampled."""
        rates = [(t, r) for t, r in self.rates() if t > injected_at]
        dip = next((t for t, r in rates if t <= give_up_at and r < low * baseline), None)
        if dip is None:
            return 0.0, False
        up = next((t for t, r in rates if t > dip and r >= back * baseline), None)
        return (round(up - injected_at, 2) if up is not None else None), True


def prepare_source(stack: Stack) -> tuple[tuple[str, int], dict[int, int]]:
    """Empty the orders table, let Debezium publish that, then capture binlog position and topic ends.  The
    binlog is rotated first, so the run's changes start a file of their own and earlier runs' files are
    complete: truth parses those once per stack (:func:`truth.parse_sources`), not once per run."""
    with stack.database.connect() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM orders")
        conn.commit()
        cur.execute("FLUSH BINARY LOGS")
    return source_position(stack)


def source_position(stack: Stack, timeout_s: float = 60.0) -> tuple[tuple[str, int], dict[int, int]]:
    """The binlog position now, and per partition the offset of the first record at or past it: where a job
    started "now" begins, and where its truth begins.  The database's heartbeat tick puts a record into every
    partition each second, so each partition soon holds one past the position; records are in binlog order
    within a partition, so every earlier record of that partition is before the position."""
    db = stack.database.endpoints()
    bootstrap, topic = stack.kafka.bootstrap, stack.config.kafka.topic
    scan_from = kafka_client.end_offsets(bootstrap, topic)
    start = truth.binlog_position(db["host"], db["port"], db["root_user"], db["root_password"])
    found: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(found) < len(scan_from):
        ends = kafka_client.end_offsets(bootstrap, topic)
        todo = {p: e for p, e in ends.items() if p not in found and e > scan_from[p]}
        for r in kafka_client.read_range(bootstrap, topic, scan_from, todo, timeout=30) if todo else []:
            if r.partition in found:
                continue
            coords = _coordinates(r.value)
            if coords is not None and truth.coordinate_key(*coords) >= truth.coordinate_key(*start):
                found[r.partition] = r.offset
        scan_from.update({p: e for p, e in todo.items() if p not in found})
        if len(found) < len(scan_from):
            time.sleep(0.3)
    if len(found) < len(scan_from):
        raise TimeoutError(f"Debezium published nothing at or past binlog position {start} in partitions "
                           f"{sorted(set(scan_from) - set(found))} within {timeout_s:.0f}s: is the connector "
                           f"RUNNING and the database's heartbeat event (init.sql, event_scheduler=ON) ticking?")
    return start, found


def _coordinates(value: bytes | None) -> tuple[str, int] | None:
    try:
        src = json.loads(value or b"")["source"]
        return str(src["file"]), int(src["pos"])
    except (ValueError, KeyError, TypeError):
        return None


def allocate_order_ids(stack: Stack, count: int) -> int:
    """The first of ``count`` order ids no earlier workload on this stack used (and so no transaction marker
    either: markers are ``first_order_id * 1000 + n``); one counter per stack, shared by every process."""
    counter = stack.run.path / "jobs" / "next_order_id"
    counter.parent.mkdir(exist_ok=True)
    with file_lock(counter.with_suffix(".lock")):
        first = int(counter.read_text()) if counter.exists() else 1_000_000_000
        counter.write_text(str(first + count))
    return first


def new_job_config(stack: Stack, prefix: str, name: str, start_offsets: dict[int, int] | None,
                   via_proxy: bool = True, **options: Any) -> JobConfig:
    """The job for this stack writing under ``s3://<bucket>/<prefix>``, from ``start_offsets`` (None: the
    topic's earliest offsets), with a consumer group of its own; ``options`` are further JobConfig fields.
    ``via_proxy=False`` reads Kafka directly (benchmarks measure the job, not the proxy)."""
    start = {"startup_mode": "specific-offsets", "startup_offsets": tuple(sorted(start_offsets.items()))} \
        if start_offsets is not None else {"startup_mode": "earliest-offset"}
    root = f"s3://{stack.config.s3.bucket}" + (f"/{prefix.strip('/')}" if prefix.strip("/") else "")
    # the job reaches Kafka through the network proxy (when the stack has one) so network faults hit it;
    # the harness's own clients (lag monitor, quiescence, lake reader) stay direct
    bootstrap = (stack.kafka.proxied_bootstrap if via_proxy else None) or stack.kafka.bootstrap
    return JobConfig(bootstrap=bootstrap, lake_root=root,
                     topic=stack.config.kafka.topic, group_id=f"cdc-chaos-{name}-{int(time.time())}",
                     **start, **options)


#: what names a change in the source log: the truth's and the topic's columns alike
COORDINATES = ("src_file", "src_pos", "src_row", "op")


def quiesce(stack: Stack, pipeline: Pipeline, job_id: str, gt: truth.GroundTruth, start_offsets: dict[int, int],
            group: str, timeout_s: float, checkpointing: bool = True,
            commit_bound_ms: int = 1000, reader: TopicReader | None = None) -> tuple[str | None, dict[str, Any]]:
    """Wait until the pipeline has caught up; returns (None, stats) or (why it is STALLED, stats).

    Caught up = (1) every committed change is in the topic (Debezium has published it), then (2) the job has
    committed offsets at least up to the topic's end (it has read it all and a checkpoint completed), then
    (3) the job's clock at its sink has passed the end of the writes (read is not processed: a join holds rows
    until its watermark passes them, and the dimension's reader may still be catching up), then (4) two more
    checkpoints completed, so the sink's files and partition commits are done too.  A job run without
    checkpointing (a known-bad variant) commits offsets by the consumer's auto-commit and never completes a
    checkpoint: step (4) is then a grace period, and what the lake lacks is judged as it is.
    """
    # every write committed before now; a source record stamped a second after now (the database's tick)
    # began after them, so it follows them in the log, and the sink's watermark passes this floor only once
    # such a record went through every operator (its watermark is the largest commit time seen - the bound)
    clock_floor_ms = int(time.time() * 1000) + 1000 - commit_bound_ms + 1
    bootstrap, topic = stack.kafka.bootstrap, stack.config.kafka.topic
    deadline = time.monotonic() + timeout_s
    t0 = time.monotonic()
    # the committed changes not yet seen in the topic, by coordinates: an anti-join per look (Arrow), as a
    # million-change run made a million Python tuples twice over
    missing = gt.changes.select(list(COORDINATES))
    stats: dict[str, Any] = {"changes": missing.num_rows}
    ends: dict[int, int] = {}
    # each poll reads (and parses, once) only what was appended since the last one; the caller's reader
    # keeps every record for the topic evidence
    reader = reader or TopicReader(bootstrap, topic, start_offsets)
    snapshot_end: tuple[tuple[int, int], tuple[str, int]] | None = None
    looked = 0
    while time.monotonic() < deadline:
        try:
            ends = kafka_client.end_offsets(bootstrap, topic)
            reader.read(ends, timeout=30)
        except Exception as exc:  # noqa: BLE001 - keep waiting while the broker recovers
            stats["last_error"] = str(exc)
            time.sleep(1)
            continue
        # every row read since the last look, including what the caller read before quiescence began
        first, looked = looked, len(reader.evidence)
        new = reader.evidence.table_slice(first, looked, ("src_table", *COORDINATES, "src_snapshot"))
        changes = new.filter(pc.and_(pc.equal(new["src_table"], "orders"),
                                     pc.is_in(new["op"], value_set=pa.array(["c", "u", "d"]))))
        if changes.num_rows and missing.num_rows:
            missing = missing.join(changes.select(list(COORDINATES)), keys=list(COORDINATES), join_type="left anti")
        # a change Debezium never published because a complete snapshot re-read the state after it (its
        # position was purged, or its offsets lost) will never come: the snapshot accounts for it
        last_rows = new.filter(pc.and_(pc.equal(new["op"], "r"), pc.equal(new["src_snapshot"], "last")))
        for r in last_rows.select(["src_file", "src_pos"]).to_pylist():
            if r["src_file"] is not None and r["src_pos"] is not None:
                here = (truth.coordinate_key(r["src_file"], r["src_pos"]), (r["src_file"], r["src_pos"]))
                snapshot_end = max(snapshot_end, here) if snapshot_end is not None else here
        if snapshot_end is not None and missing.num_rows:
            after = truth.at_or_after(missing, snapshot_end[1])
            covered = missing.num_rows - pc.sum(after).as_py()
            if covered:
                stats["superseded_by_snapshot"] = stats.get("superseded_by_snapshot", 0) + covered
                missing = missing.filter(after)
        if not missing.num_rows:
            break
        time.sleep(1)
    stats["published_s"] = round(time.monotonic() - t0, 2)
    if missing.num_rows:
        examples = sorted(tuple(r.values()) for r in missing.slice(0, 1000).to_pylist())[:3]
        return (f"{missing.num_rows} committed change(s) never reached the topic (Debezium did not publish "
                f"them), e.g. {examples}"), stats
    t1 = time.monotonic()
    while time.monotonic() < deadline:
        try:
            done = kafka_client.committed_offsets(bootstrap, group, topic)
        except Exception:  # noqa: BLE001
            time.sleep(1)
            continue
        if all(done.get(p, -1) >= e for p, e in ends.items()):
            break
        time.sleep(0.5)
    else:
        return f"the job did not consume up to the topic end {ends} (committed {done})", stats
    stats["consumed_s"] = round(time.monotonic() - t1, 2)
    t2 = time.monotonic()
    stalled_clock = wait_clock_past(pipeline, pipeline.current_job_id or job_id, clock_floor_ms, deadline)
    if stalled_clock:
        return stalled_clock, stats
    stats["clock_passed_s"] = round(time.monotonic() - t2, 2)
    if not checkpointing:
        time.sleep(NO_CHECKPOINT_GRACE_S)
        stats["quiesced_s"] = round(time.monotonic() - t0, 2)
        return None, stats
    # two more checkpoints: the first commits the files of the last records, the second the partitions
    # (_SUCCESS) whose watermark those records raised after the first barrier had passed.  Each is asked for
    # as soon as the one before completed, rather than waited for over the checkpoint interval (a few
    # seconds of every run); a request made while one runs waits for it, so the second is always triggered
    # after this point, as with the periodic ones
    before = pipeline.latest_checkpoint_id(job_id)
    asked_after: int | None = -2
    while time.monotonic() < deadline:
        latest = pipeline.latest_checkpoint_id(job_id)
        if (latest or -1) >= (before or -1) + 2:
            stats["quiesced_s"] = round(time.monotonic() - t0, 2)
            return None, stats
        if latest != asked_after:
            pipeline.trigger_checkpoint(job_id)
            asked_after = latest
        time.sleep(0.2)
    return "two checkpoints did not complete after the job caught up", stats


def wait_clock_past(pipeline: Pipeline, job_id: str, floor_ms: int, deadline: float,
                    no_watermark_s: float = 30.0) -> str | None:
    """Wait until the job's sink watermark passes ``floor_ms``; None, or why it did not (a STALLED reason).
    A job whose REST API reports no sink watermark for ``no_watermark_s`` is not held up by this step."""
    t0 = time.monotonic()
    wm: int | None = None
    while time.monotonic() < deadline:
        try:
            wm = sink_watermark_ms(pipeline, job_id, settle_s=0.5)
        except Exception:  # noqa: BLE001 - the REST API may lag right after a restart
            wm = None
        if wm is not None and wm >= floor_ms:
            return None
        if wm is None and time.monotonic() - t0 > no_watermark_s:
            _LOG.warning("job %s reports no sink watermark; quiescence does not wait for its clock", job_id)
            return None
        time.sleep(0.5)
    return (f"the job read the whole topic but its clock did not pass the end of the writes: sink watermark "
            f"{wm}, needed {floor_ms} (rows may still be held in the job)")


#: rows of ``cdc_heartbeat`` that the database's tick updates every second (stack/mysql/init.sql)
HEARTBEAT_ROWS = 8


def idle_lag(job: JobConfig) -> int:
    """The consumer lag of a caught-up job on an idle database: the tick's records between two offset
    commits (one checkpoint interval, plus a second for the commit to land)."""
    return HEARTBEAT_ROWS * (job.checkpoint_interval_ms // 1000 + 2)


NO_CHECKPOINT_GRACE_S = 6.0   # two default checkpoint intervals: what a checkpointing job would have needed


@dataclass
class Evidence:
    """Everything the checker judges a lake against, gathered from sources the job does not write: the
    database's binlog and table, the topic as the broker stamped it, and the job's watermark as Flink
    reports it.  Of the job the checker knows only its documented contract: the routing bound."""
    truth: truth.GroundTruth
    topic: Any                      # pa.Table of harness.topic.TOPIC_SCHEMA
    flink_watermark_ms: int | None
    bound_ms: int
    stalled: str | None
    quiescence: dict[str, Any]

    def check(self, lake: LakeSnapshot, context: dict[str, Any]) -> Verdict:
        return ExactlyOnceChecker(bound_ms=self.bound_ms).check(
            self.truth, lake, topic=self.topic, flink_watermark_ms=self.flink_watermark_ms, stalled=self.stalled,
            context=context)


def gather(stack: Stack, pipeline: Pipeline, job: JobConfig, start_pos: tuple[str, int] | None,
           start_offsets: dict[int, int], history: History | None, timeout_s: float) -> Evidence:
    """Ground truth from the database -> quiescence -> the topic and the job's watermark.

    The topic is read while truth is collected (the binlog is decoded by a compiled reader and the final
    table rendered by the server, so the two barely compete for this process); quiescence then reads only
    what arrived since."""
    t0 = time.monotonic()
    job_id = pipeline.current_job_id
    assert job_id is not None, "gather() needs a submitted job"
    reader = TopicReader(stack.kafka.bootstrap, stack.config.kafka.topic, start_offsets)

    def collect() -> tuple[truth.GroundTruth, float]:
        gt = truth.collect(stack.database.endpoints(), history, start=start_pos)
        if start_pos is not None:
            # a job started at a binlog position answers only for the keys changed since then
            gt = gt.restricted_to_changed_keys()
        return gt, round(time.monotonic() - t0, 2)

    with ThreadPoolExecutor(1, thread_name_prefix="truth") as pool:
        collecting = pool.submit(collect)
        try:
            reader.read(timeout=60)
        except Exception as exc:  # noqa: BLE001 - quiescence reads (and waits for the broker) again
            _LOG.info("reading the topic beside truth failed (%s); quiescence reads it", exc)
        topic_beside_s = round(time.monotonic() - t0, 2)
        gt, truth_s = collecting.result()
    truth_wall_s = round(time.monotonic() - t0, 2)
    stalled, qstats = quiesce(stack, pipeline, job_id, gt, start_offsets, pipeline.consumer_group(job), timeout_s,
                              checkpointing=job.checkpointing, commit_bound_ms=job.commit_bound_ms, reader=reader)
    qstats.update(truth_s=truth_s, topic_beside_truth_s=topic_beside_s, truth_wall_s=truth_wall_s)
    try:
        flink_wm = sink_watermark_ms(pipeline, pipeline.current_job_id or job_id)
    except Exception:  # noqa: BLE001 - without it MISSING_SUCCESS is not judged, which the counts say
        flink_wm = None
    t1 = time.monotonic()
    reader.read()          # the rest of the topic, after what quiescence read
    records = reader.table()
    qstats["topic_s"] = round(time.monotonic() - t1, 2)
    return Evidence(gt, records, flink_wm, job.out_of_orderness_ms, stalled, qstats)


def judge(stack: Stack, pipeline: Pipeline, job: JobConfig, prefix: str, start_pos: tuple[str, int] | None,
          start_offsets: dict[int, int], history: History | None, timeout_s: float,
          context: dict[str, Any]) -> tuple[Verdict, dict[str, Any], LakeSnapshot]:
    """Evidence (truth, quiescence, topic, watermark) -> the lake under ``prefix`` -> the checker's verdict."""
    evidence = gather(stack, pipeline, job, start_pos, start_offsets, history, timeout_s)
    t0 = time.monotonic()
    lake = LakeReader.for_s3(stack.s3.endpoints(), prefix).snapshot()
    t1 = time.monotonic()
    verdict = evidence.check(lake, context)
    evidence.quiescence.update(lake_s=round(t1 - t0, 2), check_s=round(time.monotonic() - t1, 2))
    return verdict, evidence.quiescence, lake


def wait_caught_up(pipeline: Pipeline, job_id: str, behind_ms: int = 15_000, timeout_s: float = 180.0,
                   no_watermark_s: float = 30.0) -> dict[str, Any]:
    """Wait until the fresh job is caught up, before any write or fault: its sink's watermark within
    ``behind_ms`` of now.  The dimension reader starts from the topic's beginning, so on a long-lived stack the
    job needs a while before its clock is current; a fault injected meanwhile would be judged against a clock
    that is still catching up (its evidence says the clock ran while the fault was on)."""
    t0 = time.monotonic()
    last: int | None = None
    while time.monotonic() - t0 < timeout_s:
        try:
            last = sink_watermark_ms(pipeline, job_id)
        except Exception:  # noqa: BLE001 - the REST API may lag right after the submit
            last = None
        if last is not None and last >= time.time() * 1000 - behind_ms:
            return {"caught_up_s": round(time.monotonic() - t0, 1)}
        if last is None and time.monotonic() - t0 > no_watermark_s:
            break
        time.sleep(1.0)
    _LOG.warning("job %s not caught up after %.0f s (sink watermark %s); the run goes on", job_id,
                 time.monotonic() - t0, last)
    return {"caught_up_s": None, "sink_watermark_ms": last}


class PhaseClock:
    """Seconds per phase of a run, in order (where a run's wall time goes)."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self._last, 1)
        self._last = now


def run(stack: Stack, spec: RunSpec, index: int = 0, pipeline: Pipeline | None = None) -> RunResult:
    """Run one scenario on a healthy stack: verdict, fault timeline, recovery figures, series."""
    return run_with_evidence(stack, spec, index, pipeline)[0]


def run_with_evidence(stack: Stack, spec: RunSpec, index: int = 0,
                      pipeline: Pipeline | None = None) -> tuple[RunResult, Evidence, str]:
    """One scenario: (the result, the evidence its lake was judged against, the lake prefix).  The job is
    cancelled and the monitors stopped whatever happens."""
    pipeline = pipeline or Pipeline(stack)
    rng = random.Random(spec.seed)
    started = time.monotonic()
    phases = PhaseClock()
    start_pos, start_offsets = prepare_source(stack)
    phases.mark("source_position")
    prefix = f"runs/{spec.name}-seed{spec.seed}-{index}-{int(time.time())}"
    job = new_job_config(stack, prefix, f"{spec.name}-{index}", start_offsets,
                         checkpoint_interval_ms=spec.checkpoint_interval_ms, variant=spec.job_variant,
                         extra=dict(spec.job_options))
    monitor = LagMonitor(stack.kafka.bootstrap, pipeline.consumer_group(job), stack.config.kafka.topic)
    job_id = ""
    reading = ConsumptionMonitor(pipeline, lambda: pipeline.current_job_id or job_id or None,
                                 metric_urls=stack.flink.metric_urls)
    try:
        job_id = pipeline.submit(job)
        phases.mark("job_submit")
        pipeline.wait_running(job_id)
        phases.mark("job_running")
        warmup = wait_caught_up(pipeline, job_id)
        phases.mark("job_caught_up")
        _LOG.info("%s: job %s (%s) running from offsets %s into %s, caught up: %s", spec.name, job_id,
                  job.variant, start_offsets, prefix, warmup)

        overrides = dict(spec.workload)
        boundary_s = overrides.pop("anchor_before_boundary_s", None)
        if boundary_s:   # event time starts 10 s before the last hour or day boundary in UTC
            overrides["anchor_ms"] = int(time.time() // boundary_s * boundary_s * 1000) - 10_000
        wl_cfg = WorkloadConfig(seed=spec.seed, duration_s=spec.duration_s, rate=spec.rate,
                                first_order_id=allocate_order_ids(stack, int(spec.duration_s * spec.rate) + 1),
                                **overrides)
        workload = generate(wl_cfg)
        client = WorkloadClient(workload, stack.database.connect, stack.config.database.database)
        client.seed_customers()
        schedule = spec.schedule(rng, spec.duration_s)
        nemesis = NemesisRunner(stack, schedule, rng, recovery=pipeline)
        t0 = time.monotonic() + 0.5
        t0_wall_ms = int((time.time() + 0.5) * 1000)
        monitor.start(t0)
        reading.start(t0)
        nemesis.start(t0)
        try:
            history = client.run(start_at=t0)
        finally:
            nemesis.finish()
        if spec.finale is not None:
            spec.finale(stack, workload)
        workload_s = time.monotonic() - t0
        phases.mark("workload_and_faults")
        _LOG.info("%s: workload done in %.1f s: %s", spec.name, workload_s, summarize(history))

        evidence = gather(stack, pipeline, job, start_pos, start_offsets, history, spec.quiesce_timeout_s)
        phases.mark("truth_and_quiescence")
        _LOG.info("%s: quiescence %s%s", spec.name, evidence.quiescence,
                  f"; STALLED: {evidence.stalled}" if evidence.stalled else "")
        lake = LakeReader.for_s3(stack.s3.endpoints(), prefix).snapshot()
        phases.mark("lake_read")
        verdict = evidence.check(lake, context={"scenario": spec.name, "seed": spec.seed, "lake_prefix": prefix,
                                                "job_variant": spec.job_variant})
        phases.mark("check")
        # a fault the run cannot show reached the job proves nothing: the scenario fails under its own name
        ineffective = nemesis.ineffective()
        verdict.anomalies["INEFFECTIVE_FAULT"] = {"count": len(ineffective), "examples": ineffective[:5]}
        try:
            job_status = pipeline.status(pipeline.current_job_id or job_id)
        except Exception as exc:  # noqa: BLE001 - status is informative only
            job_status = {"error": str(exc)}
        checkpoints = checkpoint_series(pipeline, [job_id, pipeline.current_job_id], t0_wall_ms)
    finally:
        monitor.stop()
        reading.stop()
        pipeline.cancel_all()
    phases.mark("job_cancel")
    _LOG.info("%s: phases (s) %s", spec.name, phases.seconds)
    timeline = nemesis.events()
    recovery = recovery_figures(timeline, t0_wall_ms, monitor, reading, idle_lag(job))
    stats = RunStats(wall_s=round(time.monotonic() - started, 1), workload_s=round(workload_s, 1),
                     workload=summarize(history), quiescence=evidence.quiescence, recovery=recovery,
                     nemesis_errors=nemesis.errors, job=job_status, lake=lake.summary(), warmup=warmup,
                     lag_samples=[(round(s.t, 2), s.lag) for s in monitor.samples], checkpoints=checkpoints,
                     phases_s=phases.seconds, consumption=[(t, round(r, 1)) for t, r in reading.rates()],
                     **freshness(history, lake, t0_wall_ms))
    result = RunResult(name=spec.name, seed=spec.seed, replay=spec.replay, verdict=verdict, timeline=timeline,
                       schedule=schedule.describe(), stats=stats, throughput=_throughput(history, t0_wall_ms),
                       t0_wall_ms=t0_wall_ms, ops=_op_timeline(history, t0_wall_ms))
    return result, evidence, prefix


def recovery_figures(timeline: list[FaultEvent], t0_wall_ms: int, lag: LagMonitor, reading: ConsumptionMonitor,
                     idle: int) -> list[RecoveryFigure]:
    """One figure per heal: the consumer lag's recovery after the heal, and the job's reading rate's recovery
    after the injection (the fault's inject and heal pair up in order, per nemesis)."""
    injected = [(ev.wall_ms - t0_wall_ms) / 1000 for ev in timeline if ev.phase == "inject"]
    baseline = lag.baseline(min(injected)) if injected else None
    rate = reading.baseline_rate(min(injected)) if injected else None
    open_injects: dict[str, list[float]] = {}
    figures = []
    for i, ev in enumerate(timeline):
        t = (ev.wall_ms - t0_wall_ms) / 1000
        if ev.phase == "inject":
            open_injects.setdefault(ev.nemesis, []).append(t)
        if ev.phase != "heal":
            continue
        t_inject = open_injects.get(ev.nemesis, []).pop(0) if open_injects.get(ev.nemesis) else None
        later = [(e.wall_ms - t0_wall_ms) / 1000 for e in timeline[i + 1:] if e.phase == "inject"]
        give_up = min(later) if later else t + 60
        back, dipped = (reading.back_after(t_inject, rate, give_up_at=give_up)
                        if t_inject is not None and rate else (None, None))
        restarting, running = reading.restart_after(t_inject, give_up) if t_inject is not None else (None, None)
        # lag_normal: back within the pre-fault steady-state swing; lag_zero: fully caught up, which under a
        # continuing workload mostly happens only once the workload stops.  "Zero" is the idle floor: the
        # database's tick appends a record per heartbeat row each second, and offsets are committed once per
        # checkpoint, so an idle, caught-up job lags by up to that much
        figures.append(RecoveryFigure(
            ev.nemesis, round(t, 2), baseline,
            lag.recovery_after(t, baseline) if baseline is not None else None, lag.recovery_after(t, idle),
            injected_at_s=round(t_inject, 2) if t_inject is not None else None,
            consumption_baseline_per_s=round(rate, 1) if rate else None,
            consumption_back_after_s=back, consumption_dipped=dipped,
            job_restarting_after_s=restarting, tasks_running_after_s=running))
    return figures


def freshness(history: History, lake: LakeSnapshot, t0_wall_ms: int) -> dict[str, Any]:
    """Commit -> visible in committed Parquet, per change of the run's own transactions: the client's commit
    time (the history) against the committed file's S3 LastModified (a file becomes visible when the sink
    commits it), joined on the transaction's GTID.  Without GTIDs (a MySQL without GTID mode) there is none."""
    committed = {e.gtid: e.complete_ms for e in history.entries if e.outcome == "ok" and e.gtid and e.complete_ms}
    per_second: dict[int, list[int]] = {}
    for table in (lake.main, lake.late):
        gtids = table.column("src_gtid").to_pylist()
        mtimes = table.column("file_mtime_ms").to_pylist()
        for gtid, mtime in zip(gtids, mtimes, strict=True):
            done = committed.get(gtid)
            if done is not None and mtime:
                per_second.setdefault(max(0, (done - t0_wall_ms) // 1000), []).append(max(0, mtime - done))
    values = sorted(v for vs in per_second.values() for v in vs)
    if not values:
        return {"freshness": [], "freshness_summary": {"n": 0}}

    def rank(vs: list[int], q: float) -> int:
        return vs[min(len(vs) - 1, max(0, int(q * len(vs) + 0.999999) - 1))]

    series = [(float(b), rank(sorted(vs), 0.5), max(vs)) for b, vs in sorted(per_second.items())]
    return {"freshness": series, "freshness_summary": {"n": len(values), "p50_ms": rank(values, 0.5),
                                                       "p99_ms": rank(values, 0.99), "max_ms": values[-1]}}


def checkpoint_series(pipeline: Pipeline, job_ids: list[str | None], t0_wall_ms: int) -> list[tuple[float, int, int,
                                                                                                     str]]:
    """Every checkpoint of the run's job(s) from Flink's REST history: (trigger second since t0, end-to-end
    duration ms, state bytes, status)."""
    out: dict[tuple[str, int], tuple[float, int, int, str]] = {}
    for job_id in dict.fromkeys(j for j in job_ids if j):
        try:
            history = pipeline.checkpoint_stats(job_id).get("history") or []
        except Exception:  # noqa: BLE001 - a series is informative only
            continue
        for cp in history:
            if cp.get("status") not in ("COMPLETED", "FAILED"):
                continue
            out[(job_id, int(cp["id"]))] = (round((int(cp.get("trigger_timestamp") or 0) - t0_wall_ms) / 1000, 2),
                                            int(cp.get("end_to_end_duration") or 0),
                                            int(cp.get("state_size") or cp.get("checkpointed_size") or 0),
                                            str(cp["status"]))
    return sorted(out.values())


def _op_timeline(history: History, t0_wall_ms: int) -> list[tuple[float, int, str, int]]:
    cells: dict[tuple[int, int, str], int] = {}
    for e in history.entries:
        at = e.complete_ms or e.invoke_ms
        key = (max(0, (at - t0_wall_ms) // 1000), e.worker, e.outcome)
        cells[key] = cells.get(key, 0) + 1
    return [(float(t), w, o, n) for (t, w, o), n in sorted(cells.items())]


def _throughput(history: Any, t0_wall_ms: int) -> list[tuple[float, int]]:
    buckets: dict[int, int] = {}
    for _op, entry, rows in history.operations():
        if entry.outcome == "ok" and rows > 0 and entry.complete_ms:
            b = max(0, (entry.complete_ms - t0_wall_ms) // 1000)
            buckets[b] = buckets.get(b, 0) + 1
    return [(float(b), buckets.get(b, 0)) for b in range(0, (max(buckets) + 1) if buckets else 0)]
