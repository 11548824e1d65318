"""Kafka Connect (distributed worker) with the Debezium connector, registered from the shared template."""

from __future__ import annotations

import json
import string
import time
from typing import TYPE_CHECKING, Any

import requests

from harness.components.base import Component
from harness.components.kafka import LOG4J2, java_argv
from harness.config import StackConfig
from harness.install.kafka import ensure_debezium, ensure_kafka
from harness.process import ComponentError, ManagedProcess

if TYPE_CHECKING:
    from harness.components.database import Database
    from harness.components.kafka import KafkaBroker


#: where the worker keeps its source connectors' offsets, and how often it flushes them there: each flush with
#: new offsets is one record of the connector's key (aimed Connect kills watch it)
OFFSETS_TOPIC = "connect-offsets"
OFFSET_FLUSH_INTERVAL_MS = 1000


class KafkaConnect(Component):
    name = "connect"
    health_description = "the REST API to list the Debezium connector plugin"

    def __init__(self, config: StackConfig, run: Any, ports: dict[str, int], *, kafka: KafkaBroker,
                 database: Database) -> None:
        super().__init__(config, run, ports)
        self.kafka = kafka
        self.database = database

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['connect']}"

    def prepare(self) -> None:
        self._home = ensure_kafka(self.config)
        plugins = ensure_debezium(self.config)
        self._log4j = self.dir / "log4j2.properties"
        self._log4j.write_text(LOG4J2.replace("logger.kafka.level = warn", "logger.kafka.level = info"))
        rf = self.config.kafka.replication_factor
        props = {
            "bootstrap.servers": self.kafka.bootstrap, "group.id": f"cdc-chaos-connect-{self.run.run_id}",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false", "value.converter.schemas.enable": "false",
            "offset.storage.topic": OFFSETS_TOPIC, "offset.storage.replication.factor": rf,
            "config.storage.topic": "connect-configs", "config.storage.replication.factor": rf,
            "status.storage.topic": "connect-status", "status.storage.replication.factor": rf,
            "offset.flush.interval.ms": OFFSET_FLUSH_INTERVAL_MS,
            "listeners": self.url, "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": self.ports["connect"], "plugin.path": str(plugins),
            # after a worker restart, reassign its tasks at once instead of waiting 5 minutes
            "scheduled.rebalance.max.delay.ms": 0,
            "plugin.discovery": "service_load",  # no classpath scan: faster start
        }
        (self.dir / "connect.properties").write_text("".join(f"{a}={b}\n" for a, b in props.items()))

    def build_processes(self) -> dict[str, ManagedProcess]:
        argv = java_argv(self._home / "libs", self.config.connect.heap, self._log4j, self.dir / "tmp",
                         "org.apache.kafka.connect.cli.ConnectDistributed", str(self.dir / "connect.properties"))
        return {"worker": self.new_process("worker", argv)}

    def healthy(self) -> bool:
        plugins = requests.get(f"{self.url}/connector-plugins", timeout=3).json()
        return any(p.get("class") == self.config.database.connector_class for p in plugins)

    # --- the connector ---------------------------------------------------------------------------
    def connector_config(self) -> dict[str, Any]:
        db, c = self.config.database, self.config.connect
        template = self.config.path(c.connector_file).read_text()
        rendered = string.Template(template).substitute(
            CONNECTOR_NAME=c.connector_name, CONNECTOR_CLASS=db.connector_class, DB_HOST="127.0.0.1",
            DB_PORT=self.database.port, DB_USER=db.user, DB_PASSWORD=db.password,
            DEBEZIUM_SERVER_ID=db.server_id + 1, TOPIC_PREFIX=c.topic_prefix, DB_NAME=db.database,
            KAFKA_BOOTSTRAP=self.kafka.bootstrap, TOPIC=self.config.kafka.topic,
        )
        body: dict[str, Any] = json.loads(rendered)
        return body

    def register_connector(self, timeout: float | None = None) -> None:
        """PUT the connector config (idempotent) and wait until the connector and its task are RUNNING."""
        body = self.connector_config()
        name = body["name"]
        deadline = time.monotonic() + 30
        while True:
            r = requests.put(f"{self.url}/connectors/{name}/config", json=body["config"], timeout=30)
            if r.status_code in (200, 201):
                break
            # 409: the worker is rebalancing; retry briefly
            if time.monotonic() > deadline:
                raise ComponentError(f"registering connector {name} failed: HTTP {r.status_code} {r.text[:2000]}")
            time.sleep(0.5)
        self.wait_connector_running(timeout)

    def connector_status(self) -> dict[str, Any]:
        name = self.config.connect.connector_name
        r = requests.get(f"{self.url}/connectors/{name}/status", timeout=5)
        r.raise_for_status()
        status: dict[str, Any] = r.json()
        return status

    def wait_connector_running(self, timeout: float | None = None) -> None:
        timeout = timeout or self.config.timeouts.connector_running_s
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.connector_status()
            except requests.RequestException as exc:
                last = str(exc)
                time.sleep(0.5)
                continue
            tasks = last.get("tasks", [])
            failed = [t for t in tasks if t.get("state") == "FAILED"]
            if failed or last.get("connector", {}).get("state") == "FAILED":
                trace = (failed[0] if failed else last["connector"]).get("trace", "")[:3000]
                raise ComponentError(f"Debezium connector FAILED:\n{trace}\n{self.log_tails()}")
            if last.get("connector", {}).get("state") == "RUNNING" and tasks and all(
                    t.get("state") == "RUNNING" for t in tasks):
                return
            time.sleep(0.5)
        raise ComponentError(f"connector not RUNNING after {timeout:.0f}s; last status: {last}\n{self.log_tails()}")

    def restart_if_failed(self) -> bool:
        """Restart the connector and its tasks when any of them is FAILED; True if it did.  A database restart
        can fail the task some time after the connector looked RUNNING again (its next query on a connection
        the restart cut: "Socket error" is not one Debezium retries), which an operator fixes with a restart:
        the task resumes from its committed offset."""
        if not self._failed():
            return False
        self.lifecycle("restart")
        deadline = time.monotonic() + 30    # (the restart is asynchronous: FAILED until the worker takes it up)
        while self._failed() and time.monotonic() < deadline:
            time.sleep(0.2)
        return True

    def _failed(self) -> bool:
        try:
            status = self.connector_status()
        except requests.RequestException:
            return False       # not registered or not answering yet: wait_connector_running says which
        states = [status.get("connector", {}).get("state"), *(t.get("state") for t in status.get("tasks", []))]
        return "FAILED" in states

    def lifecycle(self, action: str) -> None:
        """An operator's REST call on the connector: ``pause``, ``resume`` or ``restart`` (with its tasks)."""
        name = self.config.connect.connector_name
        if action == "restart":
            r = requests.post(f"{self.url}/connectors/{name}/restart?includeTasks=true&onlyFailed=false", timeout=30)
        elif action in ("pause", "resume"):
            r = requests.put(f"{self.url}/connectors/{name}/{action}", timeout=30)
        else:
            raise ValueError(f"unknown connector action {action!r}: pause, resume or restart")
        if r.status_code not in (200, 202, 204):
            raise ComponentError(f"connector {action} failed: HTTP {r.status_code} {r.text[:1000]}")

    def wait_state(self, state: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the connector and every task report ``state``; returns that status."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.connector_status()
            states = [status.get("connector", {}).get("state")] + [t.get("state") for t in status.get("tasks", [])]
            if len(states) > 1 and all(s == state for s in states):
                return status
            time.sleep(0.3)
        raise ComponentError(f"connector not {state} after {timeout:.0f}s; last status: {status}")

    def reset_offsets(self, timeout: float = 60.0) -> None:
        """Stop the connector, delete its stored source offsets, resume it: with no offsets Debezium takes a
        new snapshot (Kafka Connect's offset API, KIP-875)."""
        name = self.config.connect.connector_name
        requests.put(f"{self.url}/connectors/{name}/stop", timeout=30).raise_for_status()
        deadline = time.monotonic() + timeout
        while self.connector_status().get("connector", {}).get("state") != "STOPPED":
            if time.monotonic() > deadline:
                raise ComponentError(f"connector {name} did not stop within {timeout:.0f}s")
            time.sleep(0.5)
        requests.delete(f"{self.url}/connectors/{name}/offsets", timeout=30).raise_for_status()
        requests.put(f"{self.url}/connectors/{name}/resume", timeout=30).raise_for_status()

    def endpoints(self) -> dict[str, Any]:
        return {"url": self.url, "connector": self.config.connect.connector_name,
                "connector_class": self.config.database.connector_class}
