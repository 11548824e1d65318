"""A fault counts only when the run proves it reached the job: each nemesis targets what the job runs on and
reports, in a ``verify`` event of the fault timeline, whether it was effective and why.

The pure parts (mapping Flink's REST answers to stack members, the before/after comparisons) are tested on
recorded REST JSON; the rest on a real stack with a running job: a TaskManager kill takes the TaskManager that
hosts the job and proves the job failed over, a kill of an idle TaskManager is reported ineffective, and a
Flink pause takes the hosting TaskManager."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import kafka_client
from harness.nemesis import (
    NO_JOB,
    ConnectKill,
    JobUpgrade,
    Nemesis,
    NemesisRunner,
    NetworkLatency,
    NetworkPartition,
    Observation,
    Pause,
    Recovery,
    Rescale,
    RestoreOlderCheckpoint,
    Schedule,
    StorageOutage,
    TaskManagerKill,
    Verification,
    accepted_connections,
    checkpoint_status,
    checkpoints_hit,
    flush_window_hit,
    gate_delta,
    hosting_members,
    job_shape,
    kafka_errors_in,
    map_taskmanagers,
    offset_commit_window_evidence,
    offsets_frozen,
    offsets_moved,
    older_restore_evidence,
    rescale_evidence,
    resent_changes,
    restarted_since,
    terminal_failure_evidence,
    upgrade_evidence,
    wait_for_offset_flush,
)
from harness.pipeline import Pipeline
from harness.stack import Stack

# --- recorded REST answers (Flink 2.2, one job of parallelism 1 on taskmanager-2 of two;
# trimmed from a live stack) -------------------

TM_HOST = "127.0.0.1:44431-cd6ab0"     # resource id: host:RPC port-suffix
TM_IDLE = "127.0.0.1:38731-943401"
REGISTERED = [
    {"id": TM_HOST, "path": "pekko.tcp://flink@127.0.0.1:44431/user/rpc/taskmanager_0", "dataPort": 45031,
     "jmxPort": -1, "slotsNumber": 2, "freeSlots": 1},
    {"id": TM_IDLE, "path": "pekko.tcp://flink@127.0.0.1:38731/user/rpc/taskmanager_0", "dataPort": 33377,
     "jmxPort": -1, "slotsNumber": 2, "freeSlots": 2},
]
VERTEX_TMS = [  # /jobs/<id>/vertices/<vid>/taskmanagers, reduced by Pipeline.task_locations
    {"vertex": "Source: cdc_typed[1] -> (Calc[2], Calc[23])", "vertex_id": "v1", "taskmanager_id": TM_HOST,
     "endpoint": "localhost:45031", "status": "RUNNING"},
    {"vertex": "StreamingFileWriter -> end: Writer", "vertex_id": "v2", "taskmanager_id": TM_HOST,
     "endpoint": "localhost:45031", "status": "RUNNING"},
]
MEMBER_PORTS = {"taskmanager-1": {40643, 38731, 33377}, "taskmanager-2": {45031, 44431, 37899}}  # LISTEN


def test_taskmanager_ids_map_to_the_members_listening_on_their_ports() -> None:
    by_id = map_taskmanagers(VERTEX_TMS, REGISTERED, MEMBER_PORTS)
    assert by_id == {TM_HOST: "taskmanager-2", TM_IDLE: "taskmanager-1"}
    placement = hosting_members(VERTEX_TMS, by_id)
    assert placement["hosting"] == {"taskmanager-2": ["Source: cdc_typed[1] -> (Calc[2], Calc[23])",
                                                      "StreamingFileWriter -> end: Writer"]}
    assert placement["taskmanager_ids"] == {"taskmanager-2": TM_HOST} and placement["unmapped"] == []
    # only the data port known (no /taskmanagers entry): the endpoint alone still maps it
    assert map_taskmanagers([{**VERTEX_TMS[0], "taskmanager_id": "tm-x"}], [], MEMBER_PORTS) == \
        {"tm-x": "taskmanager-2"}
    # a restarted TaskManager listens on new ports: the old id maps to nobody and is reported
    unmapped = hosting_members(VERTEX_TMS, map_taskmanagers(VERTEX_TMS, REGISTERED, {"taskmanager-2": {1}}))
    assert unmapped["hosting"] == {} and unmapped["unmapped"] == [TM_HOST]


def test_taskmanager_targets_follow_the_job() -> None:
    from harness.nemesis import _choose_taskmanager

    placement = {"hosting": {"taskmanager-2": ["src"]}}
    tms = ["taskmanager-1", "taskmanager-2"]
    assert _choose_taskmanager(tms, placement, "job", random.Random(1))[0] == "taskmanager-2"
    assert _choose_taskmanager(tms, placement, "idle", random.Random(1))[0] == "taskmanager-1"
    assert _choose_taskmanager(tms, None, "job", random.Random(1))[1].startswith("random")
    with pytest.raises(RuntimeError, match="no idle TaskManager"):
        _choose_taskmanager(tms, {"hosting": {"taskmanager-1": [], "taskmanager-2": []}}, "idle", random.Random(1))
    with pytest.raises(ValueError):
        TaskManagerKill(target="nowhere")


EXCEPTIONS = {"rootException": None, "exceptionHistory": {"truncated": False, "entries": [
    {"exceptionName": "org.apache.flink.runtime.resourcemanager.exceptions.ResourceManagerException",
     "timestamp": 1_700_000_012_000, "taskName": "OverAggregate[4] -> Calc[5] (1/1) - execution #0",
     "endpoint": "localhost:45031", "taskManagerId": TM_HOST,
     "failureLabels": {}, "concurrentExceptions": []}]}}


def test_restart_evidence_needs_a_failure_after_the_inject() -> None:
    before = {"num_restarts": 0, "restarting_ms": 0}
    entries = EXCEPTIONS["exceptionHistory"]["entries"]   # type: ignore[index]
    after_ok = {"num_restarts": 0, "restarting_ms": 1_700_000_012_050}
    ev = restarted_since(before, after_ok, entries, inject_ms=1_700_000_010_000)
    assert ev["restarted"] and len(ev["reasons"]) == 2, ev
    assert restarted_since(before, {"num_restarts": 1, "restarting_ms": 0}, [], 1)["reasons"] == \
        ["numRestarts rose 0 -> 1"]
    # an older failure and an older RESTARTING are not this fault's
    stale = restarted_since(before, {"num_restarts": 0, "restarting_ms": 1_699_999_000_000}, [],
                            inject_ms=1_700_000_010_000)
    assert not stale["restarted"]


HISTORY = [  # /jobs/<id>/checkpoints "history", newest first
    {"id": 9, "status": "COMPLETED", "trigger_timestamp": 30_000, "end_to_end_duration": 300},
    {"id": 8, "status": "FAILED", "trigger_timestamp": 24_000, "end_to_end_duration": 5_100,
     "failure_message": "Connection refused"},
    {"id": 7, "status": "COMPLETED", "trigger_timestamp": 21_000, "end_to_end_duration": 5_500},
    {"id": 6, "status": "COMPLETED", "trigger_timestamp": 15_000, "end_to_end_duration": 250},
    {"id": 5, "status": "COMPLETED", "trigger_timestamp": 12_000, "end_to_end_duration": 200},
]


def test_checkpoints_hit_by_a_fault_window() -> None:
    baseline = HISTORY[3:]
    hit = checkpoints_hit(HISTORY, baseline, inject_ms=20_000, heal_ms=26_000)
    assert [(c["id"], c["hit"].split()[0]) for c in hit["hit"]] == [(8, "failed"), (7, "took")], hit
    assert hit["normal_ms"] == 225 and hit["slow_ms"] == 2000
    # nothing overlapped a fault long before: no evidence
    assert checkpoints_hit(HISTORY, baseline, inject_ms=1_000, heal_ms=5_000)["hit"] == []
    # a normal checkpoint inside the window is not evidence either
    assert checkpoints_hit(HISTORY[:1], baseline, inject_ms=29_000, heal_ms=35_000)["hit"] == []
    assert checkpoint_status(HISTORY, 8) == "FAILED" and checkpoint_status(HISTORY, 42) is None


def test_a_checkpoint_still_in_flight_long_after_the_heal_was_held_by_the_fault() -> None:
    """A checkpoint the fault held may still be running when the evidence is read (CI: 20 s after an S3
    partition healed); one that began before the fault, or just before the heal, or is young, is no evidence."""
    baseline = HISTORY[3:]
    held = [{"id": 10, "status": "IN_PROGRESS", "trigger_timestamp": 22_000, "end_to_end_duration": None}]
    hit = checkpoints_hit(held, baseline, inject_ms=20_000, heal_ms=26_000, now_ms=40_000)
    assert [c["id"] for c in hit["hit"]] == [10] and "in flight" in hit["hit"][0]["hit"], hit
    assert checkpoints_hit(held, baseline, inject_ms=20_000, heal_ms=26_000, now_ms=27_000)["hit"] == []
    late = [{**held[0], "trigger_timestamp": 25_500}]
    assert checkpoints_hit(late, baseline, inject_ms=20_000, heal_ms=26_000, now_ms=40_000)["hit"] == []
    early = [{**held[0], "trigger_timestamp": 10_000}]
    assert checkpoints_hit(early, baseline, inject_ms=20_000, heal_ms=26_000, now_ms=40_000)["hit"] == []


#: CI's S3 partition (inject 152_632, heal 158_499): no checkpoint ran in it at all, the JobManager could not
#: create the next one's directory until the route was back
TRIGGERS_HELD = [{"id": i, "status": "COMPLETED", "trigger_timestamp": t, "end_to_end_duration": d} for i, t, d in
                 [(1, 142_753, 1019), (2, 145_752, 777), (3, 148_852, 845), (4, 151_752, 747),
                  (5, 159_469, 3099), (6, 163_353, 1827), (7, 166_402, 2318)]]


def test_checkpoint_triggers_held_through_the_fault_are_evidence() -> None:
    baseline = TRIGGERS_HELD[:4]
    hit = checkpoints_hit(TRIGGERS_HELD, baseline, inject_ms=152_632, heal_ms=158_499, now_ms=179_000)
    assert hit["hit"] == [] and [(h["after"], h["next"]) for h in hit["held_triggers"]] == [(151_752, 159_469)], hit
    assert "7717 ms" in hit["held_triggers"][0]["hit"]
    # triggers on time through a window: nothing held
    steady = [{**c, "trigger_timestamp": 142_753 + 3000 * i} for i, c in enumerate(TRIGGERS_HELD)]
    assert checkpoints_hit(steady, baseline, 152_632, 158_499, now_ms=179_000)["held_triggers"] == []
    # the first trigger after the heal may come up to an S3 request timeout plus one usual gap later (CI: 2.2 s
    # and 3.3 s after it, every 3 s)
    for after_heal in (2_220, 3_337, 7_900):
        slow_first = [*TRIGGERS_HELD[:4], {**TRIGGERS_HELD[4], "trigger_timestamp": 158_499 + after_heal}]
        assert len(checkpoints_hit(slow_first, baseline, 152_632, 158_499, now_ms=179_000)["held_triggers"]) == 1
    # a gap that ends long after the heal is not the fault's (the job was doing something else)
    late = [*TRIGGERS_HELD[:4], {**TRIGGERS_HELD[4], "trigger_timestamp": 170_000}]
    assert checkpoints_hit(late, baseline, 152_632, 158_499, now_ms=179_000)["held_triggers"] == []
    # a fault that ends before the next trigger was due holds nothing
    assert checkpoints_hit(TRIGGERS_HELD, baseline, 152_000, 153_000, now_ms=179_000)["held_triggers"] == []


GATE_BEFORE = {"PutObject": {"requests": 10, "injected": 0}, "UploadPart": {"requests": 4, "injected": 1}}
GATE_END = {"PutObject": {"requests": 13, "injected": 0}, "UploadPart": {"requests": 4, "injected": 3},
            "CompleteMultipartUpload": {"requests": 1, "injected": 0}}


def test_gate_delta_counts_the_requests_between_two_readings() -> None:
    assert gate_delta(GATE_BEFORE, GATE_END, "requests") == {"PutObject": 3, "CompleteMultipartUpload": 1}
    assert gate_delta(GATE_BEFORE, GATE_END, "injected") == {"UploadPart": 2}
    assert gate_delta(None, None, "requests") == {} and gate_delta(GATE_END, GATE_END, "requests") == {}


def test_a_slowed_s3_route_is_effective_when_the_jobs_requests_crossed_it() -> None:
    """Latency on the S3 route: the job's requests the gate counted while it was on paid it (a checkpoint's
    own slowdown is too noisy to prove a short fault; CI once judged a 300 ms fault ineffective by it)."""
    crossed = Observation("job", before={"gate": GATE_BEFORE}, end={"gate": GATE_END}, inject_ms=1, heal_ms=2)
    found = NetworkLatency("s3", latency_ms=300).verify(None, None, crossed)  # type: ignore[arg-type]
    assert found is not None and found.effective and "4 S3 request(s)" in found.why, found
    # no request crossed: the gate proves nothing and the checkpoints must (no probe here: not effective)
    still = Observation("job", before={"gate": GATE_END}, end={"gate": GATE_END}, inject_ms=1, heal_ms=2)
    slow = NetworkLatency("s3")
    slow.verify_timeout_s = 0
    assert not slow.verify(None, None, still).effective  # type: ignore[arg-type, union-attr]
    # a partition is never proven by requests crossing it (none should): only by checkpoints held or failed
    cut = NetworkPartition("s3")
    cut.verify_timeout_s = 0
    assert not cut.verify(None, None, crossed).effective  # type: ignore[arg-type, union-attr]


def test_a_storage_outage_is_effective_when_the_jobs_requests_found_no_store() -> None:
    """The S3 gate counts each request of the job it could not forward (the store gone): direct evidence,
    where a checkpoint may be held in its trigger before Flink's statistics show it."""
    before = {"PutObject": {"requests": 10, "injected": 0, "unreachable": 0}}
    gone = Observation("job", before={"gate": before},
                       end={"gate": {"PutObject": {"requests": 12, "injected": 0, "unreachable": 2}}},
                       inject_ms=1, heal_ms=2)
    found = StorageOutage().verify(None, None, gone)  # type: ignore[arg-type]
    assert found is not None and found.effective and "2 S3 request(s)" in found.why, found
    # requests that reached the store are no evidence of its outage
    served = Observation("job", before={"gate": before}, end={"gate": {"PutObject": {"requests": 15}}},
                         inject_ms=1, heal_ms=2)
    outage = StorageOutage()
    outage.verify_timeout_s = 0
    assert not outage.verify(None, None, served).effective  # type: ignore[arg-type, union-attr]


