"""The nightly results store: one SQLite file (``runs.sqlite``, default ``reports/nightly/``) holding every
run a ``cdc-chaos nightly`` session made, and the judgements read across sessions.

A *session* is one ``nightly`` invocation (a night).  A *run* is one scenario run in it.  A run **passes**
when its scenario's expectation holds (``Scenario.passed``: CLEAN, or a known-bad job convicted, every fault
injected and shown to reach the job).

Across sessions, per scenario (Allure's and Antithesis's vocabulary):
- **safety failure**: a run of a scenario expected CLEAN that found LOST, DUPLICATE, PHANTOM or any mismatch.
  Never "flaky": it stays red whatever other runs on the same code did.
- **flaky**: on the same code commit, the scenario both passed and failed, and none of the failures was a
  safety failure;
- **new** failure: it fails in a session after passing in every run of the session before it (or never ran);
  **ongoing**: it failed in the session before too; **resolved**: it passes now after failing before.

Trends per session (recovery time, freshness p99, throughput, suite wall time) carry a noise band from up to
``window`` earlier sessions: median +/- max(3 x MAD x 1.4826, 10 % of the median), as Flink's benchmark
regression script compares a build with the spread of the builds before it; a session outside it is flagged
once at least ``min_history`` earlier sessions exist.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checker import ANOMALY_CLASSES

SCHEMA_VERSION = 1

#: anomaly classes that mean the lake (or the history) is wrong: every class the checker judges; not a fault
#: without effect (INEFFECTIVE_FAULT), not a stall
SAFETY_CLASSES = frozenset(ANOMALY_CLASSES)

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, started_ms INTEGER, ended_ms INTEGER, wall_s REAL, profile TEXT, commit_sha TEXT,
  versions TEXT, args TEXT);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT REFERENCES sessions(id), started_ms INTEGER,
  scenario TEXT, profile TEXT, seed INTEGER, replay TEXT, commit_sha TEXT, versions TEXT,
  verdict TEXT, expected TEXT, passed INTEGER, why TEXT,
  anomalies TEXT, timeline TEXT, recovery TEXT,
  freshness_p50_ms INTEGER, freshness_p99_ms INTEGER, throughput REAL, wall_s REAL,
  series TEXT, report_dir TEXT, logs TEXT, logs_pruned INTEGER DEFAULT 0, windows TEXT DEFAULT '[]');
CREATE INDEX IF NOT EXISTS runs_by_scenario ON runs(scenario, session);
"""


@dataclass(frozen=True)
class Run:
    id: int
    session: str
    started_ms: int
    scenario: str
    seed: int
    replay: str
    commit_sha: str
    verdict: str
    expected: list[str]
    passed: bool
    why: str
    safety: bool
    anomalies: dict[str, Any]
    recovery: list[dict[str, Any]]
    freshness_p50_ms: int | None
    freshness_p99_ms: int | None
    throughput: float | None
    wall_s: float | None
    report_dir: str
    logs: list[str]
    logs_pruned: bool

    def counts(self) -> dict[str, int]:
        return {k: int(v.get("count", 0)) for k, v in self.anomalies.items() if v.get("count")}


@dataclass(frozen=True)
class Session:
    id: str
    started_ms: int
    ended_ms: int | None
    wall_s: float | None
    profile: str
    commit_sha: str


def safety_failure(expected: list[str], anomaly_counts: dict[str, int]) -> bool:
    """A scenario expected CLEAN whose lake is wrong."""
    return not expected and any(anomaly_counts.get(c, 0) for c in SAFETY_CLASSES)


class RunStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_DDL)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @classmethod
    def at(cls, directory: Path) -> RunStore:
        return cls(Path(directory) / "runs.sqlite")

    @property
    def directory(self) -> Path:
        return self.path.parent

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    # --- writing --------------------------------------------------------------------------------------------
    def begin_session(self, profile: str, commit_sha: str, versions: dict[str, Any], args: dict[str, Any],
                      session_id: str | None = None, started_ms: int | None = None) -> str:
        started_ms = started_ms or int(time.time() * 1000)
        sid = session_id or time.strftime("%Y%m%d-%H%M%S", time.gmtime(started_ms / 1000))
        with self._db() as db:
            db.execute("INSERT INTO sessions (id, started_ms, profile, commit_sha, versions, args) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (sid, started_ms, profile, commit_sha, json.dumps(versions), json.dumps(args)))
        return sid

    def end_session(self, sid: str, ended_ms: int | None = None) -> None:
        ended_ms = ended_ms or int(time.time() * 1000)
        with self._db() as db:
            db.execute("UPDATE sessions SET ended_ms = ?, wall_s = (? - started_ms) / 1000.0 WHERE id = ?",
                       (ended_ms, ended_ms, sid))

    def add_run(self, session: str, *, scenario: str, profile: str, seed: int, replay: str, commit_sha: str,
                versions: dict[str, Any], verdict: str, expected: list[str], passed: bool, why: str,
                anomalies: dict[str, Any], timeline: list[dict[str, Any]], recovery: list[dict[str, Any]],
                freshness_p50_ms: int | None, freshness_p99_ms: int | None, throughput: float | None,
                wall_s: float | None, series: dict[str, Any], report_dir: str, logs: list[str],
                started_ms: int | None = None, windows: list[str] | None = None) -> int:
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO runs (session, started_ms, scenario, profile, seed, replay, commit_sha, versions, "
                "verdict, expected, passed, why, anomalies, timeline, recovery, "
                "freshness_p50_ms, freshness_p99_ms, throughput, wall_s, series, report_dir, logs, windows) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session, started_ms or int(time.time() * 1000), scenario, profile, seed, replay, commit_sha,
                 json.dumps(versions), verdict, json.dumps(sorted(expected)), int(passed), why,
                 json.dumps(anomalies, default=str), json.dumps(timeline, default=str), json.dumps(recovery),
                 freshness_p50_ms, freshness_p99_ms, throughput, wall_s, json.dumps(series, default=str),
                 report_dir, json.dumps(logs), json.dumps(sorted(windows or []))))
            return int(cur.lastrowid or 0)

    def mark_logs_pruned(self, run_ids: list[int]) -> None:
        with self._db() as db:
            db.executemany("UPDATE runs SET logs_pruned = 1 WHERE id = ?", [(i,) for i in run_ids])

    # --- reading --------------------------------------------------------------------------------------------
    def sessions(self) -> list[Session]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM sessions ORDER BY started_ms, id").fetchall()
        return [Session(r["id"], r["started_ms"], r["ended_ms"], r["wall_s"], r["profile"], r["commit_sha"])
                for r in rows]

    def runs(self, scenario: str | None = None, session: str | None = None) -> list[Run]:
        q, args = "SELECT * FROM runs WHERE 1=1", []
        if scenario:
            q, args = q + " AND scenario = ?", [*args, scenario]
        if session:
            q, args = q + " AND session = ?", [*args, session]
        with self._db() as db:
            rows = db.execute(q + " ORDER BY started_ms, id", args).fetchall()
        return [_run(r) for r in rows]

    def run(self, run_id: int) -> Run:
        with self._db() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id} in {self.path}")
        return _run(row)

    def series(self, run_id: int) -> dict[str, Any]:
        with self._db() as db:
            row = db.execute("SELECT series FROM runs WHERE id = ?", (run_id,)).fetchone()
        return json.loads(row["series"]) if row else {}

    def windows(self) -> dict[str, int]:
        """Per aimed-at window, how many runs were shown to reach it (a window never reached was never tested)."""
        out: dict[str, int] = {}
        with self._db() as db:
            for (raw,) in db.execute("SELECT windows FROM runs"):
                for w in json.loads(raw or "[]"):
                    out[w] = out.get(w, 0) + 1
        return dict(sorted(out.items()))

    def scenarios(self) -> list[str]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT scenario FROM runs ORDER BY scenario")]

    # --- judgements across sessions -------------------------------------------------------------------------
    def scenario_status(self, scenario: str) -> dict[str, Any]:
        """Flake rate, first failing session, and the latest session's mark (new / ongoing / resolved / ok)."""
        runs = self.runs(scenario=scenario)
        by_session: dict[str, list[Run]] = {}
        for r in runs:
            by_session.setdefault(r.session, []).append(r)
        order = [s.id for s in self.sessions() if s.id in by_session]
        failed_sessions = [s for s in order if any(not r.passed for r in by_session[s])]
        by_commit: dict[str, set[bool]] = {}
        for r in runs:
            by_commit.setdefault(r.commit_sha, set()).add(r.passed)
        safety = [r for r in runs if r.safety]
        flaky_commits = [c for c, outcomes in by_commit.items() if outcomes == {True, False}
                         and not any(r.safety for r in runs if r.commit_sha == c)]
        failures = [r for r in runs if not r.passed]
        mark = "ok"
        if order:
            now = by_session[order[-1]]
            now_failed = any(not r.passed for r in now)
            before_failed = len(order) > 1 and any(not r.passed for r in by_session[order[-2]])
            if now_failed:
                mark = "ongoing" if before_failed else "new"
            elif before_failed:
                mark = "resolved"
        return {
            "scenario": scenario, "runs": len(runs), "passed": sum(r.passed for r in runs),
            "failed": len(failures), "safety_failures": len(safety),
            "flaky": bool(flaky_commits) and not safety,
            "flake_rate": round(sum(not r.passed for r in runs if r.commit_sha in flaky_commits and not r.safety)
                                / max(1, sum(r.commit_sha in flaky_commits for r in runs)), 3),
            "first_failing_session": failed_sessions[0] if failed_sessions else None,
            "mark": mark,
        }

    def trends(self, window: int = 10, min_history: int = 3) -> dict[str, list[dict[str, Any]]]:
        """Per metric, one point per session: its value, the noise band from earlier sessions, a flag."""
        sessions = self.sessions()
        metrics: dict[str, list[float | None]] = {"recovery_s": [], "freshness_p99_s": [], "throughput": [],
                                                  "suite_wall_s": []}
        for s in sessions:
            runs = self.runs(session=s.id)
            rec = [f["lag_normal_after_s"] for r in runs for f in r.recovery if f.get("lag_normal_after_s") is not None]
            fresh = [r.freshness_p99_ms / 1000 for r in runs if r.freshness_p99_ms is not None]
            tput = [r.throughput for r in runs if r.throughput is not None]
            metrics["recovery_s"].append(statistics.median(rec) if rec else None)
            metrics["freshness_p99_s"].append(statistics.median(fresh) if fresh else None)
            metrics["throughput"].append(statistics.median(tput) if tput else None)
            metrics["suite_wall_s"].append(s.wall_s)
        out: dict[str, list[dict[str, Any]]] = {}
        for name, values in metrics.items():
            points = []
            for i, (s, v) in enumerate(zip(sessions, values, strict=True)):
                earlier = [x for x in values[max(0, i - window):i] if x is not None]
                band = noise_band(earlier) if len(earlier) >= min_history else None
                flagged = v is not None and band is not None and not band[0] <= v <= band[1]
                points.append({"session": s.id, "value": v, "band": band, "flagged": flagged})
            out[name] = points
        return out


def noise_band(values: list[float]) -> tuple[float, float]:
    med = statistics.median(values)
    mad = statistics.median([abs(v - med) for v in values])
    half = max(3 * 1.4826 * mad, 0.1 * abs(med))
    return (med - half, med + half)


def _run(r: sqlite3.Row) -> Run:
    expected, anomalies = json.loads(r["expected"]), json.loads(r["anomalies"])
    counts = {k: int(v.get("count", 0)) for k, v in anomalies.items()}
    return Run(id=r["id"], session=r["session"], started_ms=r["started_ms"], scenario=r["scenario"], seed=r["seed"],
               replay=r["replay"], commit_sha=r["commit_sha"], verdict=r["verdict"],
               expected=expected, passed=bool(r["passed"]), why=r["why"] or "",
               safety=safety_failure(expected, counts), anomalies=anomalies, recovery=json.loads(r["recovery"]),
               freshness_p50_ms=r["freshness_p50_ms"], freshness_p99_ms=r["freshness_p99_ms"],
               throughput=r["throughput"], wall_s=r["wall_s"], report_dir=r["report_dir"],
               logs=json.loads(r["logs"]), logs_pruned=bool(r["logs_pruned"]))
