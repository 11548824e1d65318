"""The TaskManagers' warm-up agent (``harness/tm_warmup``, Java, JDK only), built from the work tree.

A TaskManager that takes over a job after another one died pays, on two busy cores, for everything its JVM has
never done: the Kafka client's protocol tables, the S3 file system.  The agent does that work while the JVM is
idle after its start (see ``TaskManagerWarmup.java``).  The build is keyed by a digest of its sources and takes
about a second (``javac`` of the JDK that runs the stack).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from harness.install import InstallError, ensure_dir, run_step

SOURCE = Path(__file__).resolve().parents[1] / "tm_warmup"
FILES = ("TaskManagerWarmup.java", "MANIFEST.MF")
JAR = "cdc-chaos-tm-warmup.jar"


def source_digest() -> str:
    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode() + b"\0" + (SOURCE / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def ensure_tm_warmup() -> Path:
    """Path of the agent's jar built from this work tree's sources, building it on first use."""

    def build(tmp: Path) -> None:
        javac, jar = shutil.which("javac"), shutil.which("jar")
        if javac is None or jar is None:
            raise InstallError("javac/jar not found: the TaskManagers' warm-up agent needs a JDK 17; run "
                               "`./run setup` (it installs openjdk-17-jdk-headless), or set [flink] "
                               "taskmanager_warmup = false")
        classes = tmp / "classes"
        run_step([javac, "--release", "17", "-d", str(classes), str(SOURCE / "TaskManagerWarmup.java")],
                 "compiling the TaskManagers' warm-up agent", "It needs a JDK 17 (javac); rerun `./run setup`.")
        run_step([jar, "cfm", str(tmp / JAR), str(SOURCE / "MANIFEST.MF"), "-C", str(classes), "cdcchaos"],
                 "packaging the TaskManagers' warm-up agent", "It needs a JDK 17 (jar); rerun `./run setup`.")
        shutil.rmtree(classes)

    return ensure_dir(f"tm-warmup-{source_digest()}", build, "the TaskManagers' warm-up agent") / JAR
