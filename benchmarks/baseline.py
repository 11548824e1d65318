"""The pipeline's job as an older revision wrote it, so ``bench_job`` can run it beside today's on the same
stack in the same run.

The default, :data:`BASELINE_REV`, is main as it was when the change identity moved to binlog coordinates
(issue 12): that job deduplicated on ``(order_id, version, is_delete)`` and enriched by a rule on
``customer_id`` instead of joining the ``customers`` changes.  Its ``flink_job/`` and ``harness/`` trees are
taken from git (``git archive``) into a temporary directory and submitted through the one submission path
(:meth:`harness.pipeline.Pipeline.submit_code`); nothing of it is imported here.

An older job reads the same topic and writes the same lake layout (``orders``, ``orders_late``, with
``src_file``/``src_pos``/``src_row``/``op``/``processed_ms``/``src_gtid`` columns), which is all the benchmark
reads of it.  What it drops by its own identity is reported, not counted against it: a change it keeps is
the first one of its ``(order_id, version, is_delete)``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flink_job.sql import JobConfig
from harness.config import REPO_ROOT

#: main before issue 12 landed (the change identity from the source log)
BASELINE_REV = "109f6d5"

#: JobConfig fields every revision of the job has had; an older job gets only these
_COMMON_FIELDS = ("bootstrap", "lake_root", "topic", "group_id", "checkpoint_interval_ms", "parallelism",
                  "startup_mode", "startup_offsets", "job_name")


class BaselineError(RuntimeError):
    """The baseline revision cannot be materialised (not in this clone, or no job in it)."""


@dataclass(frozen=True)
class BaselineJob:
    rev: str
    commit: str          # the full hash the revision resolved to
    code_root: Path      # a directory holding that revision's flink_job/ and harness/

    def config(self, current: JobConfig) -> dict[str, Any]:
        """The older job's configuration: today's, cut down to the fields it knows."""
        raw = {k: getattr(current, k) for k in _COMMON_FIELDS}
        return {**raw, "startup_offsets": [list(x) for x in current.startup_offsets],
                "job_name": f"{current.job_name} [baseline {self.rev}]"}


def _git(*args: str) -> bytes:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], check=True, capture_output=True).stdout
    except FileNotFoundError as exc:
        raise BaselineError("git is not installed; the baseline job comes from the repository's history "
                            "(install git, or run with --baseline none)") from exc
    except subprocess.CalledProcessError as exc:
        raise BaselineError(f"git {' '.join(args)} failed: {exc.stderr.decode(errors='replace').strip()}") from exc


@contextmanager
def baseline_job(rev: str = BASELINE_REV) -> Iterator[BaselineJob]:
    """That revision's job in a temporary directory, removed afterwards."""
    try:
        commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    except BaselineError as exc:
        raise BaselineError(f"revision {rev!r} is not in this clone ({exc}); a shallow clone lacks the history: "
                            "`git fetch --unshallow`, or run with --baseline none") from exc
    tmp = Path(tempfile.mkdtemp(prefix="cdc-chaos-baseline-"))
    try:
        archive = _git("archive", "--format=tar", commit, "flink_job", "harness")
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        if not (tmp / "flink_job" / "job.py").is_file():
            raise BaselineError(f"revision {rev} has no flink_job/job.py")
        yield BaselineJob(rev, commit, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
