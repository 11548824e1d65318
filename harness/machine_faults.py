"""Machine faults: what the machine a component runs on does to it (its disk fills up), rather than what happens to
the component's process or network.  Each is a :class:`harness.nemesis.Nemesis` with evidence that the fault
reached the job.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.nemesis import (
    TM_TARGETS,
    JobProbe,
    Nemesis,
    Observation,
    Recovery,
    Verification,
    _choose_taskmanager,
    _failover,
    _job_state,
    poll_evidence,
)

if TYPE_CHECKING:
    from harness.stack import Stack


# --- disk full ------------------------------------------------------------------------------------------------

#: what a write that found the disk full reports (Java's IOException, RocksDB's "IO error: ... No space left")
ENOSPC = re.compile(r"No space left on device|ENOSPC")

#: the file that takes a TaskManager's disk
FILLER = ".cdc-chaos-disk-filler"


def fill_disk(path: Path, chunk: int = 1 << 20) -> int:
    """Write ``path`` until its file system has no byte left (ENOSPC), halving the write size down to one byte
    so no partial block is left over; the bytes written."""
    written = 0
    data = b"\xa5" * chunk
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        st = os.statvfs(path)
        free = st.f_bavail * st.f_frsize
        with contextlib.suppress(OSError):    # allocate at once what is free (fast), then top up by writes
            os.posix_fallocate(fd, 0, free)
            written = free
            os.lseek(fd, 0, os.SEEK_END)
        size = chunk
        while size >= 1:
            try:
                n = os.write(fd, data[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2
                continue
            written += n
            if n < size:
                size //= 2
    finally:
        os.close(fd)
    return written


def _texts(entry: dict[str, Any]) -> list[str]:
    """The exception texts of one exception-history entry: its own and its concurrent failures'."""
    entries = [entry, *(entry.get("concurrentExceptions") or [])]
    return [e.get("stacktrace") or e.get("exceptionName") or "" for e in entries]


def _clip(line: str, width: int = 240) -> str:
    """A long line shortened in its middle, keeping its start and where it names ENOSPC."""
    line = line.strip()
    m = ENOSPC.search(line)
    if len(line) <= width or m is None or m.end() <= width:
        return line[:width]
    return f"{line[:width // 2]} ... {line[max(width // 2, m.start() - width // 4):m.end() + width // 4]}"


def _enospc_line(text: str) -> str | None:
    return next((_clip(ln) for ln in text.splitlines() if ENOSPC.search(ln)), None)


