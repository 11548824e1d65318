"""End-to-end capacity: a stepped load, database commit -> Debezium -> Kafka -> Flink -> committed Parquet.

    python -m benchmarks.bench_e2e [--steps 1000,2000,5000,10000,20000] [--step-seconds 60]
                                   [--variants correct,no_dedup] [--state-backend rocksdb]
                                   [--connections 8] [--batch 100] [--checkpoint-ms 3000] [--seed N] [--json]

One fresh stack; per job variant a fresh job started at the source's position now, warmed up (``--warmup-seconds``
at the first step's rate, unmeasured); then each step offers its
rate for ``--step-seconds`` from ``--connections`` connections, each committing transactions of ``--batch``
changes (a multi-row INSERT of new orders, an UPDATE of earlier ones that leaves ``version`` alone, a DELETE of
older ones: 60/30/10 %).  Between steps the pipeline drains, so each step starts from an empty backlog.

Per step, each stage's rate over the step, from the stage's own counters:

- commit: changes committed per second (the load driver, at each COMMIT's return);
- publish: Debezium -> Kafka, the topic's end offsets (every record: orders changes, and the ~8/s heartbeat);
- consume: the publish rate less the slope of the consumer lag over the step (the job's committed offsets, which
  Flink commits per completed checkpoint: a sawtooth), and the lag at the end;
- lake: rows per second into committed Parquet (footers of every file the listing shows), from when each of the
  step's transactions became visible: the input rate scaled by how the delay grew through the step (lake_rate);
- freshness: per transaction, COMMIT return -> the listing that first showed all of its rows (by GTID);
- CPU (% of one core) and RSS per component, checkpoint durations and sizes.

A step is **sustained** when every stage keeps up with the one before (>= 95 %), the lag at its end is within
two checkpoint intervals of load, and freshness p99 <= 2 x the checkpoint interval.  The first stage, in
pipeline order, that falls behind is named the bottleneck; the maximum sustainable rate is the highest step
sustained with every step below it.  After the last step the independent checker judges the job's whole lake
against the binlog (``harness.runner.judge``): it must be CLEAN.  Figures, a plot (SVG) and the verdicts go to
``reports/bench-e2e-<time>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from benchmarks.e2e import (
    CpuMeter,
    LakePoller,
    LakeVisibility,
    SeenFile,
    checkpoint_stats,
    human_bytes,
    key_values,
    latency_summary,
    now_ms,
    stack_overrides,
    start_job,
    topic_end,
)
from flink_job.sql import DEFAULT_STATE_BACKEND, STATE_BACKENDS
from harness import kafka_client
from harness.config import load_config
from harness.pipeline import Pipeline
from harness.report import REPORTS_DIR
from harness.runner import allocate_order_ids, judge, source_position
from harness.stack import Stack
from harness.workload import STATUSES

SUSTAIN = 0.95                # a stage keeps up when it moves >= 95 % of what the stage before it moved
STAGES = ("commit", "publish", "consume", "lake")


def log(message: str) -> None:
    print(f"[bench-e2e {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the load driver ---------------------------------------------------------------------------------------

@dataclass
class Txn:
    gtid: str | None
    changes: int
    commit_ms: int


class SteppedLoad:
    """``connections`` threads, each on its own connection, committing transactions of ``batch`` changes at
    ``rate / connections`` changes per second (paced against a schedule, so a slow commit is caught up on).
    Order ids come from a range no earlier workload on the stack used; each thread keeps its own live ids."""

    def __init__(self, stack: Stack, connections: int, batch: int, seed: int, first_order_id: int) -> None:
        self.stack, self.connections, self.batch = stack, connections, batch
        self.rng = random.Random(seed)
        self.products = [f"product-{self.rng.randrange(10**6):06d}" for _ in range(100)]
        self.next_id = first_order_id
        self.lock = threading.Lock()
        self.live: list[list[int]] = [[] for _ in range(connections)]
        self.errors: list[str] = []

    def _ids(self, n: int) -> range:
        with self.lock:
            first = self.next_id
            self.next_id += n
        return range(first, first + n)

    def run_step(self, rate: float, seconds: float) -> list[Txn]:
        txns: list[Txn] = []
        out_lock = threading.Lock()
        t0 = time.monotonic() + 0.2
        per_conn = rate / self.connections

        def worker(w: int) -> None:
            rng = random.Random(self.rng.random() + w)
            conn = self.stack.database.connect(autocommit=False)
            live = self.live[w]
            done = 0.0
            try:
                with conn.cursor() as cur:
                    while True:
                        due = t0 + done / per_conn
                        if due > t0 + seconds:
                            return
                        delay = due - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        n_upd = min(len(live), round(self.batch * 0.3))
                        n_del = min(max(0, len(live) - n_upd), round(self.batch * 0.1))
                        n_ins = self.batch - n_upd - n_del
                        event_time = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
                        rows = [(oid, rng.randrange(1, 201), rng.choice(self.products), rng.randrange(1, 21),
                                 f"{rng.randrange(100, 50000) / 100:.2f}", rng.choice(STATUSES), event_time)
                                for oid in self._ids(n_ins)]
                        cur.executemany("INSERT INTO orders (order_id, customer_id, product, quantity, unit_price, "
                                        "status, event_time) VALUES (%s,%s,%s,%s,%s,%s,%s)", rows)
                        changes = max(cur.rowcount, 0)
                        # updates of the newest live ids, deletes of the oldest: disjoint
                        upd, dele = live[len(live) - n_upd:], live[:n_del]
                        if upd:
                            # a row an UPDATE leaves as it was is no change (no binlog row): the quantity moves so
                            # the load offers what it says, and the changes are the rows the server says changed
                            cur.execute(f"UPDATE orders SET status = %s, event_time = %s, quantity = quantity + 1 "
                                        f"WHERE order_id IN "
                                        f"({','.join(map(str, upd))})", (rng.choice(STATUSES), event_time))
                            changes += max(cur.rowcount, 0)
                        if dele:
                            cur.execute(f"DELETE FROM orders WHERE order_id IN ({','.join(map(str, dele))})")
                            changes += max(cur.rowcount, 0)
                        conn.commit()
                        commit_ms = now_ms()
                        cur.execute("SELECT @@last_gtid")
                        row = cur.fetchone()
                        del live[:n_del]
                        live.extend(r[0] for r in rows)
                        with out_lock:
                            txns.append(Txn(str(row[0]) if row and row[0] else None, changes, commit_ms))
                        done += self.batch
            except Exception as exc:  # noqa: BLE001 - reported with the step; the step's rate shows the gap
                self.errors.append(f"connection {w}: {type(exc).__name__}: {exc}"[:300])
            finally:
                conn.close()

        threads = [threading.Thread(target=worker, args=(w,), daemon=True, name=f"load-{w}")
                   for w in range(self.connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return txns


# --- per-step sampling -------------------------------------------------------------------------------------

@dataclass
class Sample:
    t_ms: int
    topic_end: int
    committed: int | None      # the job's committed offsets, summed (None before its first checkpoint)


class StageSampler:
    """Every second: the topic's end offsets and the job's committed offsets (Kafka's own counters)."""

    def __init__(self, stack: Stack, group: str) -> None:
        self.bootstrap, self.topic, self.group = stack.kafka.bootstrap, stack.config.kafka.topic, group
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="stage-sampler")

    def sample(self) -> Sample:
        ends = kafka_client.end_offsets(self.bootstrap, self.topic)
        committed = kafka_client.committed_offsets(self.bootstrap, self.group, self.topic)
        # a fresh job has no committed offset on some partitions until its first checkpoint (a negative marker):
        # a sum over some partitions would read as a lag that shrinks at once, a reader faster than the topic
        whole = bool(committed) and all(o >= 0 for o in committed.values())
        return Sample(now_ms(), sum(ends.values()), sum(committed.values()) if whole else None)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):   # a missed sample is a gap, not the end
                self.samples.append(self.sample())
            self._stop.wait(1.0)

    def __enter__(self) -> StageSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def between(self, a_ms: int, b_ms: int) -> tuple[Sample | None, Sample | None]:
        inside = [s for s in self.samples if a_ms <= s.t_ms <= b_ms]
        return (inside[0], inside[-1]) if inside else (None, None)

    def lag_slope(self, a_ms: int, b_ms: int) -> float | None:
        return lag_slope(self.samples, a_ms, b_ms)


