"""The lake's contract: table layout, column names and types. The Flink job writes it, the checker reads it.

Layout in the bucket (``s3://<bucket>/<prefix>/``):

- ``orders/dt=YYYY-MM-DD/hr=HH/part-*.parquet``       on-time changes, partitioned by event_time in UTC
- ``orders_late/dt=YYYY-MM-DD/hr=HH/part-*.parquet``  changes behind the watermark when routed (same schema)
- ``orders_dlq/part-*.parquet``                       malformed Kafka records (dead letters)
- ``_SUCCESS`` in a partition directory once the watermark has passed the partition's end.

Files whose name starts with ``.`` or ``_`` are hidden from readers (in-progress, pending, markers).
"""

from __future__ import annotations

import pyarrow as pa

MAIN_TABLE = "orders"
LATE_TABLE = "orders_late"
DLQ_TABLE = "orders_dlq"
PARTITION_KEYS = ("dt", "hr")

#: one row per source change; ``dt``/``hr`` are in the path, not in the file (Flink's filesystem sink).  The
#: columns of lake schema version 1; later versions add :data:`ADDED_COLUMNS` (:func:`change_schema`)
CHANGE_SCHEMA = pa.schema([
    # the order, as of this change (``after`` image; ``before`` image for a delete)
    ("order_id", pa.int64()),
    ("customer_id", pa.int32()),
    ("product", pa.string()),
    ("quantity", pa.int32()),
    ("unit_price", pa.decimal128(10, 2)),
    ("status", pa.string()),
    ("version", pa.int32()),
    ("created_at_ms", pa.int64()),
    ("updated_at_ms", pa.int64()),
    # the change
    ("op", pa.string()),                 # c, u, d, r (snapshot read)
    ("event_time_ms", pa.int64()),       # order's event_time; for a delete, the commit time (source ts_ms)
    # derived and enriched (the job's rules; the checker derives its expectations on its own)
    ("line_total", pa.decimal128(12, 2)),
    ("status_category", pa.string()),
    ("customer_region", pa.string()),
    ("customer_segment", pa.string()),
    # source coordinates: where the change sits in the binlog (its identity) and its transaction
    ("src_file", pa.string()),
    ("src_pos", pa.int64()),
    ("src_row", pa.int32()),
    ("src_server_id", pa.int64()),
    ("src_gtid", pa.string()),
    ("src_ts_ms", pa.int64()),
    ("src_snapshot", pa.string()),
    # transport and processing
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
    ("watermark_ms", pa.int64()),        # the watermark when the row was routed; null if none yet
    ("processed_ms", pa.int64()),
])

#: columns a later revision of the job adds, by the lake schema version (= the job's ``job_version``) that first
#: writes them.  Files written before lack them: readers fill NULL there and judge them only in files that have
#: them (``lake_version``).  Added columns never replace or retype a column of :data:`CHANGE_SCHEMA`.
ADDED_COLUMNS: dict[int, pa.Schema] = {
    2: pa.schema([("price_tier", pa.string())]),     # low / mid / high by unit_price (derived, the job's rule)
}
#: the lake schema versions: 1 is :data:`CHANGE_SCHEMA`, each later one adds its :data:`ADDED_COLUMNS`
LAKE_VERSIONS = (1, *sorted(ADDED_COLUMNS))
LATEST_LAKE_VERSION = LAKE_VERSIONS[-1]


def change_schema(version: int = LATEST_LAKE_VERSION) -> pa.Schema:
    """The change tables' columns as a job of ``version`` writes them: :data:`CHANGE_SCHEMA` and the columns
    every version up to it added (in that order)."""
    if version not in LAKE_VERSIONS:
        raise ValueError(f"unknown lake schema version {version}; known: {LAKE_VERSIONS}")
    return pa.schema([*CHANGE_SCHEMA, *(f for v in sorted(ADDED_COLUMNS) if v <= version for f in ADDED_COLUMNS[v])])


def version_of(names: list[str] | tuple[str, ...]) -> int:
    """The lake schema version a change file was written in, from its column names: the highest version whose
    added columns it all carries (1: none)."""
    have = set(names)
    found = 1
    for v in sorted(ADDED_COLUMNS):
        if not set(ADDED_COLUMNS[v].names) <= have:
            break
        found = v
    return found


