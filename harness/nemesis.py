"""Nemeses: faults injected into the real stack on a seeded schedule, each recorded in a fault timeline.

A nemesis has ``inject`` and ``heal``; a ``Schedule`` says when (fixed, seeded-random, repeated) and
``NemesisRunner`` runs it in a thread beside the workload, always healing everything at the end (Jepsen's
final heal) so the pipeline can be judged after it has had every chance to recover.
"""

from __future__ import annotations

import abc
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from harness.stack import Stack


class Recovery(Protocol):
    """What a nemesis may ask of the pipeline after healing (e.g. resume the job after a JobManager loss)."""

    def after_jobmanager_restart(self) -> None: ...


@dataclass
class FaultEvent:
    nemesis: str
    phase: str            # inject | heal | error
    wall_ms: int
    detail: dict[str, Any] = field(default_factory=dict)


class Nemesis(abc.ABC):
    """One kind of fault. ``inject`` breaks something; ``heal`` restores it (idempotent)."""

    name = "nemesis"

    @abc.abstractmethod
    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]: ...

    @abc.abstractmethod
    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]: ...

    def __repr__(self) -> str:
        return self.name


class ProcessKill(Nemesis):
    """SIGKILL members of a component (no shutdown hooks), then start them again on heal."""

    component = ""
    members: tuple[str, ...] | None = None    # None: every member; otherwise a seeded choice among these

    def __init__(self, members: tuple[str, ...] | None = None, all_members: bool = False) -> None:
        if members is not None:
            self.members = members
        self.all_members = all_members
        self._killed: list[str] = []

    def _targets(self, stack: Stack, rng: random.Random) -> list[str]:
        candidates = list(self.members or stack[self.component].members())
        return candidates if self.all_members or len(candidates) == 1 else [rng.choice(candidates)]

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        comp = stack[self.component]
        self._killed = self._targets(stack, rng)
        pids = {m: comp.processes[m].pid for m in self._killed}
        for m in self._killed:
            comp.kill(m)
        return {"killed": self._killed, "pids": pids}

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        comp = stack[self.component]
        for m in self._killed:
            comp.restart(m, wait=False)
        comp.wait_healthy()
        return {"restarted": self._killed}


class TaskManagerKill(ProcessKill):
    """SIGKILL one TaskManager (a seeded choice) or all; with ``during_checkpoint`` the kill waits until a
    checkpoint of the running job is in flight, so it lands between the barrier and the commit (the window
    in which a sink's pending files exist but are not yet committed)."""

    name = "taskmanager-kill"
    component = "flink"

    def __init__(self, all_members: bool = False, during_checkpoint: bool = False, wait_s: float = 20.0) -> None:
        super().__init__(all_members=all_members)
        self.during_checkpoint = during_checkpoint
        self.wait_s = wait_s
        if during_checkpoint:
            self.name = "taskmanager-kill-in-checkpoint"

    def _targets(self, stack: Stack, rng: random.Random) -> list[str]:
        tms = [m for m in stack["flink"].members() if m.startswith("taskmanager")]
        return tms if self.all_members else [rng.choice(tms)]

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        hit = wait_for_checkpoint_in_flight(stack.flink.rest_url, self.wait_s) if self.during_checkpoint else {}
        return {**super().inject(stack, rng), **hit}


def wait_for_checkpoint_in_flight(rest_url: str, timeout_s: float) -> dict[str, Any]:
    """Poll the running job's checkpoint statistics until one is IN_PROGRESS; raise if none is seen in time
    (then the fault would not test what it claims, and the scenario must not pass as if it had)."""
    import requests

    deadline = time.monotonic() + timeout_s
    polls = 0
    while time.monotonic() < deadline:
        polls += 1
        try:
            jobs = requests.get(f"{rest_url}/jobs/overview", timeout=2).json()["jobs"]
            running = [j["jid"] for j in jobs if j["state"] == "RUNNING"]
            for jid in running:
                stats = requests.get(f"{rest_url}/jobs/{jid}/checkpoints", timeout=2).json()
                pending = [c for c in stats.get("history", []) if c.get("status") == "IN_PROGRESS"]
                if pending:
                    return {"checkpoint_in_flight": pending[0]["id"], "job": jid, "polls": polls}
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.01)
    raise RuntimeError(f"no checkpoint was in flight within {timeout_s:.0f}s ({polls} polls of {rest_url})")


class JobManagerKill(ProcessKill):
    """Kill the JobManager; on heal restart it and resume the job from its latest retained checkpoint."""

    name = "jobmanager-kill"
    component = "flink"
    members = ("jobmanager",)

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        out = super().heal(stack, recovery)
        if recovery is not None:
            recovery.after_jobmanager_restart()
            out["resumed"] = True
        return out


