"""The workload is reproducible from its seed, and the ground truth read from a real MariaDB (binlog +
final table) agrees with the client's history: committed changes present, rolled-back ones absent."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from harness import truth
from harness.components.database import Database
from harness.config import StackConfig
from harness.model import simulate_database
from harness.rundir import RunDir
from harness.workload import WorkloadClient, WorkloadConfig, generate, summarize


def test_same_seed_same_operations(seed: int) -> None:
    cfg = WorkloadConfig(seed=seed, duration_s=5, rate=200, anchor_ms=1_767_225_600_000, txn_size=3)
    a, b = generate(cfg), generate(cfg)
    assert [dataclasses.asdict(o) for o in a.operations] == [dataclasses.asdict(o) for o in b.operations]
    assert a.customers == b.customers
    c = generate(dataclasses.replace(cfg, seed=seed + 1))
    assert [o.values for o in c.operations] != [o.values for o in a.operations]


def test_event_time_classes(seed: int) -> None:
    cfg = WorkloadConfig(seed=seed, duration_s=20, rate=100, anchor_ms=1_767_225_600_000, warmup_s=5,
                         late_fraction=0.05)
    w = generate(cfg)
    for op in w.operations:
        nominal = w.anchor_ms + int(op.at_s * 1000)
        if op.event_class == "late":
            assert op.at_s >= cfg.warmup_s and nominal - op.event_time_ms >= cfg.late_min_ms
        elif op.event_class == "out_of_order":
            assert 0 <= nominal - op.event_time_ms < cfg.out_of_order_max_ms
    classes = {op.event_class for op in w.operations}
    assert classes == {"on_time", "out_of_order", "late"}


def test_day_boundary_crossing(seed: int) -> None:
    # anchor 10 s before midnight UTC: on-time events land on both days
    w = generate(WorkloadConfig(seed=seed, duration_s=20, rate=20, anchor_ms=1_767_311_990_000, late_fraction=0))
    days = {__import__("harness.lake_schema", fromlist=["x"]).partition_of(o.event_time_ms)[0] for o in w.operations}
    assert len(days) == 2


@pytest.fixture(scope="module")
def database(stack_config: StackConfig) -> Iterator[Database]:
    run = RunDir.create("truth")
    db = Database(stack_config, run, run.allocate_ports(Database.port_names(stack_config)))
    try:
        db.up()
        yield db
    finally:
        db.kill()
        run.remove()


def test_history_and_binlog_agree_on_real_database(database: Database, seed: int) -> None:
    cfg = WorkloadConfig(seed=seed, duration_s=4, rate=150, concurrency=3, txn_size=2, rollback_fraction=0.1,
                         warmup_s=1, first_order_id=1)
    workload = generate(cfg)
    client = WorkloadClient(workload, database.connect, "inventory")
    client.seed_customers()
    history = client.run()
    stats = summarize(history)
    assert stats["transactions"].get("ok", 0) > 0 and stats["transactions"].get("rolled_back", 0) > 0
    gt = truth.collect(database.endpoints(), history)
    assert not gt.history_anomalies["HISTORY_OK_NOT_COMMITTED"]
    assert not gt.history_anomalies["HISTORY_FAILED_BUT_COMMITTED"]
    # the binlog holds exactly the changes the in-memory model of the same workload commits
    model = simulate_database(workload)
    key = ("order_id", "version", "is_delete")
    real = sorted(tuple(r[k] for k in key) for r in gt.changes.select(list(key)).to_pylist())
    expected = sorted(tuple(r[k] for k in key) for r in model.changes.select(list(key)).to_pylist())
    assert real == expected
    assert gt.final_state.sort_by("order_id").to_pylist() == model.final_state.sort_by("order_id").to_pylist()
    rolled_back = {(o.order_id, o.version) for o in workload.operations if o.rollback and o.kind == "insert"}
    assert rolled_back and not rolled_back & {(r[0], r[1]) for r in real}


def test_history_cross_check_convicts_a_lying_history(database: Database, seed: int) -> None:
    """Break the history on purpose: an 'ok' that never committed and a 'fail' that did are both named."""
    workload = generate(WorkloadConfig(seed=seed, duration_s=2, rate=100, rollback_fraction=0.2, warmup_s=1,
                                       first_order_id=50_000_001))
    client = WorkloadClient(workload, database.connect, "inventory")
    history = client.run()
    start = None  # whole binlog: earlier tests' changes are committed too, which is harmless here
    gt = truth.collect(database.endpoints(), history, start=start)
    changes = gt.changes.to_pylist()
    assert not truth.cross_check_history(changes, history)["HISTORY_OK_NOT_COMMITTED"]
    rolled = next(e for e in history.entries if e.outcome == "rolled_back" and any(r > 0 for r in e.rowcounts)
                  and all(workload.operations[i].kind != "delete" for i in e.op_indexes))
    committed = next(e for e in history.entries if e.outcome == "ok" and all(r > 0 for r in e.rowcounts)
                     and all(workload.operations[i].kind != "delete" for i in e.op_indexes))
    rolled.outcome, committed.outcome = "ok", "fail"
    found = truth.cross_check_history(changes, history)
    assert {x["txn"] for x in found["HISTORY_OK_NOT_COMMITTED"]} == {rolled.txn}
    assert {x["txn"] for x in found["HISTORY_FAILED_BUT_COMMITTED"]} == {committed.txn}