def _enospc_trace(text: str, frames: int = 6) -> list[str]:
    """Where a trace met ENOSPC: its first line, the line naming it and the frames under that line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    at = next((i for i, ln in enumerate(lines) if ENOSPC.search(ln)), None)
    if at is None:
        return []
    return [_clip(ln, 200) for ln in ([lines[0]] if at else []) + lines[at:at + 1 + frames]]


def enospc_evidence(history: list[dict[str, Any]], checkpoints: list[dict[str, Any]], log_text: str,
                    inject_ms: int, heal_ms: int) -> dict[str, Any]:
    """Where the job met a full disk.  ``failures``: entries of the job's exception history (``/jobs/<id>/
    exceptions``) at or after the inject whose exception or a concurrent one says "No space left on device";
    ``failed_checkpoints``: the job's checkpoints triggered during the fault that failed (with whether their
    failure message names ENOSPC); ``log``: lines of the filled TaskManager's log since the inject that do;
    ``recovered``: the first checkpoint triggered after the heal that completed."""
    failures = []
    for e in history:
        if int(e.get("timestamp") or 0) < inject_ms:
            continue
        text = next((t for t in _texts(e) if _enospc_line(t)), None)
        if text:
            failures.append({"timestamp": e.get("timestamp"), "exception": e.get("exceptionName"),
                             "task": (e.get("taskName") or "")[:80], "taskmanager_id": e.get("taskManagerId"),
                             "line": _enospc_line(text), "trace": _enospc_trace(text)})
    failed = [{"id": c.get("id"), "failure": (c.get("failure_message") or "")[:240],
               "enospc": bool(ENOSPC.search(c.get("failure_message") or ""))}
              for c in checkpoints if c.get("status") == "FAILED"
              and inject_ms - 3000 <= int(c.get("trigger_timestamp") or 0) <= heal_ms]
    lines = [_clip(ln) for ln in log_text.splitlines() if ENOSPC.search(ln)]
    recovered = sorted((c for c in checkpoints if c.get("status") == "COMPLETED"
                        and int(c.get("trigger_timestamp") or 0) >= heal_ms), key=lambda c: int(c.get("id") or 0))
    return {"failures": failures[:5], "failure_count": len(failures), "failed_checkpoints": failed[:5],
            "log": {"count": len(lines), "sample": lines[:3]},
            "recovered": ({"id": recovered[0].get("id"), "trigger_timestamp": recovered[0].get("trigger_timestamp")}
                          if recovered else None)}


def disk_full_verdict(found: dict[str, Any], member: str, hosted: bool) -> Verification:
    """Effective when the filled TaskManager hosted the job's tasks and the job itself met the full disk: a
    failure in its exception history says "No space left on device", or a checkpoint of it failed during the
    fault and its failure message, or the filled TaskManager's log, says so."""
    evidence = {"member": member, "hosted": hosted, **found}
    if not hosted:
        return Verification(False, evidence, f"{member} hosted no task of the job")
    after = (f"; checkpoint {found['recovered']['id']}, triggered after the heal, completed"
             if found.get("recovered") else "; no checkpoint triggered after the heal has completed yet")
    if found["failures"]:
        f = found["failures"][0]
        return Verification(True, evidence, f"the job failed {found['failure_count']} time(s) on the full disk of "
                            f"{member} ({f['task'] or f['exception']}: {f['line']}){after}")
    failed = found["failed_checkpoints"]
    if failed and (any(c["enospc"] for c in failed) or found["log"]["count"]):
        return Verification(True, evidence, f"{len(failed)} checkpoint(s) of the job failed during the fault and "
                            f"{member} reported No space left on device ({found['log']['sample'][:1] or failed[0]})"
                            f"{after}")
    return Verification(False, evidence, f"{member} hosted the job's tasks, but no failure or failed checkpoint of "
                        f"the job names a full disk ({found['log']['count']} ENOSPC line(s) in its log)")


def _taskmanagers(stack: Stack) -> list[str]:
    return [m for m in stack.flink.members() if m.startswith("taskmanager")]