class BrokerKill(ProcessKill):
    """SIGKILL a broker; with ``partition_leader`` the one leading a (seeded) partition of the CDC topic
    (3-broker mode: the hard bounce of a leader, as Kafka's own system tests do)."""

    name = "broker-kill"
    component = "kafka"

    def __init__(self, partition_leader: bool = False) -> None:
        super().__init__()
        self.partition_leader = partition_leader
        if partition_leader:
            self.name = "broker-leader-kill"

    def _targets(self, stack: Stack, rng: random.Random) -> list[str]:
        if not self.partition_leader:
            return super()._targets(stack, rng)
        leaders = stack.kafka.partition_leaders()
        if not leaders:
            raise RuntimeError(f"the topic {stack.config.kafka.topic} has no partition leaders to kill")
        self.partition = rng.choice(sorted(leaders))
        return [leaders[self.partition]]

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        out = super().inject(stack, rng)
        return {**out, "partition": self.partition} if self.partition_leader else out


class ConnectKill(ProcessKill):
    """Kill the Connect worker mid-stream: Debezium re-sends changes after restart; the lake must not."""

    name = "connect-kill"
    component = "connect"

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        out = super().heal(stack, recovery)
        stack.connect.wait_connector_running()
        return out


class DatabaseRestart(ProcessKill):
    name = "database-restart"
    component = "database"


class StorageOutage(ProcessKill):
    """Take the S3 store away: checkpoints and uploads fail until it is back."""

    name = "storage-outage"
    component = "s3"


class Pause(Nemesis):
    """SIGSTOP a member for the fault's duration (longer than heartbeat/session timeouts), then SIGCONT."""

    def __init__(self, component: str, member: str | None = None) -> None:
        self.component = component
        self.member = member
        self.name = f"pause-{component}" + (f"-{member}" if member else "")
        self._paused: str | None = None

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        comp = stack[self.component]
        self._paused = self.member or rng.choice(comp.members())
        comp.pause(self._paused)
        return {"paused": self._paused}

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        if self._paused is not None:
            stack[self.component].resume(self._paused)
        return {"resumed": self._paused}


@dataclass(frozen=True)
class Fault:
    at_s: float           # offset from the workload's start
    duration_s: float     # how long the fault lasts before heal
    nemesis: Nemesis


class Schedule:
    """When each fault happens. Built from seeded randomness, so a seed replays the same faults."""

    def __init__(self, faults: list[Fault]) -> None:
        self.faults = sorted(faults, key=lambda f: f.at_s)

    @classmethod
    def none(cls) -> Schedule:
        return cls([])

    @classmethod
    def fixed(cls, nemesis: Nemesis, at_s: float, duration_s: float) -> Schedule:
        return cls([Fault(at_s, duration_s, nemesis)])

    @classmethod
    def repeated(cls, nemesis_factory: Callable[[], Nemesis], first_s: float, every_s: float, duration_s: float,
                 until_s: float) -> Schedule:
        faults, t = [], first_s
        while t + duration_s < until_s:
            faults.append(Fault(t, duration_s, nemesis_factory()))
            t += every_s
        return cls(faults)

    @classmethod
    def random(cls, rng: random.Random, factories: list[Callable[[], Nemesis]], count: int,
               window_s: tuple[float, float], duration_s: tuple[float, float]) -> Schedule:
        """``count`` faults at seeded random times in ``window_s``, not overlapping."""
        faults: list[Fault] = []
        lo, hi = window_s
        t = lo
        slot = (hi - lo) / max(count, 1)
        for i in range(count):
            start = lo + i * slot + rng.uniform(0, slot * 0.3)
            dur = min(rng.uniform(*duration_s), max(0.5, lo + (i + 1) * slot - start - 1))
            faults.append(Fault(round(max(start, t), 2), round(dur, 2), rng.choice(factories)()))
            t = start + dur
        return cls(faults)

    def __add__(self, other: Schedule) -> Schedule:
        return Schedule(self.faults + other.faults)

    def describe(self) -> list[dict[str, Any]]:
        return [{"at_s": f.at_s, "duration_s": f.duration_s, "nemesis": f.nemesis.name} for f in self.faults]


