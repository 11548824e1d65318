"""The compiled binlog reader (``harness/binlog_reader``, Go, standard library only), built from the work tree.

Ground truth reads binlog files on local disk with it: about twenty times faster than parsing the text of
``mariadb-binlog --verbose``, which stays the reader for files only the server can serve (a remote database).
The build is keyed by a digest of its sources, so an edit builds anew; it takes seconds once Go's standard
library is in the build cache (the MinIO build puts it there).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from harness.install import ensure_dir, run_step
from harness.install.go import GO_BUILD_FLAGS, ensure_toolchain, machine_go

SOURCE = Path(__file__).resolve().parents[1] / "binlog_reader"
BINARY = "cdc-chaos-binlog"
MIN_GO = "1.22"


def source_digest() -> str:
    h = hashlib.sha256()
    for name in ("go.mod", "main.go"):
        h.update(name.encode() + b"\0" + (SOURCE / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def ensure_binlog_reader(toolchain: str) -> Path:
    """Path of the reader built from this work tree's sources, building it on first use (Go >= 1.22: the
    machine's, else the pinned ``toolchain`` from the Go module proxy)."""

    def build(tmp: Path) -> None:
        go = machine_go(MIN_GO) or str(ensure_toolchain(toolchain) / "bin" / "go")
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOWORK": "off"}
        run_step([go, "build", *GO_BUILD_FLAGS, "-o", str(tmp / "bin" / BINARY), "."],
                 f"building the binlog reader with {go}",
                 f"It needs Go >= {MIN_GO}; rerun `./run setup`.", cwd=SOURCE, env=env, timeout=600)

    return ensure_dir(f"binlog-reader-{source_digest()}", build, "the compiled binlog reader") / "bin" / BINARY
