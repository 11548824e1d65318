"""The nightly results store's judgements (flaky, new, safety, trends), retention, JUnit and run diffs, fed
synthetic nights through the real recording path: no stack."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from synthetic_runs import T0, add_night, sample_store

from harness.nightly import NightlyOptions, plan, prune, select, write_junit
from harness.profiles import PROFILES, profile
from harness.site import diff_runs, format_diff, load_run
from harness.store import RunStore, noise_band


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """Four synthetic nights, built once (read-only for the tests that share it)."""
    return sample_store(tmp_path_factory.mktemp("store"))


def test_flaky_is_pass_and_fail_on_the_same_commit(nights: RunStore) -> None:
    store = nights
    tm = store.scenario_status("taskmanager_kill")
    assert tm["flaky"] and tm["safety_failures"] == 0
    assert tm["runs"] == 8 and tm["failed"] == 1 and tm["flake_rate"] == pytest.approx(1 / 8, abs=1e-3)
    assert tm["first_failing_session"] == "20261102-020000"
    assert tm["mark"] == "ok"          # failed two nights ago, passed since


def test_a_safety_failure_is_never_flaky_and_is_new(nights: RunStore) -> None:
    store = nights
    base = store.scenario_status("baseline")
    assert base["safety_failures"] == 1 and not base["flaky"]
    assert base["mark"] == "new" and base["first_failing_session"] == "20261104-020000"
    lost = [r for r in store.runs(scenario="baseline") if not r.passed]
    assert lost and lost[0].safety and lost[0].counts() == {"LOST": 2}


def test_a_convicted_known_bad_job_passes_and_its_anomaly_is_no_safety_failure(nights: RunStore) -> None:
    store = nights
    teeth = store.scenario_status("teeth_no_dedup_connect_kill")
    assert teeth["passed"] == teeth["runs"] == 4 and teeth["safety_failures"] == 0


def test_ongoing_and_resolved_marks(tmp_path: Path) -> None:
    store = RunStore.at(tmp_path)
    add_night(store, "n1", T0, [("baseline", {})])
    add_night(store, "n2", T0 + 1, [("baseline", {"LOST": 1})])
    assert store.scenario_status("baseline")["mark"] == "new"
    add_night(store, "n3", T0 + 2, [("baseline", {"LOST": 1})])
    assert store.scenario_status("baseline")["mark"] == "ongoing"
    add_night(store, "n4", T0 + 3, [("baseline", {})])
    assert store.scenario_status("baseline")["mark"] == "resolved"


def test_trends_flag_a_night_outside_the_band_of_earlier_nights(nights: RunStore) -> None:
    store = nights
    rec = store.trends()["recovery_s"]
    assert [p["value"] for p in rec] == [2.0, 2.0, 2.0, 9.0]
    assert [p["flagged"] for p in rec] == [False, False, False, True]
    assert rec[3]["band"] == pytest.approx((1.8, 2.2))
    assert not any(p["flagged"] for p in store.trends()["throughput"])


def test_windows_reached_are_counted_per_run(nights: RunStore) -> None:
    from synthetic_runs import WINDOW

    assert nights.windows() == {WINDOW: len(nights.runs(scenario="taskmanager_kill"))}


def test_noise_band_is_robust_to_one_outlier() -> None:
    lo, hi = noise_band([10.0, 10.5, 9.5, 10.2, 40.0])
    assert lo < 10 < hi < 15


def test_prune_keeps_failing_runs_and_recent_nights(tmp_path: Path) -> None:
    store = RunStore.at(tmp_path)
    for n, found in enumerate([{}, {"INEFFECTIVE_FAULT": 1}, {}, {}]):
        add_night(store, f"n{n}", T0 + n, [("baseline", {}), ("taskmanager_kill", found)])
    assert prune(store, keep_nights=2) == 3          # 2 old nights x 2 runs, one of which failed
    for run in store.runs():
        kept = (Path(run.report_dir) / "logs").exists()
        assert kept == (run.session not in ("n0", "n1") or not run.passed), run
    assert prune(store, keep_nights=2) == 0          # idempotent


def test_junit_has_one_case_per_run_and_failures_carry_the_summary(tmp_path: Path) -> None:
    path = write_junit(tmp_path / "j.xml", "s", [{"name": "baseline seed 1", "time": 3.0},
                                                {"name": "broker_kill seed 2", "time": 4.0,
                                                 "failure": "expected CLEAN, got ANOMALIES: ['LOST']",
                                                 "text": "LOST: 2"},
                                                {"name": "x seed 3", "skipped": "budget spent"}])
    root = ET.parse(path).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("3", "1", "1")
    fail = root.find("testcase[@name='broker_kill seed 2']/failure")
    assert fail is not None and "LOST" in (fail.get("message") or "") and fail.text == "LOST: 2"


def test_diff_of_two_runs_names_what_changed(nights: RunStore, tmp_path: Path) -> None:
    store = nights
    runs = store.runs(scenario="baseline")
    a, b = load_run(runs[0].report_dir), load_run(str(runs[-1].id), store)
    changed = {k: (va, vb) for k, va, vb, c in diff_runs(a, b) if c}
    assert changed["verdict"] == ("CLEAN", "ANOMALIES") and changed["anomalies"] == ({}, {"LOST": 2})
    assert changed["recovery_s"] == ([2.0], [9.0])
    assert "verdict" in format_diff(a, b)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load_run(str(tmp_path / "nope"), store)


def test_profiles_and_selection() -> None:
    assert (PROFILES["ci"].duration_s, PROFILES["ci"].rate) == (20.0, 100.0)
    assert PROFILES["nightly"].duration_s >= 120 and PROFILES["nightly"].rate >= 1000
    assert PROFILES["load"].duration_s >= 60 and PROFILES["load"].rate >= 2000
    with pytest.raises(ValueError, match="unknown profile"):
        profile("weekly")
    ci = {s.name for s in select(NightlyOptions(profile("ci")))}
    nightly = {s.name for s in select(NightlyOptions(profile("nightly")))}
    assert ci < nightly and all(not s.nightly_only for s in select(NightlyOptions(profile("ci"))))
    named = select(NightlyOptions(profile("ci"), scenarios=["broker_leader_kill_3"]))
    assert [s.name for s in named] == ["broker_leader_kill_3"]        # named: runs whatever its mark
    with pytest.raises(ValueError, match="unknown scenario"):
        select(NightlyOptions(profile("ci"), scenarios=["nope"]))


def test_plan_draws_fresh_seeds_repeats_and_groups_by_stack_shape() -> None:
    import random

    opts = NightlyOptions(profile("ci"), scenarios=["broker_leader_kill_3", "baseline", "taskmanager_kill"], repeat=2)
    runs = plan(opts, random.Random(5))
    assert [sc.name for sc, _ in runs].count("baseline") == 2 and len({s for _, s in runs}) == 6
    shapes = [bool(sc.stack) for sc, _ in runs]
    assert shapes == sorted(shapes, reverse=True) or shapes == sorted(shapes)   # one block per shape
    assert plan(opts, random.Random(5)) == runs                                 # the base seed replays the night
