"""How the Flink members start: the JVM command line their ``bin/<role>.sh start-foreground`` would exec, recorded
once from the real script (its helper JVMs run for real), so a restarted member skips the helpers.  Without a
stack: the recording of a prepared cluster, and the clear error when the script cannot get to its JVM.  The real
members start this way in every stack test (tests/test_stack.py checks a TaskManager's process is the JVM)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.class_archive import RECORD
from harness.components.flink import ENTRY_POINTS, FlinkCluster
from harness.config import load_config
from harness.process import ComponentError


def _prepared(tmp_path: Path, **flink: object) -> FlinkCluster:
    config = load_config().with_overrides(flink=flink) if flink else load_config()
    cluster = FlinkCluster.__new__(FlinkCluster)      # its files only: no process is started
    cluster.config, cluster.dir, cluster.processes = config, tmp_path, {}
    cluster.run = SimpleNamespace(run_id="t", record_pgid=lambda pgid: None)     # type: ignore[assignment]
    cluster.ports = {"s3": 9000, **{name: 20_000 + i for i, name in enumerate(FlinkCluster.port_names(config))}}
    cluster.prepare()
    return cluster


def test_members_start_the_jvm_their_script_would_exec(tmp_path: Path) -> None:
    cluster = _prepared(tmp_path)
    assert cluster.config.flink.direct_launch is True
    procs = cluster.build_processes()
    assert set(procs) == {"jobmanager", *cluster.taskmanagers()}
    for member, proc in procs.items():
        argv = list(proc.argv)
        _, entry = ENTRY_POINTS[member.split("-")[0]]
        assert Path(argv[0]).name == "java" and "launch" not in argv[0], argv[0]     # the real java, not the recorder
        assert entry in argv and ["--configDir", str(cluster.conf_dir)] == argv[argv.index("--configDir"):][:2]
        assert any(a.startswith("-Xmx") for a in argv)        # the memory sizes the script's helper JVM computed
        assert f"-Djava.io.tmpdir={tmp_path / 'tmp'}" in argv      # the configuration's JVM options
        env = proc.env or {}
        assert env["FLINK_PLUGINS_DIR"] == str(cluster._home / "plugins")    # the S3 file system's plugin
        assert not {"CDC_CHAOS_JAVA", "CDC_CHAOS_ENTRY_CLASS", "CDC_CHAOS_RECORD"} & set(env)     # the recorder's
    tm = list(procs["taskmanager-1"].argv)
    # the TaskManagers map the class-data archive, or record for one (harness/class_archive.py); the JobManager not
    archive = cluster._archive
    assert archive is not None and tm[1:1 + len(archive.jvm_options())] == archive.jvm_options()
    assert archive.with_options(cluster._launch_argv["taskmanager-1"]) == tm
    assert not any("SharedArchiveFile" in a or a == RECORD for a in procs["jobmanager"].argv)
    port = cluster.ports["flink_metrics_tm1"]
    assert f"metrics.reporter.prom.port={port}" in tm          # each TaskManager's own dynamic properties
    assert any(a.startswith("-javaagent:") for a in tm)        # and the TaskManagers' JVM options
    assert not any(a.startswith("-javaagent:") for a in procs["jobmanager"].argv)


def test_without_direct_launch_members_start_through_the_script(tmp_path: Path) -> None:
    cluster = _prepared(tmp_path, direct_launch=False)
    procs = cluster.build_processes()
    assert cluster._archive is None                     # the archive's options need the recorded command line
    assert [Path(p.argv[0]).name for p in procs.values()] == ["jobmanager.sh", "taskmanager.sh", "taskmanager.sh"]


def test_a_script_that_never_reaches_its_jvm_names_the_cause(tmp_path: Path) -> None:
    cluster = _prepared(tmp_path)
    conf = cluster.conf_dir / "config.yaml"
    conf.write_text(conf.read_text().replace("taskmanager.memory.process.size: 1280m",
                                             "taskmanager.memory.process.size: a lot"))
    with pytest.raises(ComponentError) as err:
        cluster.build_processes()
    message = str(err.value)
    assert ".sh did not reach its JVM" in message
    assert "a lot" in message or "memory" in message.lower()      # the script's own complaint
    assert "direct_launch = false" in message
