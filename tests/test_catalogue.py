"""The one rule that turns a run into pass/fail (``Scenario.passed``), the stack-shape guard of the one run
path, and the typed result's serialisation: pure, no stack."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.checker import ANOMALY_CLASSES, Verdict
from harness.nemesis import FaultEvent
from harness.report import write_report
from harness.result import RecoveryFigure, RunResult, RunStats
from scenarios.catalogue import BY_NAME, DEMO, Scenario


def _result(found: dict[str, int] | None = None, timeline: list[FaultEvent] | None = None) -> RunResult:
    anomalies = {c: {"count": (found or {}).get(c, 0), "examples": []} for c in [*ANOMALY_CLASSES,
                                                                                    "INEFFECTIVE_FAULT"]}
    verdict = Verdict(anomalies, {"truth_changes": 10}, context={"lake_prefix": "runs/x"})
    stats = RunStats(1.0, 1.0, {"committed_changes": 10}, {}, [RecoveryFigure("tm", 3.0, 5, 1.5, None)], [], {},
                     {}, [(0.5, 3)])
    return RunResult("x", 7, "replay", verdict, timeline or [], [], stats, [(0.0, 5)], 1_000)


def test_clean_run_of_a_clean_scenario_passes() -> None:
    assert BY_NAME["baseline"].passed(_result()) == (True, "")


def test_anomaly_in_a_clean_scenario_fails_naming_it() -> None:
    ok, why = BY_NAME["baseline"].passed(_result({"LOST": 3}))
    assert not ok and "LOST" in why


def test_known_bad_job_must_be_convicted_under_its_class() -> None:
    teeth = BY_NAME["teeth_stale_enrichment"]
    assert teeth.passed(_result({"ENRICHMENT_WRONG": 2}))[0]
    ok, why = teeth.passed(_result())
    assert not ok and "expected a conviction" in why
    assert not teeth.passed(_result({"LOST": 2}))[0]


def test_failed_injection_and_ineffective_fault_fail_every_path() -> None:
    failed = FaultEvent("broker-kill", "error", 5, {"failed_phase": "inject", "error": "no broker"})
    ok, why = BY_NAME["broker_kill"].passed(_result(timeline=[failed]))
    assert not ok and "not injected" in why and "no broker" in why
    ok, why = BY_NAME["broker_kill"].passed(_result({"INEFFECTIVE_FAULT": 1}))
    assert not ok and "did not reach the job" in why


def test_the_run_path_refuses_a_stack_of_another_shape() -> None:
    three = BY_NAME["broker_leader_kill_3"]
    one_broker = SimpleNamespace(config=SimpleNamespace(kafka=SimpleNamespace(brokers=1)))
    with pytest.raises(ValueError, match="brokers = 3"):
        three.check_stack(one_broker)  # type: ignore[arg-type]
    three.check_stack(SimpleNamespace(config=SimpleNamespace(kafka=SimpleNamespace(brokers=3))))  # type: ignore[arg-type]
    Scenario("plain", "", "").check_stack(one_broker)  # type: ignore[arg-type]   # no shape: any stack


def test_demo_is_a_catalogue_scenario_with_two_faults() -> None:
    assert BY_NAME["demo"] is DEMO
    import random
    assert [f["nemesis"] for f in DEMO.schedule(random.Random(1), 60).describe()] == ["taskmanager-kill",
                                                                                     "connect-kill"]


def test_report_serialises_the_typed_result(tmp_path: Path) -> None:
    paths = write_report(tmp_path, _result({"DUPLICATE": 1}, [FaultEvent("tm", "inject", 1_500, {"pids": [1]})]))
    saved = json.loads(paths["result"].read_text())
    assert saved["timeline"] == [{"nemesis": "tm", "phase": "inject", "wall_ms": 1_500, "pids": [1]}]
    assert saved["stats"]["recovery"][0]["lag_normal_after_s"] == 1.5
    assert json.loads(paths["verdict"].read_text())["verdict"] == "ANOMALIES"
    assert "DUPLICATE" in paths["html"].read_text()


def test_run_log_keeps_what_a_run_logs(tmp_path: Path) -> None:
    from harness import log

    with log.run_log(tmp_path / "run.log"):
        log.get("nemesis").info("taskmanager-kill inject: %s", {"pids": [1]})
        log.get("stack").debug("a detail")
    log.get("stack").info("after the run: not in its log")
    text = (tmp_path / "run.log").read_text()
    assert "taskmanager-kill inject" in text and "a detail" in text and "after the run" not in text


def test_schedule_json_names_each_faults_target_by_its_index(tmp_path: Path) -> None:
    """Overlapping faults record their injects out of schedule order; each keeps what it drew."""
    from harness.nemesis import BrokerKill, NetworkPartition, Schedule
    from scenarios.catalogue import write_schedule

    schedule = Schedule.fixed(BrokerKill(), 1.0, 3.0) + Schedule.fixed(NetworkPartition("kafka"), 1.2, 3.0)
    result = _result(timeline=[FaultEvent("network-partition-kafka", "inject", 1_300, {"fault": 1, "route": "kafka"}),
                               FaultEvent("broker-kill", "inject", 1_400, {"fault": 0, "killed": ["broker"]})])
    result.schedule = schedule.describe()
    doc = json.loads(write_schedule(tmp_path, BY_NAME["baseline"], result, 20, 100).read_text())
    assert [f["drawn"] for f in doc["faults"]] == [{"killed": ["broker"]}, {"route": "kafka"}]
    assert doc["seed"] == 7 and doc["faults"][0]["spec"] == {"kind": "BrokerKill", "args": [], "kwargs": {}}


def test_readme_lists_every_catalogue_scenario() -> None:
    """The README's scenario table names each scenario of the catalogue (a row may name several)."""
    from harness.config import REPO_ROOT
    from scenarios.catalogue import SCENARIOS

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Scenarios"):readme.index("### Run profiles")]
    named = {name.strip().split(" ")[0] for row in section.splitlines() if row.startswith("| ")
             for name in re.split(r"[,/]", row.split("|")[1])}
    assert [s.name for s in SCENARIOS if s.name not in named] == []


def test_a_scenarios_job_options_reach_its_run_and_its_schedule(tmp_path: Path) -> None:
    from scenarios.catalogue import write_schedule

    scenario = BY_NAME["resume_after_terminal_failure"]
    assert scenario.spec(1, 20, 100, "").job_options == {"restart-strategy.type": "none"}
    doc = json.loads(write_schedule(tmp_path, scenario, _result(), 20, 100).read_text())
    assert doc["job_options"] == {"restart-strategy.type": "none"}
