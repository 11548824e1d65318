"""Network faults between the Flink job and Kafka / the S3 store, through the stack's Toxiproxy: the job's
traffic goes through the proxy and the harness's does not, each nemesis really breaks its route and its heal
really restores it, and the pipeline stays exactly-once through each of them on the real stack."""

from __future__ import annotations

import itertools
import json
import random
import time
from datetime import datetime

import pytest
import requests
from confluent_kafka import KafkaException

from harness import kafka_client
from harness.components.proxy import proxied_port
from harness.nemesis import NetworkDrops, NetworkLatency, NetworkPartition, held_triggers
from harness.result import RunResult
from harness.runner import RunSpec, run
from harness.stack import Stack
from scenarios.catalogue import BY_NAME, SCENARIOS

pytestmark = pytest.mark.stack

_INDEX = itertools.count(200)
RNG = random.Random(0)


def _s3_live(endpoint: str, timeout: float = 3) -> float:
    """Seconds one S3 health request takes; raises when the route is down."""
    t0 = time.monotonic()
    r = requests.get(f"{endpoint}/minio/health/live", timeout=timeout)
    r.raise_for_status()
    return time.monotonic() - t0


def _proxied_s3(stack: Stack) -> str:
    return f"http://127.0.0.1:{proxied_port(stack.ports, 's3')}"


def test_the_job_routes_through_the_proxy_and_the_harness_does_not(stack: Stack) -> None:
    stack.heal()
    proxied, direct = stack.kafka.proxied_bootstrap, stack.kafka.bootstrap
    assert proxied and proxied != direct
    # a client that bootstrapped through the proxy is told the proxy's address for every broker
    brokers = kafka_client.admin(proxied).list_topics(timeout=10).brokers
    assert {f"{b.host}:{b.port}" for b in brokers.values()} == set(proxied.split(","))
    brokers = kafka_client.admin(direct).list_topics(timeout=10).brokers
    assert {f"{b.host}:{b.port}" for b in brokers.values()} == set(direct.split(","))
    conf = (stack.flink.conf_dir / "config.yaml").read_text()
    assert f"s3.endpoint: {_proxied_s3(stack)}\n" in conf
    assert stack.s3.endpoint != _proxied_s3(stack)          # the lake reader and boto3 stay direct


def test_kafka_partition_cuts_the_proxied_route_only_and_heal_restores_it(stack: Stack) -> None:
    stack.heal()
    topic, proxied, direct = stack.config.kafka.topic, stack.kafka.proxied_bootstrap, stack.kafka.bootstrap
    assert proxied
    assert kafka_client.end_offsets(proxied, topic).keys() == kafka_client.end_offsets(direct, topic).keys()
    cut = NetworkPartition("kafka")
    detail = cut.inject(stack, RNG)
    try:
        assert detail == {"route": "kafka", "disabled": ["kafka"]}
        with pytest.raises(KafkaException):
            kafka_client.end_offsets(proxied, topic, timeout=3)
        assert len(kafka_client.end_offsets(direct, topic, timeout=5)) == stack.config.kafka.partitions
        _s3_live(_proxied_s3(stack))                         # the other route is untouched
    finally:
        healed = cut.heal(stack, None)
    assert healed == {"route": "kafka", "enabled": ["kafka"]}
    assert len(kafka_client.end_offsets(proxied, topic, timeout=10)) == stack.config.kafka.partitions


