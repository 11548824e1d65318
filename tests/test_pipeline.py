"""The Flink job on the real stack: dead letters, duplicate messages, cancel + resume from the latest
retained checkpoint, and the lake's documented schema.  Each test is a full run judged by the checker."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import os
import random
import time
from typing import Any

import psutil
import pyarrow.parquet as pq
import pytest

from flink_job.sql import JobConfig, statements
from harness import kafka_client
from harness.config import REPO_ROOT, load_config
from harness.install.flink import ensure_flink
from harness.lake import LakeReader
from harness.lake_schema import CHANGE_SCHEMA
from harness.nemesis import Nemesis, Recovery, Schedule, TaskManagerKill
from harness.pipeline import JobError, JobPlanner, Pipeline
from harness.result import RunResult
from harness.rundir import RunDir
from harness.runner import RunSpec, allocate_order_ids, run
from harness.stack import Stack
from harness.workload import Workload

_INDEX = itertools.count(100)
HOUR_MS = 3_600_000
MALFORMED = [b"{not json", b'{"unrelated": true}', b"\xff\xfe garbage"]


class InjectRecords(Nemesis):
    """Write malformed records, and a second copy of recent Debezium messages, straight into the topic."""

    name = "inject-records"

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        topic, bootstrap = stack.config.kafka.topic, stack.kafka.bootstrap
        ends = kafka_client.end_offsets(bootstrap, topic)
        start = {p: max(0, e - 200) for p, e in ends.items()}
        recent = [r for r in kafka_client.read_range(bootstrap, topic, start, ends)
                  if r.value and json.loads(r.value)["source"]["table"] == "orders"][-10:]
        kafka_client.produce(bootstrap, topic, [(r.key, r.value) for r in recent])
        kafka_client.produce(bootstrap, topic, [(b'{"order_id": 1}', m) for m in MALFORMED])
        self.duplicated = len(recent)
        return {"duplicated": self.duplicated, "malformed": len(MALFORMED)}

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        return {}


class CancelAndResume(Nemesis):
    """Cancel the job mid-stream, then resume it from the latest retained checkpoint."""

    name = "cancel-resume"

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def inject(self, stack: Stack, rng: random.Random) -> dict[str, Any]:
        job = self.pipeline.current_job_id
        self.pipeline.cancel(job)
        return {"cancelled": job}

    def heal(self, stack: Stack, recovery: Recovery | None) -> dict[str, Any]:
        path = self.pipeline.latest_retained_checkpoint()
        job = self.pipeline.resume_latest()
        return {"resumed": job, "from": path}


def test_dead_letters_and_duplicate_messages(stack: Stack, seed: int) -> None:
    stack.heal()
    injector = InjectRecords()
    spec = RunSpec(name="pipeline-dlq-dup", seed=seed, duration_s=12, rate=80,
                   schedule=lambda rng, d: Schedule.fixed(injector, 6, 1))
    result = run(stack, spec, index=next(_INDEX))
    verdict = result.verdict
    assert verdict.clean, result.summary          # duplicates removed, nothing lost
    assert injector.duplicated > 0
    assert verdict.counts["lake_rows_dlq"] == len(MALFORMED), result.summary
    assert result.stats.job["state"] == "RUNNING" and result.stats.job["restarts"] in (0, None)
    dlq = LakeReader.for_s3(stack.s3.endpoints(), result.lake_prefix).snapshot().dlq.to_pylist()
    reasons = sorted(r["reason"] for r in dlq)
    assert reasons == ["not a Debezium change event", "not valid JSON", "not valid JSON"], reasons
    assert {r["raw"] for r in dlq} >= {b"{not json", b"\xff\xfe garbage"}


def test_cancel_and_resume_from_latest_checkpoint(stack: Stack, seed: int) -> None:
    stack.heal()
    pipeline = Pipeline(stack)
    spec = RunSpec(name="pipeline-cancel-resume", seed=seed, duration_s=16, rate=80,
                   schedule=lambda rng, d: Schedule.fixed(CancelAndResume(pipeline), 6, 2))
    result = run(stack, spec, index=next(_INDEX), pipeline=pipeline)
    assert result.clean, result.summary + json.dumps(result.to_dict()["timeline"], default=str)
    resumed = result.phases("heal")
    assert resumed and resumed[0].get("from") and "chk-" in resumed[0].get("from"), result.timeline
    assert len(pipeline.submissions) == 2 and pipeline.submissions[1]["restore"]
    # what the job read, from the TaskManagers' own metrics endpoints: both jobs' readers were found there
    rates = result.stats.consumption
    assert rates and max(r for _, r in rates) > 0, rates
    assert any(r > 0 for _, r in rates[len(rates) // 2:]), f"nothing read in the run's second half: {rates}"


def test_a_job_without_taskmanagers_waits_for_one_instead_of_failing(stack: Stack, seed: int) -> None:
    """Both TaskManagers killed on a cluster past its start-up period: the job's restart waits for a slot
    (``resourcemanager.standalone.start-up-time: 0 ms``) instead of failing every attempt for want of one, as a
    standalone cluster does by default once its first ``slot.request.timeout`` is over (a crash loop through
    the restart back-off, and a restart up to a back-off after the TaskManagers were back)."""
    stack.heal()
    jobmanager = stack["flink"].processes["jobmanager"].pid
    assert jobmanager is not None
    # the default's start-up period is slot.request.timeout (the stack's: 60 s) from the JobManager's start
    time.sleep(max(0.0, 62 - (time.time() - psutil.Process(jobmanager).create_time())))
    pipeline = Pipeline(stack)
    spec = RunSpec(name="pipeline-no-taskmanagers", seed=seed, duration_s=16, rate=60,
                   schedule=lambda rng, d: Schedule.fixed(TaskManagerKill(all_members=True), 4, 4))
    result = run(stack, spec, index=next(_INDEX), pipeline=pipeline)
    assert result.clean, result.summary
    assert pipeline.current_job_id is not None
    failures = pipeline.exception_history(pipeline.current_job_id)
    # (a failure for want of slots is a CompletionException whose stack trace names the cause)
    entries = [e for f in failures for e in (f, *f.get("concurrentExceptions", []))]
    starved = [e.get("stacktrace", "")[:300] for e in entries if "NoResourceAvailableException" in
               e.get("exceptionName", "") + e.get("stacktrace", "")]
    assert failures, "the kill of both TaskManagers should have failed the job over once"
    assert not starved, f"{len(starved)} restarts failed for want of a slot: {starved[0]}"


def test_lake_files_have_the_documented_schema(stack: Stack, seed: int) -> None:
    stack.heal()
    result = run(stack, RunSpec(name="pipeline-schema", seed=seed, duration_s=8, rate=60), index=next(_INDEX))
    assert result.clean, result.summary
    reader = LakeReader.for_s3(stack.s3.endpoints(), result.lake_prefix)
    files = [f for f in reader.list_files() if f.kind == "data" and f.table == "orders"]
    assert files
    with reader.fs.open_input_file(files[0].path) as fh:
        schema = pq.read_schema(fh)
    assert schema.names == CHANGE_SCHEMA.names   # dt/hr live in the path only
    for f in files:
        assert f.dt and f.hr and len(f.dt) == 10 and len(f.hr) == 2


def test_hour_boundary_gives_two_partitions_each_with_success(stack: Stack, seed: int) -> None:
    """Changes crossing an hour boundary land in two hour partitions; once the watermark passes both hours,
    each has its _SUCCESS marker.  Commit times are the database's clock, so this writer moves its sessions'
    clock (SET TIMESTAMP) to the next hour boundary; only orders (and ticks) are written that way."""
    stack.heal()
    pushed: dict[str, int] = {}
    boundary_ms = (int(time.time()) // 3600 + 2) * HOUR_MS   # at least an hour ahead, whenever the test runs

    def write_across_boundary(stack: Stack, workload: Workload) -> None:
        first = allocate_order_ids(stack, 1001)
        with stack.database.connect() as conn, conn.cursor() as cur:
            for i, at_ms in enumerate(range(boundary_ms - 10_000, boundary_ms + 10_000, 500)):
                cur.execute("SET TIMESTAMP = %s", (at_ms / 1000,))
                cur.execute("INSERT INTO orders (order_id, customer_id, product, quantity, unit_price, status, "
                            "event_time) VALUES (%s, 1, 'across the hour', 1, 1.00, 'paid', FROM_UNIXTIME(%s))",
                            (first + i, at_ms / 1000))
                conn.commit()
            # one change two hours on: the watermark passes the end of both hours written above
            at_ms = boundary_ms + 2 * HOUR_MS
            cur.execute("SET TIMESTAMP = %s", (at_ms / 1000,))
            cur.execute("INSERT INTO orders (order_id, customer_id, product, quantity, unit_price, status, "
                        "event_time) VALUES (%s, 1, 'watermark push', 1, 1.00, 'paid', FROM_UNIXTIME(%s))",
                        (first + 1000, at_ms / 1000))
            # ... and into every partition (the heartbeat rows' keys cover them) a little later, since Flink's
            # watermark is the least over the partitions, a second behind their newest commit time, and the
            # database's own tick runs on the real clock, an hour behind
            cur.execute("SET TIMESTAMP = %s", (at_ms / 1000 + 3,))
            cur.execute("UPDATE cdc_heartbeat SET beat_at = NOW(6)")
            conn.commit()
        pushed.update(at_ms=at_ms)

    spec = RunSpec(name="pipeline-hour-boundary", seed=seed, duration_s=2, rate=20, finale=write_across_boundary,
                   workload={"late_fraction": 0.0, "customer_fraction": 0.0})
    result = run(stack, spec, index=next(_INDEX))
    assert result.clean, result.summary
    lake = LakeReader.for_s3(stack.s3.endpoints(), result.lake_prefix).snapshot()

    def hour(ms: int) -> tuple[str, str]:
        t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
        return t.strftime("%Y-%m-%d"), t.strftime("%H")

    before, after = hour(boundary_ms - 1), hour(boundary_ms)
    partitions = {(d, h) for table, d, h in lake.data_partitions if table == "orders"}
    assert {before, after, hour(pushed["at_ms"])} <= partitions, partitions
    assert ("orders", *before) in lake.success_markers and ("orders", *after) in lake.success_markers, \
        sorted(lake.success_markers)
    # the pushed change's own hour is not yet passed by the watermark: no marker there
    assert ("orders", *hour(pushed["at_ms"])) not in lake.success_markers


def _held_transactions(stack: Stack, placed: dict[str, Any]) -> Any:
    """A finale writing two interleavings where binlog timestamps and commit order disagree, as a slow
    application transaction makes them (a statement's timestamp is when it began, in whole seconds):

    1. a customers change begins, an order of that customer is written 1.2 s later and commits, the customers
       change commits 0.2 s after it: the order saw the customer as it was before, though the customers
       change has the earlier timestamp;
    2. an order begins, a customers change of its customer commits 1.5 s later, the order commits after it:
       the order saw the new customer row, though its own timestamp is the earlier one.

    Both gaps are shorter than any watermark bound, so a job joining by timestamp takes the wrong version."""

    def finale(stack: Stack, workload: Workload) -> None:
        first = allocate_order_ids(stack, 2)
        insert = ("INSERT INTO orders (order_id, customer_id, product, quantity, unit_price, status, event_time) "
                  "VALUES (%s, %s, 'held', 1, 1.00, 'paid', NOW(3))")
        with stack.database.connect() as a, stack.database.connect() as b, a.cursor() as ca, b.cursor() as cb:
            ca.execute("SELECT customer_id, region FROM customers WHERE customer_id IN (150, 151) ORDER BY 1")
            before = dict(ca.fetchall())
            a.commit()
            new = {cid: "LATAM" if region != "LATAM" else "APAC" for cid, region in before.items()}
            # 1: the customers change begins first and commits last
            ca.execute("UPDATE customers SET region = %s WHERE customer_id = 150", (new[150],))
            time.sleep(1.2)
            cb.execute(insert, (first, 150))
            b.commit()
            time.sleep(0.2)
            a.commit()
            # 2: the order begins first and commits last
            ca.execute(insert, (first + 1, 151))
            time.sleep(1.5)
            cb.execute("UPDATE customers SET region = %s WHERE customer_id = 151", (new[151],))
            b.commit()
            time.sleep(1.5)
            a.commit()
        placed.update({first: before[150], first + 1: new[151]})

    return finale


def _lake_regions(stack: Stack, result: RunResult, order_ids: list[int]) -> dict[int, str | None]:
    lake = LakeReader.for_s3(stack.s3.endpoints(), result.lake_prefix).snapshot()
    rows = lake.changes().select(["order_id", "customer_region"]).to_pylist()
    return {r["order_id"]: r["customer_region"] for r in rows if r["order_id"] in order_ids}


def test_enrichment_is_the_customer_row_the_order_commit_saw(stack: Stack, seed: int) -> None:
    """Each order change carries the customers row committed before it in the binlog, whatever the
    timestamps say; the checker judges the same independently (CLEAN), and a job that joins by timestamp (the
    previous design) is convicted on exactly these two orders."""
    stack.heal()
    placed: dict[int, str] = {}
    spec = RunSpec(name="pipeline-held-txns", seed=seed, duration_s=2, rate=20,
                   finale=_held_transactions(stack, placed), workload={"customer_fraction": 0.0})
    result = run(stack, spec, index=next(_INDEX))
    assert result.clean, result.summary
    assert _lake_regions(stack, result, list(placed)) == placed

    placed.clear()
    spec = RunSpec(name="pipeline-held-txns-by-timestamp", seed=seed, duration_s=2, rate=20,
                   finale=_held_transactions(stack, placed), workload={"customer_fraction": 0.0},
                   job_variant="timestamp_enrichment")
    result = run(stack, spec, index=next(_INDEX))
    wrong = result.verdict.anomalies["ENRICHMENT_WRONG"]
    assert result.found() == {"ENRICHMENT_WRONG"}, result.summary
    # convicted on the held orders and nothing else; usually both, but under the suite's load one interleaving
    # can come out right for the known-bad job too (seen once: only the second), so not necessarily both
    assert {e["order_id"] for e in wrong["examples"]} <= set(placed), wrong


def test_job_planner_answers_a_failed_submission_and_leaves_nothing_behind(run_dir: RunDir) -> None:
    """The long-lived planner (a real PyFlink gateway JVM): a submission that fails once the JVM is up (a job
    asking for specific offsets without giving any) is an error answered to the caller, the planner stays up for
    the next one, and closing it ends the planner and its JVM."""
    env = {**os.environ, "FLINK_HOME": str(ensure_flink(load_config())), "PYTHONPATH": str(REPO_ROOT)}
    planner = JobPlanner(env, run_dir.path / "job-planner.log")
    cfg = JobConfig(bootstrap="127.0.0.1:1", lake_root="s3://lake/planner-test", startup_mode="specific-offsets")
    request = {"config": dataclasses.asdict(cfg), "rest": "127.0.0.1:1", "restore": None,
               "checkpoint_dir": "s3://lake/checkpoints/planner-test"}
    try:
        for _ in range(2):   # the second answer proves the planner survived the first failure
            with pytest.raises(JobError, match="specific-offsets"):
                planner.submit(request, timeout=180)
        family = [planner.proc.pid] + [c.pid for c in psutil.Process(planner.proc.pid).children(recursive=True)]
        assert len(family) >= 2, "the planner should have started PyFlink's gateway JVM"
    finally:
        planner.close()
    deadline = time.monotonic() + 15
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in family):
        assert time.monotonic() < deadline, "the planner or its JVM outlived close()"
        time.sleep(0.2)


def test_the_job_reads_the_topic_once_and_writes_only_its_range() -> None:
    """The plan's shape (no cluster): one reader from the topic's start feeds orders and dimension, the orders
    kept from the job's start offsets on; a start mode other than those two is an error naming them; the late
    table commits no partitions (no _SUCCESS)."""
    offsets = ((0, 5), (2, 9))
    cfg = JobConfig(bootstrap="b:1", lake_root="s3://l/p", startup_mode="specific-offsets", startup_offsets=offsets)
    ddl = "\n".join(statements(cfg).ddl)
    assert "CREATE TABLE cdc_dim" not in ddl and "FROM cdc_typed\n            WHERE source.`table` = 'customers'" in ddl
    typed = next(d for d in statements(cfg).ddl if d.startswith("CREATE TABLE cdc_typed"))
    assert "'scan.startup.mode' = 'earliest-offset'" in typed and "specific-offsets" not in typed
    assert "CASE kafka_partition WHEN 0 THEN kafka_offset >= 5 WHEN 2 THEN kafka_offset >= 9 ELSE TRUE END" in ddl
    late = next(d for d in statements(cfg).ddl if d.startswith("CREATE TABLE lake_orders_late"))
    assert "partition-commit" not in late
    # a commit-time clock keeps a dimension reader of its own, and its orders' reader starts at the offsets
    old = "\n".join(statements(dataclasses.replace(cfg, variant="timestamp_enrichment")).ddl)
    assert "CREATE TABLE cdc_dim" in old and "partition:0,offset:5;partition:2,offset:9" in old
    with pytest.raises(ValueError, match=r"earliest-offset.*specific-offsets"):
        JobConfig(bootstrap="b:1", lake_root="s3://l/p", startup_mode="latest-offset")
