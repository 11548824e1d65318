"""The real stack: healthy, CDC flows, isolated side by side, every component killable and restartable,
clear errors for bad input, and nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

import harness.components.kafka as kafka_component
from harness import kafka_client
from harness.class_archive import RECORD
from harness.components.database import Database
from harness.components.flink import ENTRY_POINTS, WARMUP_CLASSES, FlinkCluster
from harness.config import REPO_ROOT, StackConfig
from harness.process import ComponentError, port_open
from harness.rundir import RunDir, reap_stale
from harness.stack import Stack


def _envelopes(stack: Stack, start: dict[int, int], want: int, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        end = kafka_client.end_offsets(stack.kafka.bootstrap, stack.config.kafka.topic)
        records = kafka_client.read_range(stack.kafka.bootstrap, stack.config.kafka.topic, start, end)
        # the topic also carries the database's heartbeat tick and the customers dimension: orders only here
        out = [{"key": json.loads(r.key), "value": json.loads(r.value) if r.value else None, "partition": r.partition}
               for r in records if r.key and "order_id" in json.loads(r.key)]
        if len([o for o in out if o["value"]]) >= want:
            return out
        time.sleep(0.5)
    raise AssertionError(f"fewer than {want} change events arrived in {timeout}s")


def test_kafka_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster id starting with '-' made the storage tool read it as an option (1 stack start in 64 failed)."""
    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64url of 0xf8... starts with '-'
    draws = iter([dash_first, uuid.UUID(int=1)])
    monkeypatch.setattr(kafka_component.uuid, "uuid4", lambda: next(draws))
    cluster_id = kafka_component.new_cluster_id()
    assert cluster_id == "AAAAAAAAAAAAAAAAAAAAAQ"
    assert not cluster_id.startswith("-")


def test_cdc_envelopes_arrive_keyed_with_the_right_op(stack: Stack) -> None:
    stack.heal()
    topic = stack.config.kafka.topic
    assert len(kafka_client.end_offsets(stack.kafka.bootstrap, topic)) == stack.config.kafka.partitions == 3
    start = kafka_client.end_offsets(stack.kafka.bootstrap, topic)
    with stack.database.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO orders (order_id, customer_id, product, quantity, unit_price, status, event_time) "
                    "VALUES (990000001, 7, 'kettle', 2, '19.90', 'paid', '2026-01-01 10:00:00.250')")
        conn.commit()
        cur.execute("UPDATE orders SET quantity = 3, version = 2 WHERE order_id = 990000001")
        conn.commit()
        cur.execute("DELETE FROM orders WHERE order_id = 990000001")
        conn.commit()
    events = [e for e in _envelopes(stack, start, 3) if e["key"] == {"order_id": 990000001}]
    ops = [e["value"]["op"] if e["value"] else "tombstone" for e in events]
    assert ops == ["c", "u", "d", "tombstone"], ops
    assert len({e["partition"] for e in events}) == 1, "one key, one partition"
    c, u, d = (e["value"] for e in events[:3])
    assert c["after"]["product"] == "kettle" and c["after"]["unit_price"] == "19.90"
    assert c["after"]["event_time"] == 1767261600250          # DATETIME(3) as epoch millis (UTC)
    assert u["before"]["quantity"] == 2 and u["after"]["quantity"] == 3
    assert d["before"]["version"] == 2 and d["after"] is None
    assert c["source"]["table"] == "orders" and c["source"]["file"] and c["source"]["pos"] > 0


def _listening(pids: list[int]) -> list[int]:
    ports = []
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            ports.append(c.laddr.port)
    return ports


