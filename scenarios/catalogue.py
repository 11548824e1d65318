"""The scenario catalogue: each entry is a workload profile, a fault schedule and what the verdict must be.

Like ducktape's ``@matrix``, the catalogue is data: add a row to add a scenario.  Times are fractions of
the run's duration, so the same catalogue serves short CI runs and long nightly runs.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import log
from harness.config import StackConfig
from harness.machine_faults import ClockSkew, DiskFull
from harness.nemesis import (
    BinlogPurge,
    BrokerKill,
    ConnectKill,
    ConnectOffsetsLost,
    ConnectorRestart,
    DatabaseRestart,
    Fault,
    JobManagerKill,
    JobUpgrade,
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
    """``count`` seeded faults spread over the middle of the run, each on its own clock: a heal that runs long
    (a restarted broker takes 10-20 s under load) does not push the next fault past the workload's end."""
    return lambda rng, d: Schedule.random(rng, factories, count, (0.2 * d, 0.8 * d), (2.0, 5.0), overlapping=True)


def sequence(*steps: tuple[Callable[[], Nemesis], float, float], start: float = 0.3,
             overlapping: bool = False) -> ScheduleFn:
    """Several faults from ``start`` x duration on: each step is (factory, seconds after that, length_s).  One
    after another (a step whose time has passed starts as soon as the one before it healed, and still lasts
    its full length), or with ``overlapping`` each on its own clock."""
    return lambda rng, d: Schedule([Fault(round(start * d + offset, 2), length, factory())
                                    for factory, offset, length in steps], overlapping=overlapping)


#: where each public tracker keeps its reports
TRACKERS = {"FLINK": "https://issues.apache.org/jira/browse/", "KAFKA": "https://issues.apache.org/jira/browse/",
            "DBZ": "https://issues.redhat.com/browse/"}
#: a citation: a tracker id and the report's address
CITATION = re.compile(r"^(?P<id>[A-Z][A-Z0-9]*-\d+) (?P<url>https://\S+)$")


