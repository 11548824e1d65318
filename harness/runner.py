"""One chaos run, end to end: generator -> database -> pipeline -> lake -> checker -> report.

Isolation between runs on one stack (measured cheaper than a fresh stack, and honest): the previous run's
rows are deleted, the binlog position and the topic's end offsets are captured, and a fresh job (no state)
starts reading exactly at those offsets into its own lake prefix; truth is read from that binlog position,
and order ids are disjoint per run.  Nothing of an earlier run is in this run's truth, topic range or lake.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flink_job.sql import JobConfig
from harness import kafka_client, truth
from harness.checker import ExactlyOnceChecker, Verdict
from harness.lake import LakeReader
from harness.nemesis import NemesisRunner, Schedule
from harness.pipeline import Pipeline
from harness.stack import Stack
from harness.workload import WorkloadClient, WorkloadConfig, generate, summarize


@dataclass(frozen=True)
class RunSpec:
    name: str
    seed: int
    duration_s: float = 20.0
    rate: float = 100.0
    workload: dict[str, Any] = field(default_factory=dict)      # WorkloadConfig overrides
    schedule: Callable[[random.Random, float], Schedule] = lambda rng, d: Schedule.none()
    job_variant: str = "correct"
    checkpoint_interval_ms: int = 3000
    quiesce_timeout_s: float = 120.0
    replay: str = ""


@dataclass
class LagSample:
    t: float
    lag: int
    end: int


class LagMonitor:
    """Samples the job's consumer lag (topic end - offsets committed on checkpoint) while a run goes on."""

    def __init__(self, bootstrap: str, group: str, topic: str, interval_s: float = 0.5) -> None:
        self.bootstrap, self.group, self.topic, self.interval_s = bootstrap, group, topic, interval_s
        self.samples: list[LagSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lag-monitor")

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                ends = kafka_client.end_offsets(self.bootstrap, self.topic, timeout=2)
                done = kafka_client.committed_offsets(self.bootstrap, self.group, self.topic, timeout=2)
            except Exception:  # noqa: BLE001 - the broker may be down during a fault; that is a gap, not an error
                continue
            lag = sum(max(0, e - max(0, done.get(p, -1))) for p, e in ends.items())
            self.samples.append(LagSample(time.monotonic() - self.t0, lag, sum(ends.values())))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def recovery_after(self, t: float) -> float | None:
        """Seconds from ``t`` until the lag was first back to zero (None if it never was while sampled)."""
        for s in self.samples:
            if s.t >= t and s.lag == 0:
                return round(s.t - t, 2)
        return None


def prepare_source(stack: Stack) -> tuple[tuple[str, int], dict[int, int]]:
    """Empty the orders table, let Debezium publish that, then capture binlog position and topic ends."""
    with stack.database.connect() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM orders")
        conn.commit()
    db = stack.database.endpoints()
    start = truth.binlog_position(db["host"], db["port"], db["root_user"], db["root_password"])
    bootstrap, topic = stack.kafka.bootstrap, stack.config.kafka.topic
    # wait until the topic stops growing (the deletes above have been published)
    last, stable_since = None, time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ends = kafka_client.end_offsets(bootstrap, topic)
        if ends != last:
            last, stable_since = ends, time.monotonic()
        elif time.monotonic() - stable_since > 2.0:
            break
        time.sleep(0.3)
    assert last is not None
    return start, last


def quiesce(stack: Stack, pipeline: Pipeline, job_id: str, gt: truth.GroundTruth, start_offsets: dict[int, int],
            group: str, timeout_s: float) -> tuple[str | None, dict[str, Any]]:
    """Wait until the pipeline has caught up; returns (None, stats) or (why it is STALLED, stats).

    Caught up = (1) every committed change is in the topic (Debezium has published it), then (2) the job has
    committed offsets at least up to the topic's end (it has read it all and a checkpoint completed), then
    (3) one more checkpoint completed, so the sink's files of that checkpoint are committed too.
    """
    bootstrap, topic = stack.kafka.bootstrap, stack.config.kafka.topic
    deadline = time.monotonic() + timeout_s
    t0 = time.monotonic()
    wanted = {(r["order_id"], r["version"], r["is_delete"]) for r in
              gt.changes.select(["order_id", "version", "is_delete"]).to_pylist()}
    stats: dict[str, Any] = {"changes": len(wanted)}
    missing: set[tuple[int, int, bool]] = set(wanted)
    ends: dict[int, int] = {}
    while time.monotonic() < deadline:
        try:
            ends = kafka_client.end_offsets(bootstrap, topic)
            records = kafka_client.read_range(bootstrap, topic, start_offsets, ends, timeout=30)
        except Exception as exc:  # noqa: BLE001 - keep waiting while the broker recovers
            stats["last_error"] = str(exc)
            time.sleep(1)
            continue
        missing = wanted - {_identity(r.value) for r in records if r.value}
        if not missing:
            break
        time.sleep(1)
    stats["published_s"] = round(time.monotonic() - t0, 2)
    if missing:
        return (f"{len(missing)} committed change(s) never reached the topic (Debezium did not publish them), "
                f"e.g. {sorted(missing)[:3]}"), stats
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
    before = pipeline.latest_checkpoint_id(job_id)
    while time.monotonic() < deadline:
        if (pipeline.latest_checkpoint_id(job_id) or -1) > (before or -1):
            stats["quiesced_s"] = round(time.monotonic() - t0, 2)
            return None, stats
        time.sleep(0.3)
    return "no checkpoint completed after the job caught up", stats


def _identity(value: bytes) -> tuple[int, int, bool] | None:
    try:
        env = json.loads(value)
        img = env["before"] if env["op"] == "d" else env["after"]
        return int(img["order_id"]), int(img["version"]), env["op"] == "d"
    except (ValueError, KeyError, TypeError):
        return None


def run(stack: Stack, spec: RunSpec, index: int = 0, pipeline: Pipeline | None = None) -> dict[str, Any]:
    """Run one scenario on a healthy stack; returns the result dict (verdict, timeline, stats)."""
    pipeline = pipeline or Pipeline(stack)
    rng = random.Random(spec.seed)
    started = time.monotonic()
    start_pos, start_offsets = prepare_source(stack)
    prefix = f"runs/{spec.name}-seed{spec.seed}-{index}-{int(time.time())}"
    job = JobConfig(
        bootstrap=stack.kafka.bootstrap, lake_root=f"s3://{stack.config.s3.bucket}/{prefix}",
        topic=stack.config.kafka.topic, group_id=f"cdc-chaos-{spec.name}-{index}-{int(time.time())}",
        checkpoint_interval_ms=spec.checkpoint_interval_ms, variant=spec.job_variant,
        startup_mode="specific-offsets", startup_offsets=tuple(sorted(start_offsets.items())),
    )
    job_id = pipeline.submit(job)
    pipeline.wait_running(job_id)

    overrides = dict(spec.workload)
    if overrides.pop("anchor_at_midnight", False):     # event time starts 10 s before a midnight UTC
        overrides["anchor_ms"] = int(time.time() // 86400 * 86400 * 1000) - 10_000
    wl_cfg = WorkloadConfig(seed=spec.seed, duration_s=spec.duration_s, rate=spec.rate,
                            first_order_id=(index + 1) * 10_000_000 + 1, **overrides)
    workload = generate(wl_cfg)
    client = WorkloadClient(workload, stack.database.connect, stack.config.database.database)
    client.seed_customers()
    schedule = spec.schedule(rng, spec.duration_s)
    nemesis = NemesisRunner(stack, schedule, rng, recovery=pipeline)
    monitor = LagMonitor(stack.kafka.bootstrap, pipeline.consumer_group(job), stack.config.kafka.topic)
    t0 = time.monotonic() + 0.5
    t0_wall_ms = int((time.time() + 0.5) * 1000)
    monitor.start(t0)
    nemesis.start(t0)
    history = client.run(start_at=t0)
    nemesis.finish()
    workload_s = time.monotonic() - t0

    db = stack.database.endpoints()
    gt = truth.collect(db, history, start=start_pos)
    stalled, qstats = quiesce(stack, pipeline, pipeline.current_job_id or job_id, gt, start_offsets,
                              pipeline.consumer_group(job), spec.quiesce_timeout_s)
    monitor.stop()
    lake = LakeReader.for_s3(stack.s3.endpoints(), prefix).snapshot()
    timeline = nemesis.timeline_dicts()
    recovery = []
    for ev in timeline:
        if ev["phase"] == "heal":
            t_heal = (ev["wall_ms"] - t0_wall_ms) / 1000
            recovery.append({"nemesis": ev["nemesis"], "healed_at_s": round(t_heal, 2),
                             "lag_zero_after_s": monitor.recovery_after(t_heal)})
    verdict: Verdict = ExactlyOnceChecker().check(
        gt, lake, stalled=stalled,
        context={"scenario": spec.name, "seed": spec.seed, "lake_prefix": prefix, "job_variant": spec.job_variant})
    try:
        job_status = pipeline.status(pipeline.current_job_id or job_id)
    except Exception as exc:  # noqa: BLE001 - status is informative only
        job_status = {"error": str(exc)}
    pipeline.cancel_all()
    throughput = _throughput(history, t0_wall_ms)
    stats = {"wall_s": round(time.monotonic() - started, 1), "workload_s": round(workload_s, 1),
             "workload": summarize(history), "quiescence": qstats, "recovery": recovery,
             "nemesis_errors": nemesis.errors, "job": job_status, "lake": lake.summary(),
             "lag_samples": [(round(s.t, 2), s.lag) for s in monitor.samples]}
    return {"name": spec.name, "seed": spec.seed, "replay": spec.replay, "verdict": verdict.to_dict(),
            "summary": verdict.summary(), "timeline": timeline, "schedule": schedule.describe(), "stats": stats,
            "throughput": throughput, "t0_wall_ms": t0_wall_ms}


def _throughput(history: Any, t0_wall_ms: int) -> list[tuple[float, int]]:
    buckets: dict[int, int] = {}
    for _op, entry, rows in history.operations():
        if entry.outcome == "ok" and rows > 0 and entry.complete_ms:
            b = max(0, (entry.complete_ms - t0_wall_ms) // 1000)
            buckets[b] = buckets.get(b, 0) + 1
    return [(float(b), buckets.get(b, 0)) for b in range(0, (max(buckets) + 1) if buckets else 0)]