def test_second_stack_side_by_side_and_down_leaves_nothing(stack: Stack, stack_config: StackConfig) -> None:
    other = Stack(stack_config, label="side-by-side")
    try:
        other.start()
        assert not set(other.ports.values()) & set(stack.ports.values())
        assert other.run.path != stack.run.path
        pids = [p.pid for c in other.components.values() for p in c.processes.values() if p.pid]
        assert pids and all(psutil.pid_exists(p) for p in pids)
        children = [c.pid for p in pids for c in psutil.Process(p).children(recursive=True)]
        assert other.connect.connector_status()["connector"]["state"] == "RUNNING"
        assert stack.kafka.healthy() and other.kafka.healthy()
    finally:
        other.down()
    everything = pids + children
    assert not [p for p in everything if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not any(port_open(p) for p in other.ports.values())
    assert not other.run.path.exists()


@pytest.mark.parametrize("component", ["database", "s3", "kafka", "connect", "flink"])
def test_kill_and_restart_each_component(stack: Stack, component: str) -> None:
    stack.heal()
    comp = stack[component]
    member = comp.members()[-1]
    archive = comp._archive if isinstance(comp, FlinkCluster) else None
    had_archive = archive is not None and archive.exists()
    comp.on_idle()      # from here on, a restart maps the archive if it existed (another worker may dump it now)
    old_pid = comp.processes[member].pid
    comp.kill(member)
    assert not comp.running(member)
    if component in ("kafka", "connect", "flink"):
        # a killed JVM never removes its perf-data file, which HotSpot keeps in /tmp whatever java.io.tmpdir says
        # (the next JVM of the user to start would clean it up: hence the look before the restart)
        assert not list(Path("/tmp").glob(f"hsperfdata_*/{old_pid}")), f"{member} left its hsperfdata in /tmp"
    comp.restart(member)
    assert comp.running(member) and comp.processes[member].pid != old_pid
    if component == "flink":    # the restarted member is its JVM, started without its script's helper JVMs
        pid = comp.processes[member].pid
        cmdline = psutil.Process(pid).cmdline()
        assert os.path.basename(cmdline[0]) == "java" and ENTRY_POINTS["taskmanager"][1] in cmdline, cmdline
        # and it maps the TaskManagers' class-data archive, or records for one while there is none
        assert archive is not None
        if had_archive or RECORD not in cmdline:
            assert f"-XX:SharedArchiveFile={archive.path}" in cmdline, cmdline
            deadline = time.monotonic() + 30   # (restart returns while the JobManager still counts the killed one)
            while str(archive.path) not in Path(f"/proc/{pid}/maps").read_text():
                assert time.monotonic() < deadline, f"{member} never mapped {archive.path}"
                time.sleep(0.2)
    stack.heal()   # everything healthy again, connector RUNNING


def test_port_in_use_fails_with_a_clear_message(stack_config: StackConfig, run_dir: RunDir) -> None:
    ports = run_dir.allocate_ports(["database"])
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", ports["database"]))
    blocker.listen()
    try:
        db = Database(stack_config, run_dir, ports)
        with pytest.raises(ComponentError) as err:
            db.up(timeout=20)
        message = str(err.value)
        assert "database" in message and ("in use" in message or "Bind" in message), message
    finally:
        blocker.close()


def test_missing_binary_fails_with_a_clear_message(stack_config: StackConfig, run_dir: RunDir) -> None:
    mysql = stack_config.with_overrides(database={"kind": "mysql"})
    db = Database(mysql, run_dir, run_dir.allocate_ports(["database"]))
    # the embedded default has MariaDB only (its `mysqld` is a symlink to mariadbd): MySQL 8 is missing
    with pytest.raises(ComponentError, match=r"(needs a real MySQL 8|'mysqld' not found).*kind = \"mariadb\""):
        db.up()


def test_component_that_never_gets_healthy_names_what_was_awaited(stack_config: StackConfig,
                                                                    run_dir: RunDir) -> None:
    ports = run_dir.allocate_ports([*FlinkCluster.port_names(stack_config), "s3"])
    flink = FlinkCluster(stack_config, run_dir, ports)
    flink.start(members=["jobmanager"])       # no TaskManager will ever register
    try:
        with pytest.raises(ComponentError) as err:
            flink.wait_healthy(timeout=15)
        message = str(err.value)
        assert "flink" in message and "TaskManagers" in message and "tail of" in message, message
    finally:
        flink.kill()


def test_crashed_harness_leaves_nothing_behind(stack_config: StackConfig) -> None:
    code = (
        "import time\n"
        "from harness.config import load_config\n"
        "from harness.stack import Stack\n"
        "s = Stack(load_config(), label='crash', components=['database', 's3'])\n"
        "s.start(register_connector=False)\n"
        "print(s.run.path, *[p.pid for c in s.components.values() for p in c.processes.values()], flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    run_path, pids = line[0], [int(x) for x in line[1:]]
    assert all(psutil.pid_exists(p) for p in pids)
    proc.send_signal(signal.SIGKILL)       # the harness dies without any cleanup code running
    proc.wait()
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
        assert time.monotonic() < deadline, "children outlived their harness"
        time.sleep(0.1)
    reaped = reap_stale()
    assert any(str(r) == run_path for r in reaped) or not __import__("pathlib").Path(run_path).exists()


def test_three_broker_mode_survives_a_partition_leader_kill(stack_config: StackConfig) -> None:
    config = stack_config.with_overrides(kafka={"brokers": 3})
    with Stack.up(config, label="kafka3", components=["kafka"], register_connector=False) as s:
        kafka = s.kafka
        topic = config.kafka.topic
        meta = kafka_client.admin(kafka.bootstrap).list_topics(topic, timeout=10).topics[topic]
        assert len(meta.partitions) == 3
        assert all(len(p.replicas) == 3 for p in meta.partitions.values())
        leaders = kafka.partition_leaders()
        victim = leaders[0]
        kafka.kill(victim)
        # acks=all with min.insync.replicas=2 still succeeds with one broker down
        kafka_client.produce(kafka.bootstrap, topic, [(b"k", b"v")] * 10)
        kafka.restart(victim)
        assert kafka.healthy()


def test_taskmanagers_start_warm(stack: Stack) -> None:
    """Every TaskManager of the stack ran the warm-up agent: each class it names exists on the real class path
    (a renamed class after a version bump would show here as "5/6"), and it opened the lake's S3 file system."""
    stack.heal()
    flink = stack["flink"]
    want = f"cdc-chaos-tm-warmup: {len(WARMUP_CLASSES)}/{len(WARMUP_CLASSES)} classes initialised"
    opened = f"cdc-chaos-tm-warmup: file system s3://{stack.config.s3.bucket}/ opened"
    for member in (m for m in flink.members() if m.startswith("taskmanager")):
        log_file = flink.processes[member].log_file
        deadline = time.monotonic() + 150    # a TaskManager restarted by another test, or busy, may still wait
        while not (want in (text := log_file.read_text(errors="replace")) and opened in text):
            assert time.monotonic() < deadline, f"{member}: no warm-up in {log_file}:\n" + "\n".join(
                line for line in text.splitlines() if "cdc-chaos-tm-warmup" in line)
            time.sleep(1)