def cite(tracker_id: str) -> str:
    """The citation of a public report by its tracker id: ``"FLINK-13940 https://issues.apache.org/..."``."""
    project = tracker_id.split("-", 1)[0]
    if project not in TRACKERS or not CITATION.match(f"{tracker_id} {TRACKERS[project]}{tracker_id}"):
        raise ValueError(f"not a tracker id of {sorted(TRACKERS)}: {tracker_id!r}")
    return f"{tracker_id} {TRACKERS[project]}{tracker_id}"


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
    cites: tuple[str, ...] = ()                  # public failure reports it reproduces: "FLINK-123 https://..."
    # the shortest workload in which every fault of its schedule gets its turn (one after another, each waits
    # for the heal before it); a profile's shorter duration is raised to it
    min_duration_s: float = 0.0

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
        never = result.never_injected()
        if never:
            problems.append(f"{len(never)} fault(s) never ran: the workload ended before their turn (an earlier "
                            f"heal ran long); raise the scenario's min_duration_s: {[e.to_dict() for e in never]}")
        return not problems, "; ".join(problems)

    def duration(self, requested_s: float) -> float:
        """The workload length a run of this scenario uses: the requested one, at least ``min_duration_s``."""
        return max(requested_s, self.min_duration_s)

    @property
    def expectation(self) -> str:
        """What a passing run shows, in words: CLEAN, or convicted under one of the expected classes."""
        return "CLEAN" if not self.expect else "convicted: " + " or ".join(sorted(self.expect))

    @property
    def sources(self) -> list[tuple[str, str]]:
        """The cited reports as (tracker id, address); a citation of another shape is kept whole as its id."""
        out = []
        for c in self.cites:
            m = CITATION.match(c)
            out.append((m["id"], m["url"]) if m else (c, ""))
        return out

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
    duration_s = scenario.duration(duration_s)
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
           "expect": sorted(scenario.expect), "stack": scenario.stack, "cites": list(scenario.cites),
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
             at(lambda: TaskManagerKill(during_checkpoint=True), 0.3, 4), nightly_only=True),
    Scenario("taskmanager_kill_in_commit", "SIGKILL the TaskManager hosting the job's tasks after a checkpoint "
             "completed, while its file sink commits that checkpoint's files (the S3 gate holds the "
             "CompleteMultipartUpload until the kill), restart it 4 s later",
             "a commit cut off by a crash is finished by the restored job (Flink commits the pending files it "
             "recovers from the completed checkpoint), never lost and never made visible twice",
             at(lambda: TaskManagerKill(during_commit=True), 0.3, 4), nightly_only=True),
    Scenario("taskmanager_kill_in_offset_commit", "SIGKILL the TaskManager hosting the job's tasks after a "
             "checkpoint completed, while its Kafka source commits that checkpoint's offsets (the proxy holds the "
             "job's requests to the brokers 5 s, so the commit sent on the completion notice is on its way), "
             "restart it 4 s later",
             "a source whose offset commit was cut off restores its offsets from the checkpoint, not from the "
             "group's stale committed ones: nothing re-read into the lake twice, nothing skipped",
             at(lambda: TaskManagerKill(during_offset_commit=True), 0.3, 4), nightly_only=True),
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
    Scenario("upgrade", "mid-stream, stop the job with a savepoint and resume the next revision of it (job version "
             "2: one more derived column, price_tier, in both lake tables) from that savepoint, its state mapped by "
             "operator ids; the upgrade stays",
             "an operator's upgrade through a savepoint keeps every piece of state (dedup, routing watermark, join, "
             "Kafka offsets, pending files): nothing lost or duplicated across the revisions, files of both "
             "schema versions read side by side, and the new column right wherever it is written",
             at(lambda: JobUpgrade(to_version=2), 0.3, 6)),
    Scenario("resume_after_terminal_failure", "a job whose restart strategy gives up (none) loses the "
             "TaskManager hosting it and goes FAILED; the TaskManager is restarted and the operator resumes the "
             "job from its latest retained checkpoint",
             "a FAILED job resumed by hand from the checkpoint Flink retained on failure is exactly-once",
             at(lambda: TerminalFailureResume(), 0.3, 4), job_options={"restart-strategy.type": "none"},
             nightly_only=True),
    Scenario("broker_kill", "SIGKILL the Kafka broker, restart it 5 s later",
             "producers (Connect) and the job's source recover without loss", at(lambda: BrokerKill(), 0.3, 5)),
    Scenario("broker_leader_kill_3", "3 brokers (RF=3, min ISR 2): SIGKILL the leader of a seeded orders_cdc "
             "partition, restart it 8 s later (the controller fences it after 4 s and moves its partitions)",
             "leader failover loses nothing acknowledged and duplicates nothing",
             at(lambda: BrokerKill(partition_leader=True), 0.3, 8), stack={"kafka": {"brokers": 3}}, nightly_only=True),
    Scenario("connect_kill", "SIGKILL the Kafka Connect worker; Debezium re-sends changes after restart",
             "the job's deduplication keeps re-sent changes out of the lake", at(lambda: ConnectKill(), 0.4, 3)),
    Scenario("connect_kill_after_flush", "SIGKILL the Kafka Connect worker within 250 ms after it flushed the "
             "connector's source offsets (watched in its offsets topic), restart it 3 s later",
             "a Connect crash right after an offset flush resumes from the flushed offsets: almost nothing is "
             "re-sent and nothing is skipped (no LOST, no DUPLICATE)",
             at(lambda: ConnectKill(around_flush="after"), 0.4, 3), nightly_only=True),
    Scenario("connect_kill_before_flush", "SIGKILL the Kafka Connect worker just before its next source-offset "
             "flush was due (more than 60 % of offset.flush.interval.ms after the last), restart it 3 s later",
             "a Connect crash with a whole flush interval of changes published but their offsets unflushed "
             "re-sends them, and the job's deduplication keeps them out of the lake (no DUPLICATE, no LOST)",
             at(lambda: ConnectKill(around_flush="before"), 0.4, 3), nightly_only=True),
    Scenario("connector_restart", "pause the Debezium connector through Connect's REST API for 5 s, resume it, "
             "restart it with its task", "an operator's pause, resume and restart lose and duplicate nothing",
             at(lambda: ConnectorRestart(), 0.35, 5), nightly_only=True),
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
             at(lambda: ConnectOffsetsLost(), 0.4, 3), nightly_only=True),
    Scenario("database_restart", "SIGKILL the database server while the workload writes, restart it",
             "indeterminate commits are resolved from the binlog; Debezium resumes from its offset",
             at(lambda: DatabaseRestart(), 0.4, 3)),
    Scenario("storage_outage", "stop the S3 store for 6 s (checkpoints and uploads fail), then bring it back",
             "failed checkpoints and uploads neither lose nor duplicate", at(lambda: StorageOutage(), 0.3, 6),
             nightly_only=True),
    Scenario("s3_slow_down", "the S3 gate answers half of the job's S3 requests 503 SlowDown for 8 s",
             "a throttling store (the SDK backs off and retries) delays but neither loses nor duplicates",
             at(lambda: S3RequestFault("slowdown", probability=0.5), 0.3, 8), nightly_only=True),
    Scenario("s3_completion_failure", "the S3 gate fails every CompleteMultipartUpload (the moment a part file "
             "becomes visible) for 8 s", "a part file whose completion failed is committed once on retry or "
             "restore, never twice, never lost", at(lambda: S3RequestFault("fail", ("CompleteMultipartUpload",)),
                                                    0.3, 8)),
    # --- machine faults: what the machine under a component does to it ---------------------------------
    Scenario("disk_full_taskmanager", "the working directory of the TaskManager hosting the job (its own tmpfs: "
             "RocksDB's local database, the S3 writer's part buffers) runs out of space: a filler file takes "
             "every byte for 8 s (at least 3 s, and on until the job met the full disk, 20 s at most), then is "
             "deleted",
             "a task that meets ENOSPC (a RocksDB flush or a part file written at a checkpoint) fails its "
             "checkpoint or the job, and the job restores from its last completed checkpoint once space is back: "
             "nothing lost, nothing twice",
             at(lambda: DiskFull(), 0.3, 8), stack={"flink": {"taskmanager_disk_mb": 256}},
             nightly_only=True),   # its own stack (tmpfs per TaskManager): 2.5-5.5 min a run on 2 cores
    # ahead only: libfaketime steps the monotonic clock too (see harness/components/flink.py), and a monotonic
    # clock stepped back stalls every timer of the TaskManager for that long, which no real machine does
    Scenario("clock_skew_taskmanager", "the wall (and monotonic) clock of the TaskManager hosting the job "
             "(libfaketime) set 5 min ahead for 5 s, then right, while the JobManager, the other TaskManager, "
             "the brokers and the store keep the machine's time",
             "a TaskManager whose clock is minutes off (processing time, the Kafka client's and the S3 signer's "
             "clocks) loses and duplicates nothing and routes nothing wrong: the job's event time is the log's, "
             "never a machine's; only processed_ms, the TaskManager's own processing time, shows the skew",
             at(lambda: ClockSkew(300), 0.25, 5),
             stack={"flink": {"taskmanager_faketime": True}}, nightly_only=True),   # its own stack, slow to start
    Scenario("clock_skew_taskmanager_s3", "the wall clock of the TaskManager hosting the job (libfaketime) set 20 "
             "min ahead for 8 s: beyond S3's 15 min, so the store refuses its signed requests (403 "
             "RequestTimeTooSkewed), then right again",
             "S3 requests refused for a skewed signing time (part uploads, checkpoint state) delay or fail "
             "checkpoints but lose and duplicate nothing: once the clock is right the job's checkpoints complete "
             "again and the lake is exact",
             at(lambda: ClockSkew(1200), 0.3, 8), stack={"flink": {"taskmanager_faketime": True}}, nightly_only=True),
    Scenario("pause_taskmanager", "SIGSTOP a TaskManager for 8 s (longer than the 5 s heartbeat timeout)",
             "a zombie TaskManager cannot commit twice", at(lambda: Pause("flink", "taskmanager-1"), 0.3, 8)),
    Scenario("pause_broker", "SIGSTOP the broker for 8 s", "a hung broker delays but does not corrupt",
             at(lambda: Pause("kafka"), 0.3, 8), nightly_only=True),
    # --- network faults on the job's own routes, through the stack's Toxiproxy ---------------------------
    Scenario("network_partition_kafka", "cut the network between Flink and every broker for 6 s (connections "
             "closed, new ones refused)", "a job cut off from Kafka resumes from its checkpointed offsets",
             # nightly here: the ci suite runs every network_* scenario through tests/test_network.py, the same
             # run with stricter evidence (lag growing through the cut, checkpoints held), so not twice
             at(lambda: NetworkPartition("kafka"), 0.3, 6), nightly_only=True),
    Scenario("network_partition_s3", "cut the network between Flink and the S3 store for 6 s (checkpoints and "
             "uploads fail while the store itself is up)", "failed uploads and checkpoints neither lose nor duplicate",
             at(lambda: NetworkPartition("s3"), 0.3, 6), nightly_only=True),
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
             workload={"late_fraction": 0.2}, nightly_only=True),
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
    # --- known bugs: public failure reports that could bite this pipeline, each reproduced by its trigger --
    # Each cites its report; all are fixed in today's versions (Flink 2.2, Debezium 3.4, Kafka 4.1) or kept
    # out by the pipeline's design, so each must stay CLEAN: the scenario proves the bug stays fixed.
    #
    # FLINK-13940: on restore, the S3 recoverable writer cleaned up the recoverable state the checkpoint named
    # (the staged object of an in-progress part); when the job failed again before its next checkpoint it
    # restored from that same checkpoint, found the object gone, and lost the part's data or hung in recovery.
    # Fixed by FLINK-13941 (S3 recoverable state is never cleaned up on restore), Flink 1.8.3 / 1.9.1.
    Scenario("known_s3_restore_twice", "SIGKILL the TaskManager hosting the job, restart it 4 s later; 6 s "
             "later, once the restored job has a checkpoint in flight, SIGKILL both TaskManagers inside it, so the "
             "job restores again, from the first restore's checkpoint when none completed in between",
             "a second restore from a checkpoint an earlier restore already used finds every S3 object it names: "
             "nothing lost, nothing twice, no job hung in recovery (FLINK-13940, fixed in Flink 1.8.3 / 1.9.1 by "
             "FLINK-13941)",
             sequence((lambda: TaskManagerKill(), 0.0, 4.0),
                      (lambda: TaskManagerKill(all_members=True, during_checkpoint=True), 10.0, 4.0), start=0.15),
             nightly_only=True, min_duration_s=45, cites=(cite("FLINK-13940"), cite("FLINK-13941"))),
    # FLINK-11187: the S3 writer handed the SDK a stream it could not rewind, so a part upload that hit a
    # transient S3 error could not be retried: requests hung and failed late, checkpoints with them.  Fixed in
    # Flink 1.7.2 / 1.8.0 (parts are uploaded from a file the SDK can re-read).
    Scenario("known_s3_transient_upload_errors", "for 10 s the S3 gate answers 30 % of the job's part uploads "
             "(UploadPart, PutObject) 500 InternalError",
             "part uploads that fail now and then are retried (or the checkpoint fails and the job restores): the "
             "lake is exact, no file half-written or uncommitted is visible (no UNCOMMITTED_VISIBLE, "
             "CORRUPT_FILE) and the run does not stall (FLINK-11187, fixed in Flink 1.7.2 / 1.8.0)",
             at(lambda: S3RequestFault("fail", ("UploadPart", "PutObject"), probability=0.3), 0.3, 10),
             nightly_only=True, cites=(cite("FLINK-11187"),)),
    # FLINK-18934: two- and multi-input operators ignored an idle input's stream status, so an idle source held
    # the watermark back, and with it every event-time step after a join (here the temporal join's output and
    # the partition commit).  Fixed in Flink 1.14.0.  This job marks no source idle (idle-timeout 0: heartbeat
    # rows tick every partition each second); pausing the connector stops even those: the whole topic idles.
    Scenario("known_idle_source", "the Debezium connector is paused for 20 s through Connect's "
             "REST API (no change, no heartbeat: every partition of the topic, so both inputs of the temporal "
             "join, idle), then resumed and restarted",
             "an idle source only holds the job's clock back while it is idle: what the join held is released "
             "once the source resumes (the run quiesces only when the job's clock passes the topic's end), "
             "nothing is lost, and every partition whose commit came due has its _SUCCESS, none too early (no "
             "MISSING_SUCCESS, PREMATURE_SUCCESS) (FLINK-18934, fixed in Flink 1.14.0)",
             at(lambda: ConnectorRestart(), 0.3, 20), nightly_only=True, cites=(cite("FLINK-18934"),)),
    # FLINK-20290: in the FLIP-27 source framework (the Kafka source), splits a failed reader had been assigned
    # were both added back to the enumerator and restored from the checkpoint, so a reader read them twice
    # after a TaskManager or JobManager failure.  Fixed in Flink 1.12.0.
    Scenario("known_source_splits_double_failover", "SIGKILL the JobManager, restart it and resume the job from "
             "its latest retained checkpoint; as soon as the resumed job runs, SIGKILL the TaskManager hosting it "
             "(restart 4 s later)",
             "Kafka splits restored from a checkpoint and re-assigned after a failover are each read once: no "
             "DUPLICATE, no LOST (FLINK-20290, fixed in Flink 1.12.0)",
             sequence((lambda: JobManagerKill(), 0.0, 3.0), (lambda: TaskManagerKill(), 3.5, 4.0), start=0.15),
             nightly_only=True, min_duration_s=55, cites=(cite("FLINK-20290"),)),
    # FLINK-34063: with snapshot compression on, operator state (the Kafka source's splits) was restored from a
    # wrong stream position when redistributed to another parallelism, so splits were lost on rescale.
    # Affected Flink 1.18.0/1.18.1 (operator-state compression, FLIP-290); fixed in 1.18.2 and 1.19.0.
    Scenario("known_rescale_snapshot_compression", "with execution.checkpointing.snapshot-compression on, stop "
             "the job with a savepoint and resume it at parallelism 2; 6 s later stop it again and resume it at 1",
             "compressed operator state (the Kafka source's splits) redistributed over another parallelism keeps "
             "every split: no LOST, no DUPLICATE, each way (FLINK-34063, fixed in Flink 1.18.2 / 1.19.0)",
             at(lambda: Rescale(parallelism=2), 0.3, 6),
             job_options={"execution.checkpointing.snapshot-compression": "true"}, nightly_only=True,
             cites=(cite("FLINK-34063"),)),
    # FLINK-28060 / KAFKA-13563: a consumer using assign() (the Kafka source) never cleared a failed
    # FindCoordinator future, so after a broker restart every offset commit on checkpoint failed forever (the
    # job ran on, its group's offsets froze).  Fixed in Kafka clients 3.1.1 / 3.2.0, taken by Flink 1.16.0.
    Scenario("known_offset_commit_after_broker_restart", "SIGKILL the Kafka broker and keep it down 15 s (the "
             "group coordinator is unreachable through several checkpoints), then restart it",
             "the job commits its offsets on checkpoint again after the broker returns: the run quiesces only "
             "when the committed offsets reach the topic's end, so a commit stuck forever fails it (STALLED) "
             "(FLINK-28060 / KAFKA-13563, fixed in Kafka clients 3.1.1 and Flink 1.16.0)",
             at(lambda: BrokerKill(), 0.3, 15), nightly_only=True,
             cites=(cite("FLINK-28060"), cite("KAFKA-13563"))),
    # KAFKA-6361: two leader changes in quick succession could leave a follower's log diverged from the leader's
    # (truncation by high watermark, not leader epoch): acknowledged records lost or replaced.  Fixed by
    # KIP-279 in Kafka 2.0.0.
    Scenario("known_kafka_fast_leader_failover", "3 brokers (RF=3, min ISR 2): SIGKILL the leader of a seeded "
             "orders_cdc partition, restart it 8 s later, and at once SIGKILL the leader of a seeded partition "
             "again (restart 8 s later)",
             "two fast leader failovers leave every replica's log the same: nothing Connect had acknowledged is "
             "lost or replaced (no LOST, no DUPLICATE) (KAFKA-6361, fixed in Kafka 2.0.0)",
             sequence((lambda: BrokerKill(partition_leader=True), 0.0, 8.0),
                      (lambda: BrokerKill(partition_leader=True), 9.0, 8.0), start=0.15),
             stack={"kafka": {"brokers": 3}}, nightly_only=True, min_duration_s=60,
             cites=(cite("KAFKA-6361"),)),
    # DBZ-73: the MySQL connector recorded the *next* event's binlog position in the offset of every row of a
    # multi-row event, so a crash after Connect flushed the offset of some of its rows skipped the rest on
    # restart.  Fixed in Debezium 0.2.2 (offsets carry the event's position and the row to resume at).
    Scenario("known_dbz_multirow_event_connect_kill", "40 % of statements are bulk UPDATE/DELETE ... WHERE "
             "order_id IN (...) (one rows event of up to 6 rows each); SIGKILL Kafka Connect mid-stream, restart "
             "it 3 s later",
             "a Connect crash between rows of one multi-row binlog event resumes at the next row: the rest of "
             "the event is not skipped (no LOST) and its re-sent rows are deduplicated (DBZ-73, fixed in "
             "Debezium 0.2.2)",
             at(lambda: ConnectKill(), 0.4, 3), workload={"bulk_fraction": 0.4, "bulk_max_rows": 6},
             nightly_only=True, cites=(cite("DBZ-73"),)),
    # DBZ-144: a connector restarted in the middle of a transaction resumed at an arbitrary event inside it,
    # skipping the TABLE_MAP events the rows need, and lost or missed events of that transaction.  Fixed in
    # Debezium 0.3.5 (offsets name the transaction's start and how many of its events and rows to skip).
    Scenario("known_dbz_restart_mid_transaction", "one transaction of 20,000 inserts and an UPDATE of all of them "
             "(40,000 row changes); Kafka Connect SIGKILLed 2 s after its commit, while Debezium streams it, "
             "restarted 3 s later",
             "a connector restarted inside a transaction re-reads it from its start, skips what it had published "
             "and loses nothing: the transaction lands whole and once (DBZ-144, fixed in Debezium 0.3.5)",
             sequence((lambda: LargeTransaction(rows=20_000), 0.0, 0.5), (lambda: ConnectKill(), 2.0, 3.0)),
             nightly_only=True, cites=(cite("DBZ-144"),)),
    # DBZ-1033: the binlog reader did not reset its count of events to skip when a QUERY event (a DDL, or a
    # transaction's BEGIN) moved its restart position, so a task restarted right after one skipped events of
    # the next transaction.  Fixed in Debezium 0.9.0.Beta2.
    Scenario("known_dbz_restart_after_query_event", "ALTER TABLE orders ADD COLUMN ... while the workload writes "
             "(dropped 8 s later); 1 s after the DDL, Kafka Connect is SIGKILLed and restarted 3 s later",
             "a connector restarted just after a QUERY event (the DDL, the BEGINs around it) resumes at the right "
             "event: no change after it is skipped (no LOST), the lake keeps its schema (DBZ-1033, fixed in "
             "Debezium 0.9.0.Beta2)",
             sequence((lambda: SchemaChange(), 0.0, 8.0), (lambda: ConnectKill(), 1.0, 3.0), overlapping=True),
             nightly_only=True, cites=(cite("DBZ-1033"),)),
]