def lag_slope(samples: list[Sample], a_ms: int, b_ms: int) -> float | None:
    """How fast the consumer lag grew between ``a_ms`` and ``b_ms``, records per second (least squares over
    the samples).  The job commits its offsets per checkpoint, so the lag is a sawtooth of a checkpoint's
    records; its slope is what the reader falls behind (or catches up) by, free of where the window cuts
    the teeth (a window of the offsets themselves missed up to a checkpoint's records at its end)."""
    pts = [(s.t_ms / 1000, s.topic_end - s.committed) for s in samples
           if a_ms <= s.t_ms <= b_ms and s.committed is not None]
    if len(pts) < 5:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


class LakeRows:
    """Committed lake rows over time and per transaction (GTID), from every file the poller sees."""

    def __init__(self, watch: LakeVisibility) -> None:
        self.watch = watch
        self.lock = threading.Lock()
        self.files: list[tuple[int, int]] = []              # (first seen ms, rows)
        self.per_gtid: dict[str, list[int]] = {}            # gtid -> [rows seen, ms when the count last grew]

    def on_new(self, f: SeenFile) -> None:
        gtids = self.watch.gtids(f)
        with self.lock:
            self.files.append((f.first_seen_ms, len(gtids)))
            for g in gtids:
                if g is None:
                    continue
                entry = self.per_gtid.setdefault(g, [0, f.first_seen_ms])
                entry[0] += 1
                entry[1] = max(entry[1], f.first_seen_ms)

    def total(self) -> int:
        with self.lock:
            return sum(n for _, n in self.files)

    def visible_ms(self, txn: Txn) -> int | None:
        """When every row of the transaction was first in committed Parquet (None: not yet)."""
        with self.lock:
            entry = self.per_gtid.get(txn.gtid or "")
            return entry[1] if entry is not None and entry[0] >= txn.changes else None


