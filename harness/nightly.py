"""``cdc-chaos nightly``: run the catalogue (or chosen scenarios) on fresh seeds under a profile, append every
run to the results store, rewrite the static site, write JUnit XML, prune old passing runs' logs.

Each run goes through the one run path (``scenarios.catalogue.run_scenario``) with its component logs kept
beside its report (``STORE/runs/<run>/logs/``).  One stack per stack shape is started and reused, healed
between runs as pytest does.  The session's base seed is printed; each run's own seed is drawn from it, so a
whole night can be replayed with ``--seed``.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import log
from harness.config import REPO_ROOT, StackConfig
from harness.profiles import Profile
from harness.report import NIGHTLY_DIR
from harness.site import write_site
from harness.store import RunStore

if TYPE_CHECKING:
    from scenarios.catalogue import Scenario, ScenarioOutcome

_LOG = log.get("nightly")


@dataclass(frozen=True)
class NightlyOptions:
    profile: Profile
    scenarios: list[str] | None = None      # None: the catalogue (nightly-only ones only if the profile has them)
    repeat: int = 1
    budget_min: float | None = None         # start no run after this many minutes
    store: Path = NIGHTLY_DIR
    keep_nights: int = 7                    # passing runs' logs are pruned beyond this many sessions
    seed: int | None = None
    junit: Path | None = None               # default: STORE/junit-<session>.xml


def commit_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("-dirty" if dirty else "")


def select(opts: NightlyOptions) -> list[Scenario]:
    from scenarios.catalogue import BY_NAME, SCENARIOS

    if opts.scenarios:
        unknown = [n for n in opts.scenarios if n not in BY_NAME]
        if unknown:
            raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(sorted(BY_NAME))}")
        return [BY_NAME[n] for n in opts.scenarios]   # named explicitly: run whatever the profile
    return [s for s in SCENARIOS if opts.profile.nightly_only or not s.nightly_only]


def plan(opts: NightlyOptions, rng: random.Random) -> list[tuple[Scenario, int]]:
    """(scenario, seed) in run order: each repeat runs the chosen scenarios once more, every run a fresh seed;
    grouped by stack shape so each shape's stack starts once."""
    chosen = select(opts)
    runs = [(sc, rng.randrange(1, 2**31)) for _ in range(opts.repeat) for sc in chosen]
    shapes = list(dict.fromkeys(repr(sorted(sc.stack.items())) for sc, _ in runs))
    return sorted(runs, key=lambda r: shapes.index(repr(sorted(r[0].stack.items()))))


def run_nightly(config: StackConfig, opts: NightlyOptions) -> int:
    """The session: 0 when every run's verdict matched its scenario's expectation, 1 otherwise."""
    from harness.stack import StackPool

    base_seed = opts.seed if opts.seed is not None else random.randrange(1, 2**31)
    rng = random.Random(base_seed)
    todo = plan(opts, rng)
    store = RunStore.at(opts.store)
    sha = commit_sha()
    versions = dataclasses.asdict(config.versions)
    sid = store.begin_session(opts.profile.name, sha, versions,
                              {"scenarios": opts.scenarios, "repeat": opts.repeat, "budget_min": opts.budget_min,
                               "seed": base_seed, "profile": opts.profile.name})
    _LOG.info("nightly session %s: %d run(s), profile %s (%s), base seed %s (replay the night with --seed %s), "
              "store %s", sid, len(todo), opts.profile.name, opts.profile.what, base_seed, base_seed, store.path)
    started = time.monotonic()
    failures = 0
    junit_cases: list[dict[str, Any]] = []
    pool = StackPool(config, label=f"nightly-{sid}")
    shape: str | None = None
    try:
        for i, (sc, seed) in enumerate(todo):
            if opts.budget_min is not None and time.monotonic() - started > opts.budget_min * 60:
                _LOG.warning("budget of %.0f min spent: %d run(s) not started", opts.budget_min, len(todo) - i)
                for sc_left, seed_left in todo[i:]:
                    junit_cases.append({"name": f"{sc_left.name} seed {seed_left}", "skipped": "budget spent"})
                break
            want = repr(sorted(sc.stack.items()))
            if shape is not None and shape != want:   # runs are grouped by shape: the last one is done with
                pool.release(todo[i - 1][0].stack)
            shape = want
            try:
                stack = pool.get(sc.stack)
            except Exception as exc:  # noqa: BLE001 - a stack that never became healthy fails this run, not the night
                outcome, error = None, f"the stack did not start: {type(exc).__name__}: {exc}"[:2000]
            else:
                outcome, error = _one(stack, sc, seed, opts, i)
            if outcome is None:     # the run itself raised: recorded, and the stack started afresh
                failures += 1
                junit_cases.append({"name": f"{sc.name} seed {seed}", "failure": error, "text": error, "time": 0})
                store.add_run(sid, scenario=sc.name, profile=opts.profile.name, seed=seed,
                              replay=_replay(sc, seed, opts), commit_sha=sha, versions=versions, verdict="ERROR",
                              expected=sorted(sc.expect), passed=False, why=error, anomalies={}, timeline=[],
                              recovery=[], freshness_p50_ms=None, freshness_p99_ms=None, throughput=None,
                              wall_s=None, series={}, report_dir="", logs=[])
                pool.release(sc.stack, force=True)
                continue
            failures += not outcome.ok
            _record(store, sid, sha, versions, opts, outcome)
            junit_cases.append({"name": f"{sc.name} seed {seed}", "time": outcome.result.stats.wall_s,
                                **({} if outcome.ok else {"failure": outcome.why, "text": outcome.message()})})
            _LOG.info("[%d/%d] %s seed %s: %s (%s)", i + 1, len(todo), sc.name, seed,
                      "passed" if outcome.ok else "FAILED", outcome.result.verdict.verdict)
    finally:
        pool.close()
        store.end_session(sid)
        pruned = prune(store, opts.keep_nights)
        pages = write_site(store)
        junit = opts.junit or store.directory / f"junit-{sid}.xml"
        write_junit(junit, f"cdc-chaos nightly {sid}", junit_cases)
        _LOG.info("session %s: %d run(s), %d failed; %d run log dir(s) pruned; site %s; JUnit %s", sid,
                  len(junit_cases), failures, pruned, pages["index"], junit)
    return 0 if failures == 0 else 1


