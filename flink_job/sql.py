"""The pipeline as Flink SQL: Debezium envelopes from Kafka -> enriched, deduplicated, event-time routed,
partitioned Parquet in the lake.  Every operator runs in the JVM (no Python UDF on the hot path).

Data flow::

    orders_cdc --json--> cdc_typed --(valid, orders table)--> changes (+ routing watermark per row)
                   |                                             |
                   |                                 dedup on source coordinates (keep first, TTL)
                   |                                             |
                   |                         on time --> lake_orders      late --> lake_orders_late
                   |
                   +--raw--> cdc_raw --(not JSON)--> lake_dlq  <--(JSON but not a valid envelope)-- cdc_typed

Why two readers of the topic: the JSON format cannot hand us the raw text of a record it failed to parse
(with ignore-parse-errors it silently skips it), so a second, raw reader catches exactly those records for
the dead-letter table; a record is checked by exactly one of the two readers' dead-letter rules.

Why deduplicate in the job rather than Kafka Connect's exactly-once source support: Debezium re-sends
changes after a Connect crash (its offsets lag the binlog), and the lake must hold each source change once.
First-wins deduplication with bounded state (TTL longer than any re-send window) removes re-sends.  The key
is the change's logical identity (primary key, row version, delete flag) plus nothing else: a re-send of a
binlog event carries the same coordinates, but a Connect crash before its first offset commit makes
Debezium re-*snapshot* (op ``r``), and a snapshot row carries no binlog coordinates of the change it
repeats; the row version (bumped by every write, as an optimistic-lock column) identifies it in both cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.enrichment import sql_region, sql_segment, sql_status_category

#: the correct job, and known-bad variants that exist to prove the suite convicts them:
#: ``no_dedup`` lets Debezium's re-sends through (DUPLICATE under a Connect kill); ``no_checkpointing`` runs
#: without checkpoints, so the file sink never commits a file while the source auto-commits its offsets (LOST).
VARIANTS = ("correct", "no_dedup", "no_checkpointing")


@dataclass(frozen=True)
class JobConfig:
    bootstrap: str
    lake_root: str                         # e.g. s3://lake/run-1  (tables are sub-directories)
    topic: str = "orders_cdc"
    group_id: str = "cdc-chaos-pipeline"
    table: str = "orders"
    checkpoint_interval_ms: int = 3000
    out_of_orderness_ms: int = 5000
    idle_timeout_ms: int = 2000
    dedup_ttl_ms: int = 3_600_000
    parallelism: int = 1
    startup_mode: str = "earliest-offset"  # first start; a restore resumes from checkpointed offsets
    startup_offsets: tuple[tuple[int, int], ...] = ()   # (partition, offset) for 'specific-offsets'
    variant: str = "correct"               # known-bad variants exist to prove the suite convicts them
    job_name: str = "cdc-orders-to-lake"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown job variant {self.variant!r}; known: {VARIANTS}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobConfig:
        """The inverse of ``dataclasses.asdict`` (JSON turns the offset pairs into lists)."""
        return cls(**{**raw, "startup_offsets": tuple(tuple(x) for x in raw.get("startup_offsets", ()))})

    @property
    def checkpointing(self) -> bool:
        return self.variant != "no_checkpointing"


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
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": "10 s",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": "1000",
        "table.exec.source.idle-timeout": f"{cfg.idle_timeout_ms} ms",
        "table.exec.state.ttl": f"{cfg.dedup_ttl_ms} ms",
        "table.local-time-zone": "UTC",
        **cfg.extra,
    }


_IMAGE = ("ROW<order_id BIGINT, customer_id INT, product STRING, quantity INT, unit_price STRING, "
          "status STRING, event_time BIGINT, version INT, created_at BIGINT, updated_at BIGINT>")

# TIMESTAMP_LTZ(3) -> epoch milliseconds, exactly: Flink allows no cast from TIMESTAMP_LTZ to a number, so
# whole seconds since the epoch (the session zone is UTC) plus the millisecond of the second.
_LTZ_MS = ("(CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', CAST({x} AS TIMESTAMP(3))) AS BIGINT) * 1000"
           " + MOD(EXTRACT(MILLISECOND FROM CAST({x} AS TIMESTAMP(3))), 1000))")


def ltz_to_ms(expr: str) -> str:
    return _LTZ_MS.format(x=expr)


def _kafka(cfg: JobConfig, group_suffix: str) -> str:
    return (f"'connector' = 'kafka', 'topic' = '{cfg.topic}', "
            f"'properties.bootstrap.servers' = '{cfg.bootstrap}', "
            f"'properties.group.id' = '{cfg.group_id}-{group_suffix}', "
            f"'properties.isolation.level' = 'read_committed', "
            f"'scan.startup.mode' = '{cfg.startup_mode}'" + _specific_offsets(cfg) + _auto_commit(cfg))


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


def _sink(cfg: JobConfig, name: str, path: str, partitioned: bool) -> str:
    cols = """
        order_id BIGINT, customer_id INT, product STRING, quantity INT, unit_price DECIMAL(10, 2),
        status STRING, version INT, created_at_ms BIGINT, updated_at_ms BIGINT, op STRING,
        event_time_ms BIGINT, line_total DECIMAL(12, 2), status_category STRING, customer_region STRING,
        customer_segment STRING, src_file STRING, src_pos BIGINT, src_row INT, src_server_id BIGINT,
        src_gtid STRING, src_ts_ms BIGINT, src_snapshot STRING, kafka_partition INT, kafka_offset BIGINT,
        watermark_ms BIGINT, processed_ms BIGINT, dt STRING, hr STRING"""
    commit = """,
        'sink.partition-commit.trigger' = 'partition-time',
        'partition.time-extractor.timestamp-pattern' = '$dt $hr:00:00',
        'sink.partition-commit.delay' = '1 h',
        'sink.partition-commit.watermark-time-zone' = 'UTC',
        'sink.partition-commit.policy.kind' = 'success-file'""" if partitioned else ""
    return f"""CREATE TABLE {name} ({cols}
    ) PARTITIONED BY (dt, hr) WITH (
        'connector' = 'filesystem', 'path' = '{cfg.lake_root}/{path}', 'format' = 'parquet',
        'sink.rolling-policy.file-size' = '128MB'{commit}
    )"""


def statements(cfg: JobConfig) -> tuple[list[str], list[str]]:
    """(DDL and views, INSERT statements run together as one statement set)."""
    event_ms = "CASE WHEN op = 'd' THEN source.ts_ms ELSE `after`.event_time END"
    # The watermark a change is routed by: Flink's, but never below the change's own commit time minus the
    # bound.  Flink does not checkpoint watermarks, so right after a (re)start CURRENT_WATERMARK is NULL and
    # a change hours late would pass as on time; the commit-time floor keeps routing deterministic across
    # failover.  The value used is recorded in every row, so routing can be verified row by row.
    floor = f"(source.ts_ms - {cfg.out_of_orderness_ms})"
    wm = ltz_to_ms("CURRENT_WATERMARK(event_time)")
    effective = f"(CASE WHEN CURRENT_WATERMARK(event_time) IS NULL THEN {floor} ELSE GREATEST({wm}, {floor}) END)"
    ddl = [
        f"""CREATE TABLE cdc_typed (
            `before` {_IMAGE},
            `after` {_IMAGE},
            op STRING,
            ts_ms BIGINT,
            source ROW<ts_ms BIGINT, snapshot STRING, db STRING, `table` STRING, server_id BIGINT,
                       gtid STRING, file STRING, pos BIGINT, `row` INT>,
            kafka_partition INT METADATA FROM 'partition' VIRTUAL,
            kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
            kafka_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
            proc_time AS PROCTIME(),
            event_time_ms AS {event_ms},
            -- a malformed envelope has no event time: epoch 0 never advances the watermark
            event_time AS TO_TIMESTAMP_LTZ(COALESCE({event_ms}, 0), 3),
            WATERMARK FOR event_time AS event_time - INTERVAL '{cfg.out_of_orderness_ms / 1000:.3f}' SECOND
        ) WITH ({_kafka(cfg, 'typed')}, 'format' = 'json', 'json.ignore-parse-errors' = 'true',
                'json.fail-on-missing-field' = 'false')""",
        f"""CREATE TABLE cdc_raw (
            `value` BYTES,   -- bytes, not STRING: a dead letter need not be valid UTF-8
            kafka_partition INT METADATA FROM 'partition' VIRTUAL,
            kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
            kafka_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
        ) WITH ({_kafka(cfg, 'raw')}, 'format' = 'raw')""",
        _sink(cfg, "lake_orders", "orders", partitioned=True),
        _sink(cfg, "lake_orders_late", "orders_late", partitioned=True),
        f"""CREATE TABLE lake_dlq (
            kafka_partition INT, kafka_offset BIGINT, kafka_timestamp_ms BIGINT, `raw` BYTES, reason STRING,
            processed_ms BIGINT
        ) WITH ('connector' = 'filesystem', 'path' = '{cfg.lake_root}/orders_dlq', 'format' = 'parquet')""",
        # one row per change of the orders table; the watermark is captured here, where routing is decided
        f"""CREATE TEMPORARY VIEW changes AS
        SELECT
            COALESCE(`after`.order_id, `before`.order_id) AS order_id,
            CASE WHEN op = 'd' THEN `before` ELSE `after` END AS img,
            CASE WHEN op = 'd' THEN `before`.version ELSE `after`.version END AS row_version,
            op = 'd' AS is_delete,
            op, event_time_ms, proc_time,
            source.file AS src_file, source.pos AS src_pos, source.`row` AS src_row,
            source.server_id AS src_server_id, source.gtid AS src_gtid, source.ts_ms AS src_ts_ms,
            source.snapshot AS src_snapshot, kafka_partition, kafka_offset,
            {effective} AS watermark_ms,
            event_time_ms <= {effective} AS is_late
        FROM cdc_typed
        WHERE op IN ('c', 'r', 'u', 'd') AND source.`table` = '{cfg.table}'
          AND COALESCE(`after`.order_id, `before`.order_id) IS NOT NULL AND event_time_ms IS NOT NULL
          AND source.file IS NOT NULL AND source.pos IS NOT NULL""",
        _dedup_view(cfg),
        f"""CREATE TEMPORARY VIEW enriched AS
        SELECT
            order_id, img.customer_id AS customer_id, img.product AS product, img.quantity AS quantity,
            CAST(img.unit_price AS DECIMAL(10, 2)) AS unit_price, img.status AS status, img.version AS version,
            img.created_at AS created_at_ms, img.updated_at AS updated_at_ms, op, event_time_ms,
            CAST(img.quantity * CAST(img.unit_price AS DECIMAL(10, 2)) AS DECIMAL(12, 2)) AS line_total,
            {sql_status_category('img.status')} AS status_category,
            {sql_region('img.customer_id')} AS customer_region,
            {sql_segment('img.customer_id')} AS customer_segment,
            src_file, src_pos, src_row, src_server_id, src_gtid, src_ts_ms, src_snapshot,
            kafka_partition, kafka_offset, watermark_ms,
            {ltz_to_ms('proc_time')} AS processed_ms,
            DATE_FORMAT(TO_TIMESTAMP_LTZ(event_time_ms, 3), 'yyyy-MM-dd') AS dt,
            DATE_FORMAT(TO_TIMESTAMP_LTZ(event_time_ms, 3), 'HH') AS hr,
            is_late
        FROM deduped""",
    ]
    columns = ("order_id, customer_id, product, quantity, unit_price, status, version, created_at_ms, "
               "updated_at_ms, op, event_time_ms, line_total, status_category, customer_region, customer_segment, "
               "src_file, src_pos, src_row, src_server_id, src_gtid, src_ts_ms, src_snapshot, kafka_partition, "
               "kafka_offset, watermark_ms, processed_ms, dt, hr")
    inserts = [
        f"INSERT INTO lake_orders SELECT {columns} FROM enriched WHERE NOT is_late",
        f"INSERT INTO lake_orders_late SELECT {columns} FROM enriched WHERE is_late",
        f"""INSERT INTO lake_dlq
        SELECT kafka_partition, kafka_offset, {ltz_to_ms('kafka_ts')}, `value`, 'not valid JSON',
               {ltz_to_ms('PROCTIME()')}
        FROM cdc_raw WHERE `value` IS NOT NULL AND NOT (CAST(`value` AS STRING) IS JSON)
        UNION ALL
        SELECT kafka_partition, kafka_offset, {ltz_to_ms('kafka_ts')}, CAST(NULL AS BYTES),
               CASE WHEN op IS NULL THEN 'not a Debezium change event' ELSE 'incomplete Debezium envelope' END,
               {ltz_to_ms('PROCTIME()')}
        FROM cdc_typed
        WHERE (op IN ('c', 'r', 'u', 'd') AND source.`table` = '{cfg.table}'
                   AND COALESCE(`after`.order_id, `before`.order_id) IS NOT NULL AND event_time_ms IS NOT NULL
                   AND source.file IS NOT NULL AND source.pos IS NOT NULL) IS NOT TRUE
          -- other tables' events are filtered out, not dead letters
          AND (source.`table` IS NULL OR source.`table` = '{cfg.table}')""",
    ]
    return ddl, inserts


def _dedup_view(cfg: JobConfig) -> str:
    if cfg.variant == "no_dedup":   # known-bad: passes Debezium's re-sends straight into the lake
        return "CREATE TEMPORARY VIEW deduped AS SELECT * FROM changes"
    # first row wins per source change; insert-only output, so the file sink accepts it
    return """CREATE TEMPORARY VIEW deduped AS
        SELECT * FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY order_id, row_version, is_delete
                                         ORDER BY proc_time ASC) AS rn
            FROM changes)
        WHERE rn = 1"""