def lake_rate(txns: list[Txn], visible_ms: Callable[[Txn], int | None], until_ms: int) -> float:
    """Rows per second the lake took in over a step, from when each of the step's transactions became visible
    (a transaction never seen counts as visible at ``until_ms``, the end of the wait for it).

    Rows arrive in the lake once per checkpoint, so a window of the lake's row count is off by up to a
    checkpoint's rows at each end (3 s of 60: the 95 % rule failed a lake that kept up).  Instead: the input
    rate times (commit-time spread / visible-time spread) between the first and the last tenth of the
    transactions by commit time.  A lake that keeps up shows every transaction the same delay later (ratio 1);
    one that falls behind shows the delay growing through the step (output = input / (1 + the delay's slope))."""
    seen = sorted((t.commit_ms, v if (v := visible_ms(t)) is not None else until_ms, t.changes) for t in txns)
    if len(seen) < 20:
        return 0.0
    tenth = len(seen) // 10
    first, last = seen[:tenth], seen[-tenth:]

    def mean(xs: list[tuple[int, int, int]], i: int) -> float:
        return sum(x[i] for x in xs) / len(xs)

    commit_spread = mean(last, 0) - mean(first, 0)
    visible_spread = mean(last, 1) - mean(first, 1)
    span_s = (seen[-1][0] - seen[0][0]) / 1000
    if commit_spread <= 0 or span_s <= 0:
        return 0.0
    rate_in = sum(x[2] for x in seen) / span_s
    return rate_in * commit_spread / max(visible_spread, 1.0)


