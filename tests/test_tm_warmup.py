"""The TaskManagers' warm-up agent without a stack: built from the work tree, it initialises the classes it is
given in a real JVM (and names the ones it cannot), and the Flink configuration starts every TaskManager with it
exactly when ``[flink] taskmanager_warmup`` says so.  On a real stack: tests/test_stack.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from harness.components.flink import WARMUP_CLASSES, FlinkCluster
from harness.config import load_config
from harness.install.tm_warmup import ensure_tm_warmup


def test_agent_initialises_the_classes_it_is_given_in_a_real_jvm(tmp_path: Path) -> None:
    java = shutil.which("java")
    assert java, "java not found: run ./run setup (openjdk-17-jdk-headless)"
    jar = ensure_tm_warmup()
    main = tmp_path / "Idle.java"      # a JVM that lives long enough for the agent's daemon thread
    main.write_text("public class Idle { public static void main(String[] a) throws Exception "
                    "{ Thread.sleep(3000); } }\n")
    res = subprocess.run([java, f"-javaagent:{jar}=java.util.zip.CRC32C,no.such.Klass", str(main)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "class no.such.Klass not warmed: java.lang.ClassNotFoundException" in res.stderr
    assert "cdc-chaos-tm-warmup: 1/2 classes initialised" in res.stderr
    assert "file system" not in res.stderr      # no URI given, none opened


def _warmup_conf(warmup: bool) -> dict[str, str]:
    cluster = FlinkCluster.__new__(FlinkCluster)      # only its config and directory: no stack
    cluster.config = load_config().with_overrides(flink={"taskmanager_warmup": warmup})
    return cluster._warmup_conf()


def test_every_taskmanager_starts_with_the_agent_when_configured() -> None:
    assert load_config().flink.taskmanager_warmup is True
    conf = _warmup_conf(True)
    # the value is read back as YAML by Flink: one JVM option, and no ';' (Flink splits lists there)
    option = yaml.safe_load(f"v: {conf['env.java.opts.taskmanager']}")["v"]
    agent, _, args = option.partition("=")
    assert agent == f"-javaagent:{ensure_tm_warmup()}"
    assert ";" not in option and " " not in option
    assert args.split(",") == [f"s3://{load_config().s3.bucket}/", *WARMUP_CLASSES]
    assert _warmup_conf(False) == {}
