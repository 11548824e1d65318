"""The checker can fail: a clean lake passes, and each planted fault is reported as exactly its class.

The lake lives in a real MinIO (the S3 store the pipeline writes to), written in the lake's exact format
by the reference model from a seeded workload that crosses an hour boundary and has late events.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from harness.checker import ANOMALY_CLASSES, ExactlyOnceChecker
from harness.components.s3 import ObjectStore
from harness.config import StackConfig
from harness.lake import LakeReader, s3_filesystem
from harness.model import reference_job, simulate_database, write_lake
from harness.rundir import RunDir
from harness.truth import GroundTruth
from harness.workload import Workload, WorkloadConfig, generate
from tests.lake_mutations import MUTATIONS, LakeUnderTest, describe

# 30 s of virtual time starting 20 s before a full hour: the run crosses an hour boundary
ANCHOR_MS = 1_767_229_180_000  # 2026-01-01T00:59:40Z


@pytest.fixture(scope="module")
def object_store(stack_config: StackConfig) -> Iterator[ObjectStore]:
    run = RunDir.create("checker")
    store = ObjectStore(stack_config, run, run.allocate_ports(ObjectStore.port_names(stack_config)))
    try:
        store.up()
        yield store
    finally:
        store.kill()
        run.remove()


@pytest.fixture(scope="module")
def clean_run(seed: int) -> tuple[Workload, GroundTruth, list[dict]]:
    workload = generate(WorkloadConfig(seed=seed, duration_s=30, rate=100, anchor_ms=ANCHOR_MS, warmup_s=3,
                                       late_fraction=0.05, rollback_fraction=0.05))
    truth = simulate_database(workload)
    return workload, truth, reference_job(truth.changes.to_pylist())


def _lake(store: ObjectStore, prefix: str, clean_run: tuple, seed: int) -> LakeUnderTest:
    workload, _truth, rows = clean_run
    fs = s3_filesystem(**{k: v for k, v in store.endpoints().items() if k in ("endpoint", "access_key",
                                                                               "secret_key", "region")})
    root = f"{store.config.s3.bucket}/{prefix}"
    write_lake(rows, fs, root, rows_per_file=300)
    return LakeUnderTest(fs, root, workload, random.Random(seed))


def _check(lake: LakeUnderTest, truth: GroundTruth):
    return ExactlyOnceChecker().check(truth, LakeReader(lake.fs, lake.root).snapshot())


def test_clean_lake_passes(object_store: ObjectStore, clean_run: tuple, seed: int) -> None:
    lake = _lake(object_store, "clean", clean_run, seed)
    verdict = _check(lake, clean_run[1])
    assert verdict.clean, verdict.summary()
    assert verdict.counts["lake_rows_late"] > 0, "the clean run must exercise late routing"
    assert verdict.counts["partitions"] >= 3, "the clean run must span several partitions"
    assert set(verdict.to_dict()["anomalies"]) == set(ANOMALY_CLASSES)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutation_is_convicted_as_exactly_its_class(object_store: ObjectStore, clean_run: tuple, seed: int,
                                                    mutation: str) -> None:
    apply, expected = MUTATIONS[mutation]
    lake = _lake(object_store, f"mut-{mutation}", clean_run, seed)
    what = apply(lake)
    verdict = _check(lake, clean_run[1])
    assert verdict.found() == {expected}, describe(verdict.found(), expected, what, verdict)
    assert verdict.verdict == "ANOMALIES"
    assert verdict.anomalies[expected]["examples"], "a conviction must show an example"
