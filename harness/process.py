"""Child processes the harness owns: one process group each, a log file, and no survivors.

Every component runs in its own session (process group), so ``kill`` takes the JVM and any helper
it forked.  ``PR_SET_PDEATHSIG`` makes the kernel kill the child if the harness itself dies, and the
run directory records every pgid so ``cdc-chaos down`` (or the next run) reaps what a crash left.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_PR_SET_PDEATHSIG = 1

# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process: a component
# restarted from a short-lived thread (a nemesis) would be killed when that thread ends.  Every spawn
# therefore goes through this one thread, which lives as long as the harness process.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdc-chaos-spawner")


class ComponentError(RuntimeError):
    """A component failed to start or become healthy; the message names the cause and the fix."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file (empty when there is none yet)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_on_sigterm() -> None:
    """SIGTERM ends this process as Ctrl-C would: ``finally`` blocks and context managers run, so what it
    started (a stack, a temporary checkout) is gone.  Python's default for SIGTERM skips them all."""
    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def spawn_piped(argv: Sequence[str], log_file: Path, env: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> subprocess.Popen[str]:
    """A child that talks over its stdin/stdout (text lines), stderr to ``log_file``, in its own process group,
    killed if the harness dies (spawned from the long-lived spawner thread, like every component)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return _SPAWNER.submit(
            subprocess.Popen, list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            bufsize=1, env=env, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent,
        ).result()
    finally:
        log.close()


class ManagedProcess:
    """One long-running child in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_file: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        on_spawn: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_file = log_file
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._on_spawn = on_spawn
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        if self.running():
            return
        exe = self.argv[0]
        if os.sep not in exe and not _which(exe, self.env):
            raise ComponentError(f"{self.name}: executable {exe!r} not found on PATH; run `./run setup`")
        if os.sep in exe and not os.access(exe, os.X_OK):
            raise ComponentError(f"{self.name}: {exe} is missing or not executable; run `./run setup`")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = _SPAWNER.submit(
                subprocess.Popen,
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            ).result()
        finally:
            log.close()
        if self._on_spawn:
            self._on_spawn(self.proc.pid)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def signal(self, sig: int) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group and reap it."""
        if self.proc is None:
            return
        kill_group(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        _wait_group_gone(self.proc.pid, 10)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; a paused group is continued so it can exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            kill_group(self.proc.pid, signal.SIGCONT)
            kill_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        self.kill()

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        kill_group(pgid, signal.SIGKILL)
        time.sleep(0.05)


def _which(exe: str, env: Mapping[str, str] | None) -> str | None:
    import shutil

    return shutil.which(exe, path=(env or os.environ).get("PATH"))


def run(argv: Sequence[str], log_file: Path | None = None, timeout: float = 300, **kw: object) -> str:
    """Run a short command to completion; raise with its output when it fails."""
    try:
        res = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw  # type: ignore[call-overload]
        )
    except FileNotFoundError as exc:
        raise ComponentError(f"{argv[0]!r} not found; run `./run setup` to install it") from exc
    except subprocess.TimeoutExpired as exc:
        raise ComponentError(f"{' '.join(map(str, argv))} did not finish in {timeout:.0f}s") from exc
    out = (res.stdout or "") + (res.stderr or "")
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as fh:
            fh.write(f"$ {' '.join(map(str, argv))}\n{out}\n")
    if res.returncode != 0:
        raise ComponentError(f"{' '.join(map(str, argv))} exited {res.returncode}:\n{out[-3000:]}")
    return out


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return not port_open(port, host, timeout=0.1)


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.25,
    on_fail: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` until true; raise ComponentError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
            last_exc = None
        except ComponentError:
            raise  # a definite failure (process exited), not a probe that is not ready yet
        except Exception as exc:  # noqa: BLE001 - health probes raise while a service is starting
            last_exc = exc
        time.sleep(interval)
    detail = f" (last error: {last_exc})" if last_exc else ""
    extra = ("\n" + on_fail()) if on_fail else ""
    raise ComponentError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{extra}")