def test_offsets_frozen_only_while_the_topic_grew() -> None:
    before = {"ends": {0: 100, 1: 100}, "committed": {0: 90, 1: 95}}
    assert offsets_frozen(before, {"ends": {0: 150, 1: 120}, "committed": {0: 90, 1: 95}})["frozen"]
    assert not offsets_frozen(before, {"ends": {0: 150, 1: 120}, "committed": {0: 140, 1: 95}})["frozen"]
    assert not offsets_frozen(before, {"ends": {0: 100, 1: 100}, "committed": {0: 90, 1: 95}})["frozen"]
    assert offsets_frozen(before, {"error": "broker down"}) == {"frozen": False, "readable": False}


def test_resent_debezium_changes_are_found_after_the_fault_only() -> None:
    def env(pos: int, row: int = 0, op: str = "c") -> bytes:
        return json.dumps({"op": op, "source": {"file": "binlog.000002", "pos": pos, "row": row},
                           "after": {"order_id": pos}}).encode()

    values = [(0, 10, env(100)), (0, 11, env(200)), (0, 12, env(200, row=1)), (0, 13, b"not json"),
              (0, 14, None), (0, 20, env(200)), (0, 21, env(300))]
    found = resent_changes(values, first_new={0: 20})
    assert found["resent"] == 1 and found["sample"][0]["at"] == [(0, 11), (0, 20)], found
    # duplicates that both predate the fault belong to an earlier one
    assert resent_changes([*values[:3], (0, 15, env(100))], first_new={0: 20})["resent"] == 0


