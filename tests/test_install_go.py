"""Which Go builds MinIO and Toxiproxy: the machine's when new enough, else the pinned toolchain."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from harness.install.go import _version_tuple, machine_go


def test_go_versions_compare_numerically() -> None:
    assert _version_tuple("go version go1.19.8 linux/amd64") < _version_tuple("1.24")
    assert _version_tuple("go version go1.26.8 linux/amd64") >= _version_tuple("1.24")
    assert _version_tuple("go1.100.0") > _version_tuple("1.24.13")  # numbers, not strings


def _fake_go_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    go = tmp_path / "go"
    go.write_text(f"#!/bin/sh\necho 'go version go{version} linux/amd64'\n")
    go.chmod(go.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_an_old_machine_go_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Debian bookworm's golang-go is 1.19: MinIO needs 1.24, so the pinned toolchain must be fetched instead
    _fake_go_on_path(tmp_path, monkeypatch, "1.19.8")
    assert machine_go("1.24") is None


def test_a_new_enough_machine_go_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_go_on_path(tmp_path, monkeypatch, "1.24.2")
    assert machine_go("1.24") == str(tmp_path / "go")


def test_a_waiter_on_a_build_says_how_long_it_has_waited(tmp_path: Path) -> None:
    # the early Go build holds the lock; the set-up step that needs it reports at once, then every interval
    import itertools
    import threading
    import time

    from harness.rundir import file_lock

    lock = tmp_path / ".minio.lock"
    held = threading.Event()

    def build() -> None:
        with file_lock(lock):
            held.set()
            time.sleep(0.8)

    t = threading.Thread(target=build)
    t.start()
    held.wait(5)
    waited: list[float] = []
    with file_lock(lock, on_wait=waited.append, every_s=0.25):
        pass
    t.join()
    assert waited[0] == 0.0 and len(waited) >= 3, waited
    assert all(b > a for a, b in itertools.pairwise(waited)), waited
    assert waited[-1] < 0.8
