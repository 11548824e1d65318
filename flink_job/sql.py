"""The pipeline as Flink SQL: Debezium envelopes from Kafka -> routed, deduplicated, enriched, partitioned
Parquet in the lake.  Every operator runs in the JVM (no Python UDF on the hot path).

Data flow::

    orders_cdc --json, from the earliest offset--> cdc_typed                (Flink time: the log clock)
        -> the job's range (from its start offsets on)
        -> routed     (routing watermark: a running max in checkpointed state, one global operator)
        -> changes    (orders rows only, valid envelopes; the heartbeat table's rows ride along as ticks)
        -> deduped    (first row wins per change identity, TTL)
        -> enriched   (event-time temporal join on the log clock with the customers dimension)
        -> restamped  (the change of clocks: Flink time becomes the commit time, ticks dropped after it)
        -> on time: lake_orders / late: lake_orders_late, partitioned dt/hr by event time
    cdc_typed, customers rows of the whole topic --> customers_versions    (versioned view, log clock)
    orders_cdc --raw--> cdc_raw --(not JSON)--> lake_dlq  <--(JSON but not a valid envelope)-- restamped

One reader parses the topic for both the orders and the dimension: the dimension needs every customers change
from the topic's start, the orders only those from the job's start offsets on (a filter on each record's
partition and offset; a second reader parsed every record once more, a fifth of the job's CPU).  A record in
the job's range that is JSON but no valid envelope leaves the reader as a dead letter, joins the orders' rows after the
join (UNION ALL) and crosses the change of clocks with them: the DataStream conversion is planned apart from
the statement set, so a dead-letter branch of its own would be a fourth reader of the topic (parsing every
record once more).  Dead letters sit at commit time 0 and never move that clock.

**Change identity.**  A change is where it sits in the source log: ``(source.file, source.pos, source.row,
op)``.  Debezium's MySQL/MariaDB connectors set ``pos`` to the position of the rows event itself and ``row``
to the 0-based index of the row inside it, and a re-send after a Connect crash carries the same values (the
connector restarts from a stored offset and skips the events and rows it already sent).  A primary-key update
arrives as ``d`` + ``c`` with the same coordinates, hence ``op`` in the key.  No application column takes
part: ``version`` is an ordinary column writers may or may not bump.  Edge cases:

- a statement whose rows do not fit one rows event (``binlog_row_event_max_size``) is split over several
  events: ``row`` restarts at 0 but ``pos`` differs, so identities stay distinct;
- binlog rotation: a transaction never spans two files, and ``file`` is part of the identity;
- ``RESET MASTER`` reuses file names (``binlog.000001`` again): identities of the old and new log collide
  within the dedup TTL.  Do not reset the binlog under a running pipeline (re-snapshot instead);
- MariaDB >= 11.4 writes ``end_log_pos = 0`` inside transactions unless ``binlog_legacy_event_pos=ON``, and
  then every row of a transaction shares one ``pos`` (DBZ-8755); 10.11, used here, is not affected and the
  option does not exist there.  On 11.4+ turn that option on, or rows of one transaction collide;
- snapshot rows (``op = r``) all carry the consistent point's file and position and ``row = 0``; their
  identity adds the primary key.  A re-snapshot has a new consistent point, so each completed snapshot is a
  separate *epoch* of state reads in the lake (rows with ``op = r``): a reader folds the lake by taking, per
  key, the last change in source order, where a complete snapshot epoch replaces the key set (a key absent
  from a complete re-snapshot was deleted while Connect was away and has no delete event).

Deduplication is first-wins (``ROW_NUMBER ... ORDER BY proc_time`` = 1, insert-only, so the file sink takes
it) with a state TTL longer than any re-send window: Debezium re-sends at most what came after its last
committed offset (``offset.flush.interval.ms``, 60 s by default) plus what it published while Connect was
down; one hour covers a Connect outage of that length.  Not Kafka Connect's exactly-once source support:
that would not cover a re-snapshot, and the lake must hold each change once whatever the producer does.

**Routing.**  A change is late when ``event_time_ms <= routing watermark``.  The routing watermark is
``max over every record the job has read of GREATEST(event time, commit time) - bound``, kept by a global
OVER aggregate whose state is checkpointed, so it never goes back, not even after a restore (Flink does not
checkpoint its own watermarks; after a restore ``CURRENT_WATERMARK`` is NULL and a change hours late would pass
as on time).  It is never below the change's own commit time minus the bound.  The value used is recorded in
every row (``watermark_ms``).

**Two clocks.**  Up to the join, Flink's time is the *log clock*: a change's place in the binlog as a number
(``LOG_CLOCK``), with the smallest over all partitions as the watermark.  Debezium publishes in log order and
each partition keeps its keys in that order, so that watermark is exact: when it passes a place, every change
before that place has been read, in every partition.  The binlog's own timestamps cannot serve: they say when
a *statement began*, in whole seconds, so a transaction that stays open commits after changes with later
timestamps.  After the join the rows pass through a DataStream (Flink SQL cannot re-declare a watermark
mid-query) and come back with the *commit time* (``source.ts_ms``, bounded by ``commit_bound_ms``) as Flink's
time, the clock of partition commit.

**Partition commit.**  A partition's ``_SUCCESS`` is written once the commit-time watermark passes the hour's
end plus the routing bound (and the one-hour commit delay).  Every record that advances that watermark has
passed the routing operator first, so by then the routing watermark is past the hour's end too and no on-time
row can land in a committed hour, including rows routed after a restore.  The late table has no markers:
late changes of an hour keep arriving, so no late hour is ever complete.

**Enrichment.**  ``customer_region``/``customer_segment`` come from the ``customers`` table itself, which
Debezium captures into the same topic: the customer's row as the order change's commit saw it, i.e. the last
customers change *before it in the binlog*, through an event-time temporal join on the log clock.  A customer
deleted or not yet existing gives NULL enrichment; the order is never dropped.  Deterministic across failover
and replay: the join waits for the log-clock watermark of the reader of the whole topic, so every customers
change before the order's place has been read.  A MariaDB event updates the ``cdc_heartbeat`` rows
every second and their keys reach every partition, so both clocks advance while the tables rest.  Routing is
decided before the join; the join only delays rows by about a tick.  Limits: binlog file numbers up to
29,000 (the log clock is a TIMESTAMP_LTZ(3)), and the join's state TTL (``dedup_ttl_ms``) forgets a customer
neither changed nor ordered for that long (its orders then get NULL enrichment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.lake_schema import DLQ_SCHEMA, LAKE_VERSIONS, change_schema, flink_columns, flink_select

#: the correct job, and known-bad variants that exist to prove the suite convicts them:
#: ``no_dedup`` lets Debezium's re-sends through (DUPLICATE under a Connect kill); ``no_checkpointing`` runs
#: without checkpoints, so the file sink never commits a file while the source auto-commits its offsets (LOST);
#: ``version_dedup`` deduplicates on (order_id, version, is_delete), an application column (LOST as soon as an
#: update leaves ``version`` alone); ``trusted_watermark`` routes by Flink's raw watermark, NULL meaning on
#: time (a backlog read right after a restore is routed on time however late); ``route_all_late`` sends every
#: change to the late table with a forged watermark; ``stale_enrichment`` enriches from the customers' first
#: version only (a dimension cached at start); ``timestamp_enrichment`` joins the dimension as of the binlog
#: timestamp instead of the log position (this job before issue 12's follow-up: a customers change whose statement
#: began earlier but committed later is taken, one committed earlier but begun later is missed).
VARIANTS = ("correct", "no_dedup", "no_checkpointing", "version_dedup", "trusted_watermark", "route_all_late",
            "stale_enrichment", "timestamp_enrichment")

#: status -> status category, the job's own rule (the checker keeps its own copy of the contract)
STATUS_CATEGORY = {"pending": "open", "paid": "open", "shipped": "in_flight", "delivered": "done",
                   "cancelled": "cancelled", "returned": "cancelled"}


#: unit_price -> price tier (job version 2 on), the job's own rule: (exclusive upper bound, tier) in order, then
#: the top tier; a NULL price has a NULL tier
PRICE_TIERS = ((20, "low"), (100, "mid"))
TOP_PRICE_TIER = "high"

#: the job's revisions (JobConfig.job_version): each writes the lake schema version of its number
#: (harness.lake_schema.change_schema).  2 adds ``price_tier``.  A revision changes expressions inside the
#: existing statements only, never the plan's shape, so a savepoint of one maps onto the other by operator ids
JOB_VERSIONS = LAKE_VERSIONS

DEFAULT_STATE_BACKEND = "rocksdb"     # see JobConfig.state_backend
DEFAULT_DEDUP_TTL_MS = 3_600_000      # see the module docstring: longer than any re-send window
STARTUP_MODES = ("earliest-offset", "specific-offsets")   # where the job's range of the topic starts


@dataclass(frozen=True)
class JobConfig:
    bootstrap: str
    lake_root: str                         # e.g. s3://lake/run-1  (tables are sub-directories)
    topic: str = "orders_cdc"
    group_id: str = "cdc-chaos-pipeline"
    table: str = "orders"
    dimension_table: str = "customers"
    tick_table: str = "cdc_heartbeat"      # the source's clock: a row changed every second (stack/mysql/init.sql)
    checkpoint_interval_ms: int = 3000
    out_of_orderness_ms: int = 5000        # the routing bound B: a change this far behind is late
    commit_bound_ms: int = 1000            # commit times in the binlog are whole seconds, nearly in order
    idle_timeout_ms: int = 0               # 0: no idleness; heartbeats keep every partition moving
    dedup_ttl_ms: int = DEFAULT_DEDUP_TTL_MS
    # RocksDB with incremental checkpoints: the dedup state over the 1 h TTL is ~270 MiB on the heap at 1,000
    # changes/s (79 B per change, benchmarks.bench_job), more than a full heap checkpoint every 3 s can carry;
    # incremental checkpoints upload only what changed (~0.35 MiB per checkpoint there).  "hashmap" needs a large
    # heap: on the stack's TaskManager (~160 MiB of task heap) it ran at 0.43x RocksDB's throughput (GC).
    state_backend: str = DEFAULT_STATE_BACKEND
    parallelism: int = 1
    startup_mode: str = "earliest-offset"  # first start; a restore resumes from checkpointed offsets
    startup_offsets: tuple[tuple[int, int], ...] = ()   # (partition, offset) for 'specific-offsets'
    variant: str = "correct"               # known-bad variants exist to prove the suite convicts them
    job_version: int = 1                   # the job's revision (JOB_VERSIONS): 2 writes one more derived column
    job_name: str = "cdc-orders-to-lake"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown job variant {self.variant!r}; known: {VARIANTS}")
        if self.job_version not in JOB_VERSIONS:
            raise ValueError(f"unknown job version {self.job_version!r}; known: {JOB_VERSIONS}")
        if self.state_backend not in STATE_BACKENDS:
            raise ValueError(f"unknown state backend {self.state_backend!r}; known: {tuple(STATE_BACKENDS)}")
        if self.startup_mode not in STARTUP_MODES:
            raise ValueError(f"unknown startup mode {self.startup_mode!r}; known: {STARTUP_MODES} (the job reads the "
                             "topic from its start for the dimension, and writes from its start offsets on)")
        if self.commit_bound_ms > self.out_of_orderness_ms:
            raise ValueError("commit_bound_ms must not exceed out_of_orderness_ms (the routing bound)")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobConfig:
        """The inverse of ``dataclasses.asdict`` (JSON turns the offset pairs into lists)."""
        return cls(**{**raw, "startup_offsets": tuple(tuple(x) for x in raw.get("startup_offsets", ()))})

    @property
    def checkpointing(self) -> bool:
        return self.variant != "no_checkpointing"


#: Flink settings per state backend.  RocksDB checkpoints incrementally (only new SST files are uploaded), so a
#: checkpoint's cost follows the state's growth since the last one, not its size; the heap backend uploads the
#: whole state every checkpoint.
STATE_BACKENDS: dict[str, dict[str, str]] = {
    "hashmap": {"state.backend.type": "hashmap"},
    # heap timers: the temporal join and the state TTL register a timer per key and watermark, and a RocksDB
    # timer costs a JNI round trip each (timers are few and small next to the dedup state)
    "rocksdb": {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": "true",
                "state.backend.rocksdb.timer-service.factory": "HEAP"},
}


def table_config(cfg: JobConfig) -> dict[str, str]:
    """Flink configuration the job sets (checkpointing, restart, state TTL, idleness)."""
    checkpointing = {"execution.checkpointing.interval": f"{cfg.checkpoint_interval_ms} ms"} \
        if cfg.checkpointing else {}
    return {
        "pipeline.name": f"{cfg.job_name}" + ("" if cfg.variant == "correct" else f" [{cfg.variant}]"),
        "parallelism.default": str(cfg.parallelism),
        **checkpointing,
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.min-pause": "500 ms",
        "execution.checkpointing.timeout": "60 s",
        "execution.checkpointing.tolerable-failed-checkpoints": "1000",
        "restart-strategy.type": "exponential-delay",
        # a lost TaskManager restarts the job after 0.1 s, and a job that then runs 30 s without failing starts
        # over at 0.1 s (with Flink's default threshold of 1 h, each failure within the hour waited longer than
        # the last).  benchmarks.bench_recovery, ten TaskManager kills: median 19.1 -> 16.6 s (threshold 30 s,
        # back-off 0.5 s); 0.5 -> 0.1 s with the heartbeat every 0.5 s: see the README's recovery figures.
        # At most 1 s between attempts (was 10 s): a job that keeps failing (a store that is down, say) is back
        # within a second of the cause going away.  On the stack's own cluster a restart without TaskManagers no
        # longer fails at once (resourcemanager.standalone.start-up-time, harness.components.flink); on a cluster
        # that fails such requests, 4 s without TaskManagers grew a 10 s cap's wait to 6 s, and the job restarted
        # up to 6 s after they were back.  10,000 attempts without 30 s of running: almost 3 h before it gives up
        "restart-strategy.exponential-delay.initial-backoff": "100 ms",
        "restart-strategy.exponential-delay.reset-backoff-threshold": "30 s",
        "restart-strategy.exponential-delay.max-backoff": "1 s",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": "10000",
        "table.exec.source.idle-timeout": f"{cfg.idle_timeout_ms} ms",
        "table.exec.state.ttl": f"{cfg.dedup_ttl_ms} ms",
        "table.local-time-zone": "UTC",
        # a network buffer that is not full leaves after 10 ms, not Flink's 100: a change crosses five exchanges
        # (routing, identity, join, and the dimension's), and at 1,000 changes/s each waited ~50 ms on average.
        # bench_job freshness at 1,000/s: commit->processed p50 690 -> 483 ms, p99 1,126 -> 757 ms.  Under load
        # the buffers fill before the timeout, so throughput does not pay for it
        "execution.buffer-timeout.interval": "10 ms",
        # operators hand records on without a defensive copy (no operator here keeps a reference to its input)
        "pipeline.object-reuse": "true",
        # every operator gets an id from its plan node (``<node>_<operator>``), not from a hash of how operators
        # are chained: chaining changes with the parallelism, and a savepoint must map onto the job at another
        # parallelism (rescale).  flink_job.job numbers the nodes from 1 for each plan, so ids are stable
        "table.exec.uid.generation": "ALWAYS",
        # a savepoint keeps each operator's max parallelism, and a chain takes its head's: at parallelism 1 the
        # file writer (128) and its partition committer (always 1) would chain, and the committer's state could
        # not be restored at 2, where they cannot chain.  Only operators of equal max parallelism chain
        "pipeline.operator-chaining.chain-operators-with-different-max-parallelism": "false",
        **STATE_BACKENDS[cfg.state_backend],
        **cfg.extra,
    }


#: a row image of either table the job reads (JSON fields absent from a table's image are NULL): orders, then
#: the customers' own columns
_IMAGE = ("ROW<order_id BIGINT, customer_id INT, product STRING, quantity INT, unit_price STRING, "
          "status STRING, event_time BIGINT, version INT, created_at BIGINT, updated_at BIGINT, "
          "region STRING, segment STRING>")

# TIMESTAMP_LTZ(3) -> epoch milliseconds, exactly: Flink allows no cast from TIMESTAMP_LTZ to a number, so
# whole seconds since the epoch (the session zone is UTC) plus the millisecond of the second.
_LTZ_MS = ("(CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', CAST({x} AS TIMESTAMP(3))) AS BIGINT) * 1000"
           " + MOD(EXTRACT(MILLISECOND FROM CAST({x} AS TIMESTAMP(3))), 1000))")


def ltz_to_ms(expr: str) -> str:
    return _LTZ_MS.format(x=expr)


def _kafka(cfg: JobConfig, group_suffix: str, startup: dict[str, Any] | None = None) -> str:
    mode = (startup or {}).get("startup_mode", cfg.startup_mode)
    return (f"'connector' = 'kafka', 'topic' = '{cfg.topic}', "
            f"'properties.bootstrap.servers' = '{cfg.bootstrap}', "
            f"'properties.group.id' = '{cfg.group_id}-{group_suffix}', "
            f"'properties.isolation.level' = 'read_committed', "
            f"'scan.startup.mode' = '{mode}'" + (_specific_offsets(cfg) if mode == cfg.startup_mode else "")
            + _auto_commit(cfg))


def _auto_commit(cfg: JobConfig) -> str:
    # Without checkpoints the source commits no offsets; the known-bad variant lets the consumer auto-commit
    # them, as a job run that way in production would, so its consumer lag says "caught up".
    return "" if cfg.checkpointing else (", 'properties.enable.auto.commit' = 'true', "
                                         "'properties.auto.commit.interval.ms' = '500'")


def _specific_offsets(cfg: JobConfig) -> str:
    if cfg.startup_mode != "specific-offsets":
        return ""
    if not cfg.startup_offsets:
        raise ValueError("startup_mode 'specific-offsets' needs startup_offsets")
    spec = ";".join(f"partition:{p},offset:{o}" for p, o in sorted(cfg.startup_offsets))
    return f", 'scan.startup.specific-offsets' = '{spec}'"


def _sink(cfg: JobConfig, name: str, path: str, success_markers: bool) -> str:
    # a partition is committed once the (commit-time) watermark is past its hour's end plus the routing bound.
    # The late table has no markers: a late hour is never complete (late changes keep arriving), and its
    # committer wrote a _SUCCESS for every late hour touched, each checkpoint, in the checkpoint's critical path
    commit = f""",
        'sink.partition-commit.trigger' = 'partition-time',
        'partition.time-extractor.timestamp-pattern' = '$dt $hr:00:00',
        'sink.partition-commit.delay' = '{3_600_000 + cfg.out_of_orderness_ms} ms',
        'sink.partition-commit.watermark-time-zone' = 'UTC',
        'sink.partition-commit.policy.kind' = 'success-file'""" if success_markers else ""
    return f"""CREATE TABLE {name} ({flink_columns(change_schema(cfg.job_version))}, dt STRING, hr STRING
    ) PARTITIONED BY (dt, hr) WITH (
        'connector' = 'filesystem', 'path' = '{cfg.lake_root}/{path}', 'format' = 'parquet',
        'sink.rolling-policy.file-size' = '128MB'{commit}
    )"""


def _status_category(column: str) -> str:
    whens = " ".join(f"WHEN '{s}' THEN '{c}'" for s, c in STATUS_CATEGORY.items())
    return f"CASE {column} {whens} ELSE 'unknown' END"


def _price_tier(column: str) -> str:
    whens = " ".join(f"WHEN {column} < {bound} THEN '{tier}'" for bound, tier in PRICE_TIERS)
    return f"CASE WHEN {column} IS NULL THEN CAST(NULL AS STRING) {whens} ELSE '{TOP_PRICE_TIER}' END"


def _derived_since_v2(cfg: JobConfig) -> str:
    """The columns job version 2 adds, as select items after ``status_category`` of ``enriched`` (none before):
    in the same projection, so the plan keeps its nodes and a savepoint of version 1 maps onto version 2."""
    if cfg.job_version < 2:
        return ""
    return f"\n            {_price_tier('CAST(img.unit_price AS DECIMAL(10, 2))')} AS price_tier,"


def _valid_change(cfg: JobConfig) -> str:
    """The one definition of "a change of the orders table this job can place" (else: a dead letter)."""
    return (f"op IN ('c', 'r', 'u', 'd') AND source.`table` = '{cfg.table}' "
            "AND COALESCE(`after`.order_id, `before`.order_id) IS NOT NULL AND event_time_ms IS NOT NULL "
            "AND source.file IS NOT NULL AND source.pos IS NOT NULL AND source.ts_ms IS NOT NULL")


#: the log clock: a change's place in the source log as a number, ``file number * 2^33 + pos * 2 + (op <> 'r')``,
#: read as epoch milliseconds.  Snapshot rows sit at the consistent point (even), the streamed change at the
#: same position after it (odd).  TIMESTAMP_LTZ(3) reaches year 9999, so binlog file numbers up to 29,000.
LOG_CLOCK = ("TO_TIMESTAMP_LTZ(COALESCE(CAST(REGEXP_EXTRACT(source.file, '([0-9]+)$', 1) AS BIGINT) * 8589934592"
             " + source.pos * 2 + CASE WHEN op = 'r' THEN 0 ELSE 1 END, 0), 3)")


def _rowtime(cfg: JobConfig) -> str:
    # known-bad trusted_watermark routes by Flink's watermark on the commit time, so that is its time attribute;
    # known-bad timestamp_enrichment joins on it
    return "commit_time" if cfg.variant in ("trusted_watermark", "timestamp_enrichment") else "log_time"


def _source(cfg: JobConfig, name: str, group_suffix: str, columns: str, startup: dict[str, Any] | None = None) -> str:
    """A reader of the topic whose Flink watermark is the log clock (its place in the binlog).

    Debezium publishes in log order and every partition holds its keys' changes in that order, so the
    smallest log clock over all partitions is exact: every change before it has been read.  The heartbeat
    table's rows reach every partition each second, so it advances while the tables rest.  A malformed
    envelope sits at epoch 0 and never advances it."""
    rowtime = _rowtime(cfg)
    bound = "0.001" if rowtime == "log_time" else f"{cfg.commit_bound_ms / 1000:.3f}"
    return f"""CREATE TABLE {name} (
            {columns},
            op STRING,
            source ROW<ts_ms BIGINT, snapshot STRING, db STRING, `table` STRING, server_id BIGINT,
                       gtid STRING, file STRING, pos BIGINT, `row` INT>,
            kafka_partition INT METADATA FROM 'partition' VIRTUAL,
            kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
            kafka_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
            proc_time AS PROCTIME(),
            commit_time AS TO_TIMESTAMP_LTZ(COALESCE(source.ts_ms, 0), 3),
            log_time AS {LOG_CLOCK},
            WATERMARK FOR {rowtime} AS {rowtime} - INTERVAL '{bound}' SECOND
        ) WITH ({_kafka(cfg, group_suffix, startup)}, 'format' = 'json', 'json.ignore-parse-errors' = 'true',
                'json.fail-on-missing-field' = 'false')"""


@dataclass(frozen=True)
class Restamp:
    """Where the job changes clocks: ``source`` (a view on the log clock) becomes ``target``, whose time
    attribute is ``commit_time`` (``src_ts_ms``) with ``bound`` behind the largest seen as its watermark: the
    clock of partition commit.  Flink SQL cannot re-declare a watermark mid-query, so the job builder passes
    the rows through a DataStream (``to_data_stream`` -> ``rebalance`` at parallelism > 1 -> ``from_data_stream``)."""
    source: str
    target: str
    bound_ms: int
    commit_time: str = "TO_TIMESTAMP_LTZ(COALESCE(src_ts_ms, 0), 3)"   # dead letters have none

    @property
    def watermark(self) -> str:
        return f"commit_time - INTERVAL '{self.bound_ms / 1000:.3f}' SECOND"


@dataclass(frozen=True)
class Plan:
    """The job as statements: DDL and views, the clock change, then the INSERTs (one statement set)."""
    ddl: list[str]
    restamp: Restamp
    inserts: list[str]


def statements(cfg: JobConfig) -> Plan:
    """The job's statements: DDL and views, the change of clocks, the INSERTs (run as one statement set)."""
    event_ms = (f"CASE WHEN source.`table` <> '{cfg.table}' THEN CAST(NULL AS BIGINT) "
                "WHEN op = 'd' THEN source.ts_ms ELSE `after`.event_time END")
    bound = cfg.out_of_orderness_ms
    if cfg.variant == "trusted_watermark":   # known-bad: Flink's watermark as is, NULL (after a restore) = on time
        wm_expr = f"{ltz_to_ms('CURRENT_WATERMARK(commit_time)')} - {bound - cfg.commit_bound_ms}"
    else:
        # the running max of everything read so far (OVER state is checkpointed: monotone across restores)
        wm_expr = (f"MAX(GREATEST(COALESCE(event_time_ms, source.ts_ms), COALESCE(source.ts_ms, event_time_ms))) "
                   f"OVER (ORDER BY proc_time ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - {bound}")
    late = {"route_all_late": "TRUE", "trusted_watermark": "watermark_ms IS NOT NULL AND event_time_ms <= watermark_ms"}
    is_late = late.get(cfg.variant, "event_time_ms <= watermark_ms")
    recorded_wm = "event_time_ms" if cfg.variant == "route_all_late" else "watermark_ms"   # forged: "just late"
    rowtime = _rowtime(cfg)
    is_tick = f"source.`table` = '{cfg.tick_table}'"
    dimension = _dimension_reader(cfg)
    from_start = {"startup_mode": "earliest-offset"}
    ddl = [
        _source(cfg, "cdc_typed", "typed", f"`before` {_IMAGE}, `after` {_IMAGE}, event_time_ms AS {event_ms}",
                startup=from_start if dimension == "cdc_typed" else None),
        *([] if dimension == "cdc_typed" else
          [_source(cfg, dimension, "dim", f"`before` {_IMAGE}, `after` {_IMAGE}", startup=from_start)]),
        f"""CREATE TABLE cdc_raw (
            `value` BYTES,   -- bytes, not STRING: a dead letter need not be valid UTF-8
            kafka_partition INT METADATA FROM 'partition' VIRTUAL,
            kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
            kafka_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
        ) WITH ({_kafka(cfg, 'raw')}, 'format' = 'raw')""",
        _sink(cfg, "lake_orders", "orders", success_markers=True),
        _sink(cfg, "lake_orders_late", "orders_late", success_markers=False),
        f"""CREATE TABLE lake_dlq ({flink_columns(DLQ_SCHEMA)}
        ) WITH ('connector' = 'filesystem', 'path' = '{cfg.lake_root}/orders_dlq', 'format' = 'parquet')""",
        # every record of the job's range passes the routing operator, so its watermark covers Flink's
        f"""CREATE TEMPORARY VIEW routed AS
        SELECT *, {wm_expr} AS watermark_ms FROM cdc_typed WHERE {_job_range(cfg)}""",
        # one row per change of the orders table, its routing decided here, before any join can delay it; the
        # clock's ticks (heartbeat rows) ride along to the change of clocks, and no further
        f"""CREATE TEMPORARY VIEW changes AS
        SELECT
            COALESCE(`after`.order_id, `before`.order_id) AS order_id,
            CASE WHEN op = 'd' THEN `before` ELSE `after` END AS img,
            op, event_time_ms, proc_time, {rowtime}, {is_tick} AS is_tick,
            source.file AS src_file, source.pos AS src_pos, source.`row` AS src_row,
            source.server_id AS src_server_id, source.gtid AS src_gtid, source.ts_ms AS src_ts_ms,
            source.snapshot AS src_snapshot, kafka_partition, kafka_offset,
            {recorded_wm} AS watermark_ms,
            {is_late} AS is_late
        FROM routed
        WHERE ({_valid_change(cfg)})
           OR ({is_tick} AND source.file IS NOT NULL AND source.pos IS NOT NULL AND source.ts_ms IS NOT NULL)""",
        _dedup_view(cfg),
        f"""CREATE TEMPORARY VIEW customers_versions AS
        SELECT customer_id, region, segment, {rowtime} FROM (
            SELECT COALESCE(`after`.customer_id, `before`.customer_id) AS customer_id,
                   CASE WHEN op = 'd' THEN CAST(NULL AS STRING) ELSE `after`.region END AS region,
                   CASE WHEN op = 'd' THEN CAST(NULL AS STRING) ELSE `after`.segment END AS segment,
                   {rowtime},
                   ROW_NUMBER() OVER (PARTITION BY COALESCE(`after`.customer_id, `before`.customer_id)
                                      ORDER BY {rowtime} DESC) AS rn
            FROM {dimension}
            WHERE source.`table` = '{cfg.dimension_table}' AND {_dimension_ops(cfg)}
              AND COALESCE(`after`.customer_id, `before`.customer_id) IS NOT NULL)
        WHERE rn = 1""",
        f"""CREATE TEMPORARY VIEW enriched AS
        SELECT
            order_id, img.customer_id AS customer_id, img.product AS product, img.quantity AS quantity,
            CAST(img.unit_price AS DECIMAL(10, 2)) AS unit_price, img.status AS status, img.version AS version,
            img.created_at AS created_at_ms, img.updated_at AS updated_at_ms, op, event_time_ms,
            CAST(img.quantity * CAST(img.unit_price AS DECIMAL(10, 2)) AS DECIMAL(12, 2)) AS line_total,
            {_status_category('img.status')} AS status_category,{_derived_since_v2(cfg)}
            cv.region AS customer_region, cv.segment AS customer_segment,
            src_file, src_pos, src_row, src_server_id, src_gtid, src_ts_ms, src_snapshot,
            kafka_partition, kafka_offset, watermark_ms,
            {ltz_to_ms('proc_time')} AS processed_ms,
            DATE_FORMAT(TO_TIMESTAMP_LTZ(event_time_ms, 3), 'yyyy-MM-dd') AS dt,
            DATE_FORMAT(TO_TIMESTAMP_LTZ(event_time_ms, 3), 'HH') AS hr,
            is_late, is_tick
        FROM deduped AS d
        LEFT JOIN customers_versions FOR SYSTEM_TIME AS OF d.{rowtime} AS cv
            ON d.img.customer_id = cv.customer_id""",
    ]
    schema = change_schema(cfg.job_version)
    columns = ", ".join([*schema.names, "dt", "hr"])
    dead_letter = flink_select(schema, {"kafka_partition": "kafka_partition", "kafka_offset": "kafka_offset",
                                               "processed_ms": ltz_to_ms("proc_time")})
    ddl.append(f"""CREATE TEMPORARY VIEW outbound AS
        SELECT {columns}, is_late, is_tick, CAST(NULL AS STRING) AS dlq_reason, CAST(NULL AS BIGINT) AS kafka_ts_ms
        FROM enriched
        UNION ALL
        SELECT {dead_letter}, CAST(NULL AS STRING) AS dt, CAST(NULL AS STRING) AS hr, FALSE AS is_late,
               FALSE AS is_tick,
               CASE WHEN op IS NULL THEN 'not a Debezium change event' ELSE 'incomplete Debezium envelope' END,
               {ltz_to_ms('kafka_ts')}
        -- straight from the reader (chained to it), not after the routing operator: a dead letter needs no
        -- routing, and a second consumer of that operator's output had every record serialised once more
        FROM cdc_typed
        WHERE {_job_range(cfg)} AND ({_valid_change(cfg)}) IS NOT TRUE
          -- other tables' events (the dimension, heartbeats) are not dead letters
          AND (source.`table` IS NULL OR source.`table` = '{cfg.table}')""")
    change = "FROM restamped WHERE dlq_reason IS NULL AND NOT is_tick AND"
    inserts = [
        f"INSERT INTO lake_orders SELECT {columns} {change} NOT is_late",
        f"INSERT INTO lake_orders_late SELECT {columns} {change} is_late",
        f"""INSERT INTO lake_dlq
        SELECT kafka_partition, kafka_offset, {ltz_to_ms('kafka_ts')}, `value`, 'not valid JSON',
               {ltz_to_ms('PROCTIME()')}
        FROM cdc_raw WHERE `value` IS NOT NULL AND NOT (CAST(`value` AS STRING) IS JSON)
        UNION ALL
        SELECT kafka_partition, kafka_offset, kafka_ts_ms, CAST(NULL AS BYTES), dlq_reason, processed_ms
        FROM restamped WHERE dlq_reason IS NOT NULL""",
    ]
    return Plan(ddl, Restamp("outbound", "restamped", cfg.commit_bound_ms), inserts)