class DiskFull(Nemesis):
    """Fill the working directory of the TaskManager hosting the job's tasks (``target="job"``): a filler file
    takes every byte of its disk, the tmpfs the stack mounts per TaskManager when ``[flink] taskmanager_disk_mb``
    is set (RocksDB's local database, the S3 writer's part buffers and the blob cache are all there); heal
    deletes it.  Effective when that TaskManager hosted the job's tasks and the job met the full disk (its
    exception history, or a checkpoint that failed during the fault with the TaskManager reporting ENOSPC); the
    evidence also names the first checkpoint that completed after the heal."""

    name = "disk-full"
    verify_timeout_s = 60.0
    #: the disk stays full at least ``hold_min_s`` after the fill, and on until the job met it (a failure or a
    #: failed checkpoint since the inject), ``hold_max_s`` at most: on a loaded machine a slow observe and fill
    #: can eat most of a short schedule window, and a disk full for no checkpoint tests nothing
    hold_min_s = 3.0
    hold_max_s = 20.0

    def __init__(self, target: str = "job") -> None:
        if target not in TM_TARGETS:
            raise ValueError(f"unknown TaskManager target {target!r}; use one of {TM_TARGETS}")
        self.target = target
        self._placement: dict[str, Any] | None = None
        self._member: str | None = None
        self._filler: Path | None = None

    def window(self, found: Verification) -> str | None:
        return "TaskManager disk full (the job met ENOSPC)" if found.evidence.get("failures") else None

    def observe(self, stack: Stack, probe: JobProbe, job_id: str) -> dict[str, Any]:
        self._placement = probe.placement(job_id)
        return {"placement": self._placement, "log_sizes": probe.log_sizes(), **_job_state(probe, job_id)}

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        flink = stack.flink
        if not flink.config.flink.taskmanager_disk_mb:
            raise RuntimeError("the stack's TaskManagers have no disk of their own to fill: start it with "
                               "[flink] taskmanager_disk_mb > 0 (Scenario.stack, as disk_full_taskmanager does)")
        member, chosen = _choose_taskmanager(_taskmanagers(stack), self._placement, self.target, rng)
        self._placement = None     # a placement is good for one inject only
        disk = flink.disk_dir(member)
        if not disk.is_mount():
            raise RuntimeError(f"{disk} is not a mount point: the stack did not mount {member}'s disk")
        self._member, self._filler = member, disk / FILLER
        written = fill_disk(self._filler)
        st = os.statvfs(disk)
        return {"filled": member, "target": self.target, "chosen": chosen, "disk": str(disk),
                "filler_bytes": written, "free_bytes": st.f_bavail * st.f_frsize,
                "size_bytes": st.f_blocks * st.f_frsize, "full_ms": int(time.time() * 1000)}

    def observe_end(self, stack: Stack, probe: JobProbe, obs: Observation) -> dict[str, Any]:
        """Hold the disk full (see ``hold_min_s``) until the job met it, then the heal may run."""
        assert obs.job_id is not None
        full_s = int(obs.inject.get("full_ms") or obs.inject_ms) / 1000
        failed_before = obs.before.get("checkpoints", {}).get("failed") or 0
        while True:
            try:
                failover = _failover(probe, obs)["restarted"]
                failed = (probe.checkpoints(obs.job_id).get("failed") or 0) > failed_before
            except Exception:  # noqa: BLE001 - the JobManager may answer late under load: keep holding
                failover = failed = False
            now = time.time()
            if now >= full_s + self.hold_max_s or ((failover or failed) and now >= full_s + self.hold_min_s):
                return {"held_s": round(now - full_s, 1), "job_failed_over": failover, "checkpoint_failed": failed}
            time.sleep(0.5)

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        freed = 0
        if self._filler is not None:
            with contextlib.suppress(FileNotFoundError):
                freed = self._filler.stat().st_size
                self._filler.unlink()
        out: dict[str, Any] = {"freed_bytes": freed, "member": self._member}
        flink = stack.flink
        if self._member and not flink.running(self._member):     # it died of the full disk: start it again
            flink.restart(self._member, wait=False)
            flink.wait_healthy()
            out["restarted"] = self._member
        return out

    def verify(self, stack: Stack, probe: JobProbe, obs: Observation) -> Verification | None:
        member = obs.inject.get("filled", "")
        hosted = member in obs.before.get("placement", {}).get("hosting", {})
        sizes = {member: obs.before.get("log_sizes", {}).get(member, 0)}
        assert obs.job_id is not None
        job_id = obs.job_id

        last: list[Verification] = []

        def check() -> Verification:
            found = enospc_evidence(probe.flink.exception_history(job_id), probe.checkpoints(job_id)["history"],
                                    probe.log_since(sizes).get(member, ""), obs.inject_ms, obs.heal_ms)
            v = disk_full_verdict(found, member, hosted)
            v.evidence["failover"] = _failover(probe, obs)
            last[:] = [v]
            # keep looking until the job has also completed a checkpoint after the heal (the recovery's proof);
            # without one the fault still reached the job, and the checker judges the recovery
            return v if found["recovered"] or not v.effective else Verification(False, v.evidence, v.why)

        result = poll_evidence(check, self.verify_timeout_s if hosted else 0)
        return last[0] if last and last[0].effective else result


