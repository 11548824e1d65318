"""The pipeline's Flink job on a stack: submit, status, cancel, stop with savepoint, resume.

Submission runs ``python -m flink_job.job`` (PyFlink) against the stack's JobManager; everything else is
Flink's REST API.  Checkpoints go to the S3 store under ``checkpoints/<job name>/`` and are retained on
cancel, so the job can be resumed from the latest one even after the JobManager itself was lost.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from flink_job.job import SERVE_TAG
from flink_job.sql import JobConfig
from harness import kafka_client
from harness.config import REPO_ROOT
from harness.process import ComponentError, kill_group, spawn_piped, tail, wait_until

if TYPE_CHECKING:
    from harness.stack import Stack


class JobError(ComponentError):
    """The job could not be submitted, did not start, or cannot be resumed."""


@dataclass
class JobRecord:
    """What ``cdc-chaos job submit`` started on a running stack: enough to resume, cancel or check it later
    from another process.  Kept as ``<run dir>/jobs/<name>.json``."""

    name: str
    config: JobConfig
    job_id: str
    prefix: str                                # lake prefix in the bucket ("" = the bucket's root)
    binlog_start: tuple[str, int] | None       # truth starts here (None: the whole binlog)
    start_offsets: dict[int, int]              # the topic offsets the job started at
    submitted_ms: int

    @staticmethod
    def path(run_dir: Path, name: str) -> Path:
        return run_dir / "jobs" / f"{name}.json"

    def save(self, run_dir: Path) -> Path:
        path = self.path(run_dir, self.name)
        path.parent.mkdir(exist_ok=True)
        data = {**dataclasses.asdict(self), "start_offsets": {str(k): v for k, v in self.start_offsets.items()}}
        path.write_text(json.dumps(data, indent=2))
        return path

    @classmethod
    def load(cls, run_dir: Path, name: str) -> JobRecord:
        path = cls.path(run_dir, name)
        if not path.exists():
            known = sorted(p.stem for p in (run_dir / "jobs").glob("*.json")) if (run_dir / "jobs").is_dir() else []
            raise JobError(f"no job named {name!r} on the stack in {run_dir} (jobs: {known or 'none'}); "
                           "start one with `cdc-chaos job submit`")
        raw = json.loads(path.read_text())
        return cls(name=raw["name"], config=JobConfig.from_dict(raw["config"]), job_id=raw["job_id"],
                   prefix=raw["prefix"], binlog_start=tuple(raw["binlog_start"]) if raw["binlog_start"] else None,
                   start_offsets={int(k): v for k, v in raw["start_offsets"].items()},
                   submitted_ms=raw["submitted_ms"])


@dataclass(frozen=True)
class RetainedCheckpoint:
    """A complete checkpoint left in the job's checkpoint dir on S3 (Flink retains it on cancel and failure)."""

    id: int
    job_id: str          # the job that wrote it (its directory under the checkpoint dir)
    path: str            # s3://<bucket>/checkpoints/<group>/<job id>/chk-<id>, what a restore is given
    modified_ms: int     # when its _metadata was written


def _messages(text: str) -> str:
    """A submission's output without the Java stack frames (the exception messages stay)."""
    return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith(("at ", "... ")))[-6000:]


