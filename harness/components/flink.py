"""A standalone Flink session cluster from the wheel: one JobManager and N TaskManagers, each its own JVM.

Each member runs the JVM that ``bin/<role>.sh start-foreground`` would exec: the script's command line is
recorded once when the cluster is prepared (``[flink] direct_launch``), because the script itself runs three
helper JVMs (configuration, Java version, memory sizes) before it execs, seconds on every restart of a killed
member.  Heartbeats are short so a killed TaskManager is noticed in seconds, not 50 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import requests

from harness.class_archive import RECORD, ClassArchive
from harness.components.base import Component
from harness.components.proxy import proxied_port
from harness.config import StackConfig
from harness.install import installs_root
from harness.install.flink import ensure_flink
from harness.install.tm_warmup import ensure_tm_warmup
from harness.process import ComponentError, ManagedProcess

#: how long one S3 request of Flink's may hang on a route that is cut (``s3.connection.timeout``): the outage fault
#: needs S3 calls to fail fast; the S3 faults' evidence allows a JobManager call blocked this long past the heal
S3_REQUEST_TIMEOUT_MS = 5000

#: classes the TaskManagers' warm-up agent initialises at start (all on Flink's lib/ class path, so shared by every
#: job): a cold JVM taking over a job spent seconds in the Kafka client's protocol tables (every consumer's first
#: request waits for ``ApiKeys``), and the Parquet writer's compression library loads a native library
WARMUP_CLASSES = (
    "org.apache.flink.kafka.shaded.org.apache.kafka.common.protocol.ApiKeys",
    "org.apache.flink.kafka.shaded.org.apache.kafka.clients.consumer.KafkaConsumer",
    "org.apache.flink.kafka.shaded.org.apache.kafka.clients.NetworkClient",
    "org.apache.parquet.hadoop.ParquetWriter",
    "org.apache.parquet.hadoop.ParquetFileWriter",
    "org.xerial.snappy.Snappy",
)

#: each member's script (``bin/<script> start-foreground``) and the class its JVM runs
ENTRY_POINTS = {
    "jobmanager": ("jobmanager.sh", "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"),
    "taskmanager": ("taskmanager.sh", "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"),
}

#: stands in for ``java`` while a member's script runs once: every helper JVM the script starts runs for real, and the
#: member's own command line (the one whose arguments name its entry class) and environment are written down instead
#: of started
RECORDING_JAVA = """#!/bin/sh
for arg do
  if [ "$arg" = "$CDC_CHAOS_ENTRY_CLASS" ]; then
    printf '%s\\0' "$@" > "$CDC_CHAOS_RECORD.argv"
    env -0 > "$CDC_CHAOS_RECORD.env"
    exit 0
  fi