DLQ_SCHEMA = pa.schema([
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
    ("kafka_timestamp_ms", pa.int64()),
    ("raw", pa.binary()),                # the record's bytes (may be any encoding)
    ("reason", pa.string()),
    ("processed_ms", pa.int64()),
])

#: the columns of the orders table that a change carries and the final state is compared on
STATE_COLUMNS = ("customer_id", "product", "quantity", "unit_price", "status", "version", "event_time_ms")

#: what identifies one source change: its place in the source log (a primary-key update is a delete and an
#: insert at the same place, hence ``op``); snapshot rows (op ``r``) share one place and add the key
CHANGE_KEY = ("src_file", "src_pos", "src_row", "op")


def _flink_type(t: pa.DataType) -> str:
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    names = {pa.int64(): "BIGINT", pa.int32(): "INT", pa.string(): "STRING", pa.binary(): "BYTES",
             pa.bool_(): "BOOLEAN"}
    if t not in names:
        raise TypeError(f"no Flink SQL type for {t}")
    return names[t]


def flink_columns(schema: pa.Schema) -> str:
    """``name TYPE, ...`` for a Flink DDL: the sink tables are declared from these schemas, nowhere else."""
    return ", ".join(f"`{f.name}` {_flink_type(f.type)}" for f in schema)


def flink_select(schema: pa.Schema, given: dict[str, str]) -> str:
    """A select list in ``schema``'s order: the expression ``given`` for a column, else a typed NULL (one branch
    of a UNION ALL that fills only some of the columns)."""
    return ", ".join(f"{given[f.name]} AS `{f.name}`" if f.name in given
                     else f"CAST(NULL AS {_flink_type(f.type)}) AS `{f.name}`" for f in schema)


#: what each lake column means, for people: the README's column table is rendered from this and
#: :data:`CHANGE_SCHEMA` (``python -m harness.lake_schema``), and a test fails when the two drift apart
COLUMN_DOCS = {
    "order_id": "primary key",
    "customer_id": "order column (`after` image; `before` for a delete)",
    "product": "order column",
    "quantity": "order column",
    "unit_price": "order column",
    "status": "order column",
    "version": "order column (an ordinary column: writers may or may not bump it)",
    "created_at_ms": "order column, epoch ms",
    "updated_at_ms": "order column, epoch ms",
    "op": "`c`, `u`, `d`, `r` (snapshot read)",
    "event_time_ms": "the order's `event_time`; a delete's commit time",
    "line_total": "quantity × unit_price",
    "status_category": "open / in_flight / done / cancelled / unknown",
    "customer_region": "the customer's row as the order change's commit saw it: the last customers change "
                       "before it in the binlog (NULL if none or deleted)",
    "customer_segment": "as customer_region",
    "src_file": "the change's identity: binlog file ...",
    "src_pos": "... position of its rows event ...",
    "src_row": "... row index in that event",
    "src_server_id": "the source server",
    "src_gtid": "the transaction's GTID (groups a transaction's rows)",
    "src_ts_ms": "the binlog event's timestamp (when the statement began, whole seconds)",
    "src_snapshot": "Debezium's snapshot flag (`false`, or the snapshot record's mark)",
    "kafka_partition": "where the job read it",
    "kafka_offset": "where the job read it",
    "watermark_ms": "the routing watermark the row was routed by",
    "processed_ms": "processing time",
    "price_tier": "`low` (unit_price < 20), `mid` (< 100), `high`; NULL if unit_price is. Added in job version 2: "
                  "files written before lack it",
}


def readme_table(schema: pa.Schema | None = None) -> str:
    """The README's column table (markdown), one row per column of ``schema`` (default: the latest version's)."""
    schema = schema if schema is not None else change_schema()
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| {f.name} | {_flink_type(f.type)} | {COLUMN_DOCS[f.name]} |" for f in schema]
    return "\n".join(lines)


def partition_of(event_time_ms: int) -> tuple[str, str]:
    """``(dt, hr)`` of an event time in UTC: the partition a change must land in."""
    import datetime as _dt

    t = _dt.datetime.fromtimestamp(event_time_ms / 1000, tz=_dt.UTC)
    return t.strftime("%Y-%m-%d"), t.strftime("%H")


if __name__ == "__main__":
    print(readme_table())
