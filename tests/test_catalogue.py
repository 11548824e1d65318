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


def test_a_fault_that_never_ran_fails_the_scenario() -> None:
    """A fault whose turn came after the workload ended tested nothing: the run fails, naming the fix."""
    never = FaultEvent("connect-kill", "skipped", 5, {"fault": 1, "scheduled_at_s": 16.0,
                                                      "why": "the workload ended before its turn came"})
    ok, why = BY_NAME["mixed_storm"].passed(_result(timeline=[never]))
    assert not ok and "never ran" in why and "min_duration_s" in why


def test_a_scenarios_minimum_workload_raises_a_shorter_profile() -> None:
    twice = BY_NAME["known_s3_restore_twice"]
    assert twice.duration(20.0) == twice.min_duration_s > 20.0
    assert twice.duration(120.0) == 120.0
    assert BY_NAME["baseline"].duration(20.0) == 20.0


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


def test_every_known_bug_scenario_cites_a_public_report_and_runs_nightly() -> None:
    """A ``known_*`` scenario reproduces a public failure report: it cites at least one as a tracker id with
    its address, says which report in what a clean run proves, and is too slow for CI (nightly only)."""
    from scenarios.catalogue import CITATION, SCENARIOS, known_bugs

    known = [s for s in SCENARIOS if s.name.startswith("known_")]
    assert len(known) >= 8 and len([s for s in SCENARIOS if s.cites]) >= 8
    assert {s.name for s in known} <= {s.name for s in known_bugs()}
    for s in known:
        assert s.nightly_only, s.name
        assert s.cites, s.name
        for c in s.cites:
            m = CITATION.match(c)
            assert m, f"{s.name}: {c!r} is not '<TRACKER-123> https://...'"
            assert m["url"].endswith("/" + m["id"]), f"{s.name}: {c!r} links another report than it names"
        assert any(tid in s.proves for tid, _ in s.sources), f"{s.name}: what it proves names no report it cites"


def test_citations_are_built_from_tracker_ids() -> None:
    from scenarios.catalogue import cite

    assert cite("FLINK-13940") == "FLINK-13940 https://issues.apache.org/jira/browse/FLINK-13940"
    assert cite("DBZ-144") == "DBZ-144 https://issues.redhat.com/browse/DBZ-144"
    with pytest.raises(ValueError, match="tracker id"):
        cite("SPARK-1")
    with pytest.raises(ValueError, match="tracker id"):
        cite("FLINK-abc")


def test_known_bug_schedules_build_and_fit_the_run() -> None:
    """Each known-bug schedule builds with its constructors and places every fault inside a nightly run."""
    import random

    from scenarios.catalogue import known_bugs

    for s in known_bugs():
        faults = s.schedule(random.Random(3), 120.0).describe()
        assert faults, s.name
        assert all(0 < f["at_s"] < 120 and f["duration_s"] > 0 for f in faults), (s.name, faults)


def test_cites_reach_schedule_json_the_catalogue_listing_and_a_replay(tmp_path: Path) -> None:
    from harness.search import scenario_from
    from scenarios.catalogue import catalogue_text, describe, known_bugs, write_schedule

    scenario = BY_NAME["known_offset_commit_after_broker_restart"]
    doc = json.loads(write_schedule(tmp_path, scenario, _result(), 20, 100).read_text())
    assert doc["cites"] == list(scenario.cites) and any(c.startswith("KAFKA-13563 https://") for c in doc["cites"])
    assert scenario_from(doc).cites == scenario.cites
    assert json.loads(write_schedule(tmp_path, BY_NAME["baseline"], _result(), 20, 100).read_text())["cites"] == []
    text = catalogue_text(known_bugs())
    for s in known_bugs():
        assert s.name in text
        for tid, url in s.sources:
            assert f"source: {tid} {url}" in text
    assert describe(scenario)["cites"][0] == {"id": "FLINK-28060",
                                              "url": "https://issues.apache.org/jira/browse/FLINK-28060"}


def test_the_nightly_index_links_the_reports_a_scenario_reproduces(tmp_path: Path) -> None:
    from harness.site import render_known_bugs
    from harness.store import RunStore
    from scenarios.catalogue import known_bugs

    page = render_known_bugs(RunStore.at(tmp_path))
    for s in known_bugs():
        assert f"data-scenario='{s.name}'" in page
        for tid, url in s.sources:
            assert f"href='{url}'>{tid}</a>" in page
    assert "not run yet" in page


def test_readme_names_every_known_bug_report() -> None:
    from harness.config import REPO_ROOT
    from scenarios.catalogue import known_bugs

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Known bugs"):readme.index("### Run profiles")]
    for s in known_bugs():
        assert s.name in section
        for tid, url in s.sources:
            assert f"[{tid}]({url})" in section, tid