def test_kafka_client_errors_and_proxy_reconnects_are_counted() -> None:
    logs = {"taskmanager-2": "2026-01-01 INFO all good\n"
            "2026-01-01 WARN [Consumer clientId=x] Connection to node 1 (/127.0.0.1:4000) could not be "
            "established. Node may not be available.\n"}
    assert kafka_errors_in(logs)["count"] == 1
    proxy_log = "\n".join(json.dumps({"time": t, "message": m, "name": n}) for t, m, n in [
        ("2026-01-01T10:00:01Z", "Accepted client", "kafka"), ("2026-01-01T10:00:05Z", "Accepted client", "s3"),
        ("2026-01-01T10:00:06Z", "Accepted client", "kafka"), ("2026-01-01T10:00:30Z", "Accepted client", "kafka")])
    t0 = 1767261600000   # 2026-01-01T10:00:00Z
    assert accepted_connections(proxy_log, ["kafka"], t0, t0 + 10_000) == 2


# --- the job's lifecycle: rescale, restore from an older checkpoint, resume after a terminal failure ----------

def _job(jid: str, state: str = "RUNNING", parallelism: int = 1, failed_ms: int = 0) -> dict[str, Any]:
    """``/jobs/<id>`` trimmed: two sources and the single committer (always parallelism 1)."""
    return {"jid": jid, "state": state, "timestamps": {"RUNNING": 1_000, "FAILED": failed_ms},
            "vertices": [{"name": "Source: cdc_typed[1] -> Calc[2]", "parallelism": parallelism},
                         {"name": "Source: cdc_dim[10] -> Calc[11]", "parallelism": parallelism},
                         {"name": "StreamingFileWriter -> PartitionCommitter -> end: Writer", "parallelism": 1}]}


