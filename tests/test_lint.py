"""The code base stays ruff-clean (typed Python 3.11 style rules from pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from harness.config import REPO_ROOT


def test_ruff_clean() -> None:
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "harness", "flink_job", "scenarios", "tests",
                          "benchmarks", "conftest.py"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
