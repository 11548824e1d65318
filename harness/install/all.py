"""``cdc-chaos setup``: every component the local backend needs, installed once into the cache."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from harness.config import StackConfig, load_config
from harness.install import progress


def install_go_builds(config: StackConfig) -> None:
    """The Go builds alone (MinIO takes ~3 min of a cold set-up on 2 cores).  They need neither the Debian
    packages nor the venv, so ``./run setup`` starts them first, with the system's Python, and they run while
    apt and pip work; ``install_everything`` then finds them built (or waits on their lock)."""
    from harness.install.binlog_reader import ensure_binlog_reader
    from harness.install.minio import ensure_minio
    from harness.install.toxiproxy import ensure_toxiproxy

    ensure_minio(config)
    ensure_toxiproxy(config)
    ensure_binlog_reader(config.versions.go_toolchain)


def install_everything(config: StackConfig) -> dict[str, float]:
    """Install (or confirm) every component; returns seconds per step.

    Independent steps run concurrently in three lanes: the Maven downloads one after another (they share
    the local Maven repository), the Go builds (MinIO, Toxiproxy) beside them, and the database's template
    data directory.  A failing lane does not stop the others; the first error is raised once all are done."""
    from harness.components.database import find_binary, template_datadir
    from harness.install.binlog_reader import ensure_binlog_reader
    from harness.install.flink import ensure_flink
    from harness.install.kafka import ensure_debezium, ensure_kafka
    from harness.install.minio import ensure_minio
    from harness.install.tm_warmup import ensure_tm_warmup
    from harness.install.toxiproxy import ensure_toxiproxy

    lanes: dict[str, dict[str, Callable[[], object]]] = {
        "maven": {"kafka": lambda: ensure_kafka(config), "debezium": lambda: ensure_debezium(config),
                  "flink": lambda: ensure_flink(config), "tm_warmup": ensure_tm_warmup},
        "go": {"minio": lambda: ensure_minio(config), "toxiproxy": lambda: ensure_toxiproxy(config),
               "binlog_reader": lambda: ensure_binlog_reader(config.versions.go_toolchain)},
        "database": {"database": lambda: (find_binary("mariadbd" if config.database.kind == "mariadb"
                                                      else "mysqld"), template_datadir(config.database.kind))},
    }
    seconds: dict[str, float] = {}
    started = time.monotonic()

    def run_lane(steps: dict[str, Callable[[], object]]) -> None:
        for name, step in steps.items():
            t0 = time.monotonic()
            step()
            seconds[name] = round(time.monotonic() - t0, 1)

    with ThreadPoolExecutor(len(lanes), thread_name_prefix="setup") as pool:
        futures = {lane: pool.submit(run_lane, steps) for lane, steps in lanes.items()}
    errors = [f.exception() for f in futures.values() if f.exception() is not None]
    if errors:
        raise errors[0]   # type: ignore[misc]
    seconds["total"] = round(time.monotonic() - started, 1)
    progress(f"all components installed in {seconds['total']}s "
             f"({', '.join(f'{k} {v}s' for k, v in seconds.items() if k != 'total')})")
    return seconds


if __name__ == "__main__":   # ./run setup: python3 -m harness.install.all --go (stdlib only)
    import sys

    if sys.argv[1:] != ["--go"]:
        sys.exit("usage: python3 -m harness.install.all --go")
    from harness import log

    log.configure()
    install_go_builds(load_config())
