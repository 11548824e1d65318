"""Fault search without a stack: seeded random schedules (every kind reachable, no two faults on one component
at once), schedules as data (schedule.json round trip), the overlapping runner, and the shrinker's logic
against a known failure rule."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.nemesis import Nemesis, NemesisRunner, Schedule, nemesis_from_spec
from harness.search import FAULT_POOL, SETTLE_S, random_schedule, scenario_from, shrink, target_classes


def test_a_seed_draws_the_same_schedule_and_every_kind_is_reachable() -> None:
    a = random_schedule(random.Random(11), 60, 5).describe()
    assert a == random_schedule(random.Random(11), 60, 5).describe()
    assert a != random_schedule(random.Random(12), 60, 5).describe()
    seen = {json.dumps(f["spec"], sort_keys=True) for s in range(300)
            for f in random_schedule(random.Random(s), 60, 5).describe()}
    assert seen == {json.dumps(e.make().spec(), sort_keys=True) for e in FAULT_POOL}


@pytest.mark.parametrize("seed", range(40))
def test_faults_overlap_across_components_never_on_one(seed: int) -> None:
    schedule = random_schedule(random.Random(seed), 60, 6)
    assert schedule.overlapping and len(schedule.faults) == 6
    touches = {json.dumps(e.make().spec(), sort_keys=True): e.touches for e in FAULT_POOL}
    placed = [(f.at_s, f.at_s + f.duration_s, touches[json.dumps(f.nemesis.spec(), sort_keys=True)])
              for f in schedule.faults]
    for i, (s1, e1, t1) in enumerate(placed):
        assert 0.15 * 60 <= s1 <= 0.75 * 60
        for s2, e2, t2 in placed[i + 1:]:
            if t1 & t2:
                assert s2 >= e1 + SETTLE_S or s1 >= e2 + SETTLE_S


def test_too_many_faults_for_the_run_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="lengthen the run"):
        random_schedule(random.Random(1), 10, 40)


def test_a_schedule_round_trips_through_json_with_its_constructors() -> None:
    schedule = random_schedule(random.Random(3), 60, 6)
    doc = json.loads(json.dumps(schedule.describe()))
    again = Schedule.from_description(doc)
    assert again.describe() == schedule.describe() and again.overlapping
    assert [type(f.nemesis) for f in again.faults] == [type(f.nemesis) for f in schedule.faults]
    with pytest.raises(ValueError, match="unknown nemesis kind 'Meteor'"):
        nemesis_from_spec({"kind": "Meteor"})


class Stamp(Nemesis):
    """Records when it was injected and healed; claims nothing (no verify)."""

    def __init__(self, label: str, log: list[tuple[str, str, float]]) -> None:
        self.name = label
        self.log = log

    def inject(self, stack: Any, rng: random.Random) -> dict[str, Any]:
        self.log.append((self.name, "inject", time.monotonic()))
        return {}

    def heal(self, stack: Any, recovery: Any) -> dict[str, Any]:
        time.sleep(0.3)      # a slow heal must not hold back the other fault
        self.log.append((self.name, "heal", time.monotonic()))
        return {}


def test_an_overlapping_schedule_runs_each_fault_on_its_own_clock() -> None:
    log: list[tuple[str, str, float]] = []
    from harness.nemesis import Fault

    schedule = Schedule([Fault(0.0, 1.0, Stamp("a", log)), Fault(0.4, 0.3, Stamp("b", log)),
                         Fault(5.0, 1.0, Stamp("late", log))], overlapping=True)
    runner = NemesisRunner(None, schedule, random.Random(1))  # type: ignore[arg-type]
    t0 = time.monotonic()
    runner.start(t0)
    time.sleep(1.6)
    runner.finish()
    at = {(n, p): t - t0 for n, p, t in log}
    assert at[("b", "inject")] < at[("a", "heal")]               # b began while a was still on
    assert at[("b", "heal")] < at[("a", "heal")]
    assert ("late", "inject") not in at
    phases = [(e.nemesis, e.phase) for e in runner.events()]
    assert ("late", "skipped") in phases and phases.count(("a", "heal")) == 1
    assert threading.active_count() < 20


def _doc(names: list[str]) -> dict[str, Any]:
    faults = [{"at_s": 5.0 + i, "duration_s": 8.0, "nemesis": n, "spec": {"kind": "ConnectKill"}} for i, n in
              enumerate(names)]
    return {"scenario": "random", "faults": faults, "found": ["DUPLICATE", "INEFFECTIVE_FAULT"], "seed": 1,
            "duration_s": 20, "rate": 100}


def test_shrink_finds_the_one_fault_that_makes_debezium_resend() -> None:
    """The rule stands in for a no-dedup job: DUPLICATE exactly when a Connect kill of 2 s or more ran."""
    def run(faults: list[dict[str, Any]]) -> tuple[set[str], str]:
        resend = any(f["nemesis"] == "connect-kill" and f["duration_s"] >= 2 for f in faults)
        return ({"DUPLICATE"} if resend else set()), "dir"

    doc = _doc(["taskmanager-kill", "broker-kill", "connect-kill", "network-latency-s3", "pause-kafka"])
    faults, attempts, kept = shrink(doc, run, max_runs=30)
    assert [f["nemesis"] for f in faults] == ["connect-kill"] and kept == {"DUPLICATE"}
    assert faults[0]["duration_s"] == 2.0                    # 8 -> 4 -> 2; 1 s no longer re-sends
    assert len(attempts) == 6 + 3                           # 4 removals kept, 2 refused; 2 halvings, 1 refused
    assert all(a.kept == ("DUPLICATE" in a.found) for a in attempts)


def test_shrink_respects_its_budget_and_refuses_a_clean_run() -> None:
    calls = []

    def run(faults: list[dict[str, Any]]) -> tuple[set[str], str]:
        calls.append(len(faults))
        return set(), "dir"

    faults, attempts, _ = shrink(_doc(["a", "b", "c"]), run, max_runs=2)
    assert len(attempts) == 2 and len(faults) == 3
    with pytest.raises(ValueError, match="nothing to shrink"):
        shrink({**_doc(["a"]), "found": []}, run)
    assert target_classes({"LOST", "INEFFECTIVE_FAULT"}) == {"LOST"}
    assert target_classes({"INEFFECTIVE_FAULT"}) == {"INEFFECTIVE_FAULT"}


def test_replay_rebuilds_the_scenario_from_schedule_json(tmp_path: Path) -> None:
    schedule = random_schedule(random.Random(9), 40, 3)
    doc = {"scenario": "random", "job_variant": "no_dedup", "workload": {"late_fraction": 0.1}, "expect": [],
           "job_options": {"restart-strategy.type": "none"}, "stack": {}, "faults": schedule.describe(), "seed": 9,
           "duration_s": 40, "rate": 100}
    sc = scenario_from(json.loads(json.dumps(doc)))
    assert sc.job_variant == "no_dedup" and sc.workload == {"late_fraction": 0.1}
    assert sc.job_options == {"restart-strategy.type": "none"}
    assert sc.schedule(random.Random(0), 40).describe() == schedule.describe()