def test_s3_latency_drops_and_partition_hit_the_route_and_heal_clears_them(stack: Stack) -> None:
    stack.heal()
    proxied = _proxied_s3(stack)
    assert _s3_live(proxied) < 0.4

    slow = NetworkLatency("s3", latency_ms=300, jitter_ms=0)
    slow.inject(stack, RNG)
    try:
        assert _s3_live(proxied) >= 0.55                    # 300 ms each way
        assert _s3_live(stack.s3.endpoint) < 0.4            # the direct port is not slowed
        assert len(stack.proxy.toxics("s3")) == 2
    finally:
        slow.heal(stack, None)
    assert stack.proxy.toxics("s3") == [] and _s3_live(proxied) < 0.4
    slow.heal(stack, None)                                  # heal is idempotent

    drops = NetworkDrops("s3", toxicity=1.0, timeout_ms=0)
    drops.inject(stack, RNG)
    try:
        with pytest.raises(requests.ConnectionError):
            _s3_live(proxied)
    finally:
        drops.heal(stack, None)
    _s3_live(proxied)

    cut = NetworkPartition("s3")
    cut.inject(stack, RNG)
    try:
        with pytest.raises(requests.ConnectionError):
            _s3_live(proxied)
        _s3_live(stack.s3.endpoint)
    finally:
        cut.heal(stack, None)
    _s3_live(proxied)


def test_stack_heal_clears_network_faults_left_behind(stack: Stack) -> None:
    stack.heal()
    NetworkPartition("kafka").inject(stack, RNG)
    NetworkLatency("s3", latency_ms=1000).inject(stack, RNG)
    assert stack.proxy.state()["kafka"]["enabled"] is False
    stack.heal()                                            # as between two scenarios
    assert stack.proxy.state() == {"kafka": {"enabled": True, "toxics": []}, "s3": {"enabled": True, "toxics": []}}


def test_a_killed_proxy_comes_back_with_its_routes(stack: Stack) -> None:
    stack.heal()
    topic, proxied = stack.config.kafka.topic, stack.kafka.proxied_bootstrap
    assert proxied
    stack.proxy.kill()
    with pytest.raises(KafkaException):
        kafka_client.end_offsets(proxied, topic, timeout=3)
    stack.proxy.restart()                                   # the same routes, from its config file
    assert len(kafka_client.end_offsets(proxied, topic, timeout=10)) == stack.config.kafka.partitions
    NetworkPartition("s3").inject(stack, RNG)
    stack.proxy.kill()
    assert stack.heal() == ["proxy/server", "proxy/s3gate"]  # both restarted, every route enabled again
    assert all(r["enabled"] and not r["toxics"] for r in stack.proxy.state().values())
    _s3_live(_proxied_s3(stack))


def _lag_between(result: RunResult, lo: float, hi: float) -> list[int]:
    return [lag for t, lag in result.stats.lag_samples if lo <= t <= hi]


def _fault_window_ms(result: RunResult) -> tuple[int, int]:
    by_phase = {e.phase: e.wall_ms for e in result.timeline}
    return by_phase["inject"], by_phase["heal"]


def _accepted_connections(stack: Stack, route: str, since_ms: int, until_ms: int) -> int:
    """Connections the proxy accepted on ``route`` in a time window (its log has second resolution)."""
    count = 0
    for line in (stack.proxy.dir / "server.log").read_text().splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        when_ms = int(datetime.fromisoformat(entry["time"]).timestamp() * 1000)
        if entry.get("message") == "Accepted client" and entry.get("name") == route and \
                since_ms // 1000 * 1000 < when_ms <= until_ms:
            count += 1
    return count


def _checkpoints(stack: Stack, job_id: str) -> list[dict]:
    history = requests.get(f"{stack.flink.rest_url}/jobs/{job_id}/checkpoints", timeout=5).json()["history"]
    return [{k: c.get(k) for k in ("id", "status", "trigger_timestamp", "end_to_end_duration", "failure_message")}
            for c in history]


def _in_fault(checkpoints: list[dict], inject_ms: int, heal_ms: int) -> list[dict]:
    """Checkpoints running while the fault was on (triggered before its last 2 s).  Overlap, not "triggered
    inside": one triggered a few ms before the inject can run the whole fault long and push the next trigger
    past the heal (seen once: triggered 16 ms before the latency began, it took 6.0 s)."""
    return [c for c in checkpoints if c["trigger_timestamp"] <= heal_ms - 2000
            and c["trigger_timestamp"] + (c["end_to_end_duration"] or 0) >= inject_ms]


