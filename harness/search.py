"""Chaos that searches, as Jepsen does: seeded random fault schedules drawn from every nemesis the harness
has, replay of a run from its ``schedule.json``, and shrinking a failing schedule to the smallest one that
still shows the same anomaly class.

- :func:`random_schedule` draws, from a seed, ``count`` faults over a run: kind, start and length each drawn;
  faults on *different* components may overlap (each fault runs on its own clock), two on the same component
  may not (the second would hit a process the first already killed, proving nothing).
- :func:`replay` runs a report directory's scenario again: the same workload seed and the same faults at the
  same times on a fresh job (the ids and wall-clock anchor are new; timing is never the same).
- :func:`shrink` removes faults one at a time while the anomaly class persists, then halves each remaining
  window while it persists, and saves the result as ``shrunk-schedule.json`` with the number of runs it took.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import log
from harness.nemesis import (
    BinlogPurge,
    BrokerKill,
    ConnectKill,
    ConnectorRestart,
    DatabaseRestart,
    Fault,
    JobManagerKill,
    Nemesis,
    NetworkBandwidth,
    NetworkDrops,
    NetworkLatency,
    NetworkPartition,
    Pause,
    S3RequestFault,
    Schedule,
    StorageOutage,
    TaskManagerKill,
)
from harness.store import SAFETY_CLASSES

_LOG = log.get("search")


@dataclass(frozen=True)
class PoolEntry:
    make: Callable[[], Nemesis]
    touches: frozenset[str]              # components the fault acts on (no two overlapping faults share one)
    duration_s: tuple[float, float]


def _e(make: Callable[[], Nemesis], *touches: str, duration_s: tuple[float, float] = (2.0, 6.0)) -> PoolEntry:
    return PoolEntry(make, frozenset(touches), duration_s)


#: every nemesis kind the harness has, as a random schedule draws them
FAULT_POOL: list[PoolEntry] = [
    _e(lambda: TaskManagerKill(), "flink"),
    _e(lambda: TaskManagerKill(all_members=True), "flink"),
    _e(lambda: TaskManagerKill(during_checkpoint=True), "flink"),
    _e(lambda: TaskManagerKill(during_commit=True), "flink", "s3-gate"),
    _e(lambda: TaskManagerKill(during_offset_commit=True), "flink", "net-kafka"),
    _e(lambda: JobManagerKill(), "flink", duration_s=(2.0, 4.0)),
    _e(lambda: Pause("flink", "taskmanager-1"), "flink", duration_s=(6.0, 9.0)),
    _e(lambda: BrokerKill(), "kafka"),
    _e(lambda: Pause("kafka"), "kafka", duration_s=(6.0, 9.0)),
    _e(lambda: ConnectKill(), "connect", duration_s=(2.0, 4.0)),
    _e(lambda: ConnectKill(around_flush="before"), "connect", duration_s=(2.0, 4.0)),
    _e(lambda: ConnectorRestart(), "connect", duration_s=(3.0, 6.0)),
    _e(lambda: BinlogPurge(), "connect", "database", duration_s=(3.0, 5.0)),
    _e(lambda: DatabaseRestart(), "database", duration_s=(2.0, 4.0)),
    _e(lambda: StorageOutage(), "s3"),
    _e(lambda: NetworkPartition("kafka"), "net-kafka"),
    _e(lambda: NetworkPartition("s3"), "net-s3"),
    _e(lambda: NetworkLatency("s3", latency_ms=300, jitter_ms=100), "net-s3", duration_s=(4.0, 8.0)),
    _e(lambda: NetworkDrops("kafka", toxicity=0.8, timeout_ms=1000), "net-kafka", duration_s=(4.0, 8.0)),
    _e(lambda: NetworkBandwidth("s3", rate_kbps=16), "net-s3", duration_s=(4.0, 8.0)),
    _e(lambda: S3RequestFault("slowdown", probability=0.5), "s3-gate", duration_s=(4.0, 8.0)),
    _e(lambda: S3RequestFault("fail", ("CompleteMultipartUpload",)), "s3-gate", duration_s=(4.0, 8.0)),
]
#: after a fault on a component heals, the next fault on it waits this long (its restart and recovery)
SETTLE_S = 4.0


def random_schedule(rng: random.Random, duration_s: float, count: int,
                    pool: list[PoolEntry] | None = None) -> Schedule:
    """``count`` faults drawn from ``pool`` over the middle of a run (15 %-75 % of ``duration_s``)."""
    pool = pool or FAULT_POOL
    placed: list[tuple[float, float, frozenset[str]]] = []
    faults: list[Fault] = []
    lo, hi = 0.15 * duration_s, 0.75 * duration_s
    for _ in range(count):
        for _attempt in range(200):
            entry = rng.choice(pool)
            length = round(rng.uniform(*entry.duration_s), 2)
            at = round(rng.uniform(lo, hi), 2)
            if all(not (entry.touches & touched) or at >= end + SETTLE_S or at + length + SETTLE_S <= start
                   for start, end, touched in placed):
                placed.append((at, at + length, entry.touches))
                faults.append(Fault(at, length, entry.make()))
                break
        else:
            raise ValueError(f"cannot place {count} faults without two on one component overlapping in a "
                             f"{duration_s:.0f} s run: lengthen the run (--duration) or draw fewer (--faults)")
    return Schedule(faults, overlapping=True)


def random_scenario(faults: int, job_variant: str = "correct") -> Any:
    """The catalogue's shape for ``cdc-chaos run random``: a fresh random schedule per seed, expected CLEAN
    (a known-bad ``job_variant`` is there to be found out)."""
    from scenarios.catalogue import Scenario

    return Scenario("random", f"{faults} random faults from every nemesis kind, overlapping across components",
                    "the pipeline survives a seeded random mix of faults exactly once",
                    lambda rng, d: random_schedule(rng, d, faults), job_variant=job_variant)


# --- replay --------------------------------------------------------------------------------------------------

def load_schedule(report_dir: Path) -> dict[str, Any]:
    path = Path(report_dir) / "schedule.json"
    if not path.exists():
        raise FileNotFoundError(f"{report_dir} has no schedule.json: replay and shrink need a run directory written "
                                "by `cdc-chaos run` / `nightly` / pytest scenarios")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def scenario_from(doc: dict[str, Any], faults: list[dict[str, Any]] | None = None) -> Any:
    """The scenario of a ``schedule.json``, with its faults (or ``faults``) fixed."""
    from scenarios.catalogue import Scenario

    fixed = doc["faults"] if faults is None else faults
    return Scenario(doc["scenario"], doc.get("what", ""), "replayed from schedule.json",
                    lambda rng, d: Schedule.from_description(fixed), workload=doc.get("workload") or {},
                    job_variant=doc.get("job_variant", "correct"), job_options=doc.get("job_options") or {},
                    expect=frozenset(doc.get("expect") or ()), stack=doc.get("stack") or {},
                    cites=tuple(doc.get("cites") or ()))


def target_classes(found: set[str]) -> set[str]:
    """What a failing run showed that shrinking must keep: its safety anomalies, else whatever it found."""
    safety = found & SAFETY_CLASSES
    return safety or (found - {"INEFFECTIVE_FAULT"}) or found


@dataclass
class Attempt:
    faults: list[dict[str, Any]]
    found: list[str]
    kept: bool
    report: str


def shrink(doc: dict[str, Any], run_faults: Callable[[list[dict[str, Any]]], tuple[set[str], str]],
           max_runs: int = 20) -> tuple[list[dict[str, Any]], list[Attempt], set[str]]:
    """Delta-debugging over faults, then windows.  ``run_faults`` runs the scenario with a fault list and
    returns (anomaly classes found, its report dir).  Returns the smallest failing fault list, every attempt,
    and the anomaly classes kept."""
    target = target_classes(set(doc.get("found") or []))
    if not target:
        raise ValueError("the run found no anomaly: nothing to shrink")
    faults = list(doc["faults"])
    attempts: list[Attempt] = []

    def fails(candidate: list[dict[str, Any]]) -> bool:
        found, report = run_faults(candidate)
        kept = bool(found & target)
        attempts.append(Attempt(candidate, sorted(found), kept, report))
        _LOG.info("shrink run %d: %d fault(s) %s -> %s (%s)", len(attempts), len(candidate),
                  [f["nemesis"] for f in candidate], sorted(found) or "CLEAN", "kept" if kept else "lost it")
        return kept

    progress = True
    while progress and len(faults) > 1 and len(attempts) < max_runs:
        progress = False
        for i in range(len(faults)):
            if len(attempts) >= max_runs:
                break
            candidate = faults[:i] + faults[i + 1:]
            if fails(candidate):
                faults, progress = candidate, True
                break
    for i in range(len(faults)):
        while faults[i]["duration_s"] >= 2.0 and len(attempts) < max_runs:
            shorter = {**faults[i], "duration_s": round(faults[i]["duration_s"] / 2, 2)}
            candidate = [*faults[:i], shorter, *faults[i + 1:]]
            if not fails(candidate):
                break
            faults = candidate
    return faults, attempts, target


def explore(stack: Any, rng: random.Random, *, budget_min: float, faults: int, duration_s: float, rate: float,
            variant: str = "correct", shrink_runs: int = 12, reports_root: Path | None = None) -> list[dict[str, Any]]:
    """Random schedules on ``stack`` until ``budget_min`` is spent (no run starts after it); each failing
    run is shrunk within ``shrink_runs`` runs and saved beside its report (``shrunk-schedule.json``)."""
    import time

    from scenarios.catalogue import run_scenario

    started = time.monotonic()
    failing: list[dict[str, Any]] = []
    index = 0
    while time.monotonic() - started < budget_min * 60:
        seed = rng.randrange(1, 2**31)
        scenario = random_scenario(faults, variant)
        stack.heal()
        outcome = run_scenario(scenario, stack, seed, duration_s=duration_s, rate=rate, index=index,
                               replay=f"cdc-chaos run random --seed {seed} --duration {duration_s:g} --rate {rate:g} "
                                      f"--faults {faults} --variant {variant}", reports_root=reports_root)
        index += 1
        _LOG.info("explore run %d seed %s: %s", index, seed, "passed" if outcome.ok else f"FAILED {outcome.why}")
        if outcome.ok:
            continue
        report = outcome.report["html"].parent
        if not target_classes(set(outcome.result.found())):
            failing.append({"seed": seed, "found": [], "shrunk": None, "report": str(report)})
            continue
        shrunk, _attempts, _kept = shrink_report(stack, report, shrink_runs, first_index=index)
        index += len(_attempts)
        failing.append({"seed": seed, "found": sorted(outcome.result.found()),
                        "shrunk": [f["nemesis"] for f in shrunk["faults"]], "report": str(report)})
    return failing


def shrink_report(stack: Any, report: Path, max_runs: int, first_index: int = 1) -> tuple[dict[str, Any],
                                                                                      list[Attempt], set[str]]:
    """Shrink the run in ``report`` on ``stack`` (healed before each try); the result, with every attempt,
    is saved as ``shrunk-schedule.json`` beside it."""
    import itertools

    from scenarios.catalogue import run_scenario

    doc = load_schedule(report)
    counter = itertools.count(first_index)

    def run_faults(faults: list[dict[str, Any]]) -> tuple[set[str], str]:
        stack.heal()
        outcome = run_scenario(scenario_from(doc, faults), stack, int(doc["seed"]), duration_s=float(doc["duration_s"]),
                               rate=float(doc["rate"]), replay=f"cdc-chaos shrink {report}", index=next(counter),
                               reports_root=report / "shrink")
        return outcome.result.found(), str(outcome.report["html"].parent)

    smallest, attempts, kept = shrink(doc, run_faults, max_runs=max_runs)
    out = {**doc, "faults": smallest, "shrunk_from": len(doc["faults"]), "runs": len(attempts), "kept": sorted(kept),
           "attempts": [a.__dict__ for a in attempts]}
    (report / "shrunk-schedule.json").write_text(json.dumps(out, indent=2, default=str))
    return out, attempts, kept
