"""Shared pytest options and fixtures: the seed, real components, and cleanup that always runs."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from harness.components.database import Database
from harness.config import StackConfig, load_config
from harness.profiles import PROFILES, profile
from harness.rundir import RunDir
from harness.stack import Stack, StackPool


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed", type=int, default=None,
                     help="seed for every random choice (default: random, printed in the header)")
    parser.addoption("--profile", choices=list(PROFILES), default=os.environ.get("CDC_CHAOS_PROFILE", "ci"),
                     help="run profile of the chaos scenarios: ci (20 s at 100 changes/s, nightly-only scenarios "
                     "deselected unless named with -k), nightly, load")
    parser.addoption("--scenario-seconds", type=float,
                     default=float(os.environ["CDC_CHAOS_SCENARIO_SECONDS"])
                     if os.environ.get("CDC_CHAOS_SCENARIO_SECONDS") else None,
                     help="workload duration of each chaos scenario (default: the profile's)")
    parser.addoption("--scenario-rate", type=float,
                     default=float(os.environ["CDC_CHAOS_SCENARIO_RATE"])
                     if os.environ.get("CDC_CHAOS_SCENARIO_RATE") else None,
                     help="changes per second the workload applies in each scenario (default: the profile's)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under a profile without nightly-only scenarios (ci), leave them out, and the tests marked ``nightly``,
    unless the run names tests with ``-k`` (then the expression decides, so ``-k broker_leader_kill_3`` runs
    it)."""
    if profile(config.getoption("--profile")).nightly_only or config.getoption("keyword"):
        return
    keep, drop = [], []
    for item in items:
        scenario = getattr(item, "callspec", None) and item.callspec.params.get("scenario")
        nightly = getattr(scenario, "nightly_only", False) or item.get_closest_marker("nightly") is not None
        (drop if nightly else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_configure(config: pytest.Config) -> None:
    seed = config.getoption("--seed")
    if seed is None:
        # one seed for the session; xdist workers inherit it through the environment
        seed = int(os.environ.get("CDC_CHAOS_SEED") or random.randrange(1, 2**31))
        os.environ["CDC_CHAOS_SEED"] = str(seed)
    config.option.seed = seed


def pytest_report_header(config: pytest.Config) -> str:
    prof = profile(config.getoption("--profile"))
    return (f"cdc-chaos seed: {config.getoption('--seed')} (replay with --seed {config.getoption('--seed')}); "
            f"profile {prof.name}: {prof.what}")


@pytest.fixture(scope="session")
def seed(pytestconfig: pytest.Config) -> int:
    return int(pytestconfig.getoption("--seed"))


@pytest.fixture(scope="session")
def stack_config() -> StackConfig:
    return load_config()


@pytest.fixture(scope="session")
def stacks(stack_config: StackConfig) -> Iterator[StackPool]:
    """The real stacks of this xdist worker, one per configuration asked for, all torn down at the end."""
    pool = StackPool(stack_config, label=f"pytest-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def stack(stacks: StackPool) -> Stack:
    """The default stack of this worker (database, S3, Kafka, Connect, Flink)."""
    return stacks.get()


@contextmanager
def database_alone(config: StackConfig, label: str) -> Iterator[Database]:
    """A real database server alone (init.sql applied) in a run dir of its own, killed and removed after."""
    run = RunDir.create(label)
    db = Database(config, run, run.allocate_ports(Database.port_names(config)))
    try:
        db.up()
        yield db
    finally:
        db.kill()
        run.remove()


@pytest.fixture(scope="module")
def database(stack_config: StackConfig) -> Iterator[Database]:
    """A real database server alone, shared by a module's tests of the workload and the truth reader."""
    with database_alone(stack_config, "database") as db:
        yield db


@pytest.fixture
def own_database(stack_config: StackConfig) -> Iterator[Database]:
    """A server of one test alone (e.g. a binlog purge must not take files from the module's server)."""
    with database_alone(stack_config, "database-own") as db:
        yield db


@pytest.fixture
def run_dir() -> Iterator[RunDir]:
    """A run directory whose processes and files are removed after the test, pass or fail."""
    run = RunDir.create("test")
    try:
        yield run
    finally:
        run.remove()
