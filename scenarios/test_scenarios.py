"""Chaos scenarios on the real pipeline: `pytest scenarios/ -n auto` (one stack per xdist worker).

Each scenario starts a fresh job, runs the seeded workload with its fault schedule, quiesces, checks,
and writes its report under reports/.  A failure prints the verdict, the fault timeline, the seed, the
replay command, and each component's log tail.
"""

from __future__ import annotations

import itertools

import pytest

from harness.profiles import profile
from harness.stack import StackPool
from scenarios.catalogue import SCENARIOS, Scenario, run_scenario

_RUN_INDEX = itertools.count()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(scenario: Scenario, stacks: StackPool, seed: int, request: pytest.FixtureRequest) -> None:
    stack = stacks.get(scenario.stack)
    if scenario.stack:   # a special stack shape is used by this scenario alone
        request.addfinalizer(lambda: stacks.release(scenario.stack))
    healed = stack.heal()
    replay = f"./run test scenarios/test_scenarios.py -k '{scenario.name}' --seed {seed} -p no:randomly"
    prof = profile(request.config.getoption("--profile"))
    seconds = request.config.getoption("--scenario-seconds") or prof.duration_s
    rate = request.config.getoption("--scenario-rate") or prof.rate
    if prof.name != "ci":
        replay += f" --profile {prof.name}"
    outcome = run_scenario(scenario, stack, seed, duration_s=seconds, rate=rate, replay=replay,
                           index=next(_RUN_INDEX), healed_before=healed)
    if not outcome.ok:
        request.node.add_report_section("call", "component logs", stack.log_tails(25))
    assert outcome.ok, outcome.message()
