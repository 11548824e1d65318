"""Go programs built from source with ``go install`` at a pinned version (the Go module proxy is the one
source of Go code these machines can reach).

The Go that builds them is the machine's own when it is new enough; otherwise the pinned toolchain is
fetched from the module proxy itself (module ``golang.org/toolchain``, where ``GOTOOLCHAIN`` gets Go),
so an old distribution Go (Debian bookworm ships 1.19) or none at all is not a dead end.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import urllib.request
import zipfile
from pathlib import Path

from harness.install import InstallError, ensure_dir, run_step

#: no cgo (set in the environment), and no debug information at all: a pure-Go server needs neither.  The linker
#: drops DWARF with ``-w``, but the compiler still generates it for every package unless told not to.  MinIO's
#: build (the longest step of a cold set-up) on 2 cores, three pairs: 135/153/152 s with DWARF compiled,
#: 115/129/160 s without (the last pair under other load); the binary has the same size.
GO_BUILD_FLAGS = ("-trimpath", "-ldflags=-s -w", "-gcflags=all=-dwarf=false")

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def _version_tuple(text: str) -> tuple[int, ...]:
    """``"go version go1.26.8 linux/amd64"`` or ``"1.24"`` → ``(1, 26, 8)`` / ``(1, 24)``."""
    m = re.search(r"(?:go)?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise ValueError(f"not a Go version: {text!r}")
    return tuple(int(g) for g in m.groups() if g is not None)


def machine_go(min_go: str) -> str | None:
    """The ``go`` on PATH when it is at least ``min_go``, else None."""
    own = shutil.which("go")
    if not own:
        return None
    try:
        out = subprocess.run([own, "version"], capture_output=True, text=True, timeout=30).stdout
        return own if _version_tuple(out) >= _version_tuple(min_go) else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def _module_proxy() -> str:
    for entry in re.split(r"[,|]", os.environ.get("GOPROXY", "")):
        if entry.startswith(("http://", "https://")):
            return entry.rstrip("/")
    return "https://proxy.golang.org"


def ensure_toolchain(version: str) -> Path:
    """``<installs>/go-<version>``: Go ``version`` for this machine, from the Go module proxy."""
    arch = _ARCH.get(platform.machine().lower())
    if platform.system() != "Linux" or arch is None:
        raise InstallError(f"no Go toolchain download for {platform.system()}/{platform.machine()}; "
                           f"install Go >= {version} on PATH, then `./run setup`")
    module_version = f"v0.0.1-go{version}.linux-{arch}"
    url = f"{_module_proxy()}/golang.org/toolchain/@v/{module_version}.zip"

    def fetch(tmp: Path) -> None:
        archive = tmp / "toolchain.zip"
        try:
            with urllib.request.urlopen(url, timeout=600) as resp, open(archive, "wb") as out:
                shutil.copyfileobj(resp, out)
        except OSError as exc:
            raise InstallError(f"downloading Go {version} from {url} failed ({exc}). It needs the Go module "
                               f"proxy (set GOPROXY for a mirror) or Go >= {version} on PATH; rerun `./run setup`.") \
                from exc
        prefix = f"golang.org/toolchain@{module_version}/"
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.filename.startswith(prefix) or info.is_dir():
                    continue
                dest = tmp / info.filename[len(prefix):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
        archive.unlink()
        # module zips carry no file modes; like cmd/go's toolchain switch, mark the programs executable
        for exe in [*(tmp / "bin").glob("*"), *(tmp / "pkg" / "tool").glob("*/*")]:
            exe.chmod(0o755)

    return ensure_dir(f"go-{version}", fetch, f"Go {version} (golang.org/toolchain from the Go module proxy)")


def go_install(label: str, package: str, version: str, binary: str, min_go: str, toolchain: str,
               timeout: float) -> Path:
    """Path of ``binary`` built from ``package@version`` into ``<installs>/<label lowercased>-<version>/bin``,
    building it on first use with Go >= ``min_go`` (the machine's, else the pinned ``toolchain``);
    ``go install`` names its output after the package's last path element, and the binary is renamed to
    ``binary`` when that differs."""
    built = package.rstrip("/").rsplit("/", 1)[-1]

    def build(tmp: Path) -> None:
        go = machine_go(min_go) or str(ensure_toolchain(toolchain) / "bin" / "go")
        env = {**os.environ, "GOBIN": str(tmp / "bin"), "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        run_step([go, "install", *GO_BUILD_FLAGS, f"{package}@{version}"],
                 f"building {label} {version} with {go}",
                 f"It needs Go >= {min_go} and the Go module proxy; rerun `./run setup`.", env=env, timeout=timeout)
        if built != binary:
            (tmp / "bin" / built).rename(tmp / "bin" / binary)

    return ensure_dir(f"{label.lower()}-{version}", build, f"{label} {version} (go install)") / "bin" / binary
