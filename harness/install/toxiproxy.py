"""Toxiproxy's server, built from source with ``go install`` at the pinned version (Go module proxy only).

It sits between the Flink job and Kafka / the S3 store so the network nemeses can add latency, reset
connections or cut a route (``harness/components/proxy.py``).
"""

from __future__ import annotations

from pathlib import Path

from harness.config import StackConfig
from harness.install.go import go_install


def ensure_toxiproxy(config: StackConfig) -> Path:
    """Path of the ``toxiproxy-server`` binary for the pinned version, building it on first use (~1-2 min)."""
    return go_install("Toxiproxy", "github.com/Shopify/toxiproxy/v2/cmd/server", config.versions.toxiproxy,
                      "toxiproxy-server", min_go="1.23", toolchain=config.versions.go_toolchain,
                      timeout=1800)
