"""The network between the Flink job and Kafka / the S3 store: a Toxiproxy server with one route per target.

The job's traffic goes through it (each broker's ``PROXIED`` listener, Flink's ``s3.endpoint``); the
harness's own clients (lag monitor, quiescence, lake reader) stay on the direct ports, so a network fault
hits the pipeline and never the judge.  Route names: ``kafka`` (``kafka_2``, ``kafka_3`` in 3-broker mode)
and ``s3``.  A stack built without this component routes nothing through it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import requests

from harness.components.base import Component
from harness.config import StackConfig
from harness.install.toxiproxy import ensure_toxiproxy
from harness.process import ComponentError, ManagedProcess

#: the port of the listener each route forwards to, by route name (Kafka: the broker's PROXIED listener)
KAFKA_UPSTREAM_PORT = "kafka_proxied"


def kafka_routes(config: StackConfig) -> list[str]:
    return ["kafka" if n == 1 else f"kafka_{n}" for n in range(1, config.kafka.brokers + 1)]


def proxied_port(ports: dict[str, int], route: str) -> int | None:
    """The port a client uses to reach ``route`` through the proxy; None when the stack has no proxy."""
    return ports.get(f"proxy_{route}")


class NetworkProxy(Component):
    name = "proxy"
    health_description = "Toxiproxy's GET /version to answer 200"

    @classmethod
    def port_names(cls, config: StackConfig) -> list[str]:
        return ["proxy_api", *(f"proxy_{r}" for r in kafka_routes(config)), "proxy_s3", "s3gate", "s3gate_control"]

    @property
    def gate_url(self) -> str:
        """The S3 gate's control API (``harness/s3gate.py``): request-level S3 faults on the job's route."""
        return f"http://127.0.0.1:{self.ports['s3gate_control']}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy_api']}"

    def _upstream_port(self, route: str) -> int | None:
        if route == "s3":   # through the S3 gate, which forwards to the store
            return self.ports.get("s3gate") if self.ports.get("s3") is not None else None
        return self.ports.get(route.replace("kafka", KAFKA_UPSTREAM_PORT, 1))

    def routes(self) -> dict[str, dict[str, Any]]:
        """Toxiproxy's proxy definitions: one per target whose component is in this stack."""
        out = {}
        for route in [*kafka_routes(self.config), "s3"]:
            upstream = self._upstream_port(route)
            if upstream is not None:
                out[route] = {"name": route, "listen": f"127.0.0.1:{self.ports[f'proxy_{route}']}",
                              "upstream": f"127.0.0.1:{upstream}", "enabled": True}
        return out

    def route_names(self, target: str) -> list[str]:
        """The routes of a target: ``kafka`` is every broker's route, ``s3`` the store's."""
        if target not in ("kafka", "s3"):
            raise ValueError(f"unknown network route {target!r}; use 'kafka' (Flink<->Kafka) or 's3' (Flink<->S3)")
        names = kafka_routes(self.config) if target == "kafka" else ["s3"]
        missing = [n for n in names if n not in self.routes()]
        if missing:
            raise ComponentError(f"proxy: no route {missing} in this stack (its component is not part of it)")
        return names

    def prepare(self) -> None:
        self._binary = ensure_toxiproxy(self.config)
        # the same routes at every start, so a killed and restarted proxy comes back routing
        self._config_file = self.dir / "proxies.json"
        self._config_file.write_text(json.dumps(list(self.routes().values()), indent=1))

    def build_processes(self) -> dict[str, ManagedProcess]:
        argv = [str(self._binary), "-host", "127.0.0.1", "-port", str(self.ports["proxy_api"]),
                "-config", str(self._config_file)]
        procs = {"server": self.new_process("server", argv, {"PATH": "/usr/bin:/bin", "LOG_LEVEL": "info"})}
        if self.ports.get("s3") is not None:
            gate = [sys.executable, str(Path(__file__).resolve().parent.parent / "s3gate.py"),
                    "--listen", str(self.ports["s3gate"]), "--upstream", str(self.ports["s3"]),
                    "--control", str(self.ports["s3gate_control"]), "--log", str(self.dir / "s3gate-requests.log")]
            procs["s3gate"] = self.new_process("s3gate", gate, {"PATH": "/usr/bin:/bin"})
        return procs

    def healthy(self) -> bool:
        if "s3gate" in self.processes and requests.get(f"{self.gate_url}/health", timeout=2).status_code != 200:
            return False
        return requests.get(f"{self.api_url}/version", timeout=2).status_code == 200

    def after_healthy(self) -> None:
        self._call("post", "/populate", list(self.routes().values()))

    def restart(self, member: str | None = None, wait: bool = True) -> None:
        super().restart(member, wait)
        if wait:
            self.reset()

    # --- faults ----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return _request("proxy", self.api_url, method, path, body)

    def add_toxic(self, route: str, name: str, kind: str, attributes: dict[str, Any], stream: str = "downstream",
                  toxicity: float = 1.0) -> None:
        """Add a toxic (``latency``, ``reset_peer``, ``timeout``, ...) to one route; ``stream`` is
        ``upstream`` (client -> server) or ``downstream``; ``toxicity`` is the share of connections hit."""
        self._call("post", f"/proxies/{route}/toxics", {"name": name, "type": kind, "stream": stream,
                                                        "toxicity": toxicity, "attributes": attributes})

    def remove_toxic(self, route: str, name: str, missing_ok: bool = False) -> None:
        if missing_ok and name not in {t["name"] for t in self.toxics(route)}:
            return
        self._call("delete", f"/proxies/{route}/toxics/{name}")

    def toxics(self, route: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("get", f"/proxies/{route}/toxics")
        return result

    def set_enabled(self, route: str, enabled: bool) -> None:
        """Disabling a route closes its listener and every open connection: new ones are refused."""
        self._call("post", f"/proxies/{route}", {"enabled": enabled})

    def disable(self, route: str) -> None:
        self.set_enabled(route, False)

    def enable(self, route: str) -> None:
        self.set_enabled(route, True)

    def reset(self) -> None:
        """Every route present and enabled, no toxics, no S3 gate fault (between scenarios, after a restart)."""
        self.after_healthy()
        self._call("post", "/reset")
        if "s3gate" in self.processes:
            self.gate_clear()

    # --- the S3 gate ---------------------------------------------------------------------------------
    def _gate(self, method: str, path: str, body: Any = None) -> Any:
        return _request("S3 gate", self.gate_url, method, path, body)

    def gate_fault(self, mode: str, ops: list[str] | None = None, probability: float = 1.0,
                   hang_ms: int = 5000, exclude: list[str] | None = None) -> None:
        """From now on answer the job's matching S3 requests with ``slowdown`` (503), ``fail`` (500) or
        ``hang`` them; ``ops`` are S3 operation names (``CompleteMultipartUpload``, ``UploadPart``, ...);
        requests whose path contains one of ``exclude`` pass untouched."""
        self._gate("put", "/fault", {"mode": mode, "ops": ops or [], "probability": probability, "hang_ms": hang_ms,
                                     "exclude": exclude or []})

    def gate_clear(self) -> None:
        self._gate("delete", "/fault")

    def gate_stats(self) -> dict[str, Any]:
        """``{"fault": ..., "ops": {op: {"requests", "injected"}}}`` since the gate started."""
        stats: dict[str, Any] = self._gate("get", "/stats")
        return stats

    def state(self) -> dict[str, Any]:
        proxies: dict[str, Any] = self._call("get", "/proxies")
        return {name: {"enabled": p["enabled"], "toxics": [t["name"] for t in p.get("toxics", [])]}
                for name, p in proxies.items()}

    def endpoints(self) -> dict[str, Any]:
        return {"api": self.api_url, **{name: r["listen"] for name, r in self.routes().items()}}


def _request(what: str, base: str, method: str, path: str, body: Any = None) -> Any:
    """A control-API call; an error names the API, the call and where its log is."""
    try:
        r = requests.request(method, f"{base}{path}", json=body, timeout=5)
    except requests.RequestException as exc:
        raise ComponentError(f"{what}: {method.upper()} {path} failed ({exc}); is it running? "
                             "`cdc-chaos logs proxy` shows its log") from exc
    if r.status_code >= 400:
        raise ComponentError(f"{what}: {method.upper()} {path} answered {r.status_code}: {r.text.strip()}")
    return r.json() if r.content else None
