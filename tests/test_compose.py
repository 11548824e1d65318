"""The docker backend without a Docker engine (these machines have none): the compose project is mapped into
the local backend's endpoint shape with the config's ports and credentials, testcontainers' DockerCompose is
pointed at stack/docker-compose.yml, and every command that cannot work says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.compose import COMPOSE_FILE, SERVICES, BackendError, ComposeStack, backend_name
from harness.config import StackConfig
from harness.rundir import RunDir
from harness.stack import COMPONENT_CLASSES, Stack


class PublishedPorts:
    """Answers like DockerCompose does once up: the host side of each service's published ports, read from
    the compose file itself (so a port the file does not publish is not found)."""

    def __init__(self, compose_file: Path) -> None:
        self.services = yaml.safe_load(compose_file.read_text())["services"]

    def get_service_host(self, service_name: str | None = None, port: int | None = None) -> str:
        return "0.0.0.0"

    def get_service_port(self, service_name: str | None = None, port: int | None = None) -> int | None:
        for spec in self.services[service_name].get("ports", []):
            host, _, container = str(spec).partition(":")
            if int(container) == port:
                return int(host)
        return None


def test_endpoints_take_the_local_shape_with_the_configs_values(stack_config: StackConfig, tmp_path: Path) -> None:
    docker = ComposeStack(stack_config, compose=PublishedPorts(COMPOSE_FILE)).endpoints()
    ports = {n: 20000 + i for i, n in enumerate(p for c in COMPONENT_CLASSES.values()
                                                 for p in c.port_names(stack_config))}
    local = Stack(stack_config, run=RunDir(tmp_path), ports=ports).endpoints()
    # local files: a docker database's binlog is inside its container, so truth reads it through the server's tool
    local_only = {"database": {"socket", "binlog_archive", "binlog_dir"}, "flink": {"conf_dir"}}
    for component in SERVICES:
        missing = set(local[component]) - set(docker[component]) - local_only.get(component, set())
        assert not missing, f"{component}: the docker mapping lacks {missing}"
    c = stack_config
    assert (docker["database"]["host"], docker["database"]["port"]) == ("127.0.0.1", c.database.port)
    assert docker["database"]["kind"] == "mysql" and docker["database"]["user"] == c.database.user
    assert docker["kafka"]["bootstrap"] == f"127.0.0.1:{c.kafka.port}" and docker["kafka"]["topic"] == c.kafka.topic
    assert docker["connect"]["url"] == f"http://127.0.0.1:{c.connect.port}"
    assert docker["connect"]["connector_class"] == "io.debezium.connector.mysql.MySqlConnector"
    assert docker["s3"] == {"endpoint": f"http://127.0.0.1:{c.s3.port}", "bucket": c.s3.bucket,
                            "access_key": c.s3.access_key, "secret_key": c.s3.secret_key, "region": c.s3.region}
    assert docker["flink"]["rest"] == f"http://127.0.0.1:{c.flink.rest_port}"


def test_a_service_that_publishes_no_port_is_named(stack_config: StackConfig, tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    data["services"]["minio"]["ports"] = []
    broken.write_text(yaml.safe_dump(data))
    with pytest.raises(BackendError, match="minio publishes no port for 9000"):
        ComposeStack(stack_config, compose_file=broken, compose=PublishedPorts(broken)).endpoints()


def test_testcontainers_compose_is_pointed_at_the_stack_file(stack_config: StackConfig) -> None:
    compose: Any = ComposeStack(stack_config)._compose()
    assert type(compose).__name__ == "DockerCompose"
    assert Path(compose.context) == COMPOSE_FILE.parent and compose.compose_file_name in (
        COMPOSE_FILE.name, [COMPOSE_FILE.name])


def test_without_an_engine_up_says_so_and_chaos_refuses_docker(stack_config: StackConfig,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    monkeypatch.setenv("PATH", "/nonexistent")          # no docker CLI, as on these machines
    with pytest.raises(BackendError, match="needs a Docker engine"):
        ComposeStack(stack_config).start()
    assert main(["--backend", "docker", "up"]) == 2
    assert "needs a Docker engine" in capsys.readouterr().err
    monkeypatch.setenv("CDC_CHAOS_BACKEND", "docker")
    assert main(["run", "baseline"]) == 2
    assert "chaos scenarios kill, pause and partition" in capsys.readouterr().err
    monkeypatch.setenv("CDC_CHAOS_BACKEND", "kubernetes")
    with pytest.raises(BackendError, match="unknown backend 'kubernetes'"):
        backend_name()
