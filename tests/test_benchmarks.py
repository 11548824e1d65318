"""The benchmarks' own rules, without a stack: which stage a stepped load names as the bottleneck, the job
state backends, and materialising an older revision's job from git."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.baseline import BaselineError, baseline_job
from benchmarks.bench_e2e import StepResult, judge_step
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
    (_step(5000, 5000, 5000, 5000, 5000, lag=40_000), "Flink job (reading)"),
    (_step(5000, 5000, 5000, 5000, 5000, p99=9000), "Flink job (committing)"),
    (_step(5000, 5000, 5000, 5000, 5000, not_visible=3), "Flink job (committing)"),
])
def test_first_stage_behind_is_the_bottleneck(step: StepResult, bottleneck: str | None) -> None:
    judge_step(step, checkpoint_ms=3000)
    assert step.sustained == (bottleneck is None)
    assert step.bottleneck == bottleneck


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
    from benchmarks.bench_recovery import stack_overrides
    from harness.config import load_config

    over = stack_overrides(["flink.heartbeat_interval_ms=250", "flink.taskmanager_warmup=false"])
    assert over == {"flink": {"heartbeat_interval_ms": 250, "taskmanager_warmup": False}}
    config = load_config().with_overrides(**over)
    assert config.flink.heartbeat_interval_ms == 250 and config.flink.taskmanager_warmup is False
    with pytest.raises(SystemExit, match=r"SECTION\.KEY=VALUE"):
        stack_overrides(["heartbeat_interval_ms=250"])