def _checkpoints(restored: dict[str, Any] | None = None, completed: int | None = 12) -> dict[str, Any]:
    """``/jobs/<id>/checkpoints`` trimmed to its ``latest``."""
    return {"latest": {"completed": {"id": completed} if completed is not None else None, "restored": restored}}


# ``latest.restored`` as Flink 2.2 reports it: ``is_savepoint`` is true for a retained checkpoint restored by path
SAVEPOINT = {"id": 13, "restore_timestamp": 2_000, "is_savepoint": True,
             "external_path": "s3://lake/checkpoints/g/savepoints/savepoint-44ec25-d36769ac9d2a"}
CHECKPOINT = {"id": 10, "restore_timestamp": 2_000, "is_savepoint": True,
              "external_path": "s3://lake/checkpoints/g/2ce5051bf6d017c0c1ab2d2dc914eeae/chk-10"}
EVERY_PARTITION = {"moved": {0: 5, 1: 3, 2: 4}, "every": True, "readable": True}


def test_job_shape_reads_sources_state_and_restore() -> None:
    shape = job_shape(_job("b", parallelism=2), _checkpoints(SAVEPOINT, completed=15))
    assert shape["sources"] == {"Source: cdc_typed[1] -> Calc[2]": 2, "Source: cdc_dim[10] -> Calc[11]": 2}
    assert shape["restored"] == {k: SAVEPOINT[k] for k in ("id", "external_path", "is_savepoint")}
    assert shape["latest_completed"] == 15 and shape["state"] == "RUNNING" and "FAILED" not in shape["timestamps"]
    assert job_shape(_job("a"), {"latest": {}})["restored"] is None


def test_offsets_moved_on_every_partition_only() -> None:
    start = {"ends": {0: 100, 1: 100, 2: 100}, "committed": {0: 90, 1: 95, 2: -1}}
    assert offsets_moved(start, {"ends": {0: 120, 1: 110, 2: 105}, "committed": {0: 110, 1: 99, 2: 3}})["every"]
    # one partition idle: its source subtask (or the whole job) consumed nothing there
    assert not offsets_moved(start, {"ends": {0: 120, 1: 110, 2: 105}, "committed": {0: 110, 1: 95, 2: 3}})["every"]
    assert offsets_moved({"error": "down"}, start) == {"moved": {}, "every": False, "readable": False}


def test_a_rescale_needs_a_new_job_at_the_parallelism_that_consumed_and_a_job_back_at_the_old_one() -> None:
    rescaled = job_shape(_job("b", parallelism=2), _checkpoints(SAVEPOINT))
    final = job_shape(_job("c"), _checkpoints(SAVEPOINT))
    found = rescale_evidence("a", rescaled, EVERY_PARTITION, final, parallelism=2, back_to=1)
    assert found.effective and "b ran at parallelism 2" in found.why, found
    non_evidence = {
        "never rescaled": rescale_evidence("a", job_shape(_job("b"), _checkpoints(SAVEPOINT)), EVERY_PARTITION,
                                           final, 2, 1),
        "same job": rescale_evidence("b", rescaled, EVERY_PARTITION, final, 2, 1),
        "fresh start, state lost": rescale_evidence("a", job_shape(_job("b", parallelism=2), _checkpoints()),
                                                    EVERY_PARTITION, final, 2, 1),
        "from a checkpoint": rescale_evidence("a", job_shape(_job("b", parallelism=2), _checkpoints(CHECKPOINT)),
                                              EVERY_PARTITION, final, 2, 1),
        "consumed nothing": rescale_evidence("a", rescaled, {**EVERY_PARTITION, "every": False}, final, 2, 1),
        "not scaled back": rescale_evidence("a", rescaled, EVERY_PARTITION,
                                            job_shape(_job("c", parallelism=2), _checkpoints(SAVEPOINT)), 2, 1),
        "no job after": rescale_evidence("a", rescaled, EVERY_PARTITION, rescaled, 2, 1),
        "final job failed": rescale_evidence("a", rescaled, EVERY_PARTITION,
                                             job_shape(_job("c", "FAILED"), _checkpoints(SAVEPOINT)), 2, 1),
    }
    assert {why: v.effective for why, v in non_evidence.items()} == dict.fromkeys(non_evidence, False)


def test_an_upgrade_needs_the_new_job_restored_from_its_savepoint_consuming_and_new_files_in_the_lake() -> None:
    path = SAVEPOINT["external_path"]
    upgraded = job_shape(_job("b"), _checkpoints(SAVEPOINT))
    lake = {"files_by_version": {"1": 2, "2": 3}, "new_version_files": 3, "tables": ["orders"]}
    found = upgrade_evidence("a", path, upgraded, EVERY_PARTITION, lake, 2)
    assert found.effective and "3 file(s) of lake schema version 2" in found.why, found
    non_evidence = {
        "same job": upgrade_evidence("b", path, upgraded, EVERY_PARTITION, lake, 2),
        "fresh start, state lost": upgrade_evidence("a", path, job_shape(_job("b"), _checkpoints()),
                                                    EVERY_PARTITION, lake, 2),
        "another savepoint": upgrade_evidence("a", path + "-other", upgraded, EVERY_PARTITION, lake, 2),
        "from a checkpoint": upgrade_evidence("a", CHECKPOINT["external_path"],
                                              job_shape(_job("b"), _checkpoints(CHECKPOINT)), EVERY_PARTITION, lake, 2),
        "not running": upgrade_evidence("a", path, job_shape(_job("b", "FAILED"), _checkpoints(SAVEPOINT)),
                                        EVERY_PARTITION, lake, 2),
        "consumed nothing": upgrade_evidence("a", path, upgraded, {**EVERY_PARTITION, "every": False}, lake, 2),
        "no new files": upgrade_evidence("a", path, upgraded, EVERY_PARTITION,
                                         {"files_by_version": {"1": 4}, "new_version_files": 0}, 2),
    }
    assert {why: v.effective for why, v in non_evidence.items()} == dict.fromkeys(non_evidence, False)