class NemesisRunner:
    """Runs a schedule against a stack in a background thread and records the fault timeline."""

    def __init__(self, stack: Stack, schedule: Schedule, rng: random.Random, recovery: Recovery | None = None) -> None:
        self.stack = stack
        self.schedule = schedule
        self.rng = rng
        self.recovery = recovery
        self.timeline: list[FaultEvent] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._active: list[Nemesis] = []
        self.errors: list[str] = []

    def _record(self, nemesis: Nemesis, phase: str, detail: dict[str, Any]) -> None:
        self.timeline.append(FaultEvent(nemesis.name, phase, int(time.time() * 1000), detail))

    def start(self, t0: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(t0,), name="nemesis", daemon=True)
        self._thread.start()

    def _run(self, t0: float) -> None:
        for fault in self.schedule.faults:
            if self._wait_until(t0 + fault.at_s):
                return
            self._do(fault.nemesis, "inject")
            self._active.append(fault.nemesis)
            if self._wait_until(t0 + fault.at_s + fault.duration_s):
                return
            self._active.remove(fault.nemesis)
            self._do(fault.nemesis, "heal")

    def _wait_until(self, when: float) -> bool:
        return self._stop.wait(max(0.0, when - time.monotonic()))

    def _do(self, nemesis: Nemesis, phase: str) -> None:
        try:
            detail = nemesis.inject(self.stack, self.rng) if phase == "inject" else nemesis.heal(self.stack,
                                                                                               self.recovery)
            self._record(nemesis, phase, detail)
        except Exception as exc:  # noqa: BLE001 - a failed fault is recorded; the final heal still runs
            self.errors.append(f"{nemesis.name} {phase}: {exc}")
            self._record(nemesis, "error", {"failed_phase": phase, "error": str(exc)[:2000]})

    def finish(self) -> None:
        """Stop scheduling and heal whatever is still broken (the final heal)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for nemesis in list(self._active):
            self._do(nemesis, "heal")
        self._active.clear()

    def timeline_dicts(self) -> list[dict[str, Any]]:
        return [{"nemesis": e.nemesis, "phase": e.phase, "wall_ms": e.wall_ms, **e.detail} for e in self.timeline]


# --- network faults between the Flink job and Kafka / the S3 store, through the stack's proxy ---------------
# The harness's own clients are not behind the proxy, so these faults hit the pipeline, never its judge.

NETWORK_ROUTES = ("kafka", "s3")


class NetworkFault(Nemesis):
    """A fault on one route of the job's network: ``kafka`` (Flink <-> every broker) or ``s3`` (Flink <-> S3)."""

    kind = "network"

    def __init__(self, route: str) -> None:
        if route not in NETWORK_ROUTES:
            raise ValueError(f"unknown network route {route!r}; use one of {NETWORK_ROUTES}")
        self.route = route
        self.name = f"{self.kind}-{route}"


class NetworkPartition(NetworkFault):
    """Cut the route: the proxy closes its listener and every open connection, and refuses new ones."""

    kind = "network-partition"

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        routes = stack.proxy.route_names(self.route)
        for r in routes:
            stack.proxy.disable(r)
        return {"route": self.route, "disabled": routes}

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        routes = stack.proxy.route_names(self.route)
        for r in routes:
            stack.proxy.enable(r)
        return {"route": self.route, "enabled": routes}


class ToxicFault(NetworkFault):
    """A fault made of one Toxiproxy toxic per stream on every proxy of the route; heal removes exactly those."""

    toxic_type = ""
    streams: tuple[str, ...] = ("upstream", "downstream")   # upstream: client -> server
    toxicity = 1.0                                          # the share of connections the toxic applies to

    def attributes(self) -> dict[str, Any]:
        return {}

    def _toxic_names(self, stack: Stack) -> list[tuple[str, str, str]]:
        """(proxy route, stream, toxic name) for every toxic of this fault."""
        return [(r, stream, f"{self.name}-{stream}") for r in stack.proxy.route_names(self.route)
                for stream in self.streams]

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        for r, stream, toxic in self._toxic_names(stack):
            stack.proxy.add_toxic(r, toxic, self.toxic_type, self.attributes(), stream=stream, toxicity=self.toxicity)
        return {"route": self.route, "toxic": self.toxic_type, "streams": list(self.streams),
                "toxicity": self.toxicity, **self.attributes()}

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        removed = []
        for r, _stream, toxic in self._toxic_names(stack):
            stack.proxy.remove_toxic(r, toxic, missing_ok=True)
            removed.append(f"{r}/{toxic}")
        return {"route": self.route, "removed": removed}


class NetworkLatency(ToxicFault):
    """Delay every chunk in both directions by ``latency_ms`` ± ``jitter_ms`` (a round trip gains twice that)."""

    kind = "network-latency"
    toxic_type = "latency"

    def __init__(self, route: str, latency_ms: int = 500, jitter_ms: int = 100) -> None:
        super().__init__(route)
        self.latency_ms, self.jitter_ms = latency_ms, jitter_ms

    def attributes(self) -> dict[str, Any]:
        return {"latency": self.latency_ms, "jitter": self.jitter_ms}


class NetworkDrops(ToxicFault):
    """Drop connections at random: a ``toxicity`` share of the route's connections (open ones and every new
    one) is hit ``timeout_ms`` after its first request; ``reset_peer`` resets it (TCP RST), ``timeout``
    blackholes it (data dropped) and then closes it."""

    kind = "network-drops"
    streams = ("upstream",)   # one stream, so ``toxicity`` is the share of connections hit

    def __init__(self, route: str, toxicity: float = 0.5, mode: str = "reset_peer", timeout_ms: int = 1000) -> None:
        if mode not in ("reset_peer", "timeout"):
            raise ValueError(f"unknown drop mode {mode!r}; use 'reset_peer' or 'timeout'")
        if not 0.0 < toxicity <= 1.0:
            raise ValueError(f"toxicity {toxicity} must be in (0, 1]: the share of connections dropped")
        super().__init__(route)
        self.toxic_type, self.toxicity, self.timeout_ms = mode, toxicity, timeout_ms

    def attributes(self) -> dict[str, Any]:
        return {"timeout": self.timeout_ms}
