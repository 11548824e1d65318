"""Go programs built from source with ``go install`` at a pinned version (the Go module proxy is the one
source of Go code these machines can reach)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.install import InstallError, ensure_dir, run_step


def go_install(label: str, package: str, version: str, binary: str, min_go: str, timeout: float) -> Path:
    """Path of ``binary`` built from ``package@version`` into ``<installs>/<label lowercased>-<version>/bin``,
    building it on first use; ``go install`` names its output after the package's last path element, and
    the binary is renamed to ``binary`` when that differs."""
    built = package.rstrip("/").rsplit("/", 1)[-1]

    def build(tmp: Path) -> None:
        if not shutil.which("go"):
            raise InstallError(f"building {label} needs Go (>= {min_go}) on PATH; install golang, then `./run setup`")
        env = {**os.environ, "GOBIN": str(tmp / "bin"), "GOFLAGS": "-mod=mod"}
        run_step(["go", "install", f"{package}@{version}"], f"building {label} {version}",
                 f"It needs Go >= {min_go} and the Go module proxy; rerun `./run setup`.", env=env, timeout=timeout)
        if built != binary:
            (tmp / "bin" / built).rename(tmp / "bin" / binary)

    return ensure_dir(f"{label.lower()}-{version}", build, f"{label} {version} (go install)") / "bin" / binary
