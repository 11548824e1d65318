"""The suite's scheduling holds: under ``--dist loadgroup`` (the suite's default) a module marked with an
``xdist_group`` runs on one worker, so a module-scoped fixture that builds a live lake is built once.  pytest 9.2
broke this silently (pytest-xdist#1386); this test fails if an upgrade breaks it again."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROBE = textwrap.dedent('''
    import os
    import pytest

    pytestmark = pytest.mark.xdist_group("one-worker")

    @pytest.fixture(scope="module")
    def built():
        with open(os.environ["PROBE_LOG"], "a") as f:
            f.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")

    @pytest.mark.parametrize("i", range(8))
    def test_uses_it(built, i):
        pass
''')


def test_a_grouped_modules_fixture_is_built_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    log = tmp_path / "builds.log"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p",
                           "no:cacheprovider", "test_probe.py"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PROBE_LOG": str(log), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    builds = log.read_text().split()
    assert len(builds) == 1, f"the grouped module's fixture was built on {builds}: xdist's loadgroup is broken " \
                             "by this pytest version (see pyproject.toml's pytest pin)"
