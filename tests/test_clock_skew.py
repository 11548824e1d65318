"""The clock-skew machine fault without the stack: a process under the TaskManagers' libfaketime set-up sees the
clock its file says, moved and set right while it runs; a missing library is an error naming the fix; the evidence
reads skewed processing times and S3 refusals from recorded lake rows and gate log lines."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from harness.components import flink as flink_component
from harness.components.flink import FlinkCluster, faketime_library
from harness.config import REPO_ROOT, ConfigError, load_config
from harness.machine_faults import ClockSkew, clock_skew_verdict, maps_library, skew_rejections, skewed_rows
from harness.nemesis import nemesis_from_spec
from harness.process import ComponentError

INJECT, HEAL = 1_000_000, 1_008_000


def _cluster(tmp_path: Path, faketime: bool = True) -> FlinkCluster:
    cluster = FlinkCluster.__new__(FlinkCluster)      # only its config and directory: no stack
    cluster.config = load_config().with_overrides(flink={"taskmanager_faketime": faketime})
    cluster.dir = tmp_path
    return cluster


def _clock_s(env: dict[str, str]) -> int:
    return int(subprocess.run(["date", "+%s"], env=env, capture_output=True, text=True, check=True).stdout)


def test_faketime_is_a_typed_stack_option_off_by_default(tmp_path: Path) -> None:
    assert load_config().flink.taskmanager_faketime is False
    p = tmp_path / "stack.toml"
    text = (REPO_ROOT / "stack/stack.toml").read_text()
    p.write_text(text.replace("taskmanager_faketime = false", "taskmanager_faketime = true"))
    assert load_config(p).flink.taskmanager_faketime is True
    p.write_text(text.replace("taskmanager_faketime = false", 'taskmanager_faketime = "yes"'))
    with pytest.raises(ConfigError, match="taskmanager_faketime"):
        load_config(p)


def test_a_taskmanager_clock_moves_and_comes_back_without_a_restart(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    env = cluster._faketime_env("taskmanager-1")
    # the monotonic clock steps too: FAKETIME_DONT_FAKE_MONOTONIC=1 makes libfaketime 0.9.10 slow every JVM ~10x
    assert env["LD_PRELOAD"] == faketime_library() and "FAKETIME_DONT_FAKE_MONOTONIC" not in env
    assert cluster.clock_file("taskmanager-1").read_text().strip() == "+0"
    assert cluster._faketime_env("jobmanager") == {}           # the JobManager keeps the machine's clock
    assert abs(_clock_s(env) - time.time()) < 3
    # one process running across the change: it must load the library and see the new offset within ~1 s
    proc = subprocess.Popen(["sh", "-c", "sleep 0.3; date +%s; sleep 2.5; date +%s; sleep 2.5; date +%s"],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.15)
        assert maps_library(proc.pid)
        time.sleep(0.5)
        cluster.set_clock("taskmanager-1", 1200)
        time.sleep(2.5)
        cluster.set_clock("taskmanager-1", -180)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    right, ahead, behind = (int(x) - t for x, t in zip(out.split(), (time.time() - 5.5, time.time() - 2.5,
                                                                      time.time()), strict=True))
    assert abs(right) <= 3 and abs(ahead - 1200) <= 3 and abs(behind + 180) <= 3, out
    with pytest.raises(ValueError, match="taskmanager_faketime"):
        cluster.set_clock("jobmanager", 60)
    assert _cluster(tmp_path, faketime=False)._faketime_env("taskmanager-1") == {}


def test_a_missing_libfaketime_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flink_component, "FAKETIME_GLOBS", ("/nonexistent/libfaketime.so.1",))
    with pytest.raises(ComponentError, match=r"\./run setup.*apt-get install libfaketime"):
        faketime_library()


def test_skewed_rows_are_those_off_their_commit_time_by_the_offset() -> None:
    rows = [(10_000 + 300_400, 10_000), (20_000 + 301_000, 20_000), (30_500, 30_000), (None, 1), (5, None)]
    found = skewed_rows(rows, 300)
    assert found["rows"] == 3 and found["skewed"] == 2 and found["median_lag_ms_skewed"] == 301_000
    assert skewed_rows(rows, -180)["skewed"] == 0
    assert skewed_rows([(100_000 - 180_200, 100_000)], -180)["skewed"] == 1


def test_skew_rejections_count_the_jobs_refused_requests_in_the_window() -> None:
    lines = [{"ts_ms": INJECT + 10, "op": "UploadPart", "status": 403, "code": "RequestTimeTooSkewed"},
             {"ts_ms": INJECT + 20, "op": "PutObject", "status": 403, "code": "RequestTimeTooSkewed"},
             {"ts_ms": INJECT + 30, "op": "HeadObject", "status": 403},
             {"ts_ms": INJECT + 40, "op": "GetObject", "status": 404, "code": "NoSuchKey"},
             {"ts_ms": INJECT + 50, "op": "PutObject", "status": 200},
             {"ts_ms": INJECT - 10, "op": "PutObject", "status": 403, "code": "RequestTimeTooSkewed"},
             {"ts_ms": INJECT, "control": "clear"}]
    found = skew_rejections("\n".join(json.dumps(x) for x in lines) + "\nnot json", INJECT, HEAL)
    assert found["requests"] == 5
    assert found["skew_rejected"] == {"UploadPart": 1, "PutObject": 1}
    assert found["other_rejected"] == {"403": 1, "404 NoSuchKey": 1}


def test_a_skew_is_effective_only_on_the_jobs_taskmanager_with_evidence() -> None:
    lake = {"rows": 500, "skewed": 400, "median_lag_ms_skewed": 300_700, "files": 3}
    none_s3 = {"requests": 10, "skew_rejected": {}, "other_rejected": {}}
    cps = {"failed_in_fault": [], "recovered": {"id": 9}}
    assert not clock_skew_verdict("taskmanager-2", False, 300, lake, none_s3, cps).effective
    v = clock_skew_verdict("taskmanager-1", True, 300, lake, none_s3, cps)
    assert v.effective and "400 of 500" in v.why and "checkpoint 9" in v.why
    assert not clock_skew_verdict("taskmanager-1", True, 300, {**lake, "skewed": 0}, none_s3, cps).effective
    # beyond S3's 15 minutes the store must have refused the job's signed requests
    assert not clock_skew_verdict("taskmanager-1", True, 1200, lake, none_s3, cps).effective
    s3 = {"requests": 10, "skew_rejected": {"UploadPart": 2}, "other_rejected": {}}
    v = clock_skew_verdict("taskmanager-1", True, 1200, None, s3, cps)
    assert v.effective and "refused 2" in v.why


def test_a_clock_skew_is_rebuilt_from_its_spec() -> None:
    fault = nemesis_from_spec(ClockSkew(1200).spec())
    assert isinstance(fault, ClockSkew) and fault.offset_s == 1200 and fault.name == "clock-skew+1200s"