#: the catalogue's network scenarios, run here with evidence that each fault really reached the job; ci runs the
#: partitions (one per route), nightly runs the slower variants too (latency, drops)
NETWORK_SCENARIOS = [s.name for s in SCENARIOS if s.name.startswith("network_")]
CI_NETWORK_SCENARIOS = ("network_partition_kafka", "network_partition_s3")


@pytest.mark.parametrize("name", [n if n in CI_NETWORK_SCENARIOS else pytest.param(n, marks=pytest.mark.nightly)
                                  for n in NETWORK_SCENARIOS])
def test_run_through_a_network_fault_is_clean(stack: Stack, seed: int, name: str) -> None:
    stack.heal()
    scenario = BY_NAME[name]
    fault = name.removeprefix("network_").replace("_", "-")
    # 20 s: the catalogue's fault (at 0.3 x duration, 6 s long) runs from 6 s to 12 s
    spec = RunSpec(name=name, seed=seed, duration_s=20, rate=80, schedule=scenario.schedule)
    result = run(stack, spec, index=next(_INDEX))
    nemesis = result.timeline[0]
    stats = result.stats
    checkpoints = _checkpoints(stack, stats.job["job_id"])
    inject_ms, heal_ms = _fault_window_ms(result)
    reconnects = _accepted_connections(stack, "kafka", inject_ms, heal_ms)
    print(f"\n{fault}: {result.summary}\n  recovery={stats.recovery} wall={stats.wall_s}s "
          f"quiescence={stats.quiescence} restarts={stats.job.get('restarts')}\n"
          f"  fault window {inject_ms}..{heal_ms}; kafka connections accepted in it: {reconnects}; "
          f"checkpoints={checkpoints}")
    assert result.clean, result.summary + json.dumps(result.to_dict()["timeline"], default=str)
    assert not stats.nemesis_errors, stats.nemesis_errors
    assert [e.phase for e in result.timeline] == ["inject", "heal", "verify"], result.timeline
    assert result.timeline[2].get("effective"), result.timeline[2]   # the nemesis' own evidence agrees
    assert stats.recovery[0].lag_zero_after_s is not None, stats.lag_samples
    assert stack.proxy.state()[nemesis.get("route")]["toxics"] == []     # the final heal removed the fault
    # ... and the fault reached the job (its traffic really goes through the proxy)
    if fault == "partition-kafka":
        # cut off from Kafka the job commits no offset: its lag only grows until the route is back
        during = _lag_between(result, 7.5, 11.5)
        assert during and during == sorted(during) and during[-1] > during[0], stats.lag_samples
    elif fault == "partition-s3":
        # a checkpoint triggered while cut off from S3 fails, or hangs in its retries until the route is back
        # (without the cut one takes well under a second), or none is triggered at all until then: the
        # JobManager creates each checkpoint's directory on S3 first (checked against the history read here)
        held = [c for c in _in_fault(checkpoints, inject_ms, heal_ms)
                if c["status"] == "FAILED" or c["trigger_timestamp"] + c["end_to_end_duration"] >= heal_ms - 1000]
        before = [c for c in checkpoints if c["trigger_timestamp"] < inject_ms]
        triggers = held_triggers(checkpoints, before, inject_ms, heal_ms, slow_ms=2000)
        assert held or triggers, checkpoints
    elif fault == "latency-s3":
        # every S3 request that crossed the route meanwhile paid 2 x 300 ms, and the gate behind it saw some
        # (a checkpoint's own duration is no proof: 1-5 s at rest on 2 cores)
        assert result.timeline[2].get("evidence", {}).get("requests_during_fault"), result.timeline[2]
    elif fault == "drops-kafka":
        assert reconnects > 0, "no connection of the job was dropped (it reconnected to none)"
