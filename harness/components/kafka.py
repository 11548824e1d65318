"""Kafka in KRaft mode: one combined broker+controller (default) or three (RF=3, min ISR 2)."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

from harness import kafka_client
from harness.components.base import Component
from harness.components.proxy import KAFKA_UPSTREAM_PORT, kafka_routes, proxied_port
from harness.config import StackConfig
from harness.install import run_step
from harness.install.kafka import ensure_kafka
from harness.process import ManagedProcess

LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c{1})%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
logger.raft.name = org.apache.kafka.raft
logger.raft.level = warn
logger.server.name = kafka.server
logger.server.level = info
"""

# Serial GC and a small heap: these JVMs share two cores with a whole stack.  PerfDisableSharedMem: HotSpot
# keeps its performance counters in /tmp/hsperfdata_<user>/<pid> (whatever java.io.tmpdir says), which a killed
# JVM never removes; jcmd still attaches by pid.
JVM_FLAGS = ["-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-XX:+PerfDisableSharedMem",
             "-Djava.awt.headless=true"]


def java_argv(classpath_dir: Path, heap: str, log4j: Path, tmpdir: Path, main: str, *args: str) -> list[str]:
    """A JVM's command line; its temporary files (snappy's native library, ...) go to ``tmpdir`` in the run
    dir, which the run removes: a killed JVM never deletes what it put in /tmp."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    return ["java", f"-Xmx{heap}", "-Xms64m", *JVM_FLAGS, f"-Dlog4j2.configurationFile={log4j}",
            f"-Djava.io.tmpdir={tmpdir}", "-cp", f"{classpath_dir}/*", main, *args]


def new_cluster_id() -> str:
    """A Kafka cluster id: a base64url UUID without padding.  Like Kafka's own ``Uuid.randomUuid()`` it never
    starts with '-', which the storage tool's argument parser would read as an option (1 start in 64 failed)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker(Component):
    name = "kafka"
    health_description = "every broker to be in the cluster metadata"

    @classmethod
    def port_names(cls, config: StackConfig) -> list[str]:
        names = []
        for n in range(1, config.kafka.brokers + 1):
            suffix = "" if n == 1 else f"_{n}"
            names += [f"kafka{suffix}", f"kafka_internal{suffix}", f"kafka_controller{suffix}",
                      f"{KAFKA_UPSTREAM_PORT}{suffix}"]
        return names

    def _port(self, kind: str, node: int) -> int:
        return self.ports[f"{kind}{'' if node == 1 else f'_{node}'}"]

    @property
    def nodes(self) -> list[int]:
        return list(range(1, self.config.kafka.brokers + 1))

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self._port('kafka', n)}" for n in self.nodes)

    @property
    def proxied_bootstrap(self) -> str | None:
        """The brokers through the network proxy (the Flink job's route); None when the stack has no proxy."""
        ports = [proxied_port(self.ports, route) for route in kafka_routes(self.config)]
        return ",".join(f"127.0.0.1:{p}" for p in ports) if all(ports) else None

    def _proxied_advertised_port(self, node: int) -> int:
        # A client that bootstrapped through the proxy must be sent back to the proxy for every broker, or it
        # would leave the faulty network after its first metadata request.  Without a proxy the listener
        # simply advertises itself.
        return proxied_port(self.ports, kafka_routes(self.config)[node - 1]) or self._port(KAFKA_UPSTREAM_PORT, node)

    def member(self, node: int) -> str:
        return "broker" if self.config.kafka.brokers == 1 else f"broker-{node}"

    def node_of(self, member: str) -> int:
        return 1 if member == "broker" else int(member.rsplit("-", 1)[1])

    def prepare(self) -> None:
        self._home = ensure_kafka(self.config)
        self._log4j = self.dir / "log4j2.properties"
        self._log4j.write_text(LOG4J2)
        cluster_file = self.dir / "cluster.id"
        if not cluster_file.exists():
            cluster_file.write_text(new_cluster_id())
        cluster_id = cluster_file.read_text()
        k = self.config.kafka
        voters = ",".join(f"{n}@127.0.0.1:{self._port('kafka_controller', n)}" for n in self.nodes)
        for n in self.nodes:
            ndir = self.dir / f"node-{n}"
            ndir.mkdir(exist_ok=True)
            props = {
                "process.roles": "broker,controller", "node.id": n, "controller.quorum.voters": voters,
                "listeners": f"PLAINTEXT://127.0.0.1:{self._port('kafka', n)},"
                             f"PLAINTEXT_INTERNAL://127.0.0.1:{self._port('kafka_internal', n)},"
                             f"PROXIED://127.0.0.1:{self._port(KAFKA_UPSTREAM_PORT, n)},"
                             f"CONTROLLER://127.0.0.1:{self._port('kafka_controller', n)}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self._port('kafka', n)},"
                                        f"PLAINTEXT_INTERNAL://127.0.0.1:{self._port('kafka_internal', n)},"
                                        f"PROXIED://127.0.0.1:{self._proxied_advertised_port(n)}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,PLAINTEXT_INTERNAL:PLAINTEXT,"
                                                  "PROXIED:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name": "PLAINTEXT_INTERNAL", "controller.listener.names": "CONTROLLER",
                "log.dirs": str(ndir / "data"), "num.partitions": k.partitions,
                "default.replication.factor": k.replication_factor, "min.insync.replicas": k.min_insync_replicas,
                "offsets.topic.replication.factor": k.replication_factor,
                "transaction.state.log.replication.factor": k.replication_factor,
                "transaction.state.log.min.isr": k.min_insync_replicas,
                "group.initial.rebalance.delay.ms": 0, "auto.create.topics.enable": "true",
                "unclean.leader.election.enable": "false",
                # notice a dead peer quickly in 3-broker mode: a killed leader is fenced, and its partitions
                # move, within a fault of a few seconds
                "broker.session.timeout.ms": 4000, "broker.heartbeat.interval.ms": 500,
                "log.flush.interval.messages": 9223372036854775807,
            }
            (ndir / "server.properties").write_text("".join(f"{a}={b}\n" for a, b in props.items()))
            if not (ndir / "data" / "meta.properties").exists():
                run_step(java_argv(self._home / "libs", "256m", self._log4j, self.dir / "tmp",
                                   "kafka.tools.StorageTool", "format", "-t", cluster_id,
                                   "-c", str(ndir / "server.properties"), "--ignore-formatted"),
                         f"formatting Kafka storage for node {n}", "See the output above.")

    def build_processes(self) -> dict[str, ManagedProcess]:
        return {
            self.member(n): self.new_process(self.member(n), java_argv(
                self._home / "libs", self.config.kafka.heap, self._log4j, self.dir / "tmp", "kafka.Kafka",
                str(self.dir / f"node-{n}" / "server.properties")))
            for n in self.nodes
        }

    def healthy(self) -> bool:
        meta = kafka_client.admin(self.bootstrap).list_topics(timeout=2)
        return len(meta.brokers) == len(self.nodes)

    def after_healthy(self) -> None:
        k = self.config.kafka
        kafka_client.create_topic(self.bootstrap, k.topic, k.partitions, k.replication_factor,
                                  config={"min.insync.replicas": str(k.min_insync_replicas),
                                          # the broker stamps each record: the checker's clock of "published"
                                          "message.timestamp.type": "LogAppendTime"})

    def partition_leaders(self) -> dict[int, str]:
        """Partition of the CDC topic -> the member leading it (for leader-kill faults)."""
        leaders = kafka_client.partition_leaders(self.bootstrap, self.config.kafka.topic)
        return {p: self.member(n) for p, n in leaders.items() if n >= 0}

    def endpoints(self) -> dict[str, Any]:
        return {"bootstrap": self.bootstrap, "topic": self.config.kafka.topic,
                "partitions": self.config.kafka.partitions, "brokers": self.config.kafka.brokers,
                "internal": ",".join(f"127.0.0.1:{self._port('kafka_internal', n)}" for n in self.nodes),
                "proxied": self.proxied_bootstrap}
