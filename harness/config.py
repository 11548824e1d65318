"""One typed configuration object, loaded from ``stack/stack.toml``.

Both backends (local processes and docker compose) read this one definition: versions, default
ports, credentials, schema and connector template.  Nothing else in the harness hard-codes them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_DIR = REPO_ROOT / "stack"
DEFAULT_CONFIG_FILE = STACK_DIR / "stack.toml"


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and the fix."""


def cache_dir() -> Path:
    """Where downloads and builds live: outside the work tree, shared by every stack and worker."""
    root = os.environ.get("CDC_CHAOS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cdc-chaos"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Versions:
    kafka: str
    debezium: str
    flink: str
    flink_kafka_connector: str
    hadoop: str
    minio: str
    toxiproxy: str
    go_toolchain: str


@dataclass(frozen=True)
class DatabaseConfig:
    kind: str
    port: int
    database: str
    root_password: str
    user: str
    password: str
    init_sql: str
    server_id: int

    @property
    def connector_class(self) -> str:
        return {
            "mariadb": "io.debezium.connector.mariadb.MariaDbConnector",
            "mysql": "io.debezium.connector.mysql.MySqlConnector",
        }[self.kind]

    @property
    def debezium_plugin(self) -> str:
        return {"mariadb": "debezium-connector-mariadb", "mysql": "debezium-connector-mysql"}[self.kind]


@dataclass(frozen=True)
class KafkaConfig:
    port: int
    internal_port: int
    controller_port: int
    topic: str
    partitions: int
    brokers: int
    heap: str

    @property
    def replication_factor(self) -> int:
        return 3 if self.brokers >= 3 else 1

    @property
    def min_insync_replicas(self) -> int:
        return 2 if self.brokers >= 3 else 1


@dataclass(frozen=True)
class ConnectConfig:
    port: int
    connector_file: str
    connector_name: str
    topic_prefix: str
    heap: str


@dataclass(frozen=True)
class FlinkConfig:
    rest_port: int
    taskmanagers: int
    slots_per_taskmanager: int
    jobmanager_memory: str
    taskmanager_memory: str
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    # >0: each TaskManager's working directory (io.tmp.dirs: RocksDB's local database, the S3 writer's part
    # buffers, the blob cache) is a tmpfs of this many MiB of its own, which a disk-full fault can fill
    taskmanager_disk_mb: int
    # true: each TaskManager runs under libfaketime (LD_PRELOAD) with a clock file of its own, so a clock-skew
    # fault moves one TaskManager's wall clock while it runs (clock_skew_taskmanager); needs Debian's libfaketime
    taskmanager_faketime: bool
    # true: each TaskManager starts with the warm-up agent (harness/tm_warmup), which does the JVM-wide work of a
    # takeover (the Kafka client's protocol tables, the S3 file system) while the JVM is idle after its start
    taskmanager_warmup: bool
    # true: each member starts the JVM its bin/<role>.sh script would exec, with the command line recorded once when
    # the cluster is prepared (the script runs three helper JVMs first: seconds on every restart under load)
    direct_launch: bool
    # true (with direct_launch): the TaskManagers' JVMs map a class-data archive (JDK CDS) of the classes they load,
    # dumped by the first stack of the machine from its TaskManager that ran the job (harness/class_archive.py)
    taskmanager_class_archive: bool


@dataclass(frozen=True)
class S3Config:
    port: int
    console_port: int
    bucket: str
    access_key: str
    secret_key: str
    region: str


@dataclass(frozen=True)
class Timeouts:
    stack_up_s: float
    component_up_s: float
    connector_running_s: float


@dataclass(frozen=True)
class StackConfig:
    versions: Versions
    database: DatabaseConfig
    kafka: KafkaConfig
    connect: ConnectConfig
    flink: FlinkConfig
    s3: S3Config
    timeouts: Timeouts
    source: Path = field(default=DEFAULT_CONFIG_FILE, compare=False)

    def path(self, relative: str) -> Path:
        """Resolve a file named in the config (init SQL, connector template) against the repo."""
        p = Path(relative)
        return p if p.is_absolute() else REPO_ROOT / p

    def with_overrides(self, **sections: dict[str, Any]) -> StackConfig:
        """A copy with some values replaced, e.g. ``with_overrides(kafka={"brokers": 3})``."""
        changes: dict[str, Any] = {}
        for name, values in sections.items():
            current = getattr(self, name)
            changes[name] = _build(type(current), f"{name}", {**dataclasses.asdict(current), **values})
        return dataclasses.replace(self, **changes)


def _build(cls: type, section: str, raw: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigError(
            f"[{section}] has unknown key(s) {sorted(unknown)}; known keys are {sorted(fields)}. "
            "Fix the spelling in stack/stack.toml (or your --config file)."
        )
    missing = set(fields) - set(raw)
    if missing:
        raise ConfigError(f"[{section}] is missing {sorted(missing)}; add them to the config file.")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        value = raw[name]
        expected = {"int": int, "str": str, "float": (int, float), "bool": bool}.get(str(f.type))
        wrong = not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool) \
            if expected is not None else False
        if wrong:
            raise ConfigError(
                f"[{section}] {name} = {value!r} should be of type {f.type}; "
                f"correct it in the config file."
            )
        values[name] = float(value) if f.type == "float" else value
    return cls(**values)


_SECTIONS: dict[str, type] = {
    "versions": Versions,
    "database": DatabaseConfig,
    "kafka": KafkaConfig,
    "connect": ConnectConfig,
    "flink": FlinkConfig,
    "s3": S3Config,
    "timeouts": Timeouts,
}


def load_config(path: str | os.PathLike[str] | None = None) -> StackConfig:
    """Load and validate the stack definition. ``CDC_CHAOS_CONFIG`` names another file."""
    file = Path(path or os.environ.get("CDC_CHAOS_CONFIG") or DEFAULT_CONFIG_FILE)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist; pass an existing file or unset CDC_CHAOS_CONFIG")
    try:
        raw = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from exc
    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"{file}: unknown section(s) {sorted(unknown)}; known: {sorted(_SECTIONS)}")
    built = {name: _build(cls, name, raw.get(name, {})) for name, cls in _SECTIONS.items()}
    config = StackConfig(**built, source=file)
    validate(config)
    return config


def validate(config: StackConfig) -> None:
    if config.database.kind not in ("mariadb", "mysql"):
        raise ConfigError(
            f"[database] kind = {config.database.kind!r}: use 'mariadb' (embedded default) or 'mysql'"
        )
    if config.kafka.brokers not in (1, 3):
        raise ConfigError(f"[kafka] brokers = {config.kafka.brokers}: use 1 (default) or 3 (RF=3, min ISR 2)")
    if config.kafka.partitions < 1:
        raise ConfigError("[kafka] partitions must be at least 1")
    if config.flink.taskmanagers < 1:
        raise ConfigError("[flink] taskmanagers must be at least 1")
    if config.flink.taskmanager_disk_mb < 0 or 0 < config.flink.taskmanager_disk_mb < 128:
        raise ConfigError(f"[flink] taskmanager_disk_mb = {config.flink.taskmanager_disk_mb}: use 0 (off) or at "
                          "least 128 (a TaskManager unpacks ~60 MiB of libraries into its working directory)")
    for name in ("init_sql",):
        if not config.path(getattr(config.database, name)).is_file():
            raise ConfigError(f"[database] {name} = {getattr(config.database, name)!r} does not exist")
    if not config.path(config.connect.connector_file).is_file():
        raise ConfigError(f"[connect] connector_file = {config.connect.connector_file!r} does not exist")
