"""The scenario catalogue: each entry is a workload profile, a fault schedule and what the verdict must be.

Like ducktape's ``@matrix``, the catalogue is data: add a row to add a scenario.  Times are fractions of
the run's duration, so the same catalogue serves short CI runs and long nightly runs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import log
from harness.config import StackConfig
from harness.nemesis import (
    BinlogPurge,
    BrokerKill,
    ConnectKill,
    ConnectOffsetsLost,
    ConnectorRestart,
    DatabaseRestart,
    JobManagerKill,
    LargeTransaction,
    Nemesis,
    NetworkDrops,
    NetworkLatency,
    NetworkPartition,
    Pause,
    Rescale,
    RestoreOlderCheckpoint,
    S3RequestFault,
    Schedule,
    SchemaChange,
    StorageOutage,
    TaskManagerKill,
    TerminalFailureResume,
)
from harness.report import report_dir, write_report
from harness.result import RunResult
from harness.runner import RunSpec, run
from harness.stack import Stack

ScheduleFn = Callable[[random.Random, float], Schedule]


def at(factory: Callable[[], Nemesis], start: float, length_s: float) -> ScheduleFn:
    """One fault at ``start`` x duration, lasting ``length_s`` seconds."""
    return lambda rng, d: Schedule.fixed(factory(), round(start * d, 2), length_s)


def storm(factories: list[Callable[[], Nemesis]], count: int) -> ScheduleFn:
    return lambda rng, d: Schedule.random(rng, factories, count, (0.2 * d, 0.8 * d), (2.0, 5.0))


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str                                    # the fault, in a sentence
    proves: str                                  # what a clean verdict proves
    schedule: ScheduleFn = lambda rng, d: Schedule.none()
    workload: dict[str, Any] = field(default_factory=dict)
    job_variant: str = "correct"
    job_options: dict[str, str] = field(default_factory=dict)   # Flink options for the job (JobConfig.extra)
    expect: frozenset[str] = frozenset()         # empty: must be CLEAN; else: must convict with one of these
    stack: dict[str, dict[str, Any]] = field(default_factory=dict)   # stack.toml overrides (e.g. 3 brokers)
    nightly_only: bool = False                   # too slow for the ci profile: run by nightly and load profiles

    def passed(self, result: RunResult) -> tuple[bool, str]:
        """Did a run of this scenario pass, and why not: the verdict matches the expectation (CLEAN, or a
        known-bad job convicted under one of the expected classes), every fault was injected, and every fault
        was shown to reach the job.  The one rule for pytest, ``cdc-chaos run``, ``demo`` and nightly runs."""
        found = result.found()
        problems = []
        if self.expect and not found & self.expect:
            problems.append(f"expected a conviction under {sorted(self.expect)}, found {sorted(found) or 'none'}")
        elif not self.expect and not result.clean:
            problems.append(f"expected CLEAN, got {result.verdict.verdict}: {sorted(found)}")
        if "INEFFECTIVE_FAULT" in found:
            problems.append("a fault did not reach the job (INEFFECTIVE_FAULT)")
        failed = result.failed_injections()
        if failed:
            problems.append(f"faults not injected: {[e.to_dict() for e in failed]}")
        return not problems, "; ".join(problems)

    @property
    def expectation(self) -> str:
        """What a passing run shows, in words: CLEAN, or convicted under one of the expected classes."""
        return "CLEAN" if not self.expect else "convicted: " + " or ".join(sorted(self.expect))

    def stack_config(self, base: StackConfig) -> StackConfig:
        """The stack shape this scenario runs on (``base`` with the scenario's overrides)."""
        return base.with_overrides(**self.stack) if self.stack else base

    def check_stack(self, stack: Stack) -> None:
        """Refuse a stack of another shape (e.g. 1 broker for a 3-broker scenario): its verdict would not be
        this scenario's."""
        for section, values in self.stack.items():
            for key, want in values.items():
                have = getattr(getattr(stack.config, section), key)
                if have != want:
                    raise ValueError(f"scenario {self.name} needs a stack with [{section}] {key} = {want!r}, "
                                     f"this one has {have!r}; start it with Scenario.stack_config()")

    def spec(self, seed: int, duration_s: float, rate: float, replay: str) -> RunSpec:
        return RunSpec(name=self.name, seed=seed, duration_s=duration_s, rate=rate, workload=self.workload,
                       schedule=self.schedule, job_variant=self.job_variant, job_options=self.job_options,
                       replay=replay)


@dataclass
class ScenarioOutcome:
    scenario: Scenario
    result: RunResult
    ok: bool
    why: str
    report: dict[str, Path]

    def message(self) -> str:
        """What a failure says: the verdict, why, the fault timeline, the seed and replay, the report."""
        r = self.result
        timeline = json.dumps([e.to_dict() for e in r.timeline], default=str)[:3000]
        expected = "CLEAN" if not self.scenario.expect else sorted(self.scenario.expect)
        return (f"\n{r.summary}\n{self.why}\nexpected: {expected}\nfault timeline: {timeline}"
                f"\nseed {r.seed}; replay: {r.replay}\nreport: {self.report['html']}")


def run_scenario(scenario: Scenario, stack: Stack, seed: int, *, duration_s: float, rate: float, replay: str,
                 index: int = 0, healed_before: list[str] | None = None,
                 reports_root: Path | None = None, keep_logs: bool = False) -> ScenarioOutcome:
    """The one path from a scenario to a judged, reported run (pytest, ``cdc-chaos run``, ``demo``,
    ``nightly``): checks the stack's shape, runs, writes the report, and applies :meth:`Scenario.passed`.  On a
    failure the components' log tails go beside the report; with ``keep_logs`` what every component logged
    during the run goes to ``logs/`` there too."""
    scenario.check_stack(stack)
    directory = report_dir(scenario.name, seed, reports_root)
    marks = stack.log_marks() if keep_logs else None
    with log.run_log(directory / "run.log"):
        log.get("scenario").info("%s, seed %s (replay: %s)", scenario.name, seed, replay)
        result = run(stack, scenario.spec(seed, duration_s, rate, replay), index=index)
        log.get("scenario").info("%s", result.summary)
    result.stats.healed_before = list(healed_before or [])
    ok, why = scenario.passed(result)
    if not ok:
        (directory / "component-logs.txt").write_text(stack.log_tails(300))
    if marks is not None:
        stack.keep_logs(marks, directory / "logs")
    paths = write_report(directory, result, expectation=scenario.expectation)
    paths["schedule"] = write_schedule(directory, scenario, result, duration_s, rate)
    return ScenarioOutcome(scenario, result, ok, why, paths)


SCHEDULE_SCHEMA_VERSION = 1


def write_schedule(directory: Path, scenario: Scenario, result: RunResult, duration_s: float, rate: float) -> Path:
    """``schedule.json`` beside the verdict: what ``cdc-chaos replay`` needs to run this again -- the
    scenario, job variant, workload seed, anchor time and first order id, and every fault with its time,
    duration, constructor (``spec``) and the target it chose at injection, named by role."""
    injects = {e.get("fault"): e.detail for e in result.timeline if e.phase == "inject"}
    faults = []
    for i, fault in enumerate(result.schedule):
        ev = injects.get(i, {})
        target = {k: ev[k] for k in ("target", "chosen", "killed", "paused", "route", "partition", "disabled")
                  if k in ev}
        faults.append({**fault, "drawn": target})
    wl = result.stats.workload
    doc = {"schema_version": SCHEDULE_SCHEMA_VERSION, "scenario": scenario.name, "what": scenario.what,
           "job_variant": scenario.job_variant, "job_options": scenario.job_options,
           "expect": sorted(scenario.expect), "stack": scenario.stack,
           "workload": scenario.workload, "seed": result.seed, "duration_s": duration_s, "rate": rate,
           "anchor_ms": wl.get("anchor_ms"), "first_order_id": wl.get("first_order_id"), "faults": faults,
           "found": sorted(result.found()), "windows": result.windows()}
    path = directory / "schedule.json"
    path.write_text(json.dumps(doc, indent=2, default=str))
    return path


SCENARIOS: list[Scenario] = [
    Scenario("baseline", "no fault", "the pipeline is exactly-once and partitions correctly when nothing fails"),
    Scenario("taskmanager_kill", "SIGKILL one TaskManager mid-stream, restart it 4 s later",
             "Flink restores from the last checkpoint without loss or duplicates",
             at(lambda: TaskManagerKill(), 0.3, 4)),
    Scenario("taskmanager_kill_all", "SIGKILL both TaskManagers at once, restart them",
             "a full restart from the checkpoint is exactly-once",
             at(lambda: TaskManagerKill(all_members=True), 0.3, 4), nightly_only=True),
    Scenario("jobmanager_kill", "SIGKILL the JobManager; restart it and resume the job from the latest retained "
             "checkpoint", "the recovery path without HA loses and duplicates nothing",
             at(lambda: JobManagerKill(), 0.35, 3)),
    Scenario("taskmanager_kill_in_checkpoint", "SIGKILL a TaskManager while a checkpoint is in flight "
             "(between barrier and commit), restart it 4 s later",
             "pending files of the aborted checkpoint are neither committed twice nor lost",
             at(lambda: TaskManagerKill(during_checkpoint=True), 0.3, 4)),
    # --- the job's lifecycle under load: what an operator does to a running job ------------------------
    Scenario("restore_older_checkpoint", "mid-stream, once two more checkpoints completed after the latest one, "
             "cancel the job and resume it from that one (the JobManager retains 3), not from the latest",
             "the suite sees what an operator's restore from an older checkpoint does to an append-only lake: "
             "offsets and dedup state rewind, but the files committed after that checkpoint stay, so every "
             "change since is written again (DUPLICATE; the rewound watermark also routes some second copies to "
             "the other table: LATE_MISROUTED). Restore only from the latest checkpoint, or first delete the "
             "files committed after the chosen one",
             at(lambda: RestoreOlderCheckpoint(older_by=2), 0.3, 3), expect=frozenset({"DUPLICATE"}),
             nightly_only=True),   # documents what the operator's action does; the job cannot prevent it
    Scenario("rescale", "mid-stream, stop the job with a savepoint and resume it at parallelism 2; 6 s later stop it "
             "again and resume it at 1",
             "a job rescaled by an operator (keyed dedup and join state redistributed over key groups, Kafka splits "
             "over source subtasks) neither loses nor duplicates, each way",
             at(lambda: Rescale(parallelism=2), 0.3, 6)),
    Scenario("resume_after_terminal_failure", "a job whose restart strategy gives up (none) loses the "
             "TaskManager hosting it and goes FAILED; the TaskManager is restarted and the operator resumes the "
             "job from its latest retained checkpoint",
             "a FAILED job resumed by hand from the checkpoint Flink retained on failure is exactly-once",
             at(lambda: TerminalFailureResume(), 0.3, 4), job_options={"restart-strategy.type": "none"}),
    Scenario("broker_kill", "SIGKILL the Kafka broker, restart it 5 s later",
             "producers (Connect) and the job's source recover without loss", at(lambda: BrokerKill(), 0.3, 5)),
    Scenario("broker_leader_kill_3", "3 brokers (RF=3, min ISR 2): SIGKILL the leader of a seeded orders_cdc "
             "partition, restart it 8 s later (the controller fences it after 4 s and moves its partitions)",
             "leader failover loses nothing acknowledged and duplicates nothing",
             at(lambda: BrokerKill(partition_leader=True), 0.3, 8), stack={"kafka": {"brokers": 3}}, nightly_only=True),
    Scenario("connect_kill", "SIGKILL the Kafka Connect worker; Debezium re-sends changes after restart",
             "the job's deduplication keeps re-sent changes out of the lake", at(lambda: ConnectKill(), 0.4, 3)),
    Scenario("connector_restart", "pause the Debezium connector through Connect's REST API for 5 s, resume it, "
             "restart it with its task", "an operator's pause, resume and restart lose and duplicate nothing",
             at(lambda: ConnectorRestart(), 0.35, 5)),
    Scenario("ddl_add_column", "ALTER TABLE orders ADD COLUMN ... AFTER status at 30 % of the run (row images "
             "shift), dropped again 8 s later, while the workload writes",
             "the lake keeps its schema and every change before, during and after the DDL lands with the right "
             "values in the right columns (truth maps binlog columns by name)",
             at(lambda: SchemaChange(), 0.3, 8)),
    Scenario("large_transaction", "one transaction of 50,000 inserts and an UPDATE of all of them (100,000 row "
             "changes) at 30 % of the run; a TaskManager killed 3 s after its commit, while the job consumes it",
             "a transaction spanning several checkpoints, restored into its middle, lands whole and exactly once",
             lambda rng, d: (Schedule.fixed(LargeTransaction(), round(0.3 * d, 1), 0.5)
                             + Schedule.fixed(TaskManagerKill(), round(0.3 * d, 1) + 3.0, 4.0)),
             nightly_only=True),
    Scenario("binlog_purge_resnapshot", "SIGKILL Kafka Connect, purge the binlog behind its offset while it is "
             "down, restart it: Debezium (snapshot.mode when_needed) takes a new snapshot",
             "the changes written while Connect was away are covered by the new snapshot epoch (superseded, "
             "read from the stack's binlog archive), nothing else is lost, and the lake folds to the table",
             at(lambda: BinlogPurge(), 0.4, 4)),
    Scenario("connect_offsets_lost", "Connect's stored offsets for the connector are deleted mid-stream (the "
             "offsets API, as a wiped offsets topic would leave them); Debezium starts over with a new snapshot",
             "a new snapshot epoch with no offsets lost nothing and duplicated nothing: re-read rows are state "
             "reads of a new epoch, and the lake folds to the table",
             at(lambda: ConnectOffsetsLost(), 0.4, 3)),
    Scenario("database_restart", "SIGKILL the database server while the workload writes, restart it",
             "indeterminate commits are resolved from the binlog; Debezium resumes from its offset",
             at(lambda: DatabaseRestart(), 0.4, 3)),
    Scenario("storage_outage", "stop the S3 store for 6 s (checkpoints and uploads fail), then bring it back",
             "failed checkpoints and uploads neither lose nor duplicate", at(lambda: StorageOutage(), 0.3, 6)),
    Scenario("s3_slow_down", "the S3 gate answers half of the job's S3 requests 503 SlowDown for 8 s",
             "a throttling store (the SDK backs off and retries) delays but neither loses nor duplicates",
             at(lambda: S3RequestFault("slowdown", probability=0.5), 0.3, 8)),
    Scenario("s3_completion_failure", "the S3 gate fails every CompleteMultipartUpload (the moment a part file "
             "becomes visible) for 8 s", "a part file whose completion failed is committed once on retry or "
             "restore, never twice, never lost", at(lambda: S3RequestFault("fail", ("CompleteMultipartUpload",)),
                                                    0.3, 8)),
    Scenario("pause_taskmanager", "SIGSTOP a TaskManager for 8 s (longer than the 5 s heartbeat timeout)",
             "a zombie TaskManager cannot commit twice", at(lambda: Pause("flink", "taskmanager-1"), 0.3, 8)),
    Scenario("pause_broker", "SIGSTOP the broker for 8 s", "a hung broker delays but does not corrupt",
             at(lambda: Pause("kafka"), 0.3, 8), nightly_only=True),
    # --- network faults on the job's own routes, through the stack's Toxiproxy ---------------------------
    Scenario("network_partition_kafka", "cut the network between Flink and every broker for 6 s (connections "
             "closed, new ones refused)", "a job cut off from Kafka resumes from its checkpointed offsets",
             at(lambda: NetworkPartition("kafka"), 0.3, 6)),
    Scenario("network_partition_s3", "cut the network between Flink and the S3 store for 6 s (checkpoints and "
             "uploads fail while the store itself is up)", "failed uploads and checkpoints neither lose nor duplicate",
             at(lambda: NetworkPartition("s3"), 0.3, 6)),
    Scenario("network_latency_s3", "add 300 +/- 100 ms each way to every Flink <-> S3 packet for 6 s",
             "slow checkpoints and uploads delay but do not corrupt the lake",
             at(lambda: NetworkLatency("s3", latency_ms=300, jitter_ms=100), 0.3, 6), nightly_only=True),
    Scenario("network_drops_kafka", "reset 80 % of Flink's Kafka connections (and each reconnect) 1 s in, for 6 s",
             "dropped fetch and coordinator connections neither skip nor repeat records",
             at(lambda: NetworkDrops("kafka", toxicity=0.8, timeout_ms=1000), 0.3, 6), nightly_only=True),
    Scenario("mixed_storm", "three seeded random faults among TaskManager, Connect and broker kills",
             "combined faults still give an exact lake",
             storm([lambda: TaskManagerKill(), lambda: ConnectKill(), lambda: BrokerKill()], 3)),
    Scenario("out_of_order_heavy", "60 % of changes out of order within the watermark bound",
             "out-of-order changes stay on time and land in the right partitions",
             workload={"out_of_order_fraction": 0.6}, nightly_only=True),
    Scenario("late_heavy", "20 % of changes hours to days late", "late changes go to orders_late, row by row",
             workload={"late_fraction": 0.2}),
    Scenario("update_delete_heavy", "mostly updates and deletes", "the fold of the lake equals the final table",
             workload={"mix": (0.3, 0.45, 0.25)}, nightly_only=True),
    Scenario("day_boundary", "event time starts 10 s before midnight UTC",
             "partitions split exactly at hour and day boundaries",
             workload={"anchor_before_boundary_s": 86400}),
    # --- teeth: a known-bad job must be convicted -----------------------------------------------------
    Scenario("teeth_no_dedup_connect_kill", "job without deduplication, Connect killed mid-stream",
             "the suite convicts a job that lets Debezium's re-sends through (DUPLICATE)",
             at(lambda: ConnectKill(), 0.4, 3), job_variant="no_dedup", expect=frozenset({"DUPLICATE"})),
    Scenario("teeth_no_checkpointing_taskmanager_kill", "job without checkpointing (offsets auto-committed), "
             "a TaskManager killed mid-stream", "the suite convicts a job whose sink never commits what its source "
             "has acknowledged (LOST)", at(lambda: TaskManagerKill(), 0.3, 4), job_variant="no_checkpointing",
             expect=frozenset({"LOST"})),
    Scenario("teeth_version_dedup", "job that deduplicates on (order_id, version, is_delete), an application "
             "column; the workload's updates mostly leave version alone", "the suite convicts a job whose change "
             "identity is not the source log's (LOST)", job_variant="version_dedup", expect=frozenset({"LOST"})),
    Scenario("teeth_trusted_watermark_jobmanager_kill", "job that routes by Flink's raw watermark (NULL = on "
             "time); the JobManager is killed and the job resumed onto a backlog with many late changes",
             "the suite convicts routing that trusts a watermark Flink does not checkpoint (LATE_MISROUTED)",
             at(lambda: JobManagerKill(), 0.35, 3), workload={"late_fraction": 0.3}, job_variant="trusted_watermark",
             expect=frozenset({"LATE_MISROUTED"})),
    Scenario("teeth_route_all_late", "job that routes every change late and forges the watermark it records",
             "the suite judges routing from truth, not from the job's own watermark column (LATE_MISROUTED)",
             job_variant="route_all_late", expect=frozenset({"LATE_MISROUTED"})),
    Scenario("teeth_stale_enrichment", "job that enriches from the customers' first version only (a dimension "
             "cached at start) while customers move region and segment", "the suite recomputes enrichment from "
             "the database's own customers history (ENRICHMENT_WRONG)", job_variant="stale_enrichment",
             expect=frozenset({"ENRICHMENT_WRONG"})),
]

#: the main job (`./run demo`): a TaskManager kill at 30 % of the run and a Connect kill at 60 %
DEMO = Scenario("demo", "SIGKILL a TaskManager at 30 % of the run (back 4 s later), then Kafka Connect at 60 % "
                "(back 3 s later)", "the pipeline survives a job failover and Debezium's re-sends exactly once",
                lambda rng, d: (Schedule.fixed(TaskManagerKill(), round(0.3 * d, 1), 4.0)
                                + Schedule.fixed(ConnectKill(), round(0.6 * d, 1), 3.0)))

BY_NAME = {s.name: s for s in [*SCENARIOS, DEMO]}