done
exec "$CDC_CHAOS_JAVA" "$@"
"""

#: where Debian's libfaketime (package ``libfaketime``) puts the library, per architecture
FAKETIME_GLOBS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
                  "/usr/local/lib/faketime/libfaketime.so.1")


def faketime_library() -> str:
    """The path of libfaketime.so.1; a clear error naming the fix when the machine has none."""
    import glob

    from harness.process import ComponentError

    for pattern in FAKETIME_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise ComponentError("[flink] taskmanager_faketime = true needs libfaketime (looked for "
                         f"{', '.join(FAKETIME_GLOBS)}): run ./run setup, or apt-get install libfaketime faketime")


class FlinkCluster(Component):
    name = "flink"
    #: the TaskManagers' class-data archive (``[flink] taskmanager_class_archive``), once their command is known
    _archive: ClassArchive | None = None
    #: each TaskManager's JVM command line without the archive's options (set with the archive)
    _launch_argv: dict[str, list[str]]
    #: a dump of the archive failed in this stack (no more attempts)
    _archive_failed = False

    @classmethod
    def port_names(cls, config: StackConfig) -> list[str]:
        # each TaskManager's own metrics endpoint (Prometheus): the harness reads what the job consumed there
        return ["flink_rest", "flink_rpc", "flink_blob",
                *(f"flink_metrics_tm{i}" for i in range(1, config.flink.taskmanagers + 1))]

    @property
    def health_description(self) -> str:  # type: ignore[override]
        f = self.config.flink
        slots = f.taskmanagers * f.slots_per_taskmanager
        return f"REST /overview to show {f.taskmanagers} TaskManagers with {slots} slots"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['flink_rest']}"

    @property
    def conf_dir(self) -> Path:
        return self.dir / "conf"

    def taskmanagers(self) -> list[str]:
        return [f"taskmanager-{i}" for i in range(1, self.config.flink.taskmanagers + 1)]

    def prepare(self) -> None:
        self._home = ensure_flink(self.config)
        f, s3 = self.config.flink, self.config.s3
        self.conf_dir.mkdir(exist_ok=True)
        for name in ("log4j-console.properties", "log4j-cli.properties", "log4j.properties"):
            (self.conf_dir / name).write_text((self._home / "conf" / name).read_text())
        conf = {
            "jobmanager.rpc.address": "127.0.0.1", "jobmanager.bind-host": "127.0.0.1",
            "jobmanager.rpc.port": self.ports["flink_rpc"], "blob.server.port": self.ports["flink_blob"],
            "rest.address": "127.0.0.1", "rest.bind-address": "127.0.0.1", "rest.port": self.ports["flink_rest"],
            "taskmanager.host": "127.0.0.1", "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.rpc.port": "0", "taskmanager.data.port": "0",
            "jobmanager.memory.process.size": f.jobmanager_memory,
            "taskmanager.memory.process.size": f.taskmanager_memory,
            "taskmanager.numberOfTaskSlots": f.slots_per_taskmanager,
            "parallelism.default": 1,
            "heartbeat.interval": f.heartbeat_interval_ms, "heartbeat.timeout": f.heartbeat_timeout_ms,
            "heartbeat.rpc-failure-threshold": 2,
            # the REST API answers metrics (watermarks, restarts) from a cache refreshed at most this often; the
            # nemeses sample the job's watermark within a fault of a few seconds
            "metrics.fetcher.update-interval": 500,
            # the REST API's metric fetcher asks every TaskManager and starts no new round until all answered,
            # each ask bounded by web.timeout (10 min by default): a TaskManager killed while an ask was on its
            # way froze every metric of the cluster for 10 minutes (the job's watermarks and records consumed
            # read as stuck after a TaskManager kill, so quiescence judged an honest run STALLED).  10 s bounds
            # that freeze; REST calls to the JobManager itself answer well within it
            "web.timeout": 10000,
            "resourcemanager.taskmanager-timeout": 10000,
            # checkpoints kept per job, for an operator to fall back on (the JobManager's setting: a job's own
            # is ignored); the restore_older_checkpoint scenario restores the third newest
            "execution.checkpointing.num-retained": 3,
            "slot.request.timeout": 60000,
            # a slot request no TaskManager can fill waits for one (up to slot.request.timeout) instead of failing
            # at once: by default a standalone cluster fails such requests once its first 60 s are over, so with
            # both TaskManagers killed the job crash-looped through its restart back-off (85-line stack trace
            # per attempt) and restarted up to 1 s after a TaskManager was back; now it deploys on the first
            # TaskManager that registers
            "resourcemanager.standalone.start-up-time": "0 ms",
            # through the network proxy when the stack has one, so network faults can hit the job's S3 traffic
            "s3.endpoint": f"http://127.0.0.1:{proxied_port(self.ports, 's3') or self.ports['s3']}",
            "s3.path.style.access": "true",
            # no blind DeleteObjects of a new file's parent "directory" markers after every file the job writes
            # (the lake has none; a checkpoint directory's marker goes with the directory): one request less per
            # Parquet file and _SUCCESS, all of them in the writer's task thread (commits) or the committer's
            "s3.directory.marker.retention": "keep",
            "s3.access-key": s3.access_key, "s3.secret-key": s3.secret_key,
            # S3 calls must fail fast while the store is down (outage fault), then retry on restart
            "s3.connection.timeout": S3_REQUEST_TIMEOUT_MS, "s3.attempts.maximum": 3, "s3.retry.limit": 3,
            "execution.checkpointing.dir": f"s3://{s3.bucket}/checkpoints/{self.run.run_id}",
            "execution.checkpointing.savepoint-dir": f"s3://{s3.bucket}/savepoints/{self.run.run_id}",
            "io.tmp.dirs": str(self.dir / "tmp"),
            # the S3 client's upload buffers (checkpoint files): Hadoop's default is /tmp/hadoop-<user>/s3a, where a
            # killed TaskManager's half-written blocks stayed for good
            "s3.buffer.dir": str(self.dir / "tmp" / "s3a"),
            # temporary files in the run dir, which the run removes (a killed JVM leaves its /tmp files behind:
            # the web UI's flink-web-*, snappy's native library); no perf-data file in /tmp/hsperfdata_<user>
            "env.java.opts.all": "-XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -XX:+PerfDisableSharedMem "
                                 f"-Djava.io.tmpdir={self.dir / 'tmp'}",
            "web.tmpdir": str(self.dir / "tmp"),
            "classloader.check-leaked-classloader": "false",
            "web.submit.enable": "true",
            # checkpoint statistics fresh to 50 ms (default: cached 3 s), so a nemesis can see one in flight
            "rest.cache.checkpoint-statistics.timeout": "50 ms",
            # every checkpoint of a run stays in the REST history (default 10), for the report's duration series
            "web.checkpoints.history": 2000,
            **self._warmup_conf(),
        }
        (self.dir / "tmp").mkdir(exist_ok=True)
        if f.taskmanager_disk_mb:    # a disk of its own per TaskManager (unmounted when the run dir is removed)
            for tm in self.taskmanagers():
                self.run.mount_tmpfs(self.disk_dir(tm), f.taskmanager_disk_mb)
        (self.conf_dir / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in conf.items()))

    def _warmup_conf(self) -> dict[str, str]:
        """The TaskManagers' JVM options for the warm-up agent (``[flink] taskmanager_warmup``): it initialises
        ``WARMUP_CLASSES`` and opens the lake's S3 file system (Flink caches it per JVM) while the JVM is idle,
        so a TaskManager taking over a job does not do it then.  Quoted: the value holds ``:``."""
        if not self.config.flink.taskmanager_warmup:
            return {}
        jar = ensure_tm_warmup()
        agent = ",".join([f"s3://{self.config.s3.bucket}/", *WARMUP_CLASSES])
        return {"env.java.opts.taskmanager": json.dumps(f"-javaagent:{jar}={agent}")}

    def disk_dir(self, member: str) -> Path:
        """A TaskManager's own working directory, a tmpfs of ``[flink] taskmanager_disk_mb`` MiB when that is
        set (else the members share ``tmp/`` and this is not used)."""
        return self.dir / "disk" / member

    def _tm_args(self, member: str) -> list[str]:
        # dynamic properties of this TaskManager alone: its metrics port, and (with a disk of its own) its working
        # directory, where RocksDB's local database, the S3 writer's part buffers and the blob cache live
        disk = ["-D", f"io.tmp.dirs={self.disk_dir(member)}"] if self.config.flink.taskmanager_disk_mb else []
        return [*self._metrics_args(member), *disk]

    def _metrics_args(self, member: str) -> list[str]:
        """The Prometheus reporter on this TaskManager's own port, exporting only what the harness reads (the
        Kafka readers' records consumed): the JobManager has none, so it needs no port of its own."""
        return ["-D", "metrics.reporter.prom.factory.class="
                      "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
                "-D", f"metrics.reporter.prom.port={self.ports[self._metrics_port(member)]}",
                "-D", "metrics.reporter.prom.filter.includes=*:records-consumed-total"]

    @staticmethod
    def _metrics_port(member: str) -> str:
        return f"flink_metrics_tm{member.rsplit('-', 1)[1]}"

    def metric_urls(self) -> list[str]:
        """Each TaskManager's own metrics (Prometheus text), read live: unlike the REST API's, never held back by
        the JobManager's fetcher waiting on a killed TaskManager."""
        return [f"http://127.0.0.1:{self.ports[self._metrics_port(tm)]}/metrics" for tm in self.taskmanagers()]

    def _env(self, member: str) -> dict[str, str]:
        import os

        log_dir = self.dir / "log" / member
        log_dir.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "FLINK_HOME": str(self._home), "FLINK_CONF_DIR": str(self.conf_dir),
                "FLINK_LOG_DIR": str(log_dir), "FLINK_PID_DIR": str(log_dir), **self._faketime_env(member)}

    def clock_file(self, member: str) -> Path:
        """A TaskManager's libfaketime clock file (``[flink] taskmanager_faketime``): the offset of its wall
        clock, ``+0`` while it is right."""
        return self.dir / "clock" / member

    def set_clock(self, member: str, offset_s: int) -> Path:
        """Move ``member``'s wall clock to ``offset_s`` seconds off the machine's (0: right again); its JVM reads
        the file again within ``FAKETIME_CACHE_DURATION`` (1 s), without a restart."""
        if not self.config.flink.taskmanager_faketime or not member.startswith("taskmanager"):
            raise ValueError(f"{member} runs with the machine's clock: a TaskManager's clock moves only on a "
                             "stack with [flink] taskmanager_faketime = true")
        path = self.clock_file(member)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{int(offset_s):+d}\n")
        tmp.replace(path)        # atomic: the JVM never reads a half-written offset
        return path

    def _faketime_env(self, member: str) -> dict[str, str]:
        # each TaskManager under libfaketime with a clock file of its own, right (+0) at start.  The monotonic
        # clock moves with it: with FAKETIME_DONT_FAKE_MONOTONIC=1 libfaketime 0.9.10 makes every JVM ~10x slower
        # (a TaskManager did not register within 90 s), so a skew here is a step of both clocks
        if not self.config.flink.taskmanager_faketime or not member.startswith("taskmanager"):
            return {}
        library = faketime_library()
        path = self.clock_file(member)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("+0\n")
        return {"LD_PRELOAD": library, "FAKETIME_TIMESTAMP_FILE": str(path), "FAKETIME_CACHE_DURATION": "1"}

    def _script_argv(self, member: str) -> list[str]:
        script, _ = ENTRY_POINTS[member.split("-")[0]]
        extra = self._tm_args(member) if member.startswith("taskmanager") else []
        return [str(self._home / "bin" / script), "start-foreground", *extra]

    def _record_launch(self, member: str) -> tuple[list[str], dict[str, str]]:
        """The command line and environment with which ``member``'s script would exec its JVM, found by running the
        script once with ``RECORDING_JAVA`` as its ``java`` (its helper JVMs run for real).  Flink's own script
        stays the one definition of the JVM's options, class path and memory sizes; only its cost is paid once."""
        java = shutil.which("java", path=os.environ.get("PATH"))
        home = os.environ.get("JAVA_HOME")
        if home and os.access(Path(home) / "bin" / "java", os.X_OK):
            java = str(Path(home) / "bin" / "java")
        if not java:
            raise ComponentError("flink: no java on PATH or in $JAVA_HOME: run ./run setup (openjdk-17-jdk-headless)")
        recorder = self.dir / "launch" / "jdk"
        (recorder / "bin").mkdir(parents=True, exist_ok=True)
        fake = recorder / "bin" / "java"
        if not fake.exists():
            fake.write_text(RECORDING_JAVA)
            fake.chmod(0o755)
        record = self.dir / "launch" / member
        for suffix in (".argv", ".env"):
            Path(f"{record}{suffix}").unlink(missing_ok=True)
        env = {k: v for k, v in self._env(member).items() if k not in ("LD_PRELOAD", "FAKETIME_TIMESTAMP_FILE")}
        _, entry_class = ENTRY_POINTS[member.split("-")[0]]
        env.update(JAVA_HOME=str(recorder), CDC_CHAOS_JAVA=java, CDC_CHAOS_ENTRY_CLASS=entry_class,
                   CDC_CHAOS_RECORD=str(record))
        try:
            res = subprocess.run(self._script_argv(member), env=env, cwd=self.dir, capture_output=True, text=True,
                                 timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise ComponentError(f"flink/{member}: {self._script_argv(member)[0]} did not reach its JVM within 120 s "
                                 f"(its helper JVMs hung?): {exc}\nfix: check the machine's load and the Flink home "
                                 f"({self._home}), or set [flink] direct_launch = false") from exc
        argv_file, env_file = Path(f"{record}.argv"), Path(f"{record}.env")
        if res.returncode != 0 or not argv_file.exists() or not env_file.exists():
            raise ComponentError(
                f"flink/{member}: {self._script_argv(member)[0]} did not reach its JVM (exit {res.returncode}): "
                f"{(res.stdout + res.stderr).strip()[-2000:]}\nfix: check the Flink home ({self._home}) and "
                f"{self.conf_dir / 'config.yaml'}, or set [flink] direct_launch = false to start through the script")
        argv = argv_file.read_text().split("\0")[:-1]
        recorded = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
        for key in ("JAVA_HOME", "CDC_CHAOS_JAVA", "CDC_CHAOS_ENTRY_CLASS", "CDC_CHAOS_RECORD"):
            recorded.pop(key, None)
        if home:
            recorded["JAVA_HOME"] = home
        return [java, *argv], {**recorded, **self._faketime_env(member)}

    def build_processes(self) -> dict[str, ManagedProcess]:
        # no fixed resource id: a restarted TaskManager must register as a new instance
        members = ["jobmanager", *self.taskmanagers()]
        if not self.config.flink.direct_launch:
            return {m: self.new_process(m, self._script_argv(m), self._env(m)) for m in members}
        with ThreadPoolExecutor(max_workers=len(members)) as pool:
            launches = dict(zip(members, pool.map(self._record_launch, members), strict=True))
        if self.config.flink.taskmanager_class_archive:
            self._archive = ClassArchive(launches[self.taskmanagers()[0]][0], installs_root() / "class-archives")
            self._launch_argv = {}
            for tm in self.taskmanagers():
                self._launch_argv[tm] = launches[tm][0]
                launches[tm] = (self._archive.with_options(launches[tm][0]), launches[tm][1])
        return {m: self.new_process(m, argv, env) for m, (argv, env) in launches.items()}

    def on_idle(self) -> None:
        self._save_class_archive()

    def before_down(self) -> None:
        self._save_class_archive()

    def _save_class_archive(self) -> None:
        """Dump the TaskManagers' class-data archive when there is none yet, from the live TaskManager that ran
        the job's tasks (most CPU time), and start every TaskManager from it from now on (``harness/class_archive``):
        between runs (the stack's heal) or when the stack goes down, whichever comes first."""
        archive = self._archive
        if archive is None:
            return
        if not archive.exists() and not self._archive_failed:
            # one failed dump is enough for this stack: each attempt may take jcmd's whole timeout
            self._archive_failed = self._dump_class_archive(archive) is False
        if archive.exists():        # this stack's next TaskManager starts map it (another stack may have dumped it)
            for tm, argv in self._launch_argv.items():
                if tm in self.processes:
                    self.processes[tm].argv = archive.with_options(argv)

    def _dump_class_archive(self, archive: ClassArchive) -> bool | None:
        """The dump's outcome, or None when no TaskManager can give one yet (none recording has run a task)."""
        candidates = []
        for tm in self.taskmanagers():
            proc = self.processes.get(tm)
            if proc is None or not proc.running() or proc.pid is None or RECORD not in proc.argv:
                continue
            try:
                p = psutil.Process(proc.pid)
                this_start = proc.log_file.read_text(errors="replace").rsplit("\n=== ", 1)[-1]
                if p.status() == psutil.STATUS_STOPPED or "Received task" not in this_start:
                    continue            # paused (jcmd would hang), or never ran a task: its archive would be thin
                cpu = p.cpu_times()
                candidates.append((cpu.user + cpu.system, proc.pid))
            except (psutil.Error, OSError):
                continue
        return archive.dump_from(max(candidates)[1]) if candidates else None

    def overview(self) -> dict[str, Any]:
        data: dict[str, Any] = requests.get(f"{self.rest_url}/overview", timeout=3).json()
        return data

    def healthy(self) -> bool:
        o = self.overview()
        f = self.config.flink
        alive = {m for m, p in self.processes.items() if p.running() and m.startswith("taskmanager")}
        return o.get("taskmanagers", 0) >= len(alive) and o.get("slots-total", 0) >= len(alive) * \
            f.slots_per_taskmanager and len(alive) == f.taskmanagers

    def endpoints(self) -> dict[str, Any]:
        return {"rest": self.rest_url, "taskmanagers": self.config.flink.taskmanagers,
                "conf_dir": str(self.conf_dir)}
