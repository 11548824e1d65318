"""The benchmarks' own rules, without a stack: which stage a stepped load names as the bottleneck, the job
state backends, and materialising an older revision's job from git."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from benchmarks.baseline import BaselineError, baseline_job
from benchmarks.bench_e2e import Sample, StepResult, Txn, judge_step, lag_slope, lake_rate
from benchmarks.bench_job import comparison
from flink_job.sql import JobConfig, table_config


def _step(offered: float, commit: float, publish: float, consume: float, lake: float, lag: int = 0,
          p99: int | None = 2500, not_visible: int = 0) -> StepResult:
    return StepResult(offered=offered, seconds=60, rates={"commit": commit, "publish": publish, "consume": consume,
                                                          "lake": lake},
                      lag_end=lag, freshness_ms={"p99": p99} if p99 is not None else {"count": 0},
                      not_visible=not_visible, drain_s=1, cpu={}, rss={}, checkpoints={})


@pytest.mark.parametrize(("step", "bottleneck"), [
    (_step(1000, 1000, 1010, 990, 995), None),
    (_step(5000, 3000, 3000, 3000, 3000), "database/load driver"),
    (_step(5000, 5000, 4000, 4000, 4000), "Debezium (Kafka Connect)"),
    (_step(5000, 5000, 5000, 3000, 3000), "Flink job (reading)"),
    (_step(5000, 5000, 5000, 5000, 4000), "Flink job (writing/committing)"),
    # the topic's records (tombstones, heartbeats) outnumber the changes; the lake's rows are changes
    (_step(5000, 5000, 5500, 5500, 4990), None),
    (_step(5000, 5000, 5000, 5000, 5000, lag=40_000), "Flink job (reading)"),
    (_step(5000, 5000, 5000, 5000, 5000, p99=9000), "Flink job (committing)"),
    (_step(5000, 5000, 5000, 5000, 5000, not_visible=3), "Flink job (committing)"),
])
def test_first_stage_behind_is_the_bottleneck(step: StepResult, bottleneck: str | None) -> None:
    judge_step(step, checkpoint_ms=3000)
    assert step.sustained == (bottleneck is None)
    assert step.bottleneck == bottleneck


def _txns(rate: float, seconds: float, delay_ms: Callable[[float], float]) -> tuple[list[Txn], dict[str, int]]:
    """Transactions of 100 changes at ``rate`` changes/s, each visible ``delay_ms(t)`` after its commit, in whole
    checkpoints of 3 s (the lake's own granularity)."""
    txns, visible = [], {}
    for i in range(int(rate * seconds / 100)):
        commit = 1_000_000 + int(i * 100 / rate * 1000)
        txns.append(Txn(f"g{i}", 100, commit))
        visible[f"g{i}"] = (int(commit + delay_ms(commit - 1_000_000)) // 3000 + 1) * 3000
    return txns, visible


@pytest.mark.parametrize(("delay", "expected"), [
    (lambda t: 1500.0, 5000),                # keeps up: the same delay all through the step
    (lambda t: 1500.0 + t * 0.25, 4000),     # the delay grows 0.25 s a second: 5000 / 1.25 in the lake
    (lambda t: 1500.0 + t, 2500),            # half the input rate
])
def test_lake_rate_follows_the_delay_not_the_checkpoint_boundaries(delay: Callable[[float], float],
                                                                   expected: float) -> None:
    txns, visible = _txns(5000, 60, delay)
    rate = lake_rate(txns, lambda t: visible.get(t.gtid or ""), until_ms=10**12)
    assert abs(rate - expected) < 0.03 * expected, rate


def test_lake_rate_counts_a_transaction_never_seen_at_the_end_of_the_wait() -> None:
    txns, visible = _txns(5000, 60, lambda t: 1500.0)
    for t in txns[-len(txns) // 5:]:
        del visible[t.gtid or ""]
    until = txns[-1].commit_ms + 90_000
    assert lake_rate(txns, lambda t: visible.get(t.gtid or ""), until_ms=until) < 0.5 * 5000


@pytest.mark.parametrize(("consumed_per_s", "slope"), [(5000, 0), (4000, 1000)])
def test_lag_slope_sees_through_the_checkpoint_sawtooth(consumed_per_s: int, slope: int) -> None:
    """5,000 records/s published; the job commits its offsets every 3.6 s (a checkpoint), so the lag is a
    sawtooth up to 18,000 records: its slope is 0 when the reader keeps up, 1,000/s when it reads 4,000/s."""
    samples = []
    for t in range(61):
        read = consumed_per_s * t
        committed = min(read, 5000 * t)
        samples.append(Sample(t * 1000, 5000 * t, int(committed - committed % (consumed_per_s * 3.6))))
    got = lag_slope(samples, 0, 60_000)
    assert got is not None and abs(got - slope) < 0.03 * 5000, got


def test_state_backends() -> None:
    cfg = JobConfig(bootstrap="b:1", lake_root="s3://lake/x", state_backend="rocksdb")
    assert table_config(cfg)["state.backend.type"] == "rocksdb"
    assert table_config(cfg)["execution.checkpointing.incremental"] == "true"
    assert table_config(JobConfig(bootstrap="b:1", lake_root="s3://l", state_backend="hashmap"))[
        "state.backend.type"] == "hashmap"
    assert JobConfig(bootstrap="b:1", lake_root="s3://l").state_backend == "rocksdb"   # the default: see sql.py
    with pytest.raises(ValueError, match="unknown state backend"):
        JobConfig(bootstrap="b:1", lake_root="s3://l", state_backend="memory")


def test_baseline_job_is_that_revisions_code() -> None:
    """The job of a revision, from git, plans with that revision's own JobConfig (here HEAD: a clone may be
    shallow, and the mechanism is the same for any revision)."""
    with baseline_job("HEAD") as old:
        root = old.code_root
        cfg = old.config(JobConfig(bootstrap="b:1", lake_root="s3://lake/p", startup_mode="specific-offsets",
                                   startup_offsets=((0, 5), (1, 7))))
        assert cfg["startup_offsets"] == [[0, 5], [1, 7]] and "baseline HEAD" in cfg["job_name"]
        code = ("import json, sys; from flink_job.sql import JobConfig, statements; "
                "c = JobConfig.from_dict(json.loads(sys.argv[1])); statements(c); "
                "print(__import__('flink_job').__file__)")
        res = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], env={"PYTHONPATH": str(root)}, cwd=root,
                             capture_output=True, text=True, check=True)
        assert res.stdout.strip().startswith(str(root))
    assert not root.exists()   # removed afterwards
    with pytest.raises(BaselineError, match="not in this clone"), baseline_job("no-such-revision-xyz"):
        pass


def test_recovery_bench_stack_options_are_typed_config_overrides() -> None:
    from benchmarks.e2e import stack_overrides
    from harness.config import load_config

    over = stack_overrides(["flink.heartbeat_interval_ms=250", "flink.taskmanager_warmup=false"])
    assert over == {"flink": {"heartbeat_interval_ms": 250, "taskmanager_warmup": False}}
    config = load_config().with_overrides(**over)
    assert config.flink.heartbeat_interval_ms == 250 and config.flink.taskmanager_warmup is False
    with pytest.raises(SystemExit, match=r"SECTION\.KEY=VALUE"):
        stack_overrides(["heartbeat_interval_ms=250"])


def test_key_value_options_are_parsed_and_a_malformed_one_is_named() -> None:
    from benchmarks.e2e import key_values

    assert key_values(["a.b=1", "c=x=y"], "--flink-option") == {"a.b": "1", "c": "x=y"}
    with pytest.raises(SystemExit, match=r"--job-option 'restart-strategy': use KEY=VALUE"):
        key_values(["restart-strategy"], "--job-option")


def test_freshness_is_compared_with_the_baseline_in_the_same_state() -> None:
    """A fresh job against the fresh baseline, a job with a backlog's state against the baseline with the same:
    never across (a fresh job beside a loaded baseline would flatter it)."""
    def run(job: str, backlog: int, p99: int) -> dict[str, object]:
        return {"job": job, "backlog_changes": backlog, "freshness_ms": {"count": 10, "p99": p99}}

    lines = comparison({"freshness_runs": [run("current", 0, 4200), run("baseline x", 0, 3700),
                                           run("current", 600, 4300), run("baseline x", 600, 7600)]})
    assert lines == ["compared freshness p99, fresh jobs: current 4200 ms vs baseline x 3700 ms (500 ms worse)",
                     "compared freshness p99, after a backlog of 600 changes: current 4300 ms vs baseline x 7600 ms "
                     "(no worse)"]
