"""Logging for the harness: one ``cdc_chaos`` logger tree, levels from ``--verbose``/``--quiet``, and a run log
beside each report.

Library code logs (``logging.getLogger("cdc_chaos.<part>")``) and never configures handlers; the CLI calls
:func:`configure`, pytest shows the records of a failing test (``log_level`` in pyproject.toml), and
:func:`run_log` copies everything a run logs into its report directory.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = "cdc_chaos"
FORMAT = "[cdc-chaos %(name)s %(asctime)s] %(message)s"
_DATE = "%H:%M:%S"


def get(part: str) -> logging.Logger:
    return logging.getLogger(f"{ROOT}.{part}")


def configure(verbosity: int = 0) -> None:
    """stderr handler for the CLI: -1 quiet (warnings and errors), 0 progress (INFO), 1+ verbose (DEBUG)."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    root = logging.getLogger(ROOT)
    root.setLevel(level)
    if not any(getattr(h, "_cdc_chaos", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, _DATE))
        handler._cdc_chaos = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for h in root.handlers:
        if getattr(h, "_cdc_chaos", False):
            h.setLevel(level)


@contextmanager
def run_log(path: Path) -> Iterator[Path]:
    """Every record of the ``cdc_chaos`` tree (DEBUG and up) also goes to ``path`` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger(ROOT)
    previous = root.level
    if root.level == logging.NOTSET or root.level > logging.DEBUG:
        root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()
