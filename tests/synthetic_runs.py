"""Synthetic nights for the results store and the site: real ``RunResult`` objects (the types a run
produces), real reports and the real recording path (``harness.nightly._record``), with made-up figures."""

from __future__ import annotations

import random
from pathlib import Path

from harness.checker import ANOMALY_CLASSES, Verdict
from harness.nemesis import FaultEvent
from harness.nightly import NightlyOptions, _record
from harness.profiles import profile
from harness.report import report_dir, write_report
from harness.result import RecoveryFigure, RunResult, RunStats
from harness.store import RunStore
from scenarios.catalogue import BY_NAME, ScenarioOutcome

T0 = 1_800_000_000_000
WINDOW = "checkpoint in flight (barriers out, not completed)"


def result(name: str, seed: int, found: dict[str, int] | None = None, *, recovery_s: float = 2.0,
           freshness_ms: int = 3000, rate: int = 100, fault: str | None = "taskmanager-kill") -> RunResult:
    rng = random.Random(seed)
    anomalies = {c: {"count": (found or {}).get(c, 0), "examples": [{"order_id": 1}] if (found or {}).get(c) else []}
                 for c in [*ANOMALY_CLASSES, "INEFFECTIVE_FAULT"]}
    verdict = Verdict(anomalies, {"truth_changes": 20 * rate}, context={"lake_prefix": f"runs/{name}"})
    timeline = [] if fault is None else [
        FaultEvent(fault, "inject", T0 + 6_000, {"pids": {"taskmanager-1": 4242}}),
        FaultEvent(fault, "heal", T0 + 14_000, {"heal_started_ms": T0 + 10_000, "restarted": ["taskmanager-1"]}),
        FaultEvent(fault, "verify", T0 + 12_000, {"effective": True, "why": "the job failed over",
                                                  **({"window": WINDOW} if name == "taskmanager_kill" else {})})]
    stats = RunStats(
        wall_s=60.0, workload_s=20.0, workload={"committed_changes": {"insert": 20 * rate}}, quiescence={},
        recovery=[RecoveryFigure(fault, 10.0, 40, recovery_s, recovery_s + 5)] if fault else [],
        nemesis_errors=[], job={}, lake={}, lag_samples=[(t / 2, rng.randrange(0, 400)) for t in range(60)],
        freshness=[(float(t), freshness_ms // 2, freshness_ms) for t in range(20)],
        freshness_summary={"n": 20 * rate, "p50_ms": freshness_ms // 2, "p99_ms": freshness_ms,
                           "max_ms": freshness_ms + 100},
        checkpoints=[(float(t), 300 + rng.randrange(200), 10_000, "COMPLETED") for t in range(0, 30, 3)])
    ops = [(float(t), w, "ok", rate // 4) for t in range(20) for w in range(4)] + [(12.0, 1, "info", 1)]
    return RunResult(name, seed, f"cdc-chaos run {name} --seed {seed}", verdict, timeline, [], stats,
                     [(float(t), rate) for t in range(20)], T0, ops)


def add_night(store: RunStore, session: str, started_ms: int, runs: list[tuple[str, dict[str, int]]],
              commit: str = "c1", wall_s: float = 600.0, **figures: float) -> None:
    """One session: each (scenario, anomaly counts) recorded through the nightly path."""
    opts = NightlyOptions(profile=profile("ci"), store=store.directory)
    store.begin_session("ci", commit, {}, {}, session_id=session, started_ms=started_ms)
    for i, (name, found) in enumerate(runs):
        scenario = BY_NAME[name]
        res = result(name, started_ms // 1000 + i, found, **figures)  # type: ignore[arg-type]
        directory = report_dir(name, res.seed, store.directory / "runs" / session)
        paths = write_report(directory, res, expectation=scenario.expectation)
        (directory / "logs").mkdir()
        (directory / "logs" / "flink-taskmanager-1.log").write_text("INFO started\n")
        ok, why = scenario.passed(res)
        _record(store, session, commit, {}, opts, ScenarioOutcome(scenario, res, ok, why, paths))
    store.end_session(session, started_ms + int(wall_s * 1000))


def sample_store(directory: Path) -> RunStore:
    """Four nights of two scenarios and a known-bad one: a flaky stall, a new safety failure, a slow night."""
    store = RunStore.at(directory)
    day = 86_400_000
    for n in range(4):
        runs = [("baseline", {}), ("taskmanager_kill", {}), ("teeth_no_dedup_connect_kill", {"DUPLICATE": 3})]
        if n == 1:
            runs[1] = ("taskmanager_kill", {"INEFFECTIVE_FAULT": 1})      # not a safety failure
        if n == 3:
            runs[0] = ("baseline", {"LOST": 2})                          # safety failure: new tonight
        add_night(store, f"2026110{n + 1}-020000", T0 + n * day, [*runs, ("taskmanager_kill", {})],
                  recovery_s=2.0 if n < 3 else 9.0)
    return store
