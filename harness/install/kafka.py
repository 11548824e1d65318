"""Kafka (broker + Connect runtime) jars and the Debezium connector plugins, from Maven Central."""

from __future__ import annotations

import tarfile
from pathlib import Path

from harness.config import StackConfig
from harness.install import ensure_dir, maven, pom, version_props


def ensure_kafka(config: StackConfig) -> Path:
    """A directory whose ``libs/`` holds the broker, tools and Connect runtime jars (one classpath)."""
    def build(tmp: Path) -> None:
        maven(pom("kafka"), [*version_props(config), "dependency:copy-dependencies",
                             f"-DoutputDirectory={tmp / 'libs'}"], f"fetching Kafka {config.versions.kafka} jars")

    return ensure_dir(f"kafka-{config.versions.kafka}", build, f"Kafka {config.versions.kafka} (Maven Central)")


def ensure_debezium(config: StackConfig) -> Path:
    """A Connect ``plugin.path`` with Debezium's MariaDB and MySQL connector plugins unpacked."""
    version = config.versions.debezium

    def build(tmp: Path) -> None:
        archives = tmp / "archives"
        for plugin in ("debezium-connector-mariadb", "debezium-connector-mysql"):
            maven(pom("kafka"), ["dependency:copy", f"-Dartifact=io.debezium:{plugin}:{version}:tar.gz:plugin",
                                 f"-DoutputDirectory={archives}"], f"fetching Debezium {plugin} {version}")
        plugins = tmp / "plugins"
        plugins.mkdir()
        for archive in archives.glob("*.tar.gz"):
            with tarfile.open(archive) as tf:
                tf.extractall(plugins, filter="data")
            archive.unlink()

    return ensure_dir(f"debezium-{version}", build, f"Debezium {version} connector plugins") / "plugins"
