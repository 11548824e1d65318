"""Flink job figures on a real stack: throughput from a pre-loaded backlog, and commit->lake freshness.

    python -m benchmarks.bench_job [--changes N] [--rate R] [--seconds S] [--only throughput|freshness]
                                   [--freshness-state empty|backlog|both]
                                   [--parallelism 1,2] [--checkpoint-ms 3000] [--seed N] [--json]

Throughput: about N real Debezium change events are put in ``orders_cdc`` first (bulk SQL into the database
- multi-row INSERTs, then range UPDATEs and DELETEs - which Debezium publishes; the Debezium publish rate is a
side figure), then a fresh job starts at the offsets before that backlog.  The changes are counted in the
topic, not assumed: the records with ``source.table = 'orders'`` between the start offsets and the binlog
position after the last statement (distinct binlog coordinates ``(file, pos, row, op)``, the job's change
identity; the topic also holds heartbeats, every second).  changes/s = that count / time from job RUNNING
(Flink's own timestamp of the switch, before the tasks deploy) until as many rows are in committed Parquet
(row counts from Parquet footers).  The rows' ``processed_ms`` split
that time into start-up, processing and the wait for the committing checkpoint.  The same backlog is
replayed once per ``--parallelism`` value, in that order, each into its own lake prefix (the first job on a
fresh stack also pays the TaskManager's JIT warm-up: ``--parallelism 1,2,1`` shows how much).

Freshness: with a fresh job running, the seeded workload (``harness.workload``) applies R changes/s for S s;
for every committed change, freshness = first time its row is visible in committed Parquet (a lake listing
every ``--poll-ms``) - commit time in the database (the history's ``complete_ms``).  A committed transaction's
changes are the topic's orders records carrying its GTID (``@@last_gtid`` after COMMIT, in the history); each is
matched to its lake row by binlog coordinates (``(src_file, src_pos, src_row, op)``; the row's ``src_gtid``
must agree).  First-seen is the end of
the first listing that showed the file, an upper bound; the lower bound (the listing before) is reported too.
Each job is measured twice (``--freshness-state both``): fresh, its state as good as empty, and after working
through the ``--changes`` backlog, its state holding them as a job's that has run a while (600k changes are ten
minutes at 1,000/s, a sixth of the dedup TTL).  A fresh job flatters a heap backend's full snapshots.  With
``--only freshness`` an unmeasured run of today's job (15 s) warms the TaskManager's JIT first, as the throughput
runs do otherwise (``--no-warmup`` skips it).

Alongside: CPU per stack component and per TaskManager thread (Flink names task threads after their operator
chain) and the job's checkpoints (durations; state and checkpointed size of the latest completed one, and
the state of the deduplication operator), so a figure short of its target says what limited it.  The job
reads Kafka directly (not through the stack's network proxy, which exists for fault injection).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.baseline import BASELINE_REV, BaselineJob, baseline_job
from benchmarks.e2e import (
    ChangeId,
    CpuMeter,
    LakePoller,
    LakeVisibility,
    SeenFile,
    binlog_end,
    checkpoint_stats,
    human_bytes,
    key_values,
    latency_summary,
    now_ms,
    read_topic_changes,
    start_job,
    topic_end,
)
from flink_job.sql import DEFAULT_DEDUP_TTL_MS, DEFAULT_STATE_BACKEND
from harness.config import load_config
from harness.runner import wait_caught_up
from harness.stack import Stack
from harness.workload import ORDER_KINDS, STATUSES, WorkloadClient, WorkloadConfig, generate

#: targets from the issue
THROUGHPUT_TARGET = 20_000          # changes/s
FRESHNESS_SLACK_MS = 2_000          # p99 <= checkpoint interval + this
STEADY_RATE = 1_000                 # changes/s the state extrapolation assumes (the freshness target's rate)

PRELOAD_FIRST_ORDER_ID = 1_000_000_000
FRESHNESS_FIRST_ORDER_ID = 2_000_000_000
FRESHNESS_ID_STRIDE = 100_000_000   # each freshness run writes its own ids


def log(message: str) -> None:
    print(f"[bench-job {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- pre-load: a backlog of real Debezium envelopes ----------------------------------------------------------

@dataclass(frozen=True)
class PreloadPlan:
    """N changes as the workload's default mix (50 % inserts, 35 % updates, 15 % deletes): ids
    ``first .. first+inserts-1`` are inserted, the first ``updates`` of them updated once, the last ``deletes``
    of them deleted (disjoint from the updated ones).  What Debezium publishes of it is counted in the topic.
    The updates bump ``version``, so the baseline job (which deduplicates on it) keeps every change too and both
    jobs write the same rows."""

    inserts: int
    updates: int
    deletes: int
    first_order_id: int

    @classmethod
    def of(cls, changes: int, first_order_id: int) -> PreloadPlan:
        updates, deletes = round(changes * 0.35), round(changes * 0.15)
        return cls(changes - updates - deletes, updates, deletes, first_order_id)

    @property
    def changes(self) -> int:
        return self.inserts + self.updates + self.deletes


def _utc_now_literal() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def preload(stack: Stack, plan: PreloadPlan, seed: int, chunk: int = 5000,
            timeout_s: float = 900) -> tuple[dict[int, int], int, dict[str, Any]]:
    """Apply the plan with bulk SQL and wait until Debezium has published all of it (every topic partition
    past the binlog position after the last statement).

    Returns the topic offsets before the backlog, the number of distinct orders changes Debezium published
    there (what the lake must hold) and the figures (SQL time, Debezium publish rate, topic counts).
    """
    rng = random.Random(seed)
    products = [f"product-{rng.randrange(10**6):06d}" for _ in range(200)]
    start_offsets = topic_end(stack)
    first, end = plan.first_order_id, plan.first_order_id + plan.inserts
    t0 = time.monotonic()
    with stack.database.connect() as conn, conn.cursor() as cur:
        # all-%s VALUES, so pymysql sends each chunk as one multi-row INSERT
        for a in range(first, end, chunk):
            event_time = _utc_now_literal()
            rows = [(oid, rng.randrange(1, 201), rng.choice(products), rng.randrange(1, 21),
                     f"{rng.randrange(100, 50000) / 100:.2f}", rng.choice(STATUSES), event_time)
                    for oid in range(a, min(a + chunk, end))]
            cur.executemany("INSERT INTO orders (order_id, customer_id, product, quantity, unit_price, status, "
                            "event_time, version) VALUES (%s,%s,%s,%s,%s,%s,%s,1)", rows)
            conn.commit()
        status_list = ",".join(f"'{s}'" for s in STATUSES)
        for a in range(first, first + plan.updates, chunk):
            b = min(a + chunk, first + plan.updates) - 1
            cur.execute(f"UPDATE orders SET status = ELT(1 + (order_id + %s) %% {len(STATUSES)}, {status_list}), "
                        "quantity = quantity %% 20 + 1, version = version + 1, event_time = %s "
                        "WHERE order_id BETWEEN %s AND %s", (seed, _utc_now_literal(), a, b))
            conn.commit()
        for a in range(end - plan.deletes, end, chunk):
            cur.execute("DELETE FROM orders WHERE order_id BETWEEN %s AND %s", (a, min(a + chunk, end) - 1))
            conn.commit()
    sql_s = time.monotonic() - t0
    mark = binlog_end(stack)
    log(f"pre-load SQL done in {sql_s:.1f}s; reading the topic until Debezium is past binlog position {mark}")
    topic = read_topic_changes(stack, start_offsets, mark, timeout_s=timeout_s)
    publish_s = time.monotonic() - t0
    changes = len(topic.distinct)
    figures = {"changes": changes, "plan": asdict(plan), "topic_orders_records": len(topic.changes),
               "topic_records": topic.records, "topic_records_per_table": topic.per_table,
               "sql_s": round(sql_s, 1), "sql_changes_per_s": round(changes / sql_s),
               "debezium_published_s": round(publish_s, 1),
               "debezium_changes_per_s": round(changes / publish_s), "start_offsets": start_offsets,
               "end_offsets": topic.end_offsets, "binlog_mark": list(mark)}
    if changes != plan.changes:
        figures["note"] = f"the plan has {plan.changes} changes, the topic {changes}"
    return start_offsets, changes, figures


# --- throughput ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobUnderTest:
    """Which job a measurement runs: today's (with a state backend) or an older revision's."""

    state_backend: str = DEFAULT_STATE_BACKEND
    baseline: BaselineJob | None = None
    extra: tuple[tuple[str, str], ...] = ()     # further Flink settings of today's job (a tuning under test)

    @property
    def label(self) -> str:
        if self.baseline:
            return f"baseline {self.baseline.rev}"
        return f"current ({self.state_backend}" + "".join(f", {k}={v}" for k, v in self.extra) + ")"

    def options(self) -> dict[str, Any]:
        if self.baseline:
            return {"baseline": self.baseline}
        return {"state_backend": self.state_backend, "extra": dict(self.extra)}


def measure_throughput(stack: Stack, start_offsets: dict[int, int], changes: int, parallelism: int,
                       checkpoint_ms: int, poll_s: float, timeout_s: float,
                       job_kind: JobUnderTest = JobUnderTest()) -> dict[str, Any]:
    prefix = f"bench/throughput-p{parallelism}-{now_ms()}"
    watch = LakeVisibility.for_stack(stack, prefix)
    rows: dict[str, int] = {}
    seen_at: dict[str, int] = {}
    lock = threading.Lock()

    def count(f: SeenFile) -> None:
        n = watch.row_count(f)
        with lock:
            rows[f.path], seen_at[f.path] = n, f.first_seen_ms

    log(f"throughput, parallelism {parallelism}, {job_kind.label}: submitting a job into s3://lake/{prefix}")
    job = start_job(stack, prefix, start_offsets, parallelism=parallelism, checkpoint_interval_ms=checkpoint_ms,
                    name=f"bench-throughput-p{parallelism}", **job_kind.options())
    cpu = CpuMeter(stack)
    state = "RUNNING"
    try:
        log(f"job {job.job_id} RUNNING after {job.submit_s}s of submission; waiting for {changes} rows in the lake")
        cpu.start()
        deadline = time.monotonic() + timeout_s
        next_state_check = time.monotonic() + 2
        with LakePoller(watch, poll_s, on_new=count) as poller:
            while True:
                with lock:
                    total = sum(rows.values())
                if total >= changes or time.monotonic() > deadline or state in ("FAILED", "CANCELED"):
                    break
                if time.monotonic() > next_state_check:
                    state, next_state_check = job.state(), time.monotonic() + 2
                time.sleep(0.1)
        with lock:
            total, done_ms = sum(rows.values()), max(seen_at.values(), default=job.running_ms)
        usage, checkpoints = cpu.stop(), checkpoint_stats(job)
    finally:
        job.cancel()
    seconds = (done_ms - job.running_ms) / 1000
    # Where the time went, from the rows' own processing time (``processed_ms``: the job's PROCTIME as the row
    # was computed; in the enriching job that can be after the temporal join's wait): start-up until
    # the first row, processing from the first to the last row, then waiting for the checkpoint that commits.
    processed = [ms for f in watch.seen.values() for ms in watch.column(f, "processed_ms") if ms is not None]
    first_ms, last_ms = min(processed, default=job.running_ms), max(processed, default=job.running_ms)
    result: dict[str, Any] = {
        "job": job_kind.label, "parallelism": parallelism, "changes": changes, "lake_rows": total,
        "lake_files": len(rows),
        "lake_prefix": prefix, "job_id": job.job_id, "submit_s": job.submit_s,
        "seconds_running_to_committed": round(seconds, 2),
        "changes_per_s": round(total / seconds) if seconds > 0 else None,
        "phases_s": {"running_to_tasks_running": round((job.tasks_running_ms - job.running_ms) / 1000, 2),
                     "running_to_first_row": round((first_ms - job.running_ms) / 1000, 2),
                     "first_to_last_row": round((last_ms - first_ms) / 1000, 2),
                     "last_row_to_committed": round((done_ms - last_ms) / 1000, 2)},
        "processing_changes_per_s": round(total / ((last_ms - first_ms) / 1000)) if last_ms > first_ms else None,
        "complete": total == changes, "cpu": usage, "checkpoints": checkpoints, "poller_errors": poller.errors[:5],
    }
    if total != changes:
        result["problem"] = (f"the lake holds {total} rows, expected {changes}"
                             + ("" if total < changes else " (more: duplicates?)") + f"; job state {state}")
    return result


# --- freshness -----------------------------------------------------------------------------------------------

def measure_freshness(stack: Stack, rate: float, seconds: float, concurrency: int, seed: int, parallelism: int,
                      checkpoint_ms: int, poll_s: float, drain_s: float, job_kind: JobUnderTest = JobUnderTest(),
                      first_order_id: int = FRESHNESS_FIRST_ORDER_ID,
                      backlog: tuple[dict[int, int], int] | None = None) -> dict[str, Any]:
    """``backlog``: (offsets before a pre-loaded backlog, its changes): the job starts there and works through it
    before the workload, so its state holds those changes when it is measured, as a job that has run a while"""
    prefix = f"bench/freshness-{now_ms()}"
    log(f"freshness, {job_kind.label}: submitting a job into s3://lake/{prefix} (checkpoint interval "
        f"{checkpoint_ms} ms)")
    watch = LakeVisibility.for_stack(stack, prefix)
    visible: dict[ChangeId, SeenFile] = {}
    processed: dict[ChangeId, int] = {}
    lake_gtid: dict[ChangeId, str | None] = {}
    lock = threading.Lock()

    def attribute(f: SeenFile) -> None:
        rows = watch.changes(f)
        with lock:
            for ch in rows:
                if ch.cid not in visible or f.first_seen_ms < visible[ch.cid].first_seen_ms:
                    visible[ch.cid], processed[ch.cid], lake_gtid[ch.cid] = f, ch.processed_ms, ch.gtid

    workload = generate(WorkloadConfig(seed=seed, duration_s=seconds, rate=rate, concurrency=concurrency,
                                       first_order_id=first_order_id))
    client = WorkloadClient(workload, stack.database.connect, stack.config.database.database)
    client.seed_customers()   # the dimension the job joins; before the job's start offsets
    start_offsets = topic_end(stack) if backlog is None else backlog[0]
    job = start_job(stack, prefix, start_offsets, parallelism=parallelism, checkpoint_interval_ms=checkpoint_ms,
                    name="bench-freshness", **job_kind.options())
    # as every scenario does before its workload: today's job reads the dimension from the topic's beginning and
    # is not current until it has; the baseline has no such reader (and no clock before orders flow), so it gets
    # a short settle only
    caught_up = wait_caught_up(job.pipeline, job.job_id, timeout_s=(180 if job_kind.baseline is None else 15)
                               + (0 if backlog is None else 60 + backlog[1] / 2000))
    log(f"job caught up: {caught_up or 'not within the wait'}")
    if backlog is not None:
        watch.poll_once()   # the backlog's files, seen now and never read: none holds a workload change
    workload_from = topic_end(stack)   # the workload's records follow (before: a backlog, heartbeats)
    cpu = CpuMeter(stack)
    try:
        with LakePoller(watch, poll_s, on_new=attribute) as poller:
            cpu.start()
            start_at = time.monotonic() + 0.5
            t0_ms = now_ms() + 500
            log(f"applying {len(workload.operations)} operations in {len(workload.transactions)} transactions at "
                f"{rate:g}/s for {seconds:g}s from {concurrency} connections")
            history = client.run(start_at=start_at)
            # committed transactions that changed orders rows, by GTID -> commit time
            committed_txn: dict[str, int] = {}
            lags: list[int] = []
            no_gtid = 0
            for e in history.entries:
                lags.append(e.invoke_ms - (t0_ms + int(workload.transaction(e.txn).at_s * 1000)))
                if e.outcome != "ok" or e.complete_ms is None:
                    continue
                ops = workload.transaction(e.txn).ops
                if not any(o.kind in ORDER_KINDS and k < len(e.rowcounts) and e.rowcounts[k] > 0
                           for k, o in enumerate(ops)):
                    continue
                if e.gtid is None:
                    no_gtid += 1
                else:
                    committed_txn[e.gtid] = e.complete_ms
            mark = binlog_end(stack)
            last_commit_ms = max(committed_txn.values(), default=t0_ms)
            log(f"{len(committed_txn)} transactions committed orders changes; waiting up to {drain_s:g}s for all "
                "of them in the lake")
            # first by GTID (cheap), then the topic is read for every change's coordinates: reading it while the
            # changes are still on their way would take CPU from the pipeline under measurement
            drain_start = time.monotonic()
            # the baseline drops changes by its own identity, so some transactions never show: wait only a few
            # checkpoints for it before reading the topic
            pre_wait_s = drain_s if job_kind.baseline is None else min(drain_s, 3 * checkpoint_ms / 1000 + 2)
            while time.monotonic() < drain_start + pre_wait_s:
                with lock:
                    if set(committed_txn) <= set(lake_gtid.values()):
                        break
                time.sleep(0.2)
            topic = read_topic_changes(stack, workload_from, mark)
            # every orders change of those transactions, as Debezium published it: identity -> commit time
            committed: dict[ChangeId, int] = {}
            to_topic: list[int] = []
            row_keys: set[tuple[int, int, bool]] = set()
            dropped_by_identity = 0
            for ch in topic.changes:   # topic order: a key's changes share a partition, in binlog order
                if ch.gtid in committed_txn and ch.cid not in committed:
                    if job_kind.baseline is not None:   # what the baseline keeps: first of its row key
                        if ch.row_key in row_keys:
                            dropped_by_identity += 1
                            continue
                        row_keys.add(ch.row_key)
                    committed[ch.cid] = committed_txn[ch.gtid]
                    to_topic.append(ch.kafka_ts_ms - committed_txn[ch.gtid])
            txns_in_topic = {ch.gtid for ch in topic.changes if ch.gtid in committed_txn}
            log(f"{len(committed)} changes of them in the topic")
            while time.monotonic() < drain_start + drain_s:
                with lock:
                    if all(c in visible for c in committed):
                        break
                time.sleep(0.2)
            drained_s = time.monotonic() - drain_start
        usage, checkpoints = cpu.stop(), checkpoint_stats(job)
    finally:
        job.cancel()
    upper = [visible[c].first_seen_ms - ms for c, ms in committed.items() if c in visible]
    lower = [max(0, visible[c].unseen_ms - ms) for c, ms in committed.items() if c in visible]
    # the two halves: commit -> processed by the job (Debezium, Kafka, the source), processed -> visible
    # (waiting for the checkpoint that commits the file, and the commit itself)
    to_processed = [processed[c] - ms for c, ms in committed.items() if c in visible]
    gtid_mismatch = [c for c in committed if c in visible and lake_gtid[c] not in committed_txn]
    to_visible = [visible[c].first_seen_ms - processed[c] for c in committed if c in visible]
    applied_s = (last_commit_ms - t0_ms) / 1000
    listing = sorted(watch.listing_ms)
    freshness = latency_summary(upper)
    target = checkpoint_ms + FRESHNESS_SLACK_MS
    return {
        "job": job_kind.label, "dropped_by_identity": dropped_by_identity, "caught_up": caught_up,
        "backlog_changes": 0 if backlog is None else backlog[1],
        "lake_prefix": prefix, "job_id": job.job_id, "parallelism": parallelism, "seed": seed,
        "checkpoint_interval_ms": checkpoint_ms, "poll_interval_ms": round(poll_s * 1000),
        "listing_ms_p50": listing[len(listing) // 2] if listing else None,
        "offered_rate": rate, "seconds": seconds, "concurrency": concurrency,
        "operations_scheduled": len(workload.operations), "transactions": history.counts(),
        "transactions_committed_orders": len(committed_txn), "transactions_without_gtid": no_gtid,
        "transactions_not_in_topic": len(committed_txn) - len(txns_in_topic),
        "topic_records_read": topic.records, "topic_records_per_table": topic.per_table,
        "changes_committed": len(committed), "lake_rows_gtid_mismatch": len(gtid_mismatch),
        "achieved_changes_per_s": round((len(committed) + dropped_by_identity) / applied_s) if applied_s > 0 else None,
        "schedule_lag_ms": latency_summary([max(0, x) for x in lags]),
        "freshness_ms": freshness, "freshness_ms_lower_bound": latency_summary(lower),
        "commit_to_topic_ms": latency_summary(to_topic),
        "commit_to_processed_ms": latency_summary(to_processed),
        "processed_to_visible_ms": latency_summary(to_visible),
        "not_visible": len(committed) - len(upper),
        "not_visible_examples": sorted(c for c in committed if c not in visible)[:5],
        "drain_s": round(drained_s, 1),
        "target_p99_ms": target, "meets_target": bool(upper) and freshness["p99"] <= target,
        "cpu": usage, "checkpoints": checkpoints, "poller_errors": poller.errors[:5],
    }


# --- main ----------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="benchmarks.bench_job", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    # 600k: about a minute of processing at p=1, so the figure is the job's steady rate; with 150k the first
    # seconds' JIT compilation (a third of a core, more for the larger plan) decides the ratio to the baseline
    ap.add_argument("--changes", type=int, default=600_000, help="throughput: changes pre-loaded (default 600000)")
    ap.add_argument("--rate", type=float, default=1000, help="freshness: changes per second offered (default 1000)")
    ap.add_argument("--seconds", type=float, default=30, help="freshness: workload duration (default 30)")
    ap.add_argument("--concurrency", type=int, default=0,
                    help="freshness: database connections (default: one per 100 changes/s, at least 4)")
    ap.add_argument("--only", choices=("throughput", "freshness"))
    ap.add_argument("--freshness-state", choices=("empty", "backlog", "both"), default="both",
                    help="freshness of a fresh job (empty: its state as good as empty), of a job that first worked "
                         "through the --changes backlog (backlog: its state holds them, as a job's that has run a "
                         "while), or both, each against the baseline in the same state (default both)")
    ap.add_argument("--parallelism", default="1,2", help="throughput: job parallelisms to run, e.g. 1,2")
    ap.add_argument("--freshness-parallelism", type=int, default=1)
    ap.add_argument("--checkpoint-ms", type=int, default=3000, help="job checkpoint interval (default 3000)")
    ap.add_argument("--poll-ms", type=int, default=200, help="lake listing interval (default 200)")
    ap.add_argument("--drain-seconds", type=float, default=60, help="freshness: wait for the last changes")
    ap.add_argument("--seed", type=int, default=None, help="seed of the pre-load values and the workload")
    ap.add_argument("--state-backend", default=DEFAULT_STATE_BACKEND,
                    help="state backend(s) of today's job, e.g. hashmap,rocksdb (each is measured)")
    ap.add_argument("--flink-option", action="append", default=[], metavar="KEY=VALUE",
                    help="a further Flink setting for today's job, e.g. execution.checkpointing.unaligned.enabled=true")
    ap.add_argument("--baseline", default=BASELINE_REV,
                    help=f"also measure the job of this git revision at p=1 (default {BASELINE_REV}: main before "
                         "the change identity from the source log); 'none' to skip")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the unmeasured warm-up job (the TaskManager's JIT) before the first measured one")
    ap.add_argument("--json", action="store_true", help="also print every figure as JSON")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    parallelisms = [int(p) for p in args.parallelism.split(",") if p.strip()]
    backends = [b.strip() for b in args.state_backend.split(",") if b.strip()]
    concurrency = args.concurrency or max(4, round(args.rate / 100))
    log(f"seed {seed} (replay with --seed {seed})")
    result: dict[str, Any] = {"seed": seed, "args": vars(args)}
    with ExitStack() as cleanup:
        old = None if args.baseline == "none" else cleanup.enter_context(baseline_job(args.baseline))
        if old is not None:
            result["baseline"] = {"rev": old.rev, "commit": old.commit}
            log(f"baseline: the job of {old.rev} ({old.commit[:12]})")
        # p=1 is compared with the baseline; every state backend is measured at every parallelism
        extra = tuple(key_values(args.flink_option, "--flink-option").items())
        kinds = [JobUnderTest(state_backend=b, extra=extra) for b in backends]  # type: ignore[arg-type]
        stack = cleanup.enter_context(Stack.up(load_config(), label="bench-job"))
        result["stack_up_s"] = round(stack.timings["total"], 1)
        states = {"empty": [False], "backlog": [True], "both": [False, True]}[args.freshness_state] \
            if args.only in (None, "freshness") else []
        if args.only in (None, "throughput") or True in states:
            plan = PreloadPlan.of(args.changes, PRELOAD_FIRST_ORDER_ID)
            start_offsets, changes, result["debezium_preload"] = preload(stack, plan, seed)
        if args.only in (None, "throughput"):
            d = result["debezium_preload"]
            log(f"Debezium published {d['changes']} changes in {d['debezium_published_s']}s "
                f"({d['debezium_changes_per_s']}/s)")
            timeout_s = 120 + changes / 500
            if not args.no_warmup:
                log("warm-up job (not measured): the first job on a fresh TaskManager pays its JIT compilation")
                measure_throughput(stack, start_offsets, changes, 1, args.checkpoint_ms, args.poll_ms / 1000,
                                   timeout_s)
            result["throughput"] = []
            for p in parallelisms:
                runs = kinds + ([JobUnderTest(baseline=old)] if old is not None and p == 1 else [])
                for kind in runs:
                    r = measure_throughput(stack, start_offsets, changes, p, args.checkpoint_ms,
                                           args.poll_ms / 1000, timeout_s, kind)
                    log(f"parallelism {p}, {kind.label}: {r['lake_rows']} rows in "
                        f"{r['seconds_running_to_committed']}s = {r['changes_per_s']} changes/s")
                    result["throughput"].append(r)
        if args.only in (None, "freshness"):
            runs = kinds + ([JobUnderTest(baseline=old)] if old is not None else [])
            if args.only == "freshness" and not args.no_warmup:
                # without the throughput runs before it, the first measured job would pay the TaskManager's JIT
                # (its compiler threads took a quarter of a core, and its p99 was 2.5 s worse than when warm)
                log("warm-up job (not measured): the first job on a fresh TaskManager pays its JIT compilation")
                measure_freshness(stack, args.rate, min(args.seconds, 15), concurrency, seed,
                                  args.freshness_parallelism, args.checkpoint_ms, args.poll_ms / 1000,
                                  args.drain_seconds, kinds[0],
                                  first_order_id=FRESHNESS_FIRST_ORDER_ID + 2 * len(runs) * FRESHNESS_ID_STRIDE)
            result["freshness_runs"] = [
                measure_freshness(stack, args.rate, args.seconds, concurrency, seed, args.freshness_parallelism,
                                  args.checkpoint_ms, args.poll_ms / 1000, args.drain_seconds, kind,
                                  first_order_id=FRESHNESS_FIRST_ORDER_ID + (i * len(runs) + k) * FRESHNESS_ID_STRIDE,
                                  backlog=(start_offsets, changes) if with_backlog else None)
                for i, with_backlog in enumerate(states) for k, kind in enumerate(runs)]
    print_report(result)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return result


def _print_cpu(usage: dict[str, Any]) -> None:
    top = list(usage["process_cpu_pct"].items())[:5]
    print(f"  CPU % of one core over {usage['seconds']}s: " + ", ".join(f"{k} {v}" for k, v in top)
          + f"; whole machine {usage['machine_cpu_pct_of_all_cores']}% of {usage['cores']} cores")
    for tm, threads in usage["taskmanager_thread_cpu_pct"].items():
        if threads:
            print(f"    {tm} threads: " + ", ".join(f"{n!r} {v}" for n, v in threads.items()))


def _print_checkpoints(cp: dict[str, Any]) -> None:
    if "error" in cp:
        print(f"  checkpoints: REST error {cp['error']}")
        return
    latest = (f"latest completed #{cp.get('latest_id')}: state size {human_bytes(cp.get('latest_state_size'))}, "
              f"checkpointed size {human_bytes(cp.get('latest_checkpointed_size'))}, "
              f"dedup state {human_bytes(cp.get('dedup_state'))}")
    print(f"  checkpoints: {cp['completed']} completed, {cp['failed']} failed, duration avg "
          f"{cp['duration_ms_avg']} max {cp['duration_ms_max']} ms; {latest}")
    ops = cp.get("operators") or {}
    if ops:
        print("    state per operator: " + "; ".join(f"{n[:60]!r} {human_bytes(v)}" for n, v in list(ops.items())[:4]))


def print_report(result: dict[str, Any]) -> None:
    print(f"seed {result['seed']}, stack up in {result['stack_up_s']}s")
    if "debezium_preload" in result:
        d = result["debezium_preload"]
        print(f"pre-load: {d['changes']} changes ({d['plan']['inserts']} inserts, {d['plan']['updates']} updates, "
              f"{d['plan']['deletes']} deletes) by bulk SQL in {d['sql_s']}s; Debezium published "
              f"{d['topic_orders_records']} orders records ({d['changes']} distinct changes; "
              f"{d['topic_records']} records in all: {d['topic_records_per_table']}) in {d['debezium_published_s']}s "
              f"= {d['debezium_changes_per_s']} changes/s" + (f"; NOTE {d['note']}" if "note" in d else ""))
    for r in result.get("throughput", []):
        verdict = "meets" if (r["changes_per_s"] or 0) >= THROUGHPUT_TARGET else "below"
        print(f"throughput p={r['parallelism']}, {r['job']}: {r['lake_rows']}/{r['changes']} changes committed in "
              f"{r['seconds_running_to_committed']}s after RUNNING = {r['changes_per_s']} changes/s "
              f"({verdict} the {THROUGHPUT_TARGET}/s target)"
              + (f"; PROBLEM: {r['problem']}" if "problem" in r else ""))
        ph = r["phases_s"]
        print(f"  phases (s): job RUNNING -> all tasks RUNNING {ph['running_to_tasks_running']}, -> first row "
              f"processed {ph['running_to_first_row']}, first -> last row "
              f"{ph['first_to_last_row']} ({r['processing_changes_per_s']} changes/s while processing), last row -> "
              f"committed {ph['last_row_to_committed']}")
        _print_checkpoints(r["checkpoints"])
        _print_cpu(r["cpu"])
    for f in result.get("freshness_runs", []):
        fm = f["freshness_ms"]
        print(f"freshness, {f['job']}: offered {f['offered_rate']:g}/s for {f['seconds']:g}s, achieved "
              f"{f['achieved_changes_per_s']} changes/s ({f['changes_committed']} committed, schedule lag p99 "
              f"{f['schedule_lag_ms'].get('p99')} ms), checkpoint interval {f['checkpoint_interval_ms']} ms"
              + (f", after a backlog of {f['backlog_changes']} changes" if f.get("backlog_changes") else ""))
        if f["dropped_by_identity"]:
            print(f"  NOTE this job's identity dropped {f['dropped_by_identity']} committed changes (updates that "
                  "left version alone, re-inserted ids): freshness is of the changes it kept")
        if fm["count"]:
            print(f"  commit->visible in lake (ms): p50 {fm['p50']} p95 {fm['p95']} p99 {fm['p99']} max {fm['max']} "
                  f"(lower bound p99 {f['freshness_ms_lower_bound']['p99']}; poll {f['poll_interval_ms']} ms); "
                  f"target p99 <= {f['target_p99_ms']} ms: {'met' if f['meets_target'] else 'NOT met'}")
        a, b = f["commit_to_processed_ms"], f["processed_to_visible_ms"]
        if a["count"]:
            print(f"  of which commit->processed by the job p50 {a['p50']} p99 {a['p99']}, processed->visible "
                  f"p50 {b['p50']} p99 {b['p99']}")
        c = f["commit_to_topic_ms"]
        if c["count"]:
            print(f"  commit->in topic (Kafka LogAppendTime) p50 {c['p50']} p99 {c['p99']}")
        print(f"  matched by GTID/coordinates: {f['transactions_committed_orders']} transactions, "
              f"{f['changes_committed']} changes ({f['transactions_without_gtid']} without GTID, "
              f"{f['transactions_not_in_topic']} not in the topic, {f['lake_rows_gtid_mismatch']} lake rows whose "
              f"src_gtid disagrees); not visible: {f['not_visible']} {f['not_visible_examples']}")
        _print_checkpoints(f["checkpoints"])
        _print_cpu(f["cpu"])
    for line in comparison(result):
        print(line)


def comparison(result: dict[str, Any]) -> list[str]:
    """Today's job against the baseline (throughput at p=1, freshness p99), and the deduplication state a
    steady rate would hold over the whole TTL, extrapolated from the measured bytes per change."""
    lines: list[str] = []
    p1 = [r for r in result.get("throughput", []) if r["parallelism"] == 1 and r["changes_per_s"]]
    base = next((r for r in p1 if r["job"].startswith("baseline")), None)
    if base is not None:
        for r in p1:
            if r is not base:
                ratio = r["changes_per_s"] / base["changes_per_s"]
                lines.append(f"compared at p=1: {r['job']} {r['changes_per_s']}/s vs {base['job']} "
                             f"{base['changes_per_s']}/s = {ratio:.2f}x (target >= 0.90x: "
                             f"{'met' if ratio >= 0.9 else 'NOT met'})")
    fresh = [f for f in result.get("freshness_runs", []) if f["freshness_ms"].get("count")]
    for backlog in sorted({f.get("backlog_changes", 0) for f in fresh}):   # each job against the baseline in its state
        same = [f for f in fresh if f.get("backlog_changes", 0) == backlog]
        fbase = next((f for f in same if f["job"].startswith("baseline")), None)
        state = f"after a backlog of {backlog} changes" if backlog else "fresh jobs"
        for f in same:
            if fbase is not None and f is not fbase:
                a, b = f["freshness_ms"]["p99"], fbase["freshness_ms"]["p99"]
                lines.append(f"compared freshness p99, {state}: {f['job']} {a} ms vs {fbase['job']} {b} ms "
                             f"({'no worse' if a <= b else f'{a - b} ms worse'})")
    ttl_s = DEFAULT_DEDUP_TTL_MS / 1000
    for r in result.get("throughput", []):
        dedup = (r["checkpoints"] or {}).get("dedup_state")
        if dedup and r["lake_rows"]:
            per = dedup / r["lake_rows"]
            steady = per * STEADY_RATE * ttl_s
            lines.append(f"dedup state, {r['job']} p={r['parallelism']}: {per:.0f} B per change held; at "
                         f"{STEADY_RATE}/s over the {ttl_s / 3600:g} h TTL that is {human_bytes(steady)}")
    return lines


if __name__ == "__main__":
    from harness.process import exit_on_sigterm

    exit_on_sigterm()   # a stopped benchmark leaves no stack and no baseline checkout behind
    main()