def test_an_upgrade_resubmits_the_next_revision_from_its_savepoint_and_survives_a_failed_submission() -> None:
    pipeline = FakeOperatorPipeline()
    upgrade = JobUpgrade(to_version=2)
    upgrade.bind(pipeline)  # type: ignore[arg-type]
    out = upgrade.inject(FakeStack(), random.Random(0))  # type: ignore[arg-type]
    assert out["stopped"] == "job-0" and (out["from_version"], out["to_version"]) == (1, 2)
    assert pipeline.calls == [("stop", "job-0"), ("submit", 1, "s3://lake/savepoint-1")]
    assert pipeline.current_config is not None and pipeline.current_config.job_version == 2
    assert upgrade.heal(FakeStack(), pipeline) == {}  # type: ignore[arg-type]   # the upgrade stays
    with pytest.raises(RuntimeError, match="already runs version 2"):
        upgrade.inject(FakeStack(), random.Random(0))  # type: ignore[arg-type]
    # the upgraded job could not be submitted (e.g. its state did not map): the heal resumes the old revision
    pipeline = FakeOperatorPipeline(fail_submits=1)
    upgrade = JobUpgrade(to_version=2)
    upgrade.bind(pipeline)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="submission failed"):
        upgrade.inject(FakeStack(), random.Random(0))  # type: ignore[arg-type]
    assert upgrade.heal(FakeStack(), pipeline)["resumed_old_version"] == 1  # type: ignore[arg-type]
    assert pipeline.calls == [("stop", "job-0"), ("submit", 1, "s3://lake/savepoint-1")]
    assert pipeline.current_config is not None and pipeline.current_config.job_version == 1


def test_an_older_restore_needs_flink_to_have_restored_a_checkpoint_older_than_the_latest() -> None:
    cancelled = job_shape(_job("a", "CANCELED"), _checkpoints(completed=12))
    resumed = job_shape(_job("b"), _checkpoints(CHECKPOINT, completed=14))
    found = older_restore_evidence(cancelled, 10, resumed)
    assert found.effective and "2 older" in found.why, found
    non_evidence = {
        "the latest": older_restore_evidence(job_shape(_job("a", "CANCELED"), _checkpoints(completed=10)), 10,
                                             resumed),
        "another checkpoint": older_restore_evidence(cancelled, 9, resumed),
        "a savepoint": older_restore_evidence(cancelled, 10, job_shape(_job("b"), _checkpoints(
            {**SAVEPOINT, "id": 10}))),
        "a fresh start": older_restore_evidence(cancelled, 10, job_shape(_job("b"), _checkpoints())),
        "not running": older_restore_evidence(cancelled, 10, job_shape(_job("b", "FAILED"),
                                                                       _checkpoints(CHECKPOINT))),
        "unknown latest": older_restore_evidence(job_shape(_job("a", "CANCELED"), _checkpoints(completed=None)),
                                                 10, resumed),
    }
    assert {why: v.effective for why, v in non_evidence.items()} == dict.fromkeys(non_evidence, False)


def test_a_terminal_failure_needs_the_job_failed_after_the_kill_and_a_resumed_one_running() -> None:
    failed = job_shape(_job("a", "FAILED", failed_ms=5_000), _checkpoints(completed=12))
    resumed = job_shape(_job("b"), _checkpoints({**CHECKPOINT, "id": 12}))
    found = terminal_failure_evidence(["taskmanager-2"], failed, resumed, inject_ms=4_000)
    assert found.effective and "went FAILED 1.0 s after the kill" in found.why, found
    non_evidence = {
        "idle TaskManager": terminal_failure_evidence([], failed, resumed, 4_000),
        "restarted by itself": terminal_failure_evidence(["taskmanager-2"], job_shape(_job("a"), _checkpoints()),
                                                         resumed, 4_000),
        "failed before the kill": terminal_failure_evidence(["taskmanager-2"], failed, resumed, 6_000),
        "not resumed": terminal_failure_evidence(["taskmanager-2"], failed, failed, 4_000),
        "resumed fresh": terminal_failure_evidence(["taskmanager-2"], failed,
                                                   job_shape(_job("b"), _checkpoints()), 4_000),
        "resumed from a savepoint": terminal_failure_evidence(["taskmanager-2"], failed, job_shape(
            _job("b"), _checkpoints({**SAVEPOINT, "id": 12})), 4_000),
        "resumed not running": terminal_failure_evidence(["taskmanager-2"], failed, job_shape(
            _job("b", "RESTARTING"), _checkpoints(CHECKPOINT)), 4_000),
    }
    assert {why: v.effective for why, v in non_evidence.items()} == dict.fromkeys(non_evidence, False)


class FakeOperatorPipeline:
    """The Recovery an operator's fault acts through, as calls recorded (no stack); ``fail_submits`` fails that
    many submissions first; with ``completing`` the job completes a checkpoint between two listings."""

    def __init__(self, retained: int = 5, fail_submits: int = 0, completing: bool = True) -> None:
        from flink_job.sql import JobConfig

        self.current_job_id: str | None = "job-0"
        self.current_config: JobConfig | None = JobConfig(bootstrap="b", lake_root="s3://lake/x")
        self.calls: list[tuple[Any, ...]] = []
        self.retained, self.fail_submits, self.completing = retained, fail_submits, completing

    def stop_with_savepoint(self, job_id: str | None = None, timeout: float = 120) -> str:
        self.calls.append(("stop", self.current_job_id))
        return f"s3://lake/savepoint-{len(self.calls)}"

    def cancel(self, job_id: str | None = None) -> None:
        self.calls.append(("cancel", job_id))

    def submit(self, cfg: Any, restore: str | None = None, timeout: float = 300) -> str:
        if self.fail_submits:
            self.fail_submits -= 1
            raise RuntimeError("submission failed")
        self.current_job_id, self.current_config = f"job-{len(self.calls)}", cfg
        self.calls.append(("submit", cfg.parallelism, restore))
        return self.current_job_id

    def wait_running(self, job_id: str, timeout: float = 180) -> None:
        pass

    def resume_latest(self, timeout: float = 300) -> str:
        self.calls.append(("resume_latest",))
        return "job-latest"

    def retained_checkpoints(self, cfg: Any = None, job_id: str | None = None) -> list[Any]:
        from harness.pipeline import RetainedCheckpoint

        listed = [RetainedCheckpoint(i, job_id or "", f"s3://lake/{job_id}/chk-{i}", i)
                  for i in range(1, self.retained + 1)]
        self.retained += self.completing
        return listed


