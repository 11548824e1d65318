"""The main job (`./run demo`): stack up, the pipeline, a chaos run, the verdict and a report."""

from __future__ import annotations

import argparse
import random
import sys

from harness.config import StackConfig
from harness.nemesis import ConnectKill, Schedule, TaskManagerKill
from harness.report import report_dir, write_report
from harness.runner import RunSpec, run
from harness.stack import Stack


def demo_schedule(rng: random.Random, duration_s: float) -> Schedule:
    """A TaskManager kill at 30 % of the run and a Connect kill at 60 %."""
    return (Schedule.fixed(TaskManagerKill(), round(0.3 * duration_s, 1), 4.0)
            + Schedule.fixed(ConnectKill(), round(0.6 * duration_s, 1), 3.0))


def run_demo(config: StackConfig, args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    print(f"cdc-chaos demo, seed {seed} (replay: ./run demo --seed {seed})", file=sys.stderr)
    with Stack.up(config, label="demo") as stack:
        spec = RunSpec(name="demo", seed=seed, duration_s=args.duration, rate=args.rate, schedule=demo_schedule,
                       replay=f"./run demo --seed {seed} --duration {args.duration} --rate {args.rate}")
        result = run(stack, spec)
    paths = write_report(report_dir("demo", seed), result)
    stats = result["stats"]
    print(result["summary"])
    print(f"workload: {stats['workload']['committed_changes']} committed changes; "
          f"faults: {[(e['nemesis'], e['phase']) for e in result['timeline']]}")
    print(f"recovery: {stats['recovery']}")
    print(f"report: {paths['html']}\nverdict: {paths['verdict']}")
    return 0 if result["verdict"]["clean"] else 1