# --- clock skew ---------------------------------------------------------------------------------------------------

#: how far a request's signing time may be off the store's clock before S3 (and MinIO) refuses it with
#: ``403 RequestTimeTooSkewed``
S3_MAX_SKEW_S = 15 * 60
#: the S3 error codes of a request signed at a time the store does not accept
SKEW_CODES = ("RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture")


def maps_library(pid: int, name: str = "libfaketime") -> bool:
    """Has process ``pid`` (or one of its children: the JVM a start script runs) loaded a library named ``name``?"""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return False
    for p in procs:
        with contextlib.suppress(OSError):
            if name in Path(f"/proc/{p.pid}/maps").read_text(errors="replace"):
                return True
    return False


def skewed_rows(rows: list[tuple[int | None, int | None]], offset_s: int, tolerance_s: float = 60.0) -> dict[str, Any]:
    """Of the lake rows ``(processed_ms, src_ts_ms)`` (the TaskManager's processing time, the database's commit
    time), those whose processing time is off their commit time by about ``offset_s`` (within ``tolerance_s``,
    the pipeline's own latency being seconds): rows the skewed TaskManager stamped with its own, moved clock."""
    offset_ms, tol_ms = offset_s * 1000, tolerance_s * 1000
    lags = [p - c for p, c in rows if p is not None and c is not None]
    hit = sorted(lag for lag in lags if abs(lag - offset_ms) <= tol_ms)
    return {"rows": len(lags), "skewed": len(hit), "offset_ms": offset_ms,
            "median_lag_ms_skewed": hit[len(hit) // 2] if hit else None,
            "median_lag_ms_all": sorted(lags)[len(lags) // 2] if lags else None}


def skew_rejections(log_text: str, since_ms: int, until_ms: int) -> dict[str, Any]:
    """The job's S3 requests in the S3 gate's log (one JSON line each, ``harness/s3gate.py``) sent in
    ``[since_ms, until_ms]`` that the store refused for their signing time (``403`` with a code of
    :data:`SKEW_CODES`), by operation; and every other refusal (4xx) in the window, by status and code."""
    rejected: dict[str, int] = {}
    other: dict[str, int] = {}
    requests = 0
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "op" not in entry or not since_ms <= int(entry.get("ts_ms") or 0) <= until_ms:
            continue
        requests += 1
        status = int(entry.get("status") or 0)
        if entry.get("code") in SKEW_CODES:
            rejected[entry["op"]] = rejected.get(entry["op"], 0) + 1
        elif 400 <= status < 500:
            key = f"{status} {entry.get('code') or ''}".strip()
            other[key] = other.get(key, 0) + 1
    return {"requests": requests, "skew_rejected": rejected, "other_rejected": other}


def clock_skew_verdict(member: str, hosted: bool, offset_s: int, lake: dict[str, Any] | None,
                       s3: dict[str, Any], checkpoints: dict[str, Any],
                       failover: dict[str, Any] | None = None) -> Verification:
    """A clock skew reached the job when the skewed TaskManager hosted its tasks and the lake holds rows it
    processed during the fault with processing times off their commit times by the offset, or the job failed
    over since the inject (the step of the TaskManager's clocks timed out its calls); a skew beyond S3's limit
    must also have been refused by the store (requests signed with the moved clock)."""
    evidence = {"member": member, "hosted": hosted, "offset_s": offset_s, "lake": lake, "s3": s3,
                "checkpoints": checkpoints, "failover": failover}
    if not hosted:
        return Verification(False, evidence, f"{member} hosted no task of the job")
    reasons = []
    if lake and lake.get("skewed"):
        reasons.append(f"{lake['skewed']} of {lake['rows']} lake rows committed since the inject were processed at "
                       f"{lake['median_lag_ms_skewed'] / 1000:+.1f} s from their commit time (the offset: "
                       f"{offset_s:+d} s)")
    rejected = sum(s3.get("skew_rejected", {}).values())
    if rejected:
        reasons.append(f"the store refused {rejected} of the job's S3 requests as signed at a skewed time "
                       f"({s3['skew_rejected']})")
    failed_over = bool(failover and failover.get("restarted"))
    if failed_over:
        reasons.append("the job failed over: " + "; ".join((failover or {}).get("reasons", [])))
    if checkpoints.get("failed_in_fault"):
        reasons.append(f"{len(checkpoints['failed_in_fault'])} checkpoint(s) failed during the fault")
    if checkpoints.get("recovered"):
        reasons.append(f"checkpoint {checkpoints['recovered']['id']}, triggered after the heal, completed")
    needed = bool(lake and lake.get("skewed")) or bool(rejected) or failed_over
    if abs(offset_s) > S3_MAX_SKEW_S and not rejected:
        needed = False
        reasons.append(f"but the store refused none of the job's S3 requests for a skew of {offset_s:+d} s "
                       f"(beyond S3's {S3_MAX_SKEW_S} s)")
    if needed:
        return Verification(True, evidence, f"{member} hosted the job's tasks; " + "; ".join(reasons))
    return Verification(False, evidence, f"{member} hosted the job's tasks, but " +
                        ("; ".join(reasons) if reasons else "no lake row shows its moved clock"))


class ClockSkew(Nemesis):
    """Move the wall clock of the TaskManager hosting the job's tasks (``target="job"``) ``offset_s`` seconds
    ahead (or behind, negative) while it runs, through libfaketime: the stack must start its TaskManagers under
    it (``[flink] taskmanager_faketime = true``), each with a clock file the fault writes (``+300``) and the heal
    sets right (``+0``); the JVM reads it again within a second, and its monotonic clock steps with it (see
    ``Flink._faketime_env``).  Effective when that TaskManager hosted the job's tasks and the lake holds rows it
    processed during the fault whose processing time (``processed_ms``, PROCTIME on that TaskManager) is off their
    commit time by the offset, or the job failed over since the inject; a
    skew beyond S3's 15 minutes must also have been refused by the store (``RequestTimeTooSkewed`` in the S3
    gate's log of the job's requests).  The evidence also names checkpoints that failed during the fault and the
    first one triggered after the heal that completed."""

    verify_timeout_s = 60.0

    def __init__(self, offset_s: int = 300, target: str = "job") -> None:
        self.offset_s = int(offset_s)
        self.target = target
        self.name = f"clock-skew{self.offset_s:+d}s"
        self._placement: dict[str, Any] | None = None
        self._member: str | None = None
        self._recovery: Recovery | None = None

    def window(self, found: Verification) -> str | None:
        return "S3 request signing refused (clock skew beyond 15 min)" \
            if found.evidence.get("s3", {}).get("skew_rejected") else None

    def bind(self, recovery: Recovery | None) -> None:
        self._recovery = recovery

    @staticmethod
    def _gate_log(stack: Stack) -> Path:
        return Path(stack.proxy.dir) / "s3gate-requests.log"

    def observe(self, stack: Stack, probe: JobProbe, job_id: str) -> dict[str, Any]:
        self._placement = probe.placement(job_id)
        cfg = getattr(self._recovery, "current_config", None)
        try:
            gate_log = self._gate_log(stack).stat().st_size
        except (OSError, KeyError):
            gate_log = 0
        return {"placement": self._placement, "lake_root": getattr(cfg, "lake_root", None),
                "gate_log_offset": gate_log, **_job_state(probe, job_id)}

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        flink = stack.flink
        if not flink.config.flink.taskmanager_faketime:
            raise RuntimeError("the stack's TaskManagers run with the machine's clock: start it with [flink] "
                               "taskmanager_faketime = true (Scenario.stack, as clock_skew_taskmanager does)")
        member, chosen = _choose_taskmanager(_taskmanagers(stack), self._placement, self.target, rng)
        self._placement = None     # a placement is good for one inject only
        pid = flink.processes[member].pid
        if pid is None or not maps_library(pid):
            raise RuntimeError(f"{member} (pid {pid}) has not loaded libfaketime: its clock file would move nothing")
        self._member = member
        path = flink.set_clock(member, self.offset_s)
        return {"skewed": member, "offset_s": self.offset_s, "target": self.target, "chosen": chosen,
                "clock_file": str(path), "pid": pid}

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        if self._member is None:
            return {}
        stack.flink.set_clock(self._member, 0)
        time.sleep(1.5)           # the JVM reads its clock file at most a second late
        return {"clock_right": self._member}

    def observe_end(self, stack: Stack, probe: JobProbe, obs: Observation) -> dict[str, Any]:
        return {"checkpoints": probe.checkpoints(obs.job_id)} if obs.job_id else {}

    def _lake(self, stack: Stack, lake_root: str | None, since_ms: int) -> dict[str, Any] | None:
        import pyarrow.parquet as pq

        from harness.lake import LakeReader
        from harness.lake_schema import DLQ_TABLE

        if not lake_root:
            return None
        prefix = lake_root.removeprefix(f"s3://{stack.config.s3.bucket}").strip("/")
        reader = LakeReader.for_s3(stack.s3.endpoints(), prefix)
        rows: list[tuple[int | None, int | None]] = []
        files = [f for f in reader.list_files()
                 if f.kind == "data" and f.table != DLQ_TABLE and f.last_modified_ms >= since_ms]
        for f in files:
            with contextlib.suppress(Exception), reader.fs.open_input_file(f.path) as fh:
                t = pq.read_table(fh, columns=["processed_ms", "src_ts_ms"])
                rows += list(zip(t.column("processed_ms").to_pylist(), t.column("src_ts_ms").to_pylist(),
                                 strict=True))
        return {"files": len(files), **skewed_rows(rows, self.offset_s)}

    def verify(self, stack: Stack, probe: JobProbe, obs: Observation) -> Verification | None:
        from harness.nemesis import checkpoints_hit

        member = obs.inject.get("skewed", "")
        hosted = member in obs.before.get("placement", {}).get("hosting", {})
        assert obs.job_id is not None
        job_id = obs.job_id
        last: list[Verification] = []

        def check() -> Verification:
            try:
                with open(self._gate_log(stack), "rb") as fh:
                    fh.seek(int(obs.before.get("gate_log_offset") or 0))
                    text = fh.read(64 * 1024 * 1024).decode("utf-8", "replace")
            except (OSError, KeyError):
                text = ""
            s3 = skew_rejections(text, obs.inject_ms, obs.heal_ms + 2000)
            history = probe.checkpoints(job_id)["history"]
            hit = checkpoints_hit(history, obs.before.get("checkpoints", {}).get("history", []), obs.inject_ms,
                                  obs.heal_ms)
            recovered = sorted((c for c in history if c.get("status") == "COMPLETED"
                                and int(c.get("trigger_timestamp") or 0) >= obs.heal_ms), key=lambda c: int(c["id"]))
            cps = {"failed_in_fault": [{k: c.get(k) for k in ("id", "status", "hit", "failure_message")}
                                       for c in hit["hit"]][:5],
                   "recovered": {"id": recovered[0]["id"]} if recovered else None}
            v = clock_skew_verdict(member, hosted, self.offset_s,
                                   self._lake(stack, obs.before.get("lake_root"), obs.inject_ms), s3, cps,
                                   _failover(probe, obs))
            last[:] = [v]
            # keep looking until a checkpoint triggered after the heal completed too (the recovery)
            return v if cps["recovered"] or not v.effective else Verification(False, v.evidence, v.why)

        result = poll_evidence(check, self.verify_timeout_s if hosted else 0, interval_s=2.0)
        return last[0] if last and last[0].effective else result
