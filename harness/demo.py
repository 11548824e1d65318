"""The main job (`./run demo`): stack up, the pipeline, a chaos run, the verdict and a report -- the catalogue's
``demo`` scenario through the one run path (:func:`scenarios.catalogue.run_scenario`)."""

from __future__ import annotations

import argparse
import random
import sys

from harness.config import StackConfig
from harness.stack import Stack


def run_demo(config: StackConfig, args: argparse.Namespace) -> int:
    from scenarios.catalogue import DEMO, run_scenario

    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    replay = f"./run demo --seed {seed} --duration {args.duration} --rate {args.rate}"
    print(f"cdc-chaos demo, seed {seed} (replay: {replay})", file=sys.stderr)
    with Stack.up(DEMO.stack_config(config), label="demo") as stack:
        outcome = run_scenario(DEMO, stack, seed, duration_s=args.duration, rate=args.rate, replay=replay)
    r = outcome.result
    print(r.summary)
    print(f"workload: {r.stats.workload['committed_changes']} committed changes; "
          f"faults: {[(e.nemesis, e.phase) for e in r.timeline]}")
    print(f"recovery: {[f.__dict__ for f in r.stats.recovery]}")
    print(f"report: {outcome.report['html']}\nverdict: {outcome.report['verdict']}")
    if not outcome.ok:
        print(f"demo FAILED: {outcome.why}", file=sys.stderr)
    return 0 if outcome.ok else 1
