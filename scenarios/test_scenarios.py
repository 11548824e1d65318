"""Chaos scenarios on the real pipeline: `pytest scenarios/ -n auto` (one stack per xdist worker).

Each scenario starts a fresh job, runs the seeded workload with its fault schedule, quiesces, checks,
and writes its report under reports/.  A failure prints the verdict, the fault timeline, the seed, the
replay command, and each component's log tail.
"""

from __future__ import annotations

import itertools
import json

import pytest

from harness.report import report_dir, write_report
from harness.runner import RunSpec, run
from harness.stack import StackPool
from scenarios.catalogue import SCENARIOS, Scenario

_RUN_INDEX = itertools.count()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(scenario: Scenario, stacks: StackPool, seed: int, request: pytest.FixtureRequest) -> None:
    stack = stacks.get(scenario.stack)
    if scenario.stack:   # a special stack shape is used by this scenario alone
        request.addfinalizer(lambda: stacks.release(scenario.stack))
    healed = stack.heal()
    replay = f"./run test scenarios/test_scenarios.py -k '{scenario.name}' --seed {seed} -p no:randomly"
    spec = RunSpec(name=scenario.name, seed=seed, duration_s=request.config.getoption("--scenario-seconds"),
                   rate=request.config.getoption("--scenario-rate"), workload=scenario.workload,
                   schedule=scenario.schedule, job_variant=scenario.job_variant, replay=replay)
    result = run(stack, spec, index=next(_RUN_INDEX))
    result["stats"]["healed_before"] = healed
    paths = write_report(report_dir(scenario.name, seed), result)
    verdict = result["verdict"]
    ok, why = scenario.passed(result)
    if not ok:
        (paths["html"].parent / "component-logs.txt").write_text(stack.log_tails(300))
        request.node.add_report_section("call", "component logs", stack.log_tails(25))
    message = (f"\n{result['summary']}\n{why}"
               f"\nexpected: {'CLEAN' if not scenario.expect else sorted(scenario.expect)}"
               f"\nfault timeline: {json.dumps(result['timeline'], default=str)[:3000]}"
               f"\nseed {seed}; replay: {replay}\nreport: {paths['html']}")
    assert ok, message
    print(f"{scenario.name}: {verdict['verdict']} in {result['stats']['wall_s']}s; "
          f"changes {verdict['counts']['truth_changes']}; recovery {result['stats']['recovery']}")