#: the main job (`./run demo`): a TaskManager kill at 30 % of the run and a Connect kill at 60 %
DEMO = Scenario("demo", "SIGKILL a TaskManager at 30 % of the run (back 4 s later), then Kafka Connect at 60 % "
                "(back 3 s later)", "the pipeline survives a job failover and Debezium's re-sends exactly once",
                # each fault on its own clock: the TaskManager's restart (10-20 s under load) does not push
                # the Connect kill past the workload's end
                lambda rng, d: Schedule([Fault(round(0.3 * d, 1), 4.0, TaskManagerKill()),
                                         Fault(round(0.6 * d, 1), 3.0, ConnectKill())], overlapping=True))

BY_NAME = {s.name: s for s in [*SCENARIOS, DEMO]}


def known_bugs() -> list[Scenario]:
    """The catalogue's scenarios that reproduce public failure reports (those that cite one)."""
    return [s for s in SCENARIOS if s.cites]


def describe(scenario: Scenario) -> dict[str, Any]:
    """A scenario as data, for people and tools (``cdc-chaos catalogue --json``)."""
    return {"name": scenario.name, "what": scenario.what, "proves": scenario.proves,
            "expectation": scenario.expectation, "nightly_only": scenario.nightly_only,
            "job_variant": scenario.job_variant, "job_options": scenario.job_options, "workload": scenario.workload,
            "stack": scenario.stack, "cites": [{"id": i, "url": u} for i, u in scenario.sources]}


def catalogue_text(scenarios: list[Scenario] | None = None) -> str:
    """The catalogue as people read it (``cdc-chaos catalogue``): per scenario its name, where it runs, what
    a passing run shows, the fault, and the public reports it reproduces."""
    lines = []
    for s in SCENARIOS if scenarios is None else scenarios:
        lines.append(f"{s.name}  [{'nightly' if s.nightly_only else 'ci'}]  {s.expectation}")
        lines.append(f"    fault:  {s.what}")
        lines.append(f"    proves: {s.proves}")
        for tracker_id, url in s.sources:
            lines.append(f"    source: {tracker_id} {url}".rstrip())
    return "\n".join(lines)

