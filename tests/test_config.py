"""One definition: stack.toml, init.sql, the connector template and docker-compose.yml agree; bad config is
refused with a message that names the key and the fix."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
import yaml

from harness.config import REPO_ROOT, ConfigError, StackConfig, load_config

COMPOSE = REPO_ROOT / "stack" / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "stack.toml"
    p.write_text(text)
    return p


def test_default_config_loads(stack_config: StackConfig) -> None:
    assert stack_config.kafka.topic == "orders_cdc" and stack_config.kafka.partitions == 3
    assert stack_config.database.kind in ("mariadb", "mysql")


def test_unknown_key_is_named(tmp_path: Path) -> None:
    text = (REPO_ROOT / "stack/stack.toml").read_text().replace("partitions = 3", "partitons = 3")
    with pytest.raises(ConfigError, match=r"\[kafka\].*partitons"):
        load_config(_write(tmp_path, text))


def test_wrong_type_is_named(tmp_path: Path) -> None:
    text = (REPO_ROOT / "stack/stack.toml").read_text().replace("port = 8083", 'port = "8083"')
    with pytest.raises(ConfigError, match=r"\[connect\] port"):
        load_config(_write(tmp_path, text))


def test_bad_values_are_refused(tmp_path: Path) -> None:
    base = (REPO_ROOT / "stack/stack.toml").read_text()
    with pytest.raises(ConfigError, match="kind"):
        load_config(_write(tmp_path, base.replace('kind = "mariadb"', 'kind = "postgres"')))
    with pytest.raises(ConfigError, match="brokers"):
        load_config(_write(tmp_path, base.replace("brokers = 1", "brokers = 2")))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, base + "\n[broken\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_compose_names_the_same_services_ports_and_files(compose: dict, stack_config: StackConfig) -> None:
    services = compose["services"]
    for name in ("mysql", "kafka", "connect", "connector-init", "jobmanager", "taskmanager-1", "taskmanager-2",
                 "minio"):
        assert name in services, f"compose lacks service {name}"

    def host_ports(svc: str) -> set[int]:
        return {int(str(p).split(":")[0]) for p in services[svc].get("ports", [])}

    assert stack_config.database.port in host_ports("mysql")
    assert stack_config.kafka.port in host_ports("kafka")
    assert stack_config.connect.port in host_ports("connect")
    assert stack_config.flink.rest_port in host_ports("jobmanager")
    assert stack_config.s3.port in host_ports("minio")
    assert services["mysql"]["image"] == "mysql:8.0"
    assert services["mysql"]["environment"]["MYSQL_ROOT_PASSWORD"] == stack_config.database.root_password
    # the same init SQL and connector template as the local backend
    mounts = " ".join(v for s in services.values() for v in s.get("volumes", []))
    assert f"./{Path(stack_config.database.init_sql).relative_to('stack')}:" in mounts
    assert f"./{Path(stack_config.connect.connector_file).relative_to('stack')}:" in mounts
    # listeners as in the seed: 9092 for host clients, 29092 for containers
    listeners = services["kafka"]["environment"]["KAFKA_LISTENERS"]
    assert f":{stack_config.kafka.port}" in listeners and f":{stack_config.kafka.internal_port}" in listeners
    init = " ".join(services["kafka-init"]["command"])
    assert f"--topic {stack_config.kafka.topic}" in init and f"--partitions {stack_config.kafka.partitions}" in init
    # versions pinned in one place
    v = stack_config.versions
    assert services["kafka"]["image"].endswith(v.kafka)
    assert services["connect"]["image"].endswith(v.debezium)
    assert v.flink in services["jobmanager"]["image"]


def test_connector_template_variables_are_all_provided_by_both_backends(compose: dict) -> None:
    template = (REPO_ROOT / "stack/connect/register-orders-connector.json").read_text()
    names = {m.group(1) for m in re.finditer(r"\$\{([A-Z_]+)\}", template)}
    compose_cmd = " ".join(compose["services"]["connector-init"]["command"])
    for name in names:
        assert f"$${{{name}}}" in compose_cmd, f"compose connector-init does not substitute {name}"
    # the local backend substitutes with string.Template; a missing variable raises KeyError there
    assert all(isinstance(n, str) for n in names) and string.Template(template).get_identifiers()


def test_init_sql_matches_credentials(stack_config: StackConfig) -> None:
    sql = stack_config.path(stack_config.database.init_sql).read_text()
    db = stack_config.database
    assert f"CREATE DATABASE IF NOT EXISTS {db.database}" in sql
    assert f"'{db.user}'@'%' IDENTIFIED BY '{db.password}'" in sql
    assert "REPLICATION SLAVE" in sql and "REPLICATION CLIENT" in sql


def test_readme_lake_table_is_rendered_from_the_schema() -> None:
    """The README's column table is `python -m harness.lake_schema`: a column added, renamed or retyped in
    harness/lake_schema.py without the README (or the other way round) fails here."""
    from harness.lake_schema import readme_table

    readme = (REPO_ROOT / "README.md").read_text()
    begin = readme.index("<!-- lake-schema:begin")
    block = readme[readme.index("\n", begin) + 1:readme.index("<!-- lake-schema:end -->")].strip()
    assert block == readme_table(), "README lake table drifted: paste `python -m harness.lake_schema` into it"
