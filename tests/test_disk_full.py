"""The disk-full machine fault without the stack: the per-TaskManager tmpfs is mounted and always unmounted (also
from a crashed run's leftovers), the filler takes every byte, and the evidence reads ENOSPC from recorded REST
JSON."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.config import REPO_ROOT, ConfigError, load_config
from harness.machine_faults import DiskFull, disk_full_verdict, enospc_evidence, fill_disk
from harness.nemesis import Observation, nemesis_from_spec
from harness.rundir import RunDir, mounts_under, reap_stale

INJECT, HEAL = 1_000_000, 1_008_000
ENOSPC_TRACE = ("java.io.IOException: Could not flush and close the file system output stream\n"
                "Caused by: java.io.IOException: No space left on device\n\tat java.io.FileOutputStream.writeBytes")


def test_tmpfs_is_filled_to_the_last_byte_and_unmounted_on_remove(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    disk = run.mount_tmpfs(run.path / "flink" / "disk" / "taskmanager-1", 128)
    try:
        assert disk.is_mount() and run.mounts() == [disk]
        written = fill_disk(disk / "filler")
        st = os.statvfs(disk)
        assert st.f_bavail == 0 and written > 120 << 20
        with pytest.raises(OSError) as exc:
            (disk / "more").write_bytes(b"x" * 8192)
        assert "No space left on device" in str(exc.value)
    finally:
        run.remove()
    assert not disk.is_mount() and not run.path.exists()
    assert mounts_under(tmp_path) == []


def test_a_crashed_runs_mount_is_reaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_CHAOS_CACHE", str(tmp_path / "cache"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = RunDir(tmp_path / "cache" / "runs" / "crashed-run")
    run.path.mkdir(parents=True)
    (run.path / "owner.pid").write_text(str(dead.pid))
    disk = run.mount_tmpfs(run.path / "flink" / "disk" / "taskmanager-1", 128)
    try:
        assert disk.is_mount()
        assert run.path in reap_stale()
        assert not disk.is_mount() and not run.path.exists()
    finally:
        run.unmount_all()


def test_mounts_under_reads_escaped_mountinfo() -> None:
    info = ("22 1 0:21 / / rw - ext4 /dev/vda rw\n"
            "80 22 0:50 / /r/run/flink/disk/taskmanager-1 rw - tmpfs tmpfs rw,size=262144k\n"
            "81 22 0:51 / /r/run/with\\040space rw - tmpfs tmpfs rw\n"
            "82 22 0:52 / /r/runner rw - tmpfs tmpfs rw\n")
    assert mounts_under(Path("/r/run"), info) == [Path("/r/run/flink/disk/taskmanager-1"),
                                                    Path("/r/run/with space")]


def test_mount_outside_the_run_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not inside the run directory"):
        RunDir(tmp_path / "run").mount_tmpfs(tmp_path / "elsewhere", 128)


def test_disk_size_is_typed_and_checked(tmp_path: Path) -> None:
    assert load_config().flink.taskmanager_disk_mb == 0
    p = tmp_path / "stack.toml"
    p.write_text((REPO_ROOT / "stack/stack.toml").read_text().replace("taskmanager_disk_mb = 0",
                                                                       "taskmanager_disk_mb = 16"))
    with pytest.raises(ConfigError, match="taskmanager_disk_mb = 16"):
        load_config(p)


def test_job_failure_naming_enospc_is_evidence() -> None:
    history = [{"timestamp": INJECT + 2500, "exceptionName": "java.io.IOException", "stacktrace": ENOSPC_TRACE,
                "taskName": "Sink: orders_lake", "taskManagerId": "127.0.0.1:4000-a"},
               {"timestamp": INJECT - 60_000, "exceptionName": "old", "stacktrace": ENOSPC_TRACE}]
    checkpoints = [{"id": 7, "status": "FAILED", "trigger_timestamp": INJECT + 1000, "failure_message": "Task failed"},
                   {"id": 9, "status": "COMPLETED", "trigger_timestamp": HEAL + 4000}]
    found = enospc_evidence(history, checkpoints, "", INJECT, HEAL)
    assert found["failure_count"] == 1 and found["failures"][0]["task"] == "Sink: orders_lake"
    assert found["failures"][0]["trace"][:2] == ["java.io.IOException: Could not flush and close the file system "
                                                 "output stream", "Caused by: java.io.IOException: No space left on "
                                                 "device"]
    assert found["recovered"]["id"] == 9 and found["failed_checkpoints"][0]["id"] == 7
    v = disk_full_verdict(found, "taskmanager-2", hosted=True)
    assert v.effective and "No space left on device" in v.why and "checkpoint 9" in v.why
    assert not disk_full_verdict(found, "taskmanager-1", hosted=False).effective


def test_concurrent_failure_and_failed_checkpoint_with_the_log_are_evidence() -> None:
    history = [{"timestamp": INJECT + 100, "exceptionName": "org.apache.flink.util.FlinkException",
                "stacktrace": "TaskManager lost", "concurrentExceptions": [{"stacktrace": ENOSPC_TRACE}]}]
    assert enospc_evidence(history, [], "", INJECT, HEAL)["failure_count"] == 1
    checkpoints = [{"id": 4, "status": "FAILED", "trigger_timestamp": INJECT + 500,
                    "failure_message": "Asynchronous task checkpoint failed."}]
    log = "INFO ok\nWARN RocksDB: IO error: No space left on device: While appending to file 000012.sst\n"
    found = enospc_evidence([], checkpoints, log, INJECT, HEAL)
    assert found["log"]["count"] == 1 and found["recovered"] is None
    v = disk_full_verdict(found, "taskmanager-1", hosted=True)
    assert v.effective and "no checkpoint triggered after the heal" in v.why
    # a failed checkpoint alone does not say the disk was full
    assert not disk_full_verdict(enospc_evidence([], checkpoints, "", INJECT, HEAL), "taskmanager-1", True).effective


def test_nothing_naming_a_full_disk_is_no_evidence() -> None:
    history = [{"timestamp": INJECT + 100, "exceptionName": "java.lang.RuntimeException", "stacktrace": "boom"}]
    checkpoints = [{"id": 5, "status": "COMPLETED", "trigger_timestamp": INJECT + 500}]
    v = disk_full_verdict(enospc_evidence(history, checkpoints, "all fine\n", INJECT, HEAL), "taskmanager-1", True)
    assert not v.effective and "names a full disk" in v.why


def test_the_fault_is_rebuilt_from_its_spec() -> None:
    again = nemesis_from_spec(DiskFull(target="random").spec())
    assert isinstance(again, DiskFull) and again.target == "random"


class _Probe:
    """The JobProbe calls the disk-full hold makes, answered from fixed readings."""

    def __init__(self, restarts: int, failed: int) -> None:
        self.restarts, self.failed = restarts, failed

    def restart_marks(self, job_id: str) -> dict[str, Any]:
        return {"num_restarts": self.restarts, "restarting_ms": 0}

    def failures_since(self, job_id: str, since_ms: int) -> list[dict[str, Any]]:
        return []

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        return {"failed": self.failed, "history": []}


def test_the_disk_stays_full_until_the_job_met_it_within_bounds() -> None:
    fault = DiskFull()
    fault.hold_min_s, fault.hold_max_s = 0.2, 1.5
    now_ms = int(time.time() * 1000)
    obs = Observation("job", before={"restarts": {"num_restarts": 0}, "checkpoints": {"failed": 0}},
                      inject={"full_ms": now_ms}, inject_ms=now_ms)
    bitten = fault.observe_end(None, _Probe(restarts=1, failed=0), obs)   # type: ignore[arg-type]
    assert bitten["job_failed_over"] and 0.2 <= bitten["held_s"] < 1.0
    obs.inject["full_ms"] = int(time.time() * 1000)
    untouched = fault.observe_end(None, _Probe(restarts=0, failed=0), obs)   # type: ignore[arg-type]
    assert not untouched["job_failed_over"] and not untouched["checkpoint_failed"] and untouched["held_s"] >= 1.5


def test_a_long_rocksdb_line_keeps_where_it_names_the_full_disk() -> None:
    line = ("Caused by: org.rocksdb.RocksDBException: While appending to file: /root/.cache/cdc-chaos/runs/"
            + "x" * 300 + "/000012.sst: No space left on device")
    found = enospc_evidence([{"timestamp": INJECT, "stacktrace": "java.io.IOException: flush\n" + line}], [], line,
                            INJECT, HEAL)
    assert found["failures"][0]["line"].startswith("Caused by: org.rocksdb.RocksDBException")
    assert found["failures"][0]["line"].endswith("No space left on device")
    assert len(found["failures"][0]["line"]) < 400 and "No space left on device" in found["log"]["sample"][0]
    assert found["failures"][0]["trace"][0] == "java.io.IOException: flush"
