"""The TaskManagers' warm-up agent without a stack: built from the work tree, it initialises the classes it is
given in a real JVM (and names the ones it cannot), and the Flink configuration starts every TaskManager with it
exactly when ``[flink] taskmanager_warmup`` says so.  On a real stack: tests/test_stack.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

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
                    "{ Thread.sleep(10000); } }\n")
    res = subprocess.run([java, f"-javaagent:{jar}=java.util.zip.CRC32C,no.such.Klass", str(main)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "class no.such.Klass not warmed: java.lang.ClassNotFoundException" in res.stderr
    assert "cdc-chaos-tm-warmup: the JVM was busy for" in res.stderr     # it waited for a quiet JVM first
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


def test_flink_keeps_every_temporary_file_in_its_run_dir(tmp_path: Path) -> None:
    """Killed JVMs never clean up after themselves, so every scratch location the cluster's configuration names
    (Flink's, the JVM's, the S3 client's upload buffers) lies in the component's directory, which the run
    removes: Hadoop's default for the last one was /tmp/hadoop-<user>/s3a, where killed TaskManagers' blocks
    stayed."""
    config = load_config()
    cluster = FlinkCluster.__new__(FlinkCluster)      # its configuration only: no process is started
    cluster.config, cluster.dir = config, tmp_path
    cluster.run = SimpleNamespace(run_id="t")         # type: ignore[assignment]
    cluster.ports = {"s3": 9000, **{name: 20_000 + i for i, name in enumerate(FlinkCluster.port_names(config))}}
    cluster.prepare()
    conf = yaml.safe_load((tmp_path / "conf" / "config.yaml").read_text())
    scratch = [conf["io.tmp.dirs"], conf["web.tmpdir"], conf["s3.buffer.dir"],
               conf["env.java.opts.all"].split("-Djava.io.tmpdir=")[1].split()[0]]
    assert all(Path(p).is_relative_to(tmp_path) for p in scratch), scratch
