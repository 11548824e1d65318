"""MinIO, built from source with ``go install`` at the pinned version (Go module proxy only)."""

from __future__ import annotations

from pathlib import Path

from harness.config import StackConfig
from harness.install.go import go_install


def ensure_minio(config: StackConfig) -> Path:
    """Path of the ``minio`` binary for the pinned version, building it on first use (~2-10 min)."""
    return go_install("MinIO", "github.com/minio/minio", config.versions.minio, "minio", min_go="1.24",
                      toolchain=config.versions.go_toolchain, timeout=3600)
