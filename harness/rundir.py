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
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from harness.config import cache_dir
from harness.process import group_alive, kill_group, pid_alive, port_free

PORT_RANGE = (20000, 32000)  # below the kernel's ephemeral range (32768+), so clients never steal them


@contextmanager
def file_lock(path: Path, on_wait: Callable[[float], None] | None = None, every_s: float = 20.0) -> Iterator[None]:
    """An exclusive advisory lock; xdist workers and parallel installs serialise on it.  ``on_wait(seconds)``
    is called when another process holds it (with 0), then every ``every_s`` while it still does, so a
    waiter shows that it is alive and how long it has waited."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is None:
                fcntl.flock(fh, fcntl.LOCK_EX)
            else:
                _wait_for_lock(fh, on_wait, every_s)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _wait_for_lock(fh: IO[str], on_wait: Callable[[float], None], every_s: float) -> None:
    t0 = time.monotonic()
    on_wait(0.0)
    next_say = every_s
    while True:
        time.sleep(0.2)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            elapsed = time.monotonic() - t0
            if elapsed >= next_say:
                on_wait(elapsed)
                next_say += every_s


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

    def mount_tmpfs(self, path: Path, size_mb: int) -> Path:
        """Mount a tmpfs of ``size_mb`` MiB at ``path`` (inside this run directory): a disk of its own that a
        fault can fill.  Unmounted by :meth:`remove` (so by ``Stack.down``, ``cdc-chaos down`` and the reaping of
        a crashed run), like every mount under the run directory."""
        path = Path(path)
        if self.path not in path.parents:
            raise ValueError(f"{path} is not inside the run directory {self.path}")
        path.mkdir(parents=True, exist_ok=True)
        if path.is_mount():
            return path
        try:
            res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size_mb)}m,mode=0755", "tmpfs",
                                  str(path)], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
            error = "" if res.returncode == 0 else (res.stdout + res.stderr).strip()
        except FileNotFoundError:
            error = "no mount command on PATH (util-linux)"
        if error:
            from harness.process import ComponentError

            raise ComponentError(
                f"could not mount a {size_mb} MiB tmpfs at {path} ({error}): "
                "[flink] taskmanager_disk_mb > 0 gives each TaskManager a disk of its own, which needs mount "
                "rights (root, or CAP_SYS_ADMIN in a container: docker run --cap-add SYS_ADMIN). Run the harness "
                "as root, or leave taskmanager_disk_mb = 0 (the disk_full_taskmanager scenario needs it)")
        return path

    def mounts(self) -> list[Path]:
        """Mount points inside this run directory, deepest first."""
        return mounts_under(self.path)

    def unmount_all(self) -> list[Path]:
        """Unmount every mount point inside this run directory (lazily when one is still busy)."""
        done: list[Path] = []
        for _ in range(5):        # a path mounted over twice needs one umount per layer
            mounts = self.mounts()
            if not mounts:
                break
            for mount in mounts:
                res = subprocess.run(["umount", str(mount)], capture_output=True, stdin=subprocess.DEVNULL,
                                     timeout=30)
                if res.returncode != 0:
                    subprocess.run(["umount", "-l", str(mount)], capture_output=True, stdin=subprocess.DEVNULL,
                                   timeout=30)
                done.append(mount)
        return done

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
        self.unmount_all()    # after the kill: nothing holds a file open there any more
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


def _unescape_mount(field: str) -> str:
    """A path from /proc/self/mountinfo: spaces, tabs, newlines and backslashes are octal escapes there."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(root: Path, mountinfo: str | None = None) -> list[Path]:
    """Mount points strictly inside ``root`` (from ``/proc/self/mountinfo``), deepest first."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return []
    root_s = str(Path(root).resolve()).rstrip("/") + "/"
    found = {Path(_unescape_mount(line.split()[4])) for line in mountinfo.splitlines() if len(line.split()) > 4}
    inside = [p for p in found if str(p).startswith(root_s)]
    return sorted(inside, key=lambda p: len(p.parts), reverse=True)


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