def _dimension_reader(cfg: JobConfig) -> str:
    """The table the customers' versions are read from: the orders' own reader, which then reads the topic from
    its start.  Known-bad variants whose Flink time is the commit time read the dimension with a reader of its
    own, as this job did before, and start the orders' reader at the job's offsets: one reader from the topic's
    start would take their clock from every earlier commit time, a writer's future ones included, and hold the
    join."""
    return "cdc_typed" if _rowtime(cfg) == "log_time" else "cdc_dim"


def _job_range(cfg: JobConfig) -> str:
    """The records this job writes to the lake: from its start offsets on, where its reader starts at the topic's
    start for the dimension's sake (else the reader starts there).  A partition without a start offset is read
    from its start."""
    if cfg.startup_mode != "specific-offsets" or _dimension_reader(cfg) != "cdc_typed":
        return "TRUE"
    whens = " ".join(f"WHEN {p} THEN kafka_offset >= {o}" for p, o in sorted(cfg.startup_offsets))
    return f"(CASE kafka_partition {whens} ELSE TRUE END)"


def _dimension_ops(cfg: JobConfig) -> str:
    # known-bad: only a customer's first insert is ever seen, as if the dimension were cached at start
    return "op IN ('c', 'r')" if cfg.variant == "stale_enrichment" else "op IN ('c', 'r', 'u', 'd')"


def _dedup_view(cfg: JobConfig) -> str:
    if cfg.variant == "no_dedup":   # known-bad: passes Debezium's re-sends straight into the lake
        return "CREATE TEMPORARY VIEW deduped AS SELECT * FROM changes"
    if cfg.variant == "version_dedup":   # known-bad: an application column decides which changes exist
        # (the clock's ticks keep their place in the log, or they would all collapse into one and stop the clock:
        # the variant's bug is the orders' identity, nothing else)
        key = "order_id, img.version, op = 'd', CASE WHEN is_tick THEN src_file END, CASE WHEN is_tick THEN src_pos END"
    else:   # the change's place in the source log; snapshot rows share one place, so add the key to those
        key = "src_file, src_pos, src_row, op, CASE WHEN op = 'r' THEN order_id END"
    return f"""CREATE TEMPORARY VIEW deduped AS
        SELECT * FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY proc_time ASC) AS rn
            FROM changes)
        WHERE rn = 1"""