# --- one step ----------------------------------------------------------------------------------------------

@dataclass
class StepResult:
    offered: float
    seconds: float
    rates: dict[str, float]                    # stage -> changes (records, rows) per second over the step
    lag_end: int | None                        # consumer lag (records) at the step's end
    freshness_ms: dict[str, Any]
    not_visible: int                           # transactions not visible by the end of the drain
    drain_s: float
    cpu: dict[str, Any]
    rss: dict[str, int]
    checkpoints: dict[str, Any]
    sustained: bool = False
    bottleneck: str | None = None
    why: str = ""
    load_errors: list[str] = field(default_factory=list)


def judge_step(r: StepResult, checkpoint_ms: int) -> None:
    """Sustained, or the first stage in pipeline order that fell behind and why."""
    prev = r.offered
    for stage in STAGES:
        got = r.rates.get(stage, 0.0)
        if stage == "lake":   # rows are changes: the topic's records also hold tombstones and heartbeats
            prev = min(prev, r.rates.get("commit", prev))
        if got < SUSTAIN * prev:
            r.bottleneck = "database/load driver" if stage == "commit" else {
                "publish": "Debezium (Kafka Connect)", "consume": "Flink job (reading)",
                "lake": "Flink job (writing/committing)"}[stage]
            r.why = f"{stage} {got:.0f}/s < {SUSTAIN:.0%} of the stage before ({prev:.0f}/s)"
            return
        prev = got
    lag_bound = r.offered * 2 * checkpoint_ms / 1000
    if r.lag_end is not None and r.lag_end > lag_bound:
        r.bottleneck, r.why = "Flink job (reading)", f"lag {r.lag_end} records at the step's end > {lag_bound:.0f}"
        return
    p99 = r.freshness_ms.get("p99")
    if p99 is None or p99 > 2 * checkpoint_ms or r.not_visible:
        r.bottleneck = "Flink job (committing)"
        r.why = f"freshness p99 {p99} ms > {2 * checkpoint_ms} ms" if p99 is not None and p99 > 2 * checkpoint_ms \
            else f"{r.not_visible} transactions never visible"
        return
    r.sustained = True


def run_step(stack: Stack, load: SteppedLoad, sampler: StageSampler, lake: LakeRows, job: Any, rate: float,
             seconds: float, checkpoint_ms: int, drain_s: float) -> StepResult:
    cpu = CpuMeter(stack)
    cpu.start()
    start_ms = now_ms()
    errors_before = len(load.errors)
    txns = load.run_step(rate, seconds)
    end_ms = now_ms()
    usage, rss = cpu.stop(), cpu.rss()
    dur = (end_ms - start_ms) / 1000
    committed = sum(t.changes for t in txns)
    # a stage's rate over the step; the consumer's offsets move per checkpoint, so its window is the samples'
    a, b = sampler.between(start_ms, end_ms + checkpoint_ms)
    publish = (b.topic_end - a.topic_end) / ((b.t_ms - a.t_ms) / 1000) if a and b and b.t_ms > a.t_ms else 0.0
    # the reader: what was published, less what the lag grew by (its slope over the step)
    slope = sampler.lag_slope(start_ms, end_ms)
    consume = max(0.0, publish - slope) if slope is not None else 0.0
    lag_end = (b.topic_end - b.committed) if b and b.committed is not None else None
    # drain: until every transaction of the step is visible (bounded), so the next step starts empty
    t_drain = time.monotonic()
    while time.monotonic() - t_drain < drain_s and any(lake.visible_ms(t) is None for t in txns):
        time.sleep(0.5)
    drained = time.monotonic() - t_drain
    lake_in = lake_rate(txns, lake.visible_ms, now_ms())
    lat = [v - t.commit_ms for t in txns if (v := lake.visible_ms(t)) is not None]
    result = StepResult(
        offered=rate, seconds=round(dur, 1),
        rates={"commit": round(committed / dur), "publish": round(publish), "consume": round(consume),
               "lake": round(lake_in)},
        lag_end=lag_end, freshness_ms=latency_summary(lat), not_visible=len(txns) - len(lat),
        drain_s=round(drained, 1), cpu=usage, rss=rss, checkpoints=_checkpoints_between(job, start_ms, end_ms),
        load_errors=load.errors[errors_before:][:5])
    judge_step(result, checkpoint_ms)
    return result


