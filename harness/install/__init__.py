"""Installing the real components into the cache, idempotently and safely under xdist.

Each step takes a machine-wide file lock, checks a marker file keyed by its version, does its work
into a temporary directory and renames it into place, so a step interrupted half-way is simply
redone and two workers installing at once end with one complete copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from harness import log
from harness.config import REPO_ROOT, StackConfig, cache_dir
from harness.rundir import file_lock

#: seconds between "still running" lines of a long install command
HEARTBEAT_S = 20.0


class InstallError(RuntimeError):
    """An install step failed; the message names the step, the command and how to fix it."""


def progress(message: str) -> None:
    log.get("setup").info(message)


def installs_root() -> Path:
    root = cache_dir() / "installs"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def locked(name: str) -> Iterator[None]:
    with file_lock(installs_root() / f".{name}.lock",
                   on_wait=lambda waited: progress(
                       f"waiting for {name}: another set-up (or ./run's early Go builds) is installing it"
                       if not waited else f"still waiting for {name} ({waited:.0f}s)"),
                   every_s=HEARTBEAT_S):
        yield


def ensure_dir(name: str, build: Callable[[Path], None], what: str) -> Path:
    """Return ``<installs>/<name>``, building it with ``build(tmpdir)`` once (atomic rename)."""
    target = installs_root() / name
    if (target / ".complete").exists():
        return target
    with locked(name):
        if (target / ".complete").exists():
            return target
        progress(f"installing {what} into {target} (first run only)")
        started = time.monotonic()
        tmp = installs_root() / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            (tmp / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        progress(f"installed {what} in {time.monotonic() - started:.0f}s")
    return target


def run_step(argv: Sequence[str], what: str, fix: str, cwd: Path | None = None,
             env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    """Run an install command, keeping its output for the error; a long one says every
    ``HEARTBEAT_S`` that it is still at work and for how long (a Go build of MinIO takes minutes)."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise InstallError(f"{what}: {argv[0]!r} is not installed. {fix}") from exc
    while True:
        try:
            out, err = proc.communicate(timeout=HEARTBEAT_S)
            break
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                proc.kill()
                proc.communicate()
                raise InstallError(f"{what}: `{' '.join(argv)}` took longer than {timeout:.0f}s. {fix}") from None
            progress(f"{what}: still running ({elapsed:.0f}s)")
    if proc.returncode != 0:
        tail_out = (out + err)[-4000:]
        raise InstallError(f"{what}: `{' '.join(argv)}` exited {proc.returncode}. {fix}\n{tail_out}")
    return out


def maven(pom: Path, goals: Sequence[str], what: str) -> None:
    """Run Maven on one of the project's poms with a local repository in the cache."""
    repo = cache_dir() / "m2"
    run_step(
        ["mvn", "-B", "-q", f"-Dmaven.repo.local={repo}", "-f", str(pom), *goals],
        what,
        "Maven needs Maven Central; check `mvn -v` and the network, then rerun `./run setup`.",
    )


def pom(name: str) -> Path:
    return REPO_ROOT / "stack" / "maven" / name / "pom.xml"


def version_props(config: StackConfig) -> list[str]:
    v = config.versions
    return [
        f"-Dkafka.version={v.kafka}",
        f"-Ddebezium.version={v.debezium}",
        f"-Dflink.version={v.flink}",
        f"-Dflink.kafka.version={v.flink_kafka_connector}",
        f"-Dhadoop.version={v.hadoop}",
    ]
