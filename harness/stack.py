"""The whole pipeline's infrastructure as one object: network proxy, database, S3 store, Kafka, Connect, Flink.

``with Stack.up(config) as stack:`` starts every component (processes first, all at once, then the
health waits in dependency order, so JVM start-ups overlap), and always tears everything down:
processes, ports and the run directory, on success, failure or Ctrl-C.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import log
from harness.components.base import Component
from harness.components.connect import KafkaConnect
from harness.components.database import Database
from harness.components.flink import FlinkCluster
from harness.components.kafka import KafkaBroker
from harness.components.proxy import NetworkProxy
from harness.components.s3 import ObjectStore
from harness.config import StackConfig, load_config
from harness.process import ComponentError
from harness.rundir import RunDir

_LOG = log.get("stack")

#: start order = health-wait order; Connect needs Kafka and the database, Flink's checkpoints need S3; the
#: proxy (the job's network to Kafka and S3) needs nothing and is up before anyone connects through it
COMPONENT_CLASSES: dict[str, type[Component]] = {
    "proxy": NetworkProxy,
    "database": Database,
    "s3": ObjectStore,
    "kafka": KafkaBroker,
    "connect": KafkaConnect,
    "flink": FlinkCluster,
}


class StackError(ComponentError):
    """The stack did not come up; names the component, what was awaited and its log tail."""


class Stack:
    def __init__(self, config: StackConfig | None = None, run: RunDir | None = None,
                 label: str = "stack", components: list[str] | None = None,
                 ports: dict[str, int] | None = None) -> None:
        self.config = config or load_config()
        self.run = run or RunDir.create(label)
        names = components or list(COMPONENT_CLASSES)
        port_names = [p for n in names for p in COMPONENT_CLASSES[n].port_names(self.config)]
        self.ports = ports if ports is not None else self.run.allocate_ports(port_names)
        self.components: dict[str, Component] = {}
        for name in names:
            self.components[name] = self._make(name)
        self.timings: dict[str, float] = {}

    def _make(self, name: str) -> Component:
        cls = COMPONENT_CLASSES[name]
        if cls is KafkaConnect:
            return KafkaConnect(self.config, self.run, self.ports, kafka=self.kafka, database=self.database)
        return cls(self.config, self.run, self.ports)

    @classmethod
    def attach(cls, run_dir: Path, config: StackConfig | None = None) -> Stack:
        """A handle on a stack another process started (`cdc-chaos up`): endpoints and clients, no processes."""
        ports = json.loads((run_dir / "ports.json").read_text())
        return cls(config, run=RunDir(run_dir), ports=ports)

    # --- typed accessors -------------------------------------------------------------------------
    @property
    def proxy(self) -> NetworkProxy:
        # through __getitem__: a stack built without the proxy gets an error that lists its components
        return self["proxy"]  # type: ignore[return-value]

    @property
    def database(self) -> Database:
        return self.components["database"]  # type: ignore[return-value]

    @property
    def s3(self) -> ObjectStore:
        return self.components["s3"]  # type: ignore[return-value]

    @property
    def kafka(self) -> KafkaBroker:
        return self.components["kafka"]  # type: ignore[return-value]

    @property
    def connect(self) -> KafkaConnect:
        return self.components["connect"]  # type: ignore[return-value]

    @property
    def flink(self) -> FlinkCluster:
        return self.components["flink"]  # type: ignore[return-value]

    def __getitem__(self, name: str) -> Component:
        if name not in self.components:
            raise KeyError(f"no component {name!r}; components: {list(self.components)}")
        return self.components[name]

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float | None = None, register_connector: bool = True) -> None:
        timeout = timeout or self.config.timeouts.stack_up_s
        started = time.monotonic()
        deadline = started + timeout
        order = list(self.components)
        # Spawn everything that has no start-up dependency first so the JVMs boot in parallel.
        for name in order:
            if name != "connect":
                self._log(f"starting {name}")
                self.components[name].start()
        for name in order:
            comp = self.components[name]
            if name == "connect":
                comp.start()
            remaining = max(5.0, deadline - time.monotonic())
            t0 = time.monotonic()
            try:
                comp.wait_healthy(min(remaining, self.config.timeouts.component_up_s))
                comp.after_healthy()
            except ComponentError as exc:
                raise StackError(f"stack did not become healthy: {exc}") from exc
            self.timings[name] = time.monotonic() - t0
            self._log(f"{name} healthy ({time.monotonic() - started:.1f}s since start)")
        if register_connector and "connect" in self.components:
            t0 = time.monotonic()
            self.connect.register_connector()
            self.timings["connector"] = time.monotonic() - t0
            self._log(f"connector RUNNING ({time.monotonic() - started:.1f}s since start)")
        self.timings["total"] = time.monotonic() - started
        self.write_status()

    def down(self) -> None:
        """Kill every process group, release ports, delete the run directory. Idempotent."""
        from harness.pipeline import close_planners

        close_planners(self)
        for comp in self.components.values():
            try:
                comp.before_down()
            except Exception as exc:  # noqa: BLE001 - a last word must never keep the stack up
                self._log(f"error before stopping {comp.name}: {exc}")
        for comp in reversed(list(self.components.values())):
            try:
                comp.kill()
            except Exception as exc:  # noqa: BLE001 - keep tearing down the rest
                self._log(f"error killing {comp.name}: {exc}")
        self.run.remove()

    @classmethod
    @contextmanager
    def up(cls, config: StackConfig | None = None, label: str = "stack", components: list[str] | None = None,
           **kw: Any) -> Iterator[Stack]:
        stack = cls(config, label=label, components=components)
        try:
            stack.start(**kw)
            yield stack
        finally:
            stack.down()

    def heal(self) -> list[str]:
        """Continue paused members and restart dead ones, then wait until every component is healthy, and
        clear every network fault (between scenarios, so one scenario's faults cannot leak into the next)."""
        restarted = []
        for name, comp in self.components.items():
            for member, proc in comp.processes.items():
                proc.resume()
                if not proc.running():
                    proc.start()
                    restarted.append(f"{name}/{member}")
        for comp in self.components.values():
            comp.wait_healthy()
        if "proxy" in self.components:
            self.proxy.reset()
        if "connect" in self.components and self.connect.restart_if_failed():
            restarted.append("connect/connector")
        if "connect" in self.components:
            self.connect.wait_connector_running()
        for comp in self.components.values():
            try:
                comp.on_idle()
            except Exception as exc:  # noqa: BLE001 - idle work is never a reason to fail a run
                self._log(f"error in {comp.name}'s idle work: {exc}")
        return restarted

    # --- introspection ---------------------------------------------------------------------------
    def endpoints(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run.path),
            **{name: comp.endpoints() for name, comp in self.components.items()},
        }

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run_dir": str(self.run.path), "components": {}}
        for name, comp in self.components.items():
            members = {m: {"pid": p.pid, "running": p.running()} for m, p in comp.processes.items()}
            try:
                healthy = comp.healthy()
            except Exception:  # noqa: BLE001 - a dead component's probe raises
                healthy = False
            out["components"][name] = {"healthy": healthy, "members": members}
        out["endpoints"] = self.endpoints()
        return out

    def write_status(self) -> None:
        (self.run.path / "stack.json").write_text(json.dumps(self.endpoints(), indent=2))

    def logs(self, name: str, lines: int = 100) -> str:
        return self[name].logs(lines=lines)

    def log_tails(self, lines: int = 20) -> str:
        return "\n".join(comp.logs(lines=lines) for comp in self.components.values())

    def log_files(self) -> dict[str, Path]:
        """Every member's log file, by ``component/member``."""
        return {f"{name}/{member}": proc.log_file for name, comp in self.components.items()
                for member, proc in comp.processes.items()}

    def log_marks(self) -> dict[str, int]:
        """Where each log ends now, so a run can keep just the lines it wrote (``keep_logs``)."""
        return {k: (p.stat().st_size if p.exists() else 0) for k, p in self.log_files().items()}

    def keep_logs(self, since: dict[str, int], directory: Path, cap_bytes: int = 4 << 20) -> list[Path]:
        """Copy what each log gained since ``since`` (its last ``cap_bytes`` at most) to ``directory``."""
        kept = []
        for key, path in self.log_files().items():
            if not path.exists():
                continue
            start = since.get(key, 0)
            size = path.stat().st_size
            start = max(start if start <= size else 0, size - cap_bytes)   # a log restarted from 0 is read whole
            out = directory / f"{key.replace('/', '-')}.log"
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as src, open(out, "wb") as dst:
                src.seek(start)
                dst.write(src.read())
            kept.append(out)
        return kept

    @staticmethod
    def _log(message: str) -> None:
        _LOG.info(message)