def _replay(sc: Scenario, seed: int, opts: NightlyOptions) -> str:
    return f"cdc-chaos run {sc.name} --seed {seed} --profile {opts.profile.name}"


def _one(stack: Any, sc: Scenario, seed: int, opts: NightlyOptions,
         index: int) -> tuple[ScenarioOutcome | None, str]:
    from scenarios.catalogue import run_scenario

    try:
        healed = stack.heal()
        outcome = run_scenario(sc, stack, seed, duration_s=opts.profile.duration_s, rate=opts.profile.rate,
                               replay=_replay(sc, seed, opts), index=index, healed_before=healed,
                               reports_root=opts.store / "runs", keep_logs=True)
        return outcome, ""
    except Exception as exc:  # noqa: BLE001 - one broken run must not end the night; it is recorded failed
        _LOG.exception("%s seed %s raised", sc.name, seed)
        return None, f"{type(exc).__name__}: {exc}"[:2000]


def _record(store: RunStore, sid: str, sha: str, versions: dict[str, Any], opts: NightlyOptions,
            outcome: ScenarioOutcome) -> int:
    r = outcome.result
    d = r.to_dict()
    stats = r.stats
    report = outcome.report["html"].parent
    tput = [n for _, n in r.throughput]
    return store.add_run(
        sid, scenario=outcome.scenario.name, profile=opts.profile.name, seed=r.seed, replay=r.replay,
        commit_sha=sha, versions=versions, verdict=r.verdict.verdict, expected=sorted(outcome.scenario.expect),
        passed=outcome.ok, why=outcome.why, anomalies=d["verdict"]["anomalies"], timeline=d["timeline"],
        recovery=d["stats"]["recovery"], freshness_p50_ms=stats.freshness_summary.get("p50_ms"),
        freshness_p99_ms=stats.freshness_summary.get("p99_ms"),
        throughput=round(sum(tput) / len(tput), 1) if tput else None, wall_s=stats.wall_s,
        series={"throughput": r.throughput, "lag": stats.lag_samples, "checkpoints": stats.checkpoints,
                "freshness": stats.freshness},
        report_dir=str(report), logs=[str(p) for p in sorted(report.rglob("*.log"))] +
        ([str(report / "component-logs.txt")] if (report / "component-logs.txt").exists() else []),
        started_ms=r.t0_wall_ms, windows=r.windows())


def prune(store: RunStore, keep_nights: int) -> int:
    """Delete the kept component logs of passing runs older than the newest ``keep_nights`` sessions; a
    failing run keeps everything."""
    sessions = [s.id for s in store.sessions()]
    old = set(sessions[:-keep_nights]) if keep_nights > 0 else set(sessions)
    done = []
    for run in store.runs():
        if run.session in old and run.passed and not run.logs_pruned and run.report_dir:
            shutil.rmtree(Path(run.report_dir) / "logs", ignore_errors=True)
            done.append(run.id)
    store.mark_logs_pruned(done)
    return len(done)


def write_junit(path: Path, suite: str, cases: list[dict[str, Any]]) -> Path:
    """JUnit XML: one test case per scenario run; a failure carries the verdict's anomaly summary."""
    root = ET.Element("testsuite", name=suite, tests=str(len(cases)),
                      failures=str(sum("failure" in c for c in cases)),
                      skipped=str(sum("skipped" in c for c in cases)),
                      time=f"{sum(float(c.get('time') or 0) for c in cases):.1f}")
    for c in cases:
        case = ET.SubElement(root, "testcase", classname="cdc-chaos.nightly", name=c["name"],
                             time=f"{float(c.get('time') or 0):.1f}")
        if "failure" in c:
            fail = ET.SubElement(case, "failure", message=str(c["failure"])[:500])
            fail.text = str(c.get("text", ""))
        if "skipped" in c:
            ET.SubElement(case, "skipped", message=c["skipped"])
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
