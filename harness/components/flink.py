"""A standalone Flink session cluster from the wheel: one JobManager and N TaskManagers, each its own JVM.

Each member runs ``bin/<role>.sh start-foreground`` (the script execs the JVM, so the process group we
own is the JVM).  Heartbeats are short so a killed TaskManager is noticed in seconds, not 50 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from harness.components.base import Component
from harness.components.proxy import proxied_port
from harness.config import StackConfig
from harness.install.flink import ensure_flink
from harness.process import ManagedProcess


class FlinkCluster(Component):
    name = "flink"

    @classmethod
    def port_names(cls, config: StackConfig) -> list[str]:
        return ["flink_rest", "flink_rpc", "flink_blob"]

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
            "resourcemanager.taskmanager-timeout": 10000,
            # checkpoints kept per job, for an operator to fall back on (the JobManager's setting: a job's own
            # is ignored); the restore_older_checkpoint scenario restores the third newest
            "execution.checkpointing.num-retained": 3,
            "slot.request.timeout": 60000,
            # through the network proxy when the stack has one, so network faults can hit the job's S3 traffic
            "s3.endpoint": f"http://127.0.0.1:{proxied_port(self.ports, 's3') or self.ports['s3']}",
            "s3.path.style.access": "true",
            "s3.access-key": s3.access_key, "s3.secret-key": s3.secret_key,
            # S3 calls must fail fast while the store is down (outage fault), then retry on restart
            "s3.connection.timeout": 5000, "s3.attempts.maximum": 3, "s3.retry.limit": 3,
            "execution.checkpointing.dir": f"s3://{s3.bucket}/checkpoints/{self.run.run_id}",
            "execution.checkpointing.savepoint-dir": f"s3://{s3.bucket}/savepoints/{self.run.run_id}",
            "io.tmp.dirs": str(self.dir / "tmp"),
            "env.java.opts.all": "-XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError",
            "classloader.check-leaked-classloader": "false",
            "web.submit.enable": "true",
            # checkpoint statistics fresh to 50 ms (default: cached 3 s), so a nemesis can see one in flight
            "rest.cache.checkpoint-statistics.timeout": "50 ms",
            # every checkpoint of a run stays in the REST history (default 10), for the report's duration series
            "web.checkpoints.history": 2000,
        }
        (self.dir / "tmp").mkdir(exist_ok=True)
        (self.conf_dir / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in conf.items()))

    def _env(self, member: str) -> dict[str, str]:
        import os

        log_dir = self.dir / "log" / member
        log_dir.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "FLINK_HOME": str(self._home), "FLINK_CONF_DIR": str(self.conf_dir),
                "FLINK_LOG_DIR": str(log_dir), "FLINK_PID_DIR": str(log_dir)}

    def build_processes(self) -> dict[str, ManagedProcess]:
        bin_dir = self._home / "bin"
        procs = {"jobmanager": self.new_process("jobmanager", [str(bin_dir / "jobmanager.sh"), "start-foreground"],
                                                self._env("jobmanager"))}
        for tm in self.taskmanagers():
            # no fixed resource id: a restarted TaskManager must register as a new instance
            procs[tm] = self.new_process(tm, [str(bin_dir / "taskmanager.sh"), "start-foreground"], self._env(tm))
        return procs

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