def _checkpoints_between(job: Any, a_ms: int, b_ms: int) -> dict[str, Any]:
    """Durations and sizes of the checkpoints triggered during the step (Flink's checkpoint history)."""
    try:
        r = requests.get(f"{job.pipeline.rest}/jobs/{job.job_id}/checkpoints", timeout=5)
        r.raise_for_status()
        hist = [c for c in r.json().get("history", []) if a_ms <= int(c.get("trigger_timestamp", 0)) <= b_ms]
    except (requests.RequestException, ValueError) as exc:
        return {"error": str(exc)}
    done = [c for c in hist if c.get("status") == "COMPLETED"]
    durs = [int(c.get("end_to_end_duration") or 0) for c in done]
    return {"completed": len(done), "failed": sum(c.get("status") == "FAILED" for c in hist),
            "duration_ms_max": max(durs, default=None),
            "duration_ms_avg": round(sum(durs) / len(durs)) if durs else None,
            "state_size_max": max((int(c.get("state_size") or 0) for c in done), default=None),
            "checkpointed_size_max": max((int(c.get("checkpointed_size") or 0) for c in done), default=None)}


# --- one variant: fresh job, steps, verdict ----------------------------------------------------------------

def run_variant(stack: Stack, variant: str, state_backend: str, steps: list[float], args: argparse.Namespace,
                seed: int) -> dict[str, Any]:
    binlog_start, offsets = source_position(stack)
    prefix = f"bench/e2e-{variant}-{now_ms()}"
    ids = allocate_order_ids(stack, int(sum(steps) * args.step_seconds * 1.2) + 10_000)
    extra = key_values(args.flink_option, "--flink-option")
    job = start_job(stack, prefix, offsets, checkpoint_interval_ms=args.checkpoint_ms, name=f"bench-e2e-{variant}",
                    variant=variant, state_backend=state_backend, extra=extra)
    log(f"{variant}: job {job.job_id} RUNNING into s3://{stack.config.s3.bucket}/{prefix}")
    load = SteppedLoad(stack, args.connections, args.batch, seed, ids)
    watch = LakeVisibility.for_stack(stack, prefix)
    lake = LakeRows(watch)
    out: dict[str, Any] = {"variant": variant, "state_backend": state_backend, "job_id": job.job_id,
                           "lake_prefix": prefix, "steps": []}
    try:
        with StageSampler(stack, Pipeline.consumer_group(job.config)) as sampler, \
                LakePoller(watch, args.poll_ms / 1000, on_new=lake.on_new) as poller:
            if args.warmup_seconds > 0 and steps:
                # unmeasured: a job's first seconds compile its generated code on two busy cores (the second
                # variant's first step had freshness p99 11.6 s without this, 4.4 s on the next step)
                log(f"{variant}: warm-up, {steps[0]:g} changes/s for {args.warmup_seconds:g}s (not measured)")
                load.run_step(steps[0], args.warmup_seconds)
                time.sleep(2 * args.checkpoint_ms / 1000)
            for rate in steps:
                log(f"{variant}: step {rate:g} changes/s for {args.step_seconds:g}s")
                r = run_step(stack, load, sampler, lake, job, rate, args.step_seconds, args.checkpoint_ms,
                             args.drain_seconds)
                out["steps"].append(asdict(r))
                log(f"{variant}: {rate:g}/s -> rates {r.rates}, lag {r.lag_end}, freshness p99 "
                    f"{r.freshness_ms.get('p99')} ms: " + ("sustained" if r.sustained else
                                                            f"NOT sustained ({r.bottleneck}: {r.why})"))
                if not r.sustained and args.stop_after_failure:
                    break
            out["poller_errors"] = poller.errors[:5]
        out["final_checkpoints"] = checkpoint_stats(job)
        log(f"{variant}: judging the whole lake against the binlog (independent checker)")
        t0 = time.monotonic()
        verdict, qstats, snap = judge(stack, job.pipeline, job.config, prefix, binlog_start, offsets, None,
                                      args.judge_timeout, context={"benchmark": "bench_e2e", "variant": variant})
        out["verdict"] = {"clean": verdict.clean, "summary": verdict.summary(), "quiescence": qstats,
                          "judge_s": round(time.monotonic() - t0, 1), "lake": snap.summary()}
    finally:
        job.cancel()
    sustained = [s["offered"] for s in out["steps"] if s["sustained"]]
    first_fail = next((s for s in out["steps"] if not s["sustained"]), None)
    out["max_sustained"] = max((r for r in sustained if first_fail is None or r < first_fail["offered"]),
                               default=None)
    out["bottleneck"] = (first_fail["bottleneck"], first_fail["why"]) if first_fail else None
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for v in result["variants"]:
        offered = [s["offered"] for s in v["steps"]]
        for stage, style in (("commit", ":"), ("lake", "-")):
            ax1.plot(offered, [s["rates"][stage] for s in v["steps"]], style, marker="o",
                     label=f"{v['variant']} {stage}")
        ax2.plot(offered, [s["freshness_ms"].get("p99") for s in v["steps"]], marker="o", label=f"{v['variant']} p99")
        ax2.plot(offered, [s["freshness_ms"].get("p50") for s in v["steps"]], ":", marker=".",
                 label=f"{v['variant']} p50")
    lim = max((s["offered"] for v in result["variants"] for s in v["steps"]), default=1)
    ax1.plot([0, lim], [0, lim], color="grey", lw=0.5)
    ax1.set(xlabel="offered changes/s", ylabel="achieved per stage (changes/s)", title="rate per stage")
    ax2.axhline(2 * result["checkpoint_ms"], color="red", lw=0.8, ls="--", label="2 x checkpoint interval")
    ax2.set(xlabel="offered changes/s", ylabel="commit -> committed Parquet (ms)", title="freshness")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)