def test_a_rescale_moves_the_job_out_and_back_through_savepoints_and_survives_a_failed_submission() -> None:
    pipeline = FakeOperatorPipeline()
    rescale = Rescale(parallelism=2)
    rescale.bind(pipeline)  # type: ignore[arg-type]
    out = rescale.inject(FakeStack(), random.Random(0))  # type: ignore[arg-type]
    assert out["stopped"] == "job-0" and out["from_parallelism"] == 1 and out["parallelism"] == 2
    rescale.heal(FakeStack(), pipeline)  # type: ignore[arg-type]
    assert pipeline.calls == [("stop", "job-0"), ("submit", 2, "s3://lake/savepoint-1"), ("stop", "job-1"),
                              ("submit", 1, "s3://lake/savepoint-3")]
    # the rescaled job failed to start: the heal resumes the stopped job from the savepoint already taken
    pipeline = FakeOperatorPipeline(fail_submits=1)
    rescale = Rescale(parallelism=2)
    rescale.bind(pipeline)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="submission failed"):
        rescale.inject(FakeStack(), random.Random(0))  # type: ignore[arg-type]
    rescale.heal(FakeStack(), pipeline)  # type: ignore[arg-type]
    assert pipeline.calls == [("stop", "job-0"), ("submit", 1, "s3://lake/savepoint-1")]
    with pytest.raises(RuntimeError, match="no job"):
        Rescale().inject(FakeStack(), random.Random(0))  # type: ignore[arg-type]   # never bound to a pipeline


def test_an_older_restore_takes_the_latest_checkpoint_and_restores_it_older_by_checkpoints_later() -> None:
    pipeline = FakeOperatorPipeline(retained=3)
    older = RestoreOlderCheckpoint(older_by=2)
    older.bind(pipeline)  # type: ignore[arg-type]
    out = older.inject(FakeStack(), random.Random(0))  # type: ignore[arg-type]
    assert out["chosen"] == 3 and out["retained"] == [1, 2, 3, 4, 5] and out["from"] == "s3://lake/job-0/chk-3"
    assert pipeline.calls == [("cancel", "job-0"), ("submit", 1, "s3://lake/job-0/chk-3")]
    assert older.heal(FakeStack(), pipeline) == {}  # type: ignore[arg-type]   # the lake keeps what it got
    # no newer checkpoint completes (or none is retained): the job is left running
    stuck = FakeOperatorPipeline(retained=1, completing=False)
    older.bind(stuck)  # type: ignore[arg-type]
    older.checkpoints_timeout_s = 0
    with pytest.raises(RuntimeError, match="num-retained"):
        older.inject(FakeStack(), random.Random(0))  # type: ignore[arg-type]
    assert stuck.calls == []
    # cancelled, then the resubmission failed: the heal resumes the job from its latest checkpoint
    failing = FakeOperatorPipeline(retained=3, fail_submits=1)
    older = RestoreOlderCheckpoint(older_by=1)
    older.bind(failing)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="submission failed"):
        older.inject(FakeStack(), random.Random(0))  # type: ignore[arg-type]
    assert older.heal(FakeStack(), failing) == {"resumed": "job-latest"}  # type: ignore[arg-type]
    assert failing.calls == [("cancel", "job-0"), ("resume_latest",)]


def test_the_runner_gives_each_fault_the_runs_pipeline() -> None:
    pipeline = FakeOperatorPipeline()
    rescale = Rescale()
    NemesisRunner(FakeStack(), Schedule.fixed(rescale, 0.0, 1.0), random.Random(0),  # type: ignore[arg-type]
                  recovery=pipeline, probe=object())  # type: ignore[arg-type]
    assert rescale.pipeline() is pipeline


# --- the runner: the verify phase, ineffective(), no job --------------------------------------------------

class Claims(Nemesis):
    """A fault whose verification says what it is told to."""

    name = "claims"

    def __init__(self, effective: bool) -> None:
        self.effective = effective

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        return {"injected": True}

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        return {}

    def observe(self, stack: Stack, probe: Any, job_id: str) -> dict[str, Any]:
        return {"seen": job_id}

    def verify(self, stack: Stack, probe: Any, obs: Observation) -> Verification | None:
        return Verification(self.effective, {"before": obs.before}, "told so")


class Silent(Claims):
    """A test's own fault without evidence: no verify event, never ineffective."""

    def verify(self, stack: Stack, probe: Any, obs: Observation) -> Verification | None:
        return None


class FakeStack:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}


def _run(schedule: Schedule, job: str | None) -> NemesisRunner:
    from harness.nemesis import JobProbe

    probe = JobProbe.__new__(JobProbe)         # no stack needed: these nemeses do not look at it
    probe._job_id, probe._group = (lambda: job), (lambda: None)
    runner = NemesisRunner(FakeStack(), schedule, random.Random(0), probe=probe)  # type: ignore[arg-type]
    runner.start(time.monotonic())
    time.sleep(max(f.at_s + f.duration_s for f in schedule.faults) + 0.2)
    runner.finish()
    return runner


