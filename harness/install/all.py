"""``cdc-chaos setup``: every component the local backend needs, installed once into the cache."""

from __future__ import annotations

import time

from harness.config import StackConfig
from harness.install import progress


def install_everything(config: StackConfig) -> dict[str, float]:
    """Install (or confirm) every component; returns seconds per step."""
    from harness.components.database import find_binary, template_datadir
    from harness.install.flink import ensure_flink
    from harness.install.kafka import ensure_debezium, ensure_kafka
    from harness.install.minio import ensure_minio
    from harness.install.toxiproxy import ensure_toxiproxy

    steps = {
        "database": lambda: (find_binary("mariadbd" if config.database.kind == "mariadb" else "mysqld"),
                             template_datadir(config.database.kind)),
        "kafka": lambda: ensure_kafka(config),
        "debezium": lambda: ensure_debezium(config),
        "flink": lambda: ensure_flink(config),
        "minio": lambda: ensure_minio(config),
        "toxiproxy": lambda: ensure_toxiproxy(config),
    }
    seconds: dict[str, float] = {}
    for name, step in steps.items():
        t0 = time.monotonic()
        step()
        seconds[name] = round(time.monotonic() - t0, 1)
    progress(f"all components installed ({', '.join(f'{k} {v}s' for k, v in seconds.items())})")
    return seconds