def print_report(result: dict[str, Any]) -> None:
    print(f"seed {result['seed']}, {result['cores']} cores, stack up in {result['stack_up_s']}s, checkpoint "
          f"interval {result['checkpoint_ms']} ms, {result['connections']} connections x {result['batch']} "
          "changes per transaction")
    for v in result["variants"]:
        print(f"== job {v['variant']} ({v['state_backend']} state)")
        print(f"  {'offered':>8} {'commit':>7} {'publish':>7} {'consume':>7} {'lake':>7} {'lag end':>8} "
              f"{'fresh p50':>9} {'p99':>6}  top CPU (% of a core)")
        for s in v["steps"]:
            r, f = s["rates"], s["freshness_ms"]
            top = ", ".join(f"{k} {p}" for k, p in list(s["cpu"]["process_cpu_pct"].items())[:3])
            print(f"  {s['offered']:>8.0f} {r['commit']:>7} {r['publish']:>7} {r['consume']:>7} {r['lake']:>7} "
                  f"{s['lag_end'] if s['lag_end'] is not None else '-':>8} {f.get('p50', '-'):>9} "
                  f"{f.get('p99', '-'):>6}  {top}  "
                  + ("ok" if s["sustained"] else f"NOT sustained: {s['bottleneck']} ({s['why']})"))
            cp = s["checkpoints"]
            if "error" not in cp:
                print(f"           checkpoints {cp['completed']} ok / {cp['failed']} failed, duration avg "
                      f"{cp['duration_ms_avg']} max {cp['duration_ms_max']} ms, state "
                      f"{human_bytes(cp['state_size_max'])}, uploaded {human_bytes(cp['checkpointed_size_max'])}; "
                      f"RSS TaskManager(s) " + ", ".join(f"{k} {human_bytes(b)}" for k, b in s["rss"].items()
                                                        if "taskmanager" in k))
        print(f"  maximum sustainable rate: {v['max_sustained'] or 'none of the steps'} changes/s"
              + (f"; first bottleneck: {v['bottleneck'][0]} ({v['bottleneck'][1]})" if v["bottleneck"] else ""))
        verdict = v.get("verdict")
        if verdict:
            print(f"  independent checker over the whole run: {'CLEAN' if verdict['clean'] else 'NOT CLEAN'} "
                  f"(judged in {verdict['judge_s']}s)")
            if not verdict["clean"]:
                print("    " + verdict["summary"].replace("\n", "\n    "))
    by = {v["variant"]: v for v in result["variants"]}
    if "correct" in by and "no_dedup" in by:
        for a, b in zip(by["correct"]["steps"], by["no_dedup"]["steps"], strict=False):
            if b["rates"]["lake"]:
                print(f"cost of exactly-once at {a['offered']:.0f}/s: lake rate correct/no_dedup = "
                      f"{a['rates']['lake'] / b['rates']['lake']:.2f}, freshness p99 "
                      f"{a['freshness_ms'].get('p99')} vs {b['freshness_ms'].get('p99')} ms")
    print(f"figures: {result['out']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="benchmarks.bench_e2e", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="1000,2000,5000,10000,20000", help="offered changes/s per step")
    ap.add_argument("--step-seconds", type=float, default=60)
    ap.add_argument("--warmup-seconds", type=float, default=20,
                    help="each job first runs the first step's rate this long, unmeasured (0: none)")
    ap.add_argument("--variants", default="correct,no_dedup", help="job variants, one after the other")
    ap.add_argument("--state-backend", default=DEFAULT_STATE_BACKEND, choices=tuple(STATE_BACKENDS))
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100, help="changes per transaction")
    ap.add_argument("--checkpoint-ms", type=int, default=3000)
    ap.add_argument("--poll-ms", type=int, default=250, help="lake listing interval")
    ap.add_argument("--drain-seconds", type=float, default=90, help="after each step, wait this long at most")
    ap.add_argument("--judge-timeout", type=float, default=600)
    ap.add_argument("--stop-after-failure", action="store_true", help="no further steps once one is not sustained")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=None, help="directory for the figures (default reports/bench-e2e-<time>)")
    ap.add_argument("--flink-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a further Flink setting of the job (a tuning under test), e.g. "
                         "execution.checkpointing.unaligned.enabled=true")
    ap.add_argument("--stack-option", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a stack setting under test, e.g. flink.taskmanager_memory=2g or connect.connector_file=PATH "
                         "(a copy of the connector template with Debezium or producer settings changed)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    steps = [float(x) for x in args.steps.split(",") if x.strip()]
    log(f"seed {seed} (replay with --seed {seed})")
    out = Path(args.out) if args.out else REPORTS_DIR / f"bench-e2e-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    import psutil

    result: dict[str, Any] = {"seed": seed, "cores": psutil.cpu_count(), "checkpoint_ms": args.checkpoint_ms,
                              "connections": args.connections, "batch": args.batch, "args": vars(args),
                              "out": str(out), "variants": []}
    config = load_config().with_overrides(**stack_overrides(args.stack_option))
    with Stack.up(config, label="bench-e2e") as stack:
        result["stack_up_s"] = round(stack.timings["total"], 1)
        result["topic_end_at_start"] = topic_end(stack)
        for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
            result["variants"].append(run_variant(stack, variant, args.state_backend, steps, args, seed))
    (out / "figures.json").write_text(json.dumps(result, indent=1, default=str))
    plot(result, out / "rate-and-freshness.svg")
    print_report(result)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    ok = all(v.get("verdict", {}).get("clean") for v in result["variants"])
    if not ok:
        log("a variant's lake was NOT CLEAN: see the verdicts above")
    return result


if __name__ == "__main__":
    main()