def _short(key: str) -> str:
    """A stack-shape key as a run directory's name carries it: ``brokers``, or ``tdm`` for ``taskmanager_disk_mb``."""
    return key if len(key) <= 8 else "".join(part[:1] for part in key.split("_"))


class StackPool:
    """One stack per distinct configuration, started on first use and all torn down by ``close`` (a pytest
    worker's stacks: the default one, and e.g. a 3-broker one only if a scenario asks for it)."""

    def __init__(self, config: StackConfig, label: str) -> None:
        self.config = config
        self.label = label
        self._stacks: dict[str, Stack] = {}

    def get(self, overrides: dict[str, dict[str, Any]] | None = None) -> Stack:
        key = json.dumps(overrides or {}, sort_keys=True)
        if key not in self._stacks:
            config = self.config.with_overrides(**overrides) if overrides else self.config
            # short: the database's unix socket lives in the run directory, and its path is capped at 107 bytes
            suffix = "".join(f"-{k}" + "".join(f"-{_short(n)}{v}" for n, v in sorted(vals.items()))
                             for k, vals in sorted((overrides or {}).items()))
            stack = Stack(config, label=f"{self.label}{suffix}")
            try:
                stack.start()
            except BaseException:
                stack.down()
                raise
            self._stacks[key] = stack
        return self._stacks[key]

    def release(self, overrides: dict[str, dict[str, Any]] | None, force: bool = False) -> None:
        """Tear down the stack of ``overrides`` now (a special shape one scenario needed: idle, it would still
        take CPU from every later scenario on these 2-core machines); the default stack is kept unless
        ``force`` (a stack a run left broken: the next ``get`` starts a fresh one)."""
        key = json.dumps(overrides or {}, sort_keys=True)
        if (overrides or force) and key in self._stacks:
            self._stacks.pop(key).down()

    def close(self) -> None:
        for stack in self._stacks.values():
            stack.down()
        self._stacks.clear()
