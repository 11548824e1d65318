"""A FLINK_HOME for the local backend: the apache-flink wheel's scripts and jars plus the pipeline's jars.

The venv's site-packages is never modified: the home is built in the cache from copies of the wheel's
``bin/`` and ``conf/``, links to its ``lib/`` and ``opt/`` jars, the Maven jars in ``lib/`` and the S3
filesystem in ``plugins/s3-fs-hadoop/`` and the wheel's Prometheus reporter in ``plugins/metrics-prometheus/``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from pathlib import Path

from harness.config import StackConfig
from harness.install import InstallError, ensure_dir, maven, pom, version_props

HOME_LAYOUT = "h2"   # bumped when the home gains a part, so an older home in the cache is built anew


def wheel_home() -> Path:
    spec = importlib.util.find_spec("pyflink")
    if spec is None or spec.origin is None:
        raise InstallError("PyFlink (the apache-flink wheel) is not installed in this Python; run `./run setup`")
    return Path(spec.origin).parent


def ensure_flink(config: StackConfig) -> Path:
    version = config.versions.flink
    installed = importlib.metadata.version("apache-flink")
    if installed != version:
        raise InstallError(f"the venv has apache-flink {installed} but stack.toml pins {version}; run `./run setup`")

    def build(tmp: Path) -> None:
        src = wheel_home()
        shutil.copytree(src / "bin", tmp / "bin")
        shutil.copytree(src / "conf", tmp / "conf")
        (tmp / "lib").mkdir()
        for jar in (src / "lib").glob("*.jar"):
            (tmp / "lib" / jar.name).symlink_to(jar)
        (tmp / "opt").symlink_to(src / "opt")
        maven(pom("flink"), [*version_props(config), "dependency:copy-dependencies",
                             "-DexcludeArtifactIds=slf4j-api", f"-DoutputDirectory={tmp / 'lib'}"],
              f"fetching the Flink {version} connector, Parquet and Hadoop jars")
        plugin = tmp / "plugins" / "s3-fs-hadoop"
        maven(pom("flink"), ["dependency:copy", f"-Dartifact=org.apache.flink:flink-s3-fs-hadoop:{version}",
                             f"-DoutputDirectory={plugin}"], f"fetching flink-s3-fs-hadoop {version}")
        # the wheel's Prometheus reporter: each TaskManager serves its own metrics, which the harness reads directly
        # (harness.runner.ConsumptionMonitor), not through the JobManager's metric fetcher
        (tmp / "plugins" / "metrics-prometheus").symlink_to(src / "plugins" / "metrics-prometheus")
        (tmp / "log").mkdir()

    # the suffix names the home's layout: a home built before the Prometheus reporter was added lacks it
    return ensure_dir(f"flink-{version}-{HOME_LAYOUT}", build, f"Flink {version} home (wheel + Maven jars)")
