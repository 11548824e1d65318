"""What one run produced, typed: the verdict, the fault timeline with each fault's evidence, the recovery
figures, the series a report plots, and where the report went.  ``runner.run`` returns a :class:`RunResult`;
pytest, ``cdc-chaos run``, ``demo`` and the benchmarks read it through attributes, and reports serialise it
with :meth:`RunResult.to_dict` (``result.json``; ``verdict.json`` is the checker's stable schema).

Fault timeline events are :class:`harness.nemesis.FaultEvent`: the common keys typed, and in ``detail`` what
each nemesis recorded as its evidence (pids, offsets, checkpoints, proxy counters), which differs per fault.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from harness.checker import Verdict
from harness.nemesis import FaultEvent


@dataclass(frozen=True)
class RecoveryFigure:
    """After a heal: seconds until the consumer lag was back within the pre-fault swing (``lag_normal``) and
    down to the idle floor (``lag_zero``); None when never seen while sampled.

    From the fault's injection: seconds until the job read records at its pre-fault rate again
    (``consumption_back_after_s``, Flink's records-consumed metric of the job's change reader; see
    :class:`harness.runner.ConsumptionMonitor`), after the fault first cut reading below half that rate
    (``consumption_dipped``; when it never did, the figure is 0)."""
    nemesis: str
    healed_at_s: float
    lag_baseline: int | None
    lag_normal_after_s: float | None
    lag_zero_after_s: float | None
    injected_at_s: float | None = None
    consumption_baseline_per_s: float | None = None
    consumption_back_after_s: float | None = None
    consumption_dipped: bool | None = None
    # from the injection: the job seen restarting (a task not RUNNING), then every task RUNNING again
    job_restarting_after_s: float | None = None
    tasks_running_after_s: float | None = None


@dataclass
class RunStats:
    wall_s: float
    workload_s: float
    workload: dict[str, Any]                 # the history's summary (committed changes, outcomes, ...)
    quiescence: dict[str, Any]
    recovery: list[RecoveryFigure]
    nemesis_errors: list[str]
    job: dict[str, Any]                      # the job's status at the end (state, restarts, checkpoints)
    lake: dict[str, Any]
    lag_samples: list[tuple[float, int]]     # (seconds since t0, consumer lag)
    healed_before: list[str] = field(default_factory=list)   # members a pooled stack restarted before the run
    warmup: dict[str, Any] = field(default_factory=dict)      # how long the fresh job took to catch up
    # commit -> visible in committed Parquet, per change: [(second of the commit since t0, p50 ms, max ms)]
    freshness: list[tuple[float, int, int]] = field(default_factory=list)
    freshness_summary: dict[str, Any] = field(default_factory=dict)   # n, p50_ms, p99_ms, max_ms
    # completed and failed checkpoints: [(second of the trigger since t0, duration ms, state bytes, status)]
    checkpoints: list[tuple[float, int, int, str]] = field(default_factory=list)
    phases_s: dict[str, float] = field(default_factory=dict)   # seconds per phase of the run, in order
    # records the job's change reader read per second: [(end of the 1 s window since t0, records/s)]
    consumption: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class RunResult:
    name: str
    seed: int
    replay: str
    verdict: Verdict
    timeline: list[FaultEvent]
    schedule: list[dict[str, Any]]
    stats: RunStats
    throughput: list[tuple[float, int]]      # (second since t0, changes committed in it)
    t0_wall_ms: int
    # the operation timeline: (second since t0, client worker, outcome, transactions) per second and worker
    ops: list[tuple[float, int, str, int]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.verdict.clean

    @property
    def summary(self) -> str:
        return self.verdict.summary()

    @property
    def lake_prefix(self) -> str:
        return str(self.verdict.context["lake_prefix"])

    def found(self) -> set[str]:
        """The anomaly classes with a non-zero count."""
        return self.verdict.found()

    def phases(self, phase: str) -> list[FaultEvent]:
        return [e for e in self.timeline if e.phase == phase]

    def windows(self) -> list[str]:
        """The narrow states this run's faults were shown to hit (``Nemesis.window``)."""
        return sorted({str(e.get("window")) for e in self.phases("verify") if e.get("window")})

    def failed_injections(self) -> list[FaultEvent]:
        """Faults whose inject failed."""
        return [e for e in self.phases("error") if e.get("failed_phase") == "inject"]

    def never_injected(self) -> list[FaultEvent]:
        """Faults of the schedule whose time had not come when the workload ended (an earlier heal ran long):
        they tested nothing."""
        return self.phases("skipped")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "replay": self.replay, "verdict": self.verdict.to_dict(),
                "summary": self.summary, "timeline": [e.to_dict() for e in self.timeline],
                "schedule": self.schedule, "stats": dataclasses.asdict(self.stats),
                "throughput": self.throughput, "t0_wall_ms": self.t0_wall_ms, "ops": self.ops,
                "windows": self.windows()}
