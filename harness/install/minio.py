"""MinIO, built from source with ``go install`` at the pinned version (Go module proxy only)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.config import StackConfig
from harness.install import InstallError, ensure_dir, run_step


def ensure_minio(config: StackConfig) -> Path:
    """Path of the ``minio`` binary for the pinned version, building it on first use (~5-10 min)."""
    version = config.versions.minio

    def build(tmp: Path) -> None:
        if not shutil.which("go"):
            raise InstallError("building MinIO needs Go (>= 1.24) on PATH; install golang, then `./run setup`")
        env = {**os.environ, "GOBIN": str(tmp / "bin"), "GOFLAGS": "-mod=mod"}
        run_step(["go", "install", f"github.com/minio/minio@{version}"], f"building MinIO {version}",
                 "It needs Go >= 1.24 and the Go module proxy; rerun `./run setup`.", env=env, timeout=3600)

    return ensure_dir(f"minio-{version}", build, f"MinIO {version} (go install)") / "bin" / "minio"
