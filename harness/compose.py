"""The docker backend: the same stack from ``stack/docker-compose.yml`` (MySQL 8.0, Kafka, Debezium Connect,
Flink JobManager + 2 TaskManagers, MinIO), started through testcontainers' ``DockerCompose`` and mapped into
the endpoints the local backend's ``Stack.endpoints()`` gives, so every client of the harness (workload,
truth, checker, ``load``/``check``) reads one shape whichever backend started the stack.

Selected with ``cdc-chaos --backend docker`` or ``CDC_CHAOS_BACKEND=docker``.  What this backend does not do:
the nemeses kill, pause and partition *local processes* (and the local Toxiproxy); inside containers those
faults would be ``docker kill/pause`` and a proxy container, which this backend does not provide, so chaos
scenarios refuse it with that reason.  These machines have no Docker engine: the mapping and the compose file
are tested against the config without one (``tests/test_compose.py``); the README says what was exercised.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.config import REPO_ROOT, StackConfig

COMPOSE_FILE = REPO_ROOT / "stack" / "docker-compose.yml"
BACKENDS = ("local", "docker")

#: each Stack component -> (its compose service, the container port its clients use)
SERVICES: dict[str, tuple[str, str]] = {
    "database": ("mysql", "database.port"),
    "kafka": ("kafka", "kafka.port"),
    "connect": ("connect", "connect.port"),
    "s3": ("minio", "s3.port"),
    "flink": ("jobmanager", "flink.rest_port"),
}


class BackendError(RuntimeError):
    """The chosen backend cannot do what was asked; the message says why and what to use instead."""


def backend_name(cli_choice: str | None = None) -> str:
    name = cli_choice or os.environ.get("CDC_CHAOS_BACKEND") or "local"
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (from --backend or CDC_CHAOS_BACKEND); known: "
                           f"{', '.join(BACKENDS)}")
    return name


class ServiceAddresses(Protocol):
    """What the mapping needs of a running compose project (testcontainers' ``DockerCompose`` has both)."""

    def get_service_host(self, service_name: str | None = None, port: int | None = None) -> str | None: ...

    def get_service_port(self, service_name: str | None = None, port: int | None = None) -> int | None: ...


def _container_port(config: StackConfig, dotted: str) -> int:
    section, attr = dotted.split(".")
    return int(getattr(getattr(config, section), attr))


@dataclass
class ComposeStack:
    """One compose project: ``start``, ``endpoints``, ``stop``."""

    config: StackConfig
    compose_file: Path = COMPOSE_FILE
    compose: Any = None     # a DockerCompose (made on first use) or anything with the two address methods

    def __post_init__(self) -> None:
        if self.config.database.kind != "mysql":
            # the compose file runs MySQL 8.0 and registers Debezium's MySQL connector
            self.config = self.config.with_overrides(database={"kind": "mysql"})

    def _compose(self) -> Any:
        if self.compose is None:
            from testcontainers.compose import DockerCompose

            self.compose = DockerCompose(context=self.compose_file.parent, compose_file_name=self.compose_file.name,
                                         pull=True, wait=True)
        return self.compose

    def start(self) -> None:
        if shutil.which("docker") is None:
            raise BackendError("the docker backend needs a Docker engine and the `docker compose` CLI on PATH; "
                               "none here. Install Docker, or use the default local backend (no --backend)")
        self._compose().start()

    def stop(self) -> None:
        if self.compose is not None:
            self.compose.stop(down=True)

    def address(self, component: str) -> tuple[str, int]:
        """(host, published port) of a component's service, as testcontainers reports it."""
        service, dotted = SERVICES[component]
        port = _container_port(self.config, dotted)
        compose = self._compose()
        host = compose.get_service_host(service, port) or "127.0.0.1"
        published = compose.get_service_port(service, port)
        if published is None:
            raise BackendError(f"compose service {service} publishes no port for {port}; see {self.compose_file}")
        return ("127.0.0.1" if host in ("0.0.0.0", "::") else host), int(published)

    def endpoints(self) -> dict[str, Any]:
        """The local backend's endpoint shape (``Stack.endpoints()``), filled from the compose project."""
        c = self.config
        db_host, db_port = self.address("database")
        kafka_host, kafka_port = self.address("kafka")
        connect_host, connect_port = self.address("connect")
        s3_host, s3_port = self.address("s3")
        flink_host, flink_port = self.address("flink")
        bootstrap = f"{kafka_host}:{kafka_port}"
        return {
            "backend": "docker",
            "compose_file": str(self.compose_file),
            "database": {"kind": "mysql", "host": db_host, "port": db_port, "database": c.database.database,
                         "user": c.database.user, "password": c.database.password, "root_user": "root",
                         "root_password": c.database.root_password},
            "kafka": {"bootstrap": bootstrap, "topic": c.kafka.topic, "partitions": c.kafka.partitions,
                      "brokers": 1, "internal": f"kafka:{c.kafka.internal_port}", "proxied": bootstrap},
            "connect": {"url": f"http://{connect_host}:{connect_port}", "connector": c.connect.connector_name,
                        "connector_class": c.database.connector_class},
            "s3": {"endpoint": f"http://{s3_host}:{s3_port}", "bucket": c.s3.bucket, "access_key": c.s3.access_key,
                   "secret_key": c.s3.secret_key, "region": c.s3.region},
            "flink": {"rest": f"http://{flink_host}:{flink_port}", "taskmanagers": 2},
        }


def refuse_for_chaos(backend: str) -> None:
    """Chaos needs the local backend's processes; say so instead of injecting faults that hit nothing."""
    if backend == "docker":
        raise BackendError("chaos scenarios kill, pause and partition the local backend's processes; the docker "
                           "backend starts the stack (up/status/down) for load, check and your own jobs only. "
                           "Run scenarios without --backend docker")
