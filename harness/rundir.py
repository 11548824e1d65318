"""A stack's run directory, its free ports, and reaping what a crashed run left behind.

Layout: ``<cache>/runs/<run-id>/`` holds ``owner.pid`` (the harness process), ``pgids`` (one process
group per line, appended as components start), ``ports.json`` and one sub-directory per component
(data + logs).  Ports are reserved under a machine-wide file lock so xdist workers never pick the same.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.config import cache_dir
from harness.process import group_alive, kill_group, pid_alive, port_free

PORT_RANGE = (20000, 32000)  # below the kernel's ephemeral range (32768+), so clients never steal them


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock; xdist workers and parallel installs serialise on it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def runs_root() -> Path:
    root = cache_dir() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    return root


#: file under runs/ naming the run dir of the stack `cdc-chaos up` started last
CURRENT = "current"


def current_run_dir(explicit: str | None = None) -> Path:
    """The run dir to attach to: ``explicit``, else ``$CDC_CHAOS_RUN_DIR``, else the stack `up` started last."""
    explicit = explicit or os.environ.get("CDC_CHAOS_RUN_DIR")
    if explicit:
        return Path(explicit)
    pointer = runs_root() / CURRENT
    if not pointer.exists():
        raise SystemExit("no stack is up (start one with `./run cdc-chaos up`, or set CDC_CHAOS_RUN_DIR)")
    path = Path(pointer.read_text().strip())
    if not path.is_dir():
        raise SystemExit(f"the last stack ({path}) is gone; start one with `./run cdc-chaos up`")
    return path


class RunDir:
    """Owns one stack's directory, ports and process groups."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, label: str = "stack") -> RunDir:
        reap_stale()
        run_id = f"{label}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{random.randrange(1 << 16):04x}"
        path = runs_root() / run_id
        path.mkdir(parents=True)
        (path / "owner.pid").write_text(str(os.getpid()))
        return cls(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    def component_dir(self, name: str) -> Path:
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def record_pgid(self, pgid: int) -> None:
        with open(self.path / "pgids", "a") as fh:
            fh.write(f"{pgid}\n")

    def pgids(self) -> list[int]:
        try:
            return [int(x) for x in (self.path / "pgids").read_text().split()]
        except FileNotFoundError:
            return []

    def allocate_ports(self, names: list[str]) -> dict[str, int]:
        """Reserve one free port per name; recorded in ports.json and the machine-wide registry."""
        registry = runs_root() / "ports.json"
        with file_lock(runs_root() / "ports.lock"):
            taken = _live_reservations(registry)
            in_use = {p for ports in taken.values() for p in ports}
            rng = random.Random(os.getpid() ^ time.monotonic_ns())
            chosen: dict[str, int] = {}
            for name in names:
                for _ in range(2000):
                    port = rng.randrange(*PORT_RANGE)
                    if port not in in_use and port not in chosen.values() and port_free(port):
                        chosen[name] = port
                        break
                else:
                    raise RuntimeError(f"no free port found in {PORT_RANGE} for {name}")
            taken[str(self.path)] = sorted(set(taken.get(str(self.path), [])) | set(chosen.values()))
            registry.write_text(json.dumps(taken))
        ports_file = self.path / "ports.json"
        old = json.loads(ports_file.read_text()) if ports_file.exists() else {}
        ports_file.write_text(json.dumps({**old, **chosen}, indent=1))
        return chosen

    def kill_all(self) -> None:
        """SIGKILL every process group this run started (continuing paused ones first)."""
        for pgid in self.pgids():
            kill_group(pgid, signal.SIGCONT)
            kill_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(group_alive(p) for p in self.pgids()) and time.monotonic() < deadline:
            time.sleep(0.05)

    def remove(self) -> None:
        self.kill_all()
        registry = runs_root() / "ports.json"
        with file_lock(runs_root() / "ports.lock"):
            taken = _live_reservations(registry)
            taken.pop(str(self.path), None)
            registry.write_text(json.dumps(taken))
        shutil.rmtree(self.path, ignore_errors=True)


def _live_reservations(registry: Path) -> dict[str, list[int]]:
    try:
        taken: dict[str, list[int]] = json.loads(registry.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {path: ports for path, ports in taken.items() if Path(path).is_dir()}


def reap_stale() -> list[Path]:
    """Kill and delete run directories whose owner process is gone (a crashed or killed harness)."""
    reaped = []
    for d in runs_root().iterdir():
        if not d.is_dir() or (d / "backend").exists():
            continue   # a docker backend's record: its life is the compose project's, ended by `down`
        try:
            owner = int((d / "owner.pid").read_text())
        except (FileNotFoundError, ValueError):
            owner = -1
        if owner > 0 and pid_alive(owner):
            continue
        if owner == -1 and time.time() - d.stat().st_mtime < 60:
            continue  # being created right now
        RunDir(d).remove()
        reaped.append(d)
    return reaped