class JobPlanner:
    """One long-lived ``python -m flink_job.job --serve`` per stack: PyFlink's gateway JVM and the SQL planner
    start once, so a submission after the first costs planning only, not a Python and a JVM start-up and the
    planner's warm-up (tens of seconds of CPU on a busy 2-core machine, paid by every scenario before).  It is
    closed with the stack (:func:`close_planners`), at the harness's exit, or when a submission times out; it
    dies with the harness process; its JVM exits when its input closes."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.log_file = log_file
        self.proc = spawn_piped([sys.executable, "-m", "flink_job.job", "--serve"], log_file, env=env,
                                cwd=REPO_ROOT)
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True, name="job-planner-stdout").start()

    @classmethod
    def of(cls, stack: Stack, env: Callable[[], dict[str, str]]) -> JobPlanner:
        with _PLANNERS_LOCK:
            planner = _PLANNERS.get(id(stack))
            if planner is None or planner.proc.poll() is not None:
                planner = _PLANNERS[id(stack)] = cls(env(), stack.run.path / "logs" / "job-planner.log")
            return planner

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(SERVE_TAG):
                self._answers.put(line[len(SERVE_TAG):].strip())
        self._answers.put(None)   # end of output: the planner exited

    def submit(self, request: dict[str, Any], timeout: float) -> str:
        with self._lock:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
                answer = self._answers.get(timeout=timeout)
            except (OSError, queue.Empty) as exc:
                self.close()
                raise JobError(f"the job planner did not answer within {timeout:.0f}s ({type(exc).__name__}); "
                               f"its log ({self.log_file}):\n{tail(self.log_file, 30)}") from exc
        if answer is None:
            raise JobError(f"the job planner exited (code {self.proc.wait()}); its log ({self.log_file}):\n"
                           f"{tail(self.log_file, 30)}")
        data = json.loads(answer)
        if "error" in data:
            raise JobError(f"job submission failed:\n{_messages(data['error'])}")
        return str(data["job_id"])

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_group(self.proc.pid)
                self.proc.wait(timeout=10)


_PLANNERS: dict[int, JobPlanner] = {}
_PLANNERS_LOCK = threading.Lock()


def close_planners(stack: Stack | None = None) -> None:
    """Close the job planner of ``stack`` (of every stack: None)."""
    with _PLANNERS_LOCK:
        keys = [id(stack)] if stack is not None else list(_PLANNERS)
        planners = [p for k in keys if (p := _PLANNERS.pop(k, None)) is not None]
    for planner in planners:
        planner.close()


atexit.register(close_planners)


class Pipeline:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.current_job_id: str | None = None
        self.current_config: JobConfig | None = None
        self.submissions: list[dict[str, Any]] = []

    @classmethod
    def for_record(cls, stack: Stack, record: JobRecord) -> Pipeline:
        """A handle on a job another process submitted."""
        pipeline = cls(stack)
        pipeline.current_job_id, pipeline.current_config = record.job_id, record.config
        return pipeline

    @property
    def rest(self) -> str:
        return self.stack.flink.rest_url

    def _get(self, path: str, timeout: float = 5) -> Any:
        r = requests.get(f"{self.rest}{path}", timeout=timeout)
        r.raise_for_status()
        return r.json()

    def checkpoint_dir(self, cfg: JobConfig) -> str:
        return f"s3://{self.stack.config.s3.bucket}/checkpoints/{cfg.group_id}"

    @staticmethod
    def consumer_group(cfg: JobConfig) -> str:
        """The group the job's main reader commits its offsets under (on each completed checkpoint)."""
        return f"{cfg.group_id}-typed"

    # --- submit / resume --------------------------------------------------------------------------
    def submit(self, cfg: JobConfig, restore: str | None = None, timeout: float = 300) -> str:
        job_id = self.submit_code(REPO_ROOT, dataclasses.asdict(cfg), self.checkpoint_dir(cfg), restore, timeout)
        self.current_job_id, self.current_config = job_id, cfg
        return job_id

    def _submit_env(self, code_root: Path) -> dict[str, str]:
        from harness.install.flink import ensure_flink

        return {**os.environ, "FLINK_HOME": str(ensure_flink(self.stack.config)), "PYTHONPATH": str(code_root),
                "FLINK_CONF_DIR": str(self.stack.flink.conf_dir)}

    def submit_code(self, code_root: Path, config: dict[str, Any], checkpoint_dir: str,
                    restore: str | None = None, timeout: float = 300) -> str:
        """Plan and submit ``flink_job.job`` of the checkout at ``code_root`` with ``config`` (its own JobConfig
        as a dict): the one submission path, also for an older revision of the job that a benchmark compares
        with this one.  This checkout's job goes through the stack's long-lived planner (one JVM for every
        submission); another checkout's through a process of its own."""
        t0 = time.monotonic()
        if code_root == REPO_ROOT:
            planner = JobPlanner.of(self.stack, lambda: self._submit_env(code_root))
            job_id = planner.submit({"config": config, "rest": self.rest.removeprefix("http://"),
                                     "restore": restore, "checkpoint_dir": checkpoint_dir}, timeout)
        else:
            job_id = self._submit_once(code_root, config, checkpoint_dir, restore, timeout)
        self.submissions.append({"job_id": job_id, "restore": restore, "seconds": round(time.monotonic() - t0, 1)})
        return job_id

    def _submit_once(self, code_root: Path, config: dict[str, Any], checkpoint_dir: str, restore: str | None,
                     timeout: float) -> str:
        argv = [sys.executable, "-m", "flink_job.job", json.dumps(config),
                "--rest", self.rest.removeprefix("http://"), "--checkpoint-dir", checkpoint_dir]
        if restore:
            argv += ["--restore", restore]
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                 env=self._submit_env(code_root), cwd=code_root, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise JobError(f"submitting the job took longer than {timeout:.0f}s") from exc
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
        if res.returncode != 0 or not lines:
            raise JobError(f"job submission failed (exit {res.returncode}):\n{_messages(res.stdout + res.stderr)}")
        return str(json.loads(lines[-1])["job_id"])

    def wait_running(self, job_id: str, timeout: float = 180) -> None:
        """Until the job and every one of its tasks is RUNNING (so the workload is not racing deployment)."""
        def running() -> bool:
            job = self._get(f"/jobs/{job_id}")
            if job["state"] in ("FAILED", "CANCELED", "FINISHED"):
                raise JobError(f"job {job_id} is {job['state']}: {self.exceptions(job_id)[:2000]}")
            return job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"])

        wait_until(running, timeout, f"job {job_id} and all its tasks to be RUNNING")

    def retained_checkpoints(self, cfg: JobConfig | None = None, job_id: str | None = None) -> list[RetainedCheckpoint]:
        """The complete checkpoints (those with ``_metadata``) in the job's checkpoint dir, from S3 itself, oldest
        first; only those ``job_id`` wrote when given.  A job restored from an older checkpoint numbers its own
        from there, so two jobs' directories may hold the same id: the later written sorts last."""
        cfg = cfg or self.current_config
        if cfg is None:
            return []
        bucket = self.stack.config.s3.bucket
        prefix = self.checkpoint_dir(cfg).removeprefix(f"s3://{bucket}/") + "/"
        client = self.stack.s3.client()
        found = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                parts = obj["Key"].split("/")
                if parts[-1] != "_metadata" or not parts[-2].startswith("chk-") or len(parts) < 3:
                    continue
                if job_id is not None and parts[-3] != job_id:
                    continue
                found.append(RetainedCheckpoint(int(parts[-2][4:]), parts[-3], f"s3://{bucket}/{'/'.join(parts[:-1])}",
                                                int(obj["LastModified"].timestamp() * 1000)))
        return sorted(found, key=lambda c: (c.id, c.modified_ms))

    def latest_retained_checkpoint(self, cfg: JobConfig | None = None) -> str | None:
        """The newest complete checkpoint in the job's checkpoint dir, from S3 itself."""
        retained = self.retained_checkpoints(cfg)
        return retained[-1].path if retained else None

    def resume_latest(self, timeout: float = 300) -> str:
        """Resume the current job from its latest retained checkpoint (e.g. after the JobManager was lost)."""
        if self.current_config is None:
            raise JobError("no job was submitted through this pipeline, nothing to resume")
        path = self.latest_retained_checkpoint()
        if path is None:
            raise JobError(f"no retained checkpoint under {self.checkpoint_dir(self.current_config)}; "
                           "the job cannot be resumed without losing or duplicating data")
        job_id = self.submit(self.current_config, restore=path, timeout=timeout)
        self.wait_running(job_id)
        return job_id

    def after_jobmanager_restart(self) -> None:
        """Recovery after a JobManager loss (no HA): the new JobManager has no jobs, so resubmit from the
        latest retained checkpoint."""
        self.stack.flink.wait_healthy()
        jobs = self._get("/jobs/overview")["jobs"]
        if not any(j["state"] in ("RUNNING", "CREATED", "RESTARTING", "INITIALIZING") for j in jobs):
            self.resume_latest()

    # --- status / control ------------------------------------------------------------------------
    def exceptions(self, job_id: str) -> str:
        try:
            data = self._get(f"/jobs/{job_id}/exceptions")
        except requests.RequestException as exc:
            return str(exc)
        root = (data.get("rootException") or "") if isinstance(data, dict) else ""
        return root or json.dumps(data.get("exceptionHistory", {}).get("entries", [])[:1])[:2000]

    def latest_checkpoint_id(self, job_id: str) -> int | None:
        try:
            data = self._get(f"/jobs/{job_id}/checkpoints")
        except requests.RequestException:
            return None
        latest = (data.get("latest") or {}).get("completed")
        return int(latest["id"]) if latest else None

    def trigger_checkpoint(self, job_id: str) -> str | None:
        """Ask for a checkpoint now (Flink >= 1.19, ``POST /jobs/<id>/checkpoints``; the configured kind, so
        incremental where the job's are); returns the trigger id, or None when the JobManager refused (the
        periodic ones still come).  One asked for while another runs waits for it."""
        try:
            r = requests.post(f"{self.rest}/jobs/{job_id}/checkpoints", json={"checkpointType": "CONFIGURED"},
                              timeout=5)
            r.raise_for_status()
            return str(r.json().get("request-id") or "") or None
        except (requests.RequestException, ValueError):
            return None

    def status(self, job_id: str | None = None) -> dict[str, Any]:
        job_id = job_id or self.current_job_id
        if job_id is None:
            raise JobError("no job")
        job = self._get(f"/jobs/{job_id}")
        cps = self._get(f"/jobs/{job_id}/checkpoints")
        latest = (cps.get("latest") or {}).get("completed") or {}
        restarts = None
        try:
            metrics = self._get(f"/jobs/{job_id}/metrics?get=numRestarts")
            restarts = int(float(metrics[0]["value"])) if metrics else None
        except (requests.RequestException, ValueError, KeyError, IndexError):
            pass
        watermarks = {}
        for v in job.get("vertices", []):
            try:
                wms = self._get(f"/jobs/{job_id}/vertices/{v['id']}/watermarks")
                vals = [int(w["value"]) for w in wms if int(w["value"]) > -(2**62)]
                watermarks[v["name"][:60]] = min(vals) if vals else None
            except (requests.RequestException, ValueError, KeyError):
                continue
        out: dict[str, Any] = {
            "job_id": job_id, "state": job["state"], "restarts": restarts,
            "checkpoints": {"completed": cps.get("counts", {}).get("completed"),
                            "failed": cps.get("counts", {}).get("failed"),
                            "latest_id": latest.get("id"), "latest_path": latest.get("external_path")},
            "watermarks": watermarks,
        }
        if self.current_config is not None:
            try:
                out["consumer_lag"] = kafka_client.lag(self.stack.kafka.bootstrap,
                                                       self.consumer_group(self.current_config),
                                                       self.current_config.topic)
            except Exception as exc:  # noqa: BLE001 - lag is informative; the broker may be down
                out["consumer_lag"] = f"unavailable: {exc}"
        return out

    # --- read-only observations (the nemeses' evidence that a fault reached the job) -------------------
    def job_details(self, job_id: str) -> dict[str, Any]:
        """``/jobs/<id>``: state, per-state ``timestamps`` (e.g. the last RESTARTING), vertices."""
        data: dict[str, Any] = self._get(f"/jobs/{job_id}", timeout=3)
        return data

    def checkpoint_stats(self, job_id: str) -> dict[str, Any]:
        """``/jobs/<id>/checkpoints``: counts, latest completed/failed, and the recent ``history``."""
        data: dict[str, Any] = self._get(f"/jobs/{job_id}/checkpoints", timeout=3)
        return data

    def exception_history(self, job_id: str) -> list[dict[str, Any]]:
        """The job's failures, newest first (each with ``timestamp``, ``taskManagerId``, ``exceptionName``)."""
        data = self._get(f"/jobs/{job_id}/exceptions", timeout=3)
        entries: list[dict[str, Any]] = (data.get("exceptionHistory") or {}).get("entries", []) \
            if isinstance(data, dict) else []
        return entries

    def restart_count(self, job_id: str) -> int | None:
        """The job's ``numRestarts`` metric (refreshed by the JobManager's metric fetcher, so it may lag)."""
        try:
            metrics = self._get(f"/jobs/{job_id}/metrics?get=numRestarts", timeout=3)
            return int(float(metrics[0]["value"])) if metrics else None
        except (requests.RequestException, ValueError, KeyError, IndexError):
            return None

    def task_locations(self, job_id: str) -> list[dict[str, Any]]:
        """Where the job's tasks run: one entry per (vertex, TaskManager) with the TaskManager's resource id
        (``taskmanager_id``), its ``endpoint`` (host:data port) and the tasks' status there."""
        out = []
        for v in self.job_details(job_id).get("vertices", []):
            data = self._get(f"/jobs/{job_id}/vertices/{v['id']}/taskmanagers", timeout=3)
            for tm in data.get("taskmanagers", []):
                out.append({"vertex": v["name"][:80], "vertex_id": v["id"],
                            "taskmanager_id": tm.get("taskmanager-id"),
                            "endpoint": tm.get("endpoint") or tm.get("host"), "status": tm.get("status")})
        return out

    def taskmanagers(self) -> list[dict[str, Any]]:
        """The registered TaskManagers (``/taskmanagers``): id, RPC ``path``, ``dataPort``, slots."""
        data: list[dict[str, Any]] = self._get("/taskmanagers", timeout=3).get("taskmanagers", [])
        return data

    def running_job_ids(self) -> list[str]:
        return [j["jid"] for j in self._get("/jobs/overview", timeout=3)["jobs"] if j["state"] == "RUNNING"]

    def cancel(self, job_id: str | None = None) -> None:
        job_id = job_id or self.current_job_id
        if job_id is None:
            return
        requests.patch(f"{self.rest}/jobs/{job_id}?mode=cancel", timeout=10)
        wait_until(lambda: self._get(f"/jobs/{job_id}")["state"] in ("CANCELED", "FAILED", "FINISHED"), 60,
                   f"job {job_id} to cancel")

    def cancel_all(self) -> None:
        try:
            jobs = self._get("/jobs/overview")["jobs"]
        except requests.RequestException:
            return
        for j in jobs:
            if j["state"] not in ("CANCELED", "FAILED", "FINISHED"):
                self.cancel(j["jid"])

    def stop_with_savepoint(self, job_id: str | None = None, timeout: float = 120) -> str:
        job_id = job_id or self.current_job_id
        if job_id is None or self.current_config is None:
            raise JobError("no job to stop")
        target = self.checkpoint_dir(self.current_config) + "/savepoints"
        r = requests.post(f"{self.rest}/jobs/{job_id}/stop", json={"targetDirectory": target, "drain": False},
                          timeout=10)
        r.raise_for_status()
        trigger = r.json()["request-id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self._get(f"/jobs/{job_id}/savepoints/{trigger}")
            if st["status"]["id"] == "COMPLETED":
                op = st.get("operation", {})
                if "location" in op:
                    return str(op["location"])
                raise JobError(f"stop-with-savepoint failed: {op.get('failure-cause', op)}")
            time.sleep(0.5)
        raise JobError(f"stop-with-savepoint did not complete in {timeout:.0f}s")


def _sink_vertices(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The vertices whose operators commit partitions (their input watermark is what partition commit acts on)."""
    return [v for v in job.get("vertices", []) if "PartitionCommitter" in v.get("name", "")]


def sink_watermark_ms(pipeline: Pipeline, job_id: str, settle_s: float = 1.5) -> int | None:
    """The watermark Flink reports at the main table's sink (what its partition commit acts on), or None.

    The REST API answers metrics from a cache that the request itself refreshes in the background, so the
    first answer after a quiet spell can be minutes old: ask, give the refresh a moment, ask again."""
    job = pipeline._get(f"/jobs/{job_id}")
    values: list[int] = []
    for attempt in range(2):
        values = []
        for v in _sink_vertices(job):
            # the committer's own input watermark (an operator metric): the vertex's watermark is its chain
            # head's input, which is before the job's change of clocks when that is chained in
            base = f"/jobs/{job_id}/vertices/{v['id']}/subtasks/metrics"
            ids = [m["id"] for m in pipeline._get(base) if "PartitionCommitter" in m["id"]
                   and m["id"].endswith("currentInputWatermark")]
            if ids:
                for m in pipeline._get(f"{base}?get={','.join(ids)}"):
                    value = int(float(m.get("min", m.get("value", -(2**63)))))
                    if value > -(2**62):
                        values.append(value)
                continue
            for w in pipeline._get(f"/jobs/{job_id}/vertices/{v['id']}/watermarks"):
                value = int(w["value"])
                if value > -(2**62):
                    values.append(value)
        if attempt == 0:
            time.sleep(settle_s)
    return min(values) if values else None

