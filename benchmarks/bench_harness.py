"""The harness keeps up: what judging N changes (default 1,000,000) costs the harness itself, on a real stack.

    python -m benchmarks.bench_harness [--changes N] [--seed N] [--json]

A fresh stack; N changes applied with bulk SQL (the pre-load of ``benchmarks.bench_job``: multi-row INSERTs,
range UPDATEs and DELETEs), published by Debezium, processed by a fresh job into its own lake prefix.  Once the
job has committed offsets at the topic's end (the pipeline's time, not measured), the whole judgement runs as
every scenario runs it (``harness.runner.judge``) and each step is timed:

- truth+topic: the binlog decoded (the compiled reader) and the final table read (``truth.collect``), while
  the topic is read and parsed beside it;
- quiescence: every committed change found in the topic, offsets, the job's clock, two closing checkpoints;
- topic: the topic evidence read and parsed (``harness.topic``);
- lake: every committed Parquet file listed and read;
- check: the independent checker over all of it.

The target (issue 16): quiescence, truth and checker together within 30 s for 1 M changes.  The verdict must be
CLEAN.  Peak RSS of this process is printed too.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from typing import Any

from benchmarks.bench_job import PRELOAD_FIRST_ORDER_ID, PreloadPlan, log, preload
from benchmarks.e2e import binlog_end, now_ms, start_job
from harness.config import load_config
from harness.kafka_client import committed_offsets
from harness.pipeline import Pipeline
from harness.runner import judge
from harness.stack import Stack

TARGET_S = 30.0


def wait_consumed(stack: Stack, job: Any, ends: dict[int, int], timeout_s: float) -> float:
    """Seconds until the job's committed offsets reach ``ends`` (a checkpoint after it read everything)."""
    t0 = time.monotonic()
    group = Pipeline.consumer_group(job.config)
    while time.monotonic() - t0 < timeout_s:
        done = committed_offsets(stack.kafka.bootstrap, group, stack.config.kafka.topic)
        if all(done.get(p, -1) >= e for p, e in ends.items()):
            return time.monotonic() - t0
        time.sleep(2)
    raise TimeoutError(f"the job did not consume the pre-load within {timeout_s:.0f}s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="benchmarks.bench_harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=1_000_000, help="changes pre-loaded (default 1000000)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="also print every figure as JSON")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    log(f"seed {seed} (replay with --seed {seed})")
    result: dict[str, Any] = {"seed": seed, "changes_planned": args.changes}
    with Stack.up(load_config(), label="bench-harness") as stack:
        db = stack.database.endpoints()
        from harness import truth
        start_pos = truth.binlog_position(db["host"], db["port"], db["root_user"], db["root_password"])
        start_offsets, changes, figures = preload(stack, PreloadPlan.of(args.changes, PRELOAD_FIRST_ORDER_ID), seed)
        result["preload"] = {k: figures[k] for k in ("changes", "sql_s", "debezium_published_s")}
        log(f"pre-loaded {changes} changes (SQL {figures['sql_s']}s, Debezium {figures['debezium_published_s']}s)")
        prefix = f"bench/harness-{now_ms()}"
        job = start_job(stack, prefix, start_offsets, name="bench-harness")
        try:
            ends = {int(p): int(e) for p, e in figures["end_offsets"].items()}
            result["job_consumed_s"] = round(wait_consumed(stack, job, ends, 120 + changes / 500), 1)
            log(f"the job consumed the pre-load in {result['job_consumed_s']}s; judging (timed)")
            log(f"binlog now at {binlog_end(stack)}")
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.monotonic()
            verdict, stats, lake = judge(stack, job.pipeline, job.config, prefix, start_pos, start_offsets, None,
                                         600, context={"benchmark": "bench_harness"})
            total = time.monotonic() - t0
        finally:
            job.cancel()
    # truth is collected while the topic is read beside it: the phase's wall time counts once
    truth_s = stats.get("truth_wall_s", stats.get("truth_s", 0.0))
    quiesce_s = stats.get("quiesced_s", 0.0)
    steps = {"truth+topic": truth_s, "quiescence": quiesce_s, "topic": stats.get("topic_s"),
             "lake": stats.get("lake_s"), "check": stats.get("check_s")}
    result.update(verdict=verdict.summary(), clean=verdict.clean, judge_s=round(total, 1), steps_s=steps,
                  quiescence=stats, lake=lake.summary(),
                  peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  rss_before_judge_mib=round(rss0 / 1024))
    harness_s = sum(v or 0.0 for v in steps.values())
    print(f"\n== harness cost of judging {changes} changes (seed {seed}) ==")
    for name, secs in steps.items():
        print(f"  {name:<11} {secs:>7} s")
    verdict_word = "met" if harness_s <= TARGET_S else "NOT met"
    print(f"  {'total':<11} {round(harness_s, 1):>7} s   (judge wall {result['judge_s']} s; "
          f"target <= {TARGET_S:.0f} s: {verdict_word})")
    beside = {k: stats[k] for k in ("truth_s", "topic_beside_truth_s") if k in stats}
    print(f"  truth+topic: {beside} (truth collected while the topic is read beside it)")
    q = {k: stats[k] for k in ("published_s", "consumed_s", "clock_passed_s") if k in stats}
    print(f"  quiescence steps: {q} (published: every change found in the topic, read and parsed once)")
    print(f"  peak RSS    {result['peak_rss_mib']} MiB (before judging {result['rss_before_judge_mib']} MiB)")
    print(f"  verdict     {verdict.summary().splitlines()[0]}")
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
