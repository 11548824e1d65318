"""The lifecycle every component shares: start, wait healthy, kill, pause/resume, logs.

A component is one small class (in the spirit of testcontainers-python) that knows how to lay out
its files in its directory, which process(es) to run, and how to tell it is healthy.  The chaos layer
only ever uses the methods defined here.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import StackConfig
from harness.process import ComponentError, ManagedProcess, port_free, tail, wait_until
from harness.rundir import RunDir


class Component(abc.ABC):
    """One real service of the stack, possibly several processes (e.g. two TaskManagers)."""

    #: short stable name used by the CLI (`cdc-chaos logs kafka`) and the fault timeline
    name: str = "component"

    def __init__(self, config: StackConfig, run: RunDir, ports: dict[str, int]) -> None:
        self.config = config
        self.run = run
        self.ports = ports
        self.dir: Path = run.component_dir(self.name)
        self.processes: dict[str, ManagedProcess] = {}

    # --- what subclasses provide -------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self) -> None:
        """Write config files, initialise data dirs (idempotent; runs once before the first start)."""

    @abc.abstractmethod
    def build_processes(self) -> dict[str, ManagedProcess]:
        """The processes of this component, by member name (e.g. ``taskmanager-1``)."""

    @abc.abstractmethod
    def healthy(self) -> bool:
        """One cheap health probe of the whole component."""

    def after_healthy(self) -> None:  # noqa: B027 - optional hook, most components need nothing
        """Optional one-time set-up once healthy (create topic, bucket, register connector)."""

    def on_idle(self) -> None:  # noqa: B027 - optional hook, most components need nothing
        """Optional work while the stack is healthy and idle between runs (after ``Stack.heal``); errors are logged,
        never fail the run."""

    def before_down(self) -> None:  # noqa: B027 - optional hook, most components need nothing
        """Optional last word while every process still runs, just before the stack kills them (nothing that can
        fail the run: errors are logged and the teardown goes on)."""

    def endpoints(self) -> dict[str, Any]:
        return {}

    health_description: str = "the service to answer its health probe"

    @classmethod
    def port_names(cls, config: StackConfig) -> list[str]:
        """Names of the ports this component needs; the stack allocates a free one for each."""
        return [cls.name]

    # --- lifecycle -----------------------------------------------------------------------------
    def new_process(self, member: str, argv: Sequence[str], env: dict[str, str] | None = None) -> ManagedProcess:
        return ManagedProcess(
            name=f"{self.name}/{member}",
            argv=argv,
            log_file=self.dir / f"{member}.log",
            env=env,
            cwd=self.dir,
            on_spawn=self.run.record_pgid,
        )

    def check_ports_free(self) -> None:
        """Fail before spawning anything if one of this component's ports is taken."""
        for name in self.port_names(self.config):
            port = self.ports.get(name)
            if port is not None and not port_free(port):
                raise ComponentError(
                    f"{self.name}: port {port} ({name}) is already in use by another process. Stop that process, "
                    f"or start a new stack (it picks free ports); `cdc-chaos down` stops a stack left running.")

    def start(self, members: Sequence[str] | None = None) -> None:
        if not self.processes:
            self.check_ports_free()
            self.prepare()
            self.processes = self.build_processes()
        for member, proc in self.processes.items():
            if members is None or member in members:
                proc.start()

    def up(self, timeout: float | None = None) -> None:
        """Start every process and wait until healthy; the error names what was awaited + log tail."""
        started = time.monotonic()
        self.start()
        self.wait_healthy(timeout)
        self.after_healthy()
        self.startup_seconds = time.monotonic() - started

    def wait_healthy(self, timeout: float | None = None) -> None:
        timeout = timeout if timeout is not None else self.config.timeouts.component_up_s

        def probe() -> bool:
            for member, proc in self.processes.items():
                if proc.proc is not None and not proc.running():
                    raise ComponentError(
                        f"{self.name}: process {member} exited with code {proc.exit_code()} while starting.\n"
                        f"{self.log_tails()}"
                    )
            return self.healthy()

        wait_until(probe, timeout, f"{self.name} ({self.health_description})", on_fail=self.log_tails)

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- tail of {p.log_file} ---\n{tail(p.log_file, lines)}" for p in self.processes.values()
        )

    def members(self) -> list[str]:
        return list(self.processes)

    def _pick(self, member: str | None) -> list[ManagedProcess]:
        if member is None:
            return list(self.processes.values())
        if member not in self.processes:
            raise KeyError(f"{self.name} has no member {member!r}; members: {self.members()}")
        return [self.processes[member]]

    def kill(self, member: str | None = None) -> None:
        """SIGKILL (no shutdown hooks run): the fault the nemeses inject."""
        for p in self._pick(member):
            p.kill()

    def stop(self, member: str | None = None) -> None:
        for p in self._pick(member):
            p.stop()

    def pause(self, member: str | None = None) -> None:
        for p in self._pick(member):
            p.pause()

    def resume(self, member: str | None = None) -> None:
        for p in self._pick(member):
            p.resume()

    def restart(self, member: str | None = None, wait: bool = True) -> None:
        """Start killed members again (same ports, same data dir) and wait for health."""
        for p in self._pick(member):
            if not p.running():
                p.start()
        if wait:
            self.wait_healthy()

    def running(self, member: str | None = None) -> bool:
        return all(p.running() for p in self._pick(member))

    def pids(self) -> dict[str, int | None]:
        return {m: p.pid for m, p in self.processes.items()}

    def logs(self, member: str | None = None, lines: int = 100) -> str:
        return "\n".join(
            f"--- {p.name} ({p.log_file}) ---\n{tail(p.log_file, lines)}" for p in self._pick(member)
        )