def test_each_fault_is_verified_on_its_own_and_ineffective_ones_are_listed() -> None:
    schedule = Schedule([Schedule.fixed(Claims(True), 0.0, 0.05).faults[0],
                         Schedule.fixed(Claims(False), 0.1, 0.05).faults[0],
                         Schedule.fixed(Silent(True), 0.2, 0.05).faults[0]])
    runner = _run(schedule, job="job-1")
    phases = [(e["nemesis"], e["phase"]) for e in runner.timeline_dicts()]
    assert phases.count(("claims", "verify")) == 2 and phases.count(("claims", "inject")) == 3
    verify = [e for e in runner.timeline_dicts() if e["phase"] == "verify"]
    assert {(v["fault"], v["effective"]) for v in verify} == {(0, True), (1, False)}
    assert all(v["evidence"] == {"before": {"seen": "job-1"}} and v["job"] == "job-1" for v in verify)
    bad = runner.ineffective()
    assert [(b["fault"], b["why"]) for b in bad] == [(1, "told so")]


def test_without_a_job_a_fault_is_ineffective_with_no_job_to_observe() -> None:
    runner = _run(Schedule.fixed(Claims(True), 0.0, 0.05), job=None)
    assert [(b["nemesis"], b["effective"], b["why"]) for b in runner.ineffective()] == [("claims", False, NO_JOB)]


class SlowHeal(Claims):
    """A fault whose heal takes 0.4 s, as a Connect restart under load takes seconds."""

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        time.sleep(0.4)
        return {}


def _started(schedule: Schedule) -> NemesisRunner:
    from harness.nemesis import JobProbe

    probe = JobProbe.__new__(JobProbe)
    probe._job_id, probe._group = (lambda: "job-1"), (lambda: None)
    runner = NemesisRunner(FakeStack(), schedule, random.Random(0), probe=probe)  # type: ignore[arg-type]
    runner.start(time.monotonic())
    return runner


def test_a_fault_whose_turn_never_came_is_recorded_skipped() -> None:
    """The second fault is due at 0.1 s but the first heals at 0.45 s, after the "workload" ended (finish at
    0.15 s): it is not run after the workload (it could show no effect there) but recorded as skipped."""
    schedule = Schedule([Schedule.fixed(SlowHeal(True), 0.0, 0.05).faults[0],
                         Schedule.fixed(Claims(True), 0.1, 0.05).faults[0]])
    runner = _started(schedule)
    time.sleep(0.15)
    runner.finish()
    phases = [(e.detail.get("fault"), e.phase) for e in runner.events() if e.phase in ("verify", "skipped")]
    assert sorted(phases) == [(0, "verify"), (1, "skipped")], runner.timeline_dicts()


def test_a_step_delayed_by_a_slow_heal_still_lasts_its_full_length() -> None:
    """The second fault is due at 0.1 s for 0.3 s; the first heals at 0.45 s: the second starts then and is
    healed 0.3 s later, not at once (its scheduled end, 0.4 s, had passed)."""
    schedule = Schedule([Schedule.fixed(SlowHeal(True), 0.0, 0.05).faults[0],
                         Schedule.fixed(Claims(True), 0.1, 0.3).faults[0]])
    runner = _started(schedule)
    time.sleep(1.2)
    runner.finish()
    second = {e.phase: e.wall_ms for e in runner.events()[2:] if e.phase in ("inject", "heal")}
    assert second["heal"] - second["inject"] >= 280, runner.timeline_dicts()


class FlushLog:
    """Connect's offsets-topic partition as an aimed kill sees it: its end moves by one at each flush time."""

    def __init__(self, flushes_s: list[float]) -> None:
        self.t0, self.flushes_s = time.monotonic(), flushes_s
        self.connector, self.topic, self.partition = "orders", "connect-offsets", 3

    def end(self) -> int:
        return sum(1 for f in self.flushes_s if time.monotonic() - self.t0 >= f)


def test_a_kill_aimed_after_a_flush_comes_as_soon_as_one_lands() -> None:
    log = FlushLog([0.2, 1.2])
    aimed = wait_for_offset_flush(log, "after", 1000, timeout_s=5)  # type: ignore[arg-type]
    assert 0.2 <= time.monotonic() - log.t0 < 0.3 and aimed["aim"] == "after"


def test_a_kill_aimed_before_a_flush_waits_an_interval_less_a_margin_restarting_at_a_later_flush() -> None:
    log = FlushLog([0.1, 0.4])   # an extra flush 0.3 s after the first: the count starts again from it
    wait_for_offset_flush(log, "before", 500, timeout_s=5, margin_ms=100)  # type: ignore[arg-type]
    assert 0.78 <= time.monotonic() - log.t0 < 0.9
    with pytest.raises(RuntimeError, match="flushed no offsets"):
        wait_for_offset_flush(FlushLog([]), "after", 1000, timeout_s=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flush aim"):
        ConnectKill(around_flush="during")


def test_the_flush_window_is_judged_from_the_flush_records() -> None:
    flushes = [10_000, 11_000, 12_000]
    assert flush_window_hit("after", 12_080, flushes, 1000)["hit"]
    assert not flush_window_hit("after", 12_400, flushes, 1000)["hit"]
    assert flush_window_hit("before", 12_880, flushes, 1000)["hit"]
    assert not flush_window_hit("before", 12_300, flushes, 1000)["hit"]   # too soon after the last
    assert not flush_window_hit("before", 15_000, flushes, 1000)["hit"]   # flushes had stopped
    assert not flush_window_hit("after", 9_000, flushes, 1000)["hit"]     # none before the kill
    hit = flush_window_hit("before", 12_850, flushes, 1000)
    assert hit["since_flush_ms"] == 850 and hit["last_flush_ms"] == 12_000


def test_an_aimed_connect_kill_claims_its_window_only_when_it_hit() -> None:
    kill = ConnectKill(around_flush="before")
    assert kill.name == "connect-kill-before-flush" and kill.spec()["kwargs"] == {"around_flush": "before"}
    assert kill.window(Verification(True, {"flush": {"hit": True}}, "")) == "Connect killed right before an " \
                                                                            "offset flush"
    assert kill.window(Verification(True, {"flush": {"hit": False}}, "")) is None


def test_the_offset_commit_window_needs_a_completed_checkpoint_and_unmoved_offsets_at_the_kill() -> None:
    failover = Verification(True, {"targets": ["taskmanager-1"]}, "taskmanager-1 failed over")
    hit = {"checkpoint": 7, "checkpoint_status": "COMPLETED", "committed_before": {0: 5, 1: 9},
           "committed_at_kill": {0: 5, 1: 9}}
    v = offset_commit_window_evidence(failover, hit)
    assert v.effective and "checkpoint 7 completed" in v.why and v.evidence["offset_commit_window"]["checkpoint"] == 7
    moved = offset_commit_window_evidence(failover, {**hit, "committed_at_kill": {0: 8, 1: 9}})
    assert not moved.effective and "moved before the kill" in moved.why
    failed = offset_commit_window_evidence(failover, {**hit, "checkpoint_status": "FAILED"})
    assert not failed.effective and "did not complete" in failed.why
    assert not offset_commit_window_evidence(failover, {**hit, "committed_at_kill": None}).effective
    kill = TaskManagerKill(during_offset_commit=True)
    assert kill.name == "taskmanager-kill-in-offset-commit"
    assert kill.window(v) == "checkpoint completed, source's Kafka offsets not yet committed"
    with pytest.raises(ValueError, match="one window"):
        TaskManagerKill(during_commit=True, during_offset_commit=True)


def test_a_storm_takes_each_kind_once_before_repeating() -> None:
    kinds = [lambda: Claims(True), lambda: Silent(True), lambda: SlowHeal(True)]
    for seed in range(20):
        faults = Schedule.random(random.Random(seed), kinds, 3, (0.0, 30.0), (1.0, 2.0)).faults
        assert len({type(f.nemesis) for f in faults}) == 3


# --- on a real stack with a running job -------------------------------------------------------------------

@pytest.fixture(scope="module")
def job(stack: Stack) -> Iterator[Pipeline]:
    """One running job for this module's faults (started at the topic's end, its own lake prefix)."""
    from flink_job.sql import JobConfig

    stack.heal()
    pipeline = Pipeline(stack)
    pipeline.cancel_all()
    ends = kafka_client.end_offsets(stack.kafka.bootstrap, stack.config.kafka.topic)
    name = f"nemesis-evidence-{int(time.time())}"
    cfg = JobConfig(bootstrap=stack.kafka.proxied_bootstrap or stack.kafka.bootstrap,
                    lake_root=f"s3://{stack.config.s3.bucket}/runs/{name}", topic=stack.config.kafka.topic,
                    group_id=f"cdc-chaos-{name}", startup_mode="specific-offsets",
                    startup_offsets=tuple(sorted(ends.items())), checkpoint_interval_ms=1000)
    try:
        job_id = pipeline.submit(cfg)
        pipeline.wait_running(job_id)
    except Exception as exc:  # noqa: BLE001 - name the cause: the job itself may be mid-rewrite
        pytest.fail(f"could not start the job these faults are aimed at: {exc}"[:3000])
    try:
        yield pipeline
    finally:
        pipeline.cancel_all()


def _fault(stack: Stack, pipeline: Pipeline, nemesis: Nemesis, duration_s: float) -> tuple[dict, dict, dict]:
    """Run one fault through a NemesisRunner aimed at the pipeline's job; (inject, verify, observed before)."""
    pipeline.wait_running(pipeline.current_job_id or "")
    runner = NemesisRunner(stack, Schedule.fixed(nemesis, 0.0, duration_s), random.Random(7), recovery=pipeline)
    runner.start(time.monotonic())
    time.sleep(duration_s + 0.5)
    runner.finish()
    events = {e["phase"]: e for e in runner.timeline_dicts()}
    assert not runner.errors, runner.errors
    assert list(events) == ["inject", "heal", "verify"], runner.timeline_dicts()
    verify = events["verify"]
    print(f"\n{nemesis.name}: inject={json.dumps(events['inject'], default=str)}\n"
          f"  verify={json.dumps(verify, default=str)[:3000]}")
    stack["flink"].wait_healthy()
    return events["inject"], verify, runner.ineffective()[0] if runner.ineffective() else {}


def _hosting(stack: Stack, pipeline: Pipeline) -> set[str]:
    from harness.nemesis import JobProbe

    assert pipeline.current_job_id
    return set(JobProbe(stack).placement(pipeline.current_job_id)["hosting"])


def test_taskmanager_kill_takes_the_hosting_taskmanager_and_the_job_fails_over(stack: Stack,
                                                                               job: Pipeline) -> None:
    hosting = _hosting(stack, job)
    assert len(hosting) == 1, hosting           # parallelism 1: the job runs on one of the two
    inject, verify, _ = _fault(stack, job, TaskManagerKill(), 3)
    assert set(inject["killed"]) == hosting and inject["chosen"] == "hosts the job's tasks"
    assert verify["effective"], verify
    assert verify["evidence"]["failover"]["restarted"] and set(verify["evidence"]["hosting"]) == hosting
    assert "failed over" in verify["why"]


def test_a_kill_of_a_taskmanager_hosting_no_task_is_ineffective(stack: Stack, job: Pipeline) -> None:
    hosting = _hosting(stack, job)
    inject, verify, ineffective = _fault(stack, job, TaskManagerKill(target="idle"), 2)
    assert inject["killed"] and not set(inject["killed"]) & hosting
    assert verify["effective"] is False and "hosted no task" in verify["why"], verify
    assert ineffective and ineffective["nemesis"] == "taskmanager-kill" and ineffective["why"] == verify["why"]
    assert not verify["evidence"]["failover"]["restarted"], verify


def test_a_flink_pause_takes_the_hosting_taskmanager(stack: Stack, job: Pipeline) -> None:
    hosting = _hosting(stack, job)
    # the catalogue's pause names taskmanager-1: only a fallback, the job's host is what gets paused
    inject, verify, _ = _fault(stack, job, Pause("flink", "taskmanager-1"), 7)
    assert {inject["paused"]} == hosting and inject["chosen"] == "hosts the job's tasks", inject
    assert verify["effective"], verify
