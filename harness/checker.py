"""ExactlyOnceChecker: the database's truth + the topic + the lake -> a verdict with named anomalies.

A judge independent of the job it judges: it shares with the Flink job only the lake's column names and types
(``harness/lake_schema.py``) and the job's *documented* contract (the routing bound ``B``, the _SUCCESS lag).
Every expectation is derived here from sources the job does not write — the binlog and final table
(``GroundTruth``), the customers dimension's own change log, the topic as the broker stamped it
(``harness/topic.py``), the lake objects' commit times — and from rules written out in this module (the
derived columns, the partition of an event time).  Vectorised in DuckDB over Arrow (no per-row Python).

Identity
    A change is its place in the binlog, ``(src_file, src_pos, src_row, op)`` (a primary-key update is a
    ``d`` and a ``c`` at the same place).  Snapshot rows (``op = 'r'``, ``src_snapshot`` not ``'false'``) are
    state reads, identified by ``(src_file, src_pos, order_id)`` and judged against the fold of the truth up
    to their consistent point (SNAPSHOT_MISMATCH), not as changes.

Routing (LATE_MISROUTED)
    The job routes a change to the late table when ``event_time_ms <= w``, ``w`` its routing watermark, and
    records ``w`` in ``watermark_ms``.  We never recompute ``w`` the job's way; we bound it from evidence the
    job does not write:

    - lowest(change) = ``truth.ts_ms - B``: the documented floor (the routing watermark is never below the
      change's own commit time - B), so ``w >= ts_ms - B`` whatever Flink's watermark was;
    - highest(row) = ``max(GREATEST(event_time_ms, src_ts_ms)) - B`` over the topic records with
      ``kafka_ts_ms <= file_mtime_ms + 1000``: the row was routed before its file was committed (the object's
      LastModified), so the job had read at most the records the broker had appended by then (LogAppendTime);
      any watermark it held is at most the largest time attribute among them minus ``B``.  ``event_time_ms``
      counts for orders records only; the 1000 ms cover clock skew and LastModified's second resolution.

    With E the change's true lake event time (``event_time_ms``; ``ts_ms`` for a delete), a row violates:
    (1) ``E <= lowest`` and not in the late table; (2) ``E > highest`` and not in the main table;
    (3) ``watermark_ms`` null or outside ``[lowest, highest]``; (4) the table disagrees with its own
    ``watermark_ms`` (main <=> ``E > watermark_ms``); (5) ``watermark_ms`` goes back along a Kafka
    partition's offsets: the documented routing watermark never goes back (it is checkpointed), and a job
    reads each partition in offset order, so whatever watermark it recorded must be non-decreasing there.
    Rule (5) needs no clock: it convicts a forged watermark (say, each row's own event time) even in files
    rewritten later, whose LastModified loosens ``highest``.  Without a topic, ``highest`` is unknown and
    only (1), the lower half of (3), (4) and (5) are judged.

_SUCCESS (main table only; the late table is exempt both ways)
    MISSING_SUCCESS: ``flink_watermark_ms > hour end + success_lag_ms`` for an hour that holds the true event
    time of a change in the main table, and no marker.
    PREMATURE_SUCCESS, from the topic: (a) a marker for an hour whose end no routing
    watermark can have passed yet (the largest time attribute the broker has appended so far, minus ``B``,
    is not past it), or (b) an on-time change of that hour that the broker appended after the marker was
    written (its record's LogAppendTime > the marker's LastModified + slack) — both judge content, so a data
    file merely rewritten later is no evidence.  Without the topic: a main data file whose LastModified is
    after its partition's marker.

What each fault shows as (each fault once, under its most specific class):

- a changed image column, gtid/ts/server id, kafka coordinates, or event time (even with the row moved to the
  partition of the new time): CHANGE_MISMATCH — the coordinates still match; the key is then left out of the
  STATE_MISMATCH fold, and routing is judged on the true event time, so it is not also LATE_MISROUTED;
- a flipped op, forged coordinates on a row (its identity changed): PHANTOM (the row) + LOST (the change it
  replaced); a row added with forged coordinates or from a rolled-back transaction: PHANTOM only;
- a dropped change (also one that did not bump ``version``): LOST; in a partition with an unreadable file:
  CORRUPT_FILE (``changes_unaccounted``) instead;
- a copied row: DUPLICATE (count = extra copies), in main + late alike;
- a wrong ``line_total``/``status_category``/region/segment, or ``price_tier`` in a file that has it (lake schema
  version 2 on; files written before lack the column and are not judged on it) (e.g. the region before the
  customer's change, or
  a customers change that committed after the order, whatever its timestamp): ENRICHMENT_WRONG (derived
  from the row's own image, so a wrong image is CHANGE_MISMATCH only; the customer is the one the order's
  commit saw, the last customers change before it in the binlog);
- a row in another hour's directory than its own event time: WRONG_PARTITION;
- a late change moved to the main table, all changes routed late, a forged watermark: LATE_MISROUTED;
- STATE_MISMATCH is a second opinion (lake fold vs final table) over keys with no LOST or CHANGE_MISMATCH
  change: it fires when the truth's binlog and final table disagree, or the fold itself is wrong.

Cost: one join of the lake's change rows with the truth (and the topic record each names) carries a 64-bit
hash of the columns CHANGE_MISMATCH compares; only rows whose hashes differ are compared column by column.
The per-file columns (file, table, dt, hr, mtime) are kept once per file, not per row.

Verdict JSON (``schema_version`` 2), stable: ``{"schema_version", "verdict": CLEAN|ANOMALIES|STALLED, "clean",
"stalled", "anomalies": {CLASS: {"count", "examples", ...}}, "counts", "history", "context"}`` with every class
of :data:`ANOMALY_CLASSES` present (zero or not); the history classes count against CLEAN.  Examples of LOST,
DUPLICATE, PHANTOM, CHANGE_MISMATCH and LATE_MISROUTED carry the chain binlog -> topic record(s) -> lake file(s).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.lake_schema import ADDED_COLUMNS, CHANGE_SCHEMA, MAIN_TABLE
from harness.topic import ORDERS_TABLE, TOPIC_SCHEMA, skipped_counts

if TYPE_CHECKING:
    from harness.lake import LakeSnapshot
    from harness.truth import GroundTruth

SCHEMA_VERSION = 2
HISTORY_CLASSES = ("HISTORY_OK_NOT_COMMITTED", "HISTORY_FAILED_BUT_COMMITTED")
ANOMALY_CLASSES = (
    "LOST",                 # a committed change with no lake row
    "DUPLICATE",            # one change (or snapshot read) present more than once across main + late
    "PHANTOM",              # a lake row whose identity no committed change has
    "CHANGE_MISMATCH",      # a matched row whose values differ from the truth / the topic record it names
    "STATE_MISMATCH",       # the lake's fold per key != the database's final row
    "WRONG_PARTITION",      # dt/hr directory != the row's event_time in UTC
    "LATE_MISROUTED",       # routing outside what the bounds allow (see the module docstring)
    "ENRICHMENT_WRONG",     # line_total, status_category, price_tier, customer_region/segment do not recompute
    "UNCOMMITTED_VISIBLE",  # an in-progress/pending file visible to readers
    "CORRUPT_FILE",         # a visible data file that is not readable Parquet of the lake's schema
    "MISSING_SUCCESS",      # a main partition the job's watermark passed has no _SUCCESS
    "PREMATURE_SUCCESS",    # a main data file committed after its partition's _SUCCESS
    "SNAPSHOT_MISMATCH",    # a snapshot read that is not the order's state at its consistent point
    *HISTORY_CLASSES,       # client history vs binlog (from the truth)
)
HOUR_MS = 3_600_000
EXAMPLES = 5
MTIME_SLACK_MS = 1000

#: the checker's own statement of the derived columns (the lake's documented contract)
STATUS_CATEGORY = {"pending": "open", "paid": "open", "shipped": "in_flight", "delivered": "done",
                   "cancelled": "cancelled", "returned": "cancelled"}
UNKNOWN_CATEGORY = "unknown"
#: price tiers by unit_price: (exclusive upper bound, tier) in order, then the top tier; NULL price, NULL tier
PRICE_TIERS = ((20, "low"), (100, "mid"))
TOP_PRICE_TIER = "high"
#: the lake schema version whose files carry ``price_tier`` (files of earlier versions lack the column)
PRICE_TIER_SINCE = min(v for v, added in ADDED_COLUMNS.items() if "price_tier" in added.names)
#: the order's own columns a change carries (after image; before image for a delete)
IMAGE_COLUMNS = ("order_id", "customer_id", "product", "quantity", "unit_price", "status", "version",
                 "created_at_ms", "updated_at_ms")
#: what the final table and the lake's fold are compared on
STATE_COLUMNS = ("customer_id", "product", "quantity", "unit_price", "status", "version", "event_time_ms",
                 "created_at_ms", "updated_at_ms")
_FILE_RANK = 1 << 40      # binlog position ordering key: file rank * 2^40 + pos


def _sql_status_category(column: str) -> str:
    whens = " ".join(f"WHEN '{s}' THEN '{c}'" for s, c in STATUS_CATEGORY.items())
    return f"(CASE {column} {whens} ELSE '{UNKNOWN_CATEGORY}' END)"


def _sql_price_tier(unit_price: str) -> str:
    whens = " ".join(f"WHEN {unit_price} < {bound} THEN '{tier}'" for bound, tier in PRICE_TIERS)
    return f"(CASE WHEN {unit_price} IS NULL THEN NULL {whens} ELSE '{TOP_PRICE_TIER}' END)"


def _sql_line_total(quantity: str, unit_price: str) -> str:
    return (f"TRY_CAST(round(CAST({quantity} AS DECIMAL(18, 0)) * CAST({unit_price} AS DECIMAL(18, 2)), 2) "
            "AS DECIMAL(12, 2))")


def _hour_start_ms(dt_s: str, hr_s: str) -> int | None:
    try:
        t = _dt.datetime.strptime(f"{dt_s} {hr_s}", "%Y-%m-%d %H").replace(tzinfo=_dt.UTC)
    except ValueError:
        return None
    return int(t.timestamp() * 1000)


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    return {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.string(): "VARCHAR"}.get(t, "VARCHAR")


def _jsonable(v: Any) -> Any:
    return v if v is None or isinstance(v, bool | int | float | str) else str(v)


@dataclass
class Verdict:
    anomalies: dict[str, dict[str, Any]]
    counts: dict[str, Any]
    history: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    stalled: str | None = None

    @property
    def clean(self) -> bool:
        return self.stalled is None and all(a["count"] == 0 for a in self.anomalies.values())

    @property
    def verdict(self) -> str:
        if self.stalled is not None:
            return "STALLED"
        return "CLEAN" if self.clean else "ANOMALIES"

    def found(self) -> set[str]:
        """The classes with a non-zero count."""
        return {name for name, a in self.anomalies.items() if a["count"]}

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "verdict": self.verdict, "clean": self.clean,
                "stalled": self.stalled, "anomalies": self.anomalies, "counts": self.counts,
                "history": self.history, "context": self.context}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def summary(self) -> str:
        lines = [f"verdict: {self.verdict}"]
        if self.stalled:
            lines.append(f"  pipeline did not catch up: {self.stalled}")
        c = self.counts
        lines.append(f"  truth changes {c.get('truth_changes')}, lake rows main {c.get('lake_rows_main')} "
                     f"late {c.get('lake_rows_late')} dlq {c.get('lake_rows_dlq')}, "
                     f"files {c.get('data_files')}, partitions {c.get('partitions')}, "
                     f"topic checks {c.get('topic_checks')}")
        for name, a in self.anomalies.items():
            if a["count"]:
                lines.append(f"  {name}: {a['count']}  e.g. {json.dumps(a['examples'][:2], default=str)}")
        return "\n".join(lines)


class ExactlyOnceChecker:
    """Judges one lake snapshot against the database's truth and the topic (see the module docstring).

    ``bound_ms``: the job's documented routing bound B; ``success_lag_ms``: how far past an hour's end the
    job's watermark must be before the partition's _SUCCESS is due (default: ``bound_ms``).
    """

    def __init__(self, bound_ms: int = 5000, success_lag_ms: int | None = None) -> None:
        self.bound_ms = int(bound_ms)
        self.success_lag_ms = int(success_lag_ms) if success_lag_ms is not None else self.bound_ms

    # ------------------------------------------------------------------------------------------------ public
    def check(self, truth: GroundTruth, lake: LakeSnapshot, topic: pa.Table | None = None,
              flink_watermark_ms: int | None = None, stalled: str | None = None,
              context: dict[str, Any] | None = None) -> Verdict:
        con = duckdb.connect()
        try:
            con.execute("SET threads TO 2")
            con.execute("SET preserve_insertion_order = false")
            return self._check(con, truth, lake, topic, flink_watermark_ms, stalled, context or {})
        finally:
            con.close()

    # ------------------------------------------------------------------------------------------------ inputs
    def _register(self, con: duckdb.DuckDBPyConnection, truth: Any, lake: LakeSnapshot,
                  topic: pa.Table | None) -> dict[str, Any]:
        changes: pa.Table = truth.changes
        con.register("truth_changes", changes)
        con.register("final_state", truth.final_state)
        customers = getattr(truth, "customers", None)
        if customers is not None:
            con.register("customers", customers)
        rows = lake.changes()
        for name, typ in (("file_mtime_ms", pa.int64()), ("lake_version", pa.int32()), ("price_tier", pa.string())):
            if name not in rows.column_names:   # a lake built without them (before they existed)
                rows = rows.append_column(name, pa.nulls(rows.num_rows, typ))
        con.register("lake", rows)
        # the per-file columns (long strings, constant per file) move to a small table `lf` keyed by `fid`, so
        # the per-row work carries one int instead of them
        per_file = ["file", "tbl", "dt", "hr", "file_mtime_ms"]
        key = pc.binary_join_element_wise(*[pc.cast(rows[c], pa.string()) for c in per_file], "\x1f",
                                          null_handling="replace", null_replacement="\x00")
        encoded = pc.dictionary_encode(key).combine_chunks() if rows.num_rows else pa.array([], pa.dictionary(
            pa.int32(), pa.string()))
        fid = encoded.indices.cast(pa.int32())
        uniq, first = np.unique(fid.to_numpy(zero_copy_only=False), return_index=True)
        con.register("lf", rows.select(per_file).take(pa.array(first, pa.int64()))
                     .append_column("fid", pa.array(uniq, pa.int32())))
        con.register("lake_rows", rows.drop_columns([*per_file, "processed_ms"]).append_column("fid", fid))
        con.register("topic", topic if topic is not None else TOPIC_SCHEMA.empty_table())
        corrupt = pa.Table.from_pylist(
            [{"dt": c.get("dt"), "hr": c.get("hr")} for c in lake.corrupt if c.get("table") != "orders_dlq"],
            schema=pa.schema([("dt", pa.string()), ("hr", pa.string())]))
        con.register("corrupt_parts", corrupt)
        return {"truth_cols": set(changes.column_names), "final_cols": set(truth.final_state.column_names),
                "has_customers": customers is not None, "has_topic": topic is not None}

    # ------------------------------------------------------------------------------------------------ judge
    def _check(self, con: duckdb.DuckDBPyConnection, truth: Any, lake: LakeSnapshot, topic: pa.Table | None,
               flink_watermark_ms: int | None, stalled: str | None, context: dict[str, Any]) -> Verdict:
        info = self._register(con, truth, lake, topic)
        truth_cols: set[str] = info["truth_cols"]
        has_topic: bool = info["has_topic"]
        b = self.bound_ms

        # the lake columns a matched row must carry as the truth has them (lake column, truth column)
        pairs = [(c, f"t_{c}") for c in IMAGE_COLUMNS if c in truth_cols]
        pairs.append(("event_time_ms", "t_e"))
        pairs += [(lc, f"t_{tc}") for lc, tc in (("src_gtid", "gtid"), ("src_ts_ms", "ts_ms"),
                                                 ("src_server_id", "server_id")) if tc in truth_cols]
        # a hash of them on both sides (truth cast to the lake's types) is the cheap first pass; rows whose
        # hashes differ are then compared column by column (a 64-bit collision could hide one mismatch)
        t_hash = "hash(" + ", ".join(f"CAST({tc} AS {_duck_type(CHANGE_SCHEMA.field(lc).type)})"
                                     for lc, tc in pairs) + ")"
        l_hash = "hash(" + ", ".join(f"lc.{lc}" for lc, _ in pairs) + ")"
        if has_topic:
            topic_join = ("LEFT JOIN topic k ON k.kafka_partition = lc.kafka_partition "
                          "AND k.kafka_offset = lc.kafka_offset")
            pre_kafka = (f"(k.kafka_offset IS NULL OR k.src_table IS DISTINCT FROM '{ORDERS_TABLE}' "
                         "OR k.src_file IS DISTINCT FROM lc.src_file OR k.src_pos IS DISTINCT FROM lc.src_pos "
                         "OR k.src_row IS DISTINCT FROM lc.src_row OR k.op IS DISTINCT FROM lc.op)")
        else:
            topic_join, pre_kafka = "", "false"
        customers_files = ("customers WHERE src_file IS NOT NULL" if info["has_customers"]
                           else "(SELECT NULL::VARCHAR AS src_file) WHERE false")
        superseded = (f"""(EXISTS (SELECT 1 FROM epochs e JOIN frk ON frk.f = m.t_src_file
                              WHERE e.complete AND e.ck > frk.rk * {_FILE_RANK} + m.t_src_pos)
                          AND NOT EXISTS (SELECT 1 FROM topic k WHERE k.src_table = '{ORDERS_TABLE}'
                              AND k.src_file = m.t_src_file AND k.src_pos = m.t_src_pos
                              AND k.src_row = m.t_src_row AND k.op = m.t_op))""" if has_topic else "false")
        # the truth, prefixed t_, with E = the lake event time the contract asks for
        base = f"""
            CREATE TEMP VIEW tt0 AS SELECT {", ".join(f"{c} AS t_{c}" for c in sorted(truth_cols))},
                CASE WHEN op = 'd' THEN ts_ms ELSE event_time_ms END AS t_e FROM truth_changes;
            CREATE TEMP VIEW tt AS SELECT *, {t_hash} AS t_hash FROM tt0;
            CREATE TEMP VIEW lk AS SELECT *,
                coalesce(op = 'r' AND coalesce(src_snapshot, 'true') <> 'false', false) AS is_snap FROM lake_rows;
            -- every change row of the lake with the truth change of its identity (t_seq null: none), whether its
            -- values hash like the truth's, and whether the topic record it names carries its identity
            CREATE TEMP TABLE lx AS SELECT lc.* EXCLUDE (is_snap), tt.t_seq, tt.t_ts_ms, tt.t_e, tt.t_order_id,
                    tt.t_hash IS DISTINCT FROM {l_hash} AS bad_hash, {pre_kafka} AS bad_kafka
                FROM (SELECT * FROM lk WHERE NOT is_snap) lc LEFT JOIN tt
                ON tt.t_src_file = lc.src_file AND tt.t_src_pos = lc.src_pos AND tt.t_src_row = lc.src_row
                   AND tt.t_op = lc.op
                {topic_join};
            -- matched rows (identity columns equal the truth's by construction) and phantoms, with their file
            CREATE TEMP VIEW m AS SELECT lx.*, lx.src_file AS t_src_file, lx.src_pos AS t_src_pos,
                    lx.src_row AS t_src_row, lx.op AS t_op, lf.tbl, lf.file, lf.dt, lf.hr, lf.file_mtime_ms
                FROM lx JOIN lf USING (fid) WHERE lx.t_seq IS NOT NULL;
            CREATE TEMP VIEW ph AS SELECT lx.*, lf.tbl, lf.file, lf.dt, lf.hr, lf.file_mtime_ms
                FROM lx JOIN lf USING (fid) WHERE lx.t_seq IS NULL;
            CREATE TEMP TABLE ls AS SELECT lk.* EXCLUDE (is_snap), lf.tbl, lf.file, lf.dt, lf.hr, lf.file_mtime_ms
                FROM lk JOIN lf USING (fid) WHERE is_snap;
            CREATE TEMP TABLE missing AS SELECT tt.* FROM tt ANTI JOIN lx ON lx.t_seq = tt.t_seq;
            CREATE TEMP TABLE missing2 AS SELECT *, strftime(epoch_ms(t_e), '%Y-%m-%d') AS want_dt,
                strftime(epoch_ms(t_e), '%H') AS want_hr FROM missing;
            DROP TABLE missing;
            CREATE TEMP TABLE missing AS SELECT m2.*, EXISTS (SELECT 1 FROM corrupt_parts c
                    WHERE c.dt = m2.want_dt AND c.hr = m2.want_hr) AS in_corrupt_partition FROM missing2 m2;
            -- binlog files in log order (the checker's own rank: by name length, then name)
            CREATE TEMP TABLE frk AS SELECT f, row_number() OVER (ORDER BY length(f), f) AS rk FROM (
                SELECT DISTINCT t_src_file AS f FROM tt WHERE t_src_file IS NOT NULL
                UNION SELECT DISTINCT src_file FROM ls WHERE src_file IS NOT NULL
                UNION SELECT DISTINCT src_file FROM topic WHERE src_file IS NOT NULL
                UNION SELECT DISTINCT src_file FROM {customers_files});
            -- snapshot epochs: the consistent points of state reads (op r).  One is complete when Debezium
            -- marked its orders reads through to the table's last (source.snapshot last_in_data_collection, or
            -- last).  With the topic its records say (a snapshot of an empty table publishes nothing, so then a
            -- last mark at that point on any table does), else the lake's rows
            CREATE TEMP TABLE epochs AS SELECT p.src_file, p.src_pos, frk.rk * {_FILE_RANK} + p.src_pos AS ck,
                    (SELECT count(*) FROM ls WHERE ls.src_file = p.src_file AND ls.src_pos = p.src_pos) AS reads,
                    p.complete
                FROM (SELECT src_file, src_pos, bool_or(
                        (src_table = '{ORDERS_TABLE}' AND src_snapshot = 'last_in_data_collection')
                        OR src_snapshot = 'last') AS complete
                      FROM topic WHERE op = 'r' AND src_file IS NOT NULL GROUP BY ALL
                      UNION ALL
                      SELECT src_file, src_pos, bool_or(src_snapshot IN ('last', 'last_in_data_collection'))
                      FROM ls WHERE src_file IS NOT NULL AND NOT {has_topic} GROUP BY ALL) p
                JOIN frk ON frk.f = p.src_file;
            -- a change the lake lacks because Debezium never published it (not in the topic) and a complete
            -- snapshot epoch after it re-read the state: superseded, not LOST (the binlog was purged behind
            -- Debezium, or its offsets were lost).  Without the topic nothing proves "never published"
            CREATE TEMP TABLE missing3 AS SELECT m.*, {superseded} AS superseded FROM missing m;
            DROP TABLE missing;
            ALTER TABLE missing3 RENAME TO missing;
        """
        for statement in base.split(";"):
            if statement.strip():
                con.execute(statement)
        anomalies: dict[str, dict[str, Any]] = {}
        chains: list[tuple[dict[str, Any], tuple[Any, ...]]] = []   # examples waiting for their chain

        def rows(sql: str, limit: int = EXAMPLES) -> list[dict[str, Any]]:
            return con.sql(f"SELECT * FROM ({sql}) LIMIT {limit}").to_arrow_table().to_pylist()

        def scalar(sql: str) -> Any:
            return con.sql(sql).fetchall()[0][0]

        def binlog(r: dict[str, Any], prefix: str = "t_") -> dict[str, Any]:
            keys = ("seq", "src_file", "src_pos", "src_row", "op", "gtid", "ts_ms")
            return {k: _jsonable(r.get(prefix + k)) for k in keys if prefix + k in r}

        # LOST ----------------------------------------------------------------------------------------------
        lost = rows("SELECT * FROM missing WHERE NOT in_corrupt_partition AND NOT superseded ORDER BY t_seq")
        examples = []
        for r in lost:
            ex = {"binlog": binlog(r), "order_id": r["t_order_id"], "version": r.get("t_version"),
                  "event_time_ms": r["t_e"], "dt": r["want_dt"], "hr": r["want_hr"]}
            chains.append((ex, (r["t_src_file"], r["t_src_pos"], r["t_src_row"], r["t_op"])))
            examples.append(ex)
        anomalies["LOST"] = {"count": int(scalar("SELECT count(*) FROM missing WHERE NOT in_corrupt_partition "
                                                 "AND NOT superseded")),
                             "examples": examples}

        # PHANTOM -------------------------------------------------------------------------------------------
        phantom_sql = "SELECT * FROM ph ORDER BY src_file, src_pos, src_row, op"
        examples = []
        for r in rows(phantom_sql):
            ex = {"claimed": {k: _jsonable(r[k]) for k in ("src_file", "src_pos", "src_row", "op", "src_gtid",
                                                           "src_ts_ms")},
                  "order_id": r["order_id"], "version": r["version"], "tbl": r["tbl"], "file": r["file"],
                  "truth_changes_of_order_version": [
                      {"src_file": x[0], "src_pos": x[1], "src_row": x[2], "op": x[3]} for x in con.execute(
                          "SELECT src_file, src_pos, src_row, op FROM truth_changes WHERE order_id = ? "
                          "AND version IS NOT DISTINCT FROM ? ORDER BY seq LIMIT 5",
                          [r["order_id"], r["version"]]).fetchall()]}
            chains.append((ex, (r["src_file"], r["src_pos"], r["src_row"], r["op"])))
            examples.append(ex)
        anomalies["PHANTOM"] = {"count": int(scalar("SELECT count(*) FROM ph")),
                                "examples": examples}

        # DUPLICATE -----------------------------------------------------------------------------------------
        con.execute("""
            CREATE TEMP TABLE dup AS SELECT d.t_seq, t.t_src_file AS f, t.t_src_pos AS p, t.t_src_row AS r,
                    t.t_op AS o, t.t_order_id AS order_id, d.extra
                FROM (SELECT t_seq, count(*) - 1 AS extra FROM lx WHERE t_seq IS NOT NULL GROUP BY t_seq
                      HAVING count(*) > 1) d JOIN tt t ON t.t_seq = d.t_seq;
            CREATE TEMP TABLE sdup AS SELECT src_file, src_pos, order_id, count(*) - 1 AS extra,
                list(tbl || ':' || file ORDER BY tbl, file) AS places
                FROM ls GROUP BY src_file, src_pos, order_id HAVING count(*) > 1;
        """)
        examples = []
        for r in rows("SELECT * FROM dup ORDER BY t_seq"):
            ex = {"binlog": {"seq": r["t_seq"], "src_file": r["f"], "src_pos": r["p"], "src_row": r["r"],
                             "op": r["o"]}, "order_id": r["order_id"], "extra_copies": r["extra"]}
            chains.append((ex, (r["f"], r["p"], r["r"], r["o"])))
            examples.append(ex)
        examples += [{"snapshot_read": {"src_file": r["src_file"], "src_pos": r["src_pos"]},
                      "order_id": r["order_id"], "extra_copies": r["extra"], "lake": r["places"]}
                     for r in rows("SELECT * FROM sdup ORDER BY src_file, src_pos, order_id")]
        anomalies["DUPLICATE"] = {
            "count": int(scalar("SELECT coalesce(sum(extra), 0) FROM dup")
                         + scalar("SELECT coalesce(sum(extra), 0) FROM sdup")),
            "examples": examples[:EXAMPLES]}

        # CHANGE_MISMATCH -----------------------------------------------------------------------------------
        def truth_ref(tc: str) -> str:
            return f"m.{tc}" if tc in ("t_order_id", "t_e", "t_ts_ms") else f"t.{tc}"

        differ = " OR ".join(f"m.{lc} IS DISTINCT FROM {truth_ref(tc)}" for lc, tc in pairs)
        from_m = ("m JOIN tt t ON t.t_seq = m.t_seq")
        t_cols = "t.* EXCLUDE (t_seq, t_ts_ms, t_e, t_order_id, t_src_file, t_src_pos, t_src_row, t_op, t_hash)"
        if has_topic:
            bad_kafka = (f"(k.kafka_offset IS NULL OR k.src_table IS DISTINCT FROM '{ORDERS_TABLE}' "
                         "OR k.src_file IS DISTINCT FROM m.t_src_file OR k.src_pos IS DISTINCT FROM m.t_src_pos "
                         "OR k.src_row IS DISTINCT FROM m.t_src_row OR k.op IS DISTINCT FROM m.t_op)")
            con.execute(f"""
                CREATE TEMP TABLE cm AS SELECT m.* EXCLUDE (bad_kafka), {t_cols},
                    k.kafka_offset IS NOT NULL AS k_found, k.src_table AS k_table, k.src_file AS k_file,
                    k.src_pos AS k_pos, k.src_row AS k_row, k.op AS k_op, {bad_kafka} AS bad_kafka
                FROM {from_m} LEFT JOIN topic k ON k.kafka_partition = m.kafka_partition
                                        AND k.kafka_offset = m.kafka_offset
                WHERE (m.bad_hash OR m.bad_kafka) AND ({differ} OR {bad_kafka})""")
        else:
            con.execute(f"""CREATE TEMP TABLE cm AS SELECT m.* EXCLUDE (bad_kafka), {t_cols}, false AS k_found,
                            NULL AS k_table, NULL AS k_file, NULL AS k_pos, NULL AS k_row, NULL AS k_op,
                            false AS bad_kafka FROM {from_m} WHERE m.bad_hash AND ({differ})""")
        examples = []
        for r in rows("SELECT * FROM cm ORDER BY t_seq, tbl, file"):
            cols = {lc: {"lake": _jsonable(r[lc]), "truth": _jsonable(r[tc])} for lc, tc in pairs
                    if r[lc] != r[tc]}
            if r["bad_kafka"]:
                there = (f"{r['k_table']} {r['k_file']}:{r['k_pos']}#{r['k_row']} op={r['k_op']}"
                         if r["k_found"] else "no record there")
                cols["kafka_partition/kafka_offset"] = {
                    "lake": f"{r['kafka_partition']}@{r['kafka_offset']}", "truth": f"topic record: {there}"}
            ex = {"binlog": binlog(r), "order_id": r["t_order_id"], "tbl": r["tbl"], "file": r["file"],
                  "columns": cols}
            chains.append((ex, (r["t_src_file"], r["t_src_pos"], r["t_src_row"], r["t_op"])))
            examples.append(ex)
        anomalies["CHANGE_MISMATCH"] = {"count": int(scalar("SELECT count(*) FROM cm")), "examples": examples}

        # SNAPSHOT_MISMATCH (before the fold, which leaves out the keys of wrong state reads) -----------------
        anomalies["SNAPSHOT_MISMATCH"], unjudged = self._snapshot(con, info)

        # STATE_MISMATCH ------------------------------------------------------------------------------------
        anomalies["STATE_MISMATCH"] = self._state_mismatch(con, info)

        # WRONG_PARTITION -----------------------------------------------------------------------------------
        anomalies["WRONG_PARTITION"] = self._wrong_partition(con)

        # LATE_MISROUTED ------------------------------------------------------------------------------------
        anomalies["LATE_MISROUTED"], routing = self._late_misrouted(con, has_topic, chains)

        # ENRICHMENT_WRONG ----------------------------------------------------------------------------------
        anomalies["ENRICHMENT_WRONG"] = self._enrichment(con, info)

        # files ---------------------------------------------------------------------------------------------
        visible = lake.of_kind("uncommitted_visible")
        anomalies["UNCOMMITTED_VISIBLE"] = {"count": len(visible), "examples": [
            {"file": f.path, "size": f.size} for f in visible[:EXAMPLES]]}
        unaccounted = scalar("SELECT count(*) FROM missing WHERE in_corrupt_partition")
        anomalies["CORRUPT_FILE"] = {"count": len(lake.corrupt), "examples": lake.corrupt[:EXAMPLES],
                                     "changes_unaccounted": int(unaccounted)}
        anomalies["MISSING_SUCCESS"], anomalies["PREMATURE_SUCCESS"] = self._success(
            con, lake, flink_watermark_ms, has_topic)

        # history -------------------------------------------------------------------------------------------
        history = dict(getattr(truth, "history_anomalies", None) or {})
        for name in HISTORY_CLASSES:
            items = list(history.get(name, []))
            anomalies[name] = {"count": len(items), "examples": items[:EXAMPLES]}

        self._fill_chains(con, chains, has_topic)
        anomalies = {name: anomalies[name] for name in ANOMALY_CLASSES}

        counts: dict[str, Any] = {
            "truth_changes": truth.changes.num_rows, "final_rows": truth.final_state.num_rows,
            "truth_customer_changes": truth.customers.num_rows if info["has_customers"] else None,
            "lake_rows_main": lake.main.num_rows, "lake_rows_late": lake.late.num_rows,
            "lake_rows_dlq": lake.dlq.num_rows, "lake_snapshot_rows": int(scalar("SELECT count(*) FROM ls")),
            "snapshot_epochs": rows("SELECT src_file, src_pos, reads, complete FROM epochs ORDER BY ck"),
            "changes_superseded_by_snapshot": int(scalar("SELECT count(*) FROM missing WHERE superseded")),
            "matched_rows": int(scalar("SELECT count(*) FROM lx WHERE t_seq IS NOT NULL")),
            "data_files": len(lake.of_kind("data")), "hidden_files": len(lake.of_kind("hidden")),
            "partitions": len(lake.data_partitions), "success_markers": len(lake.success_markers),
            "bound_ms": b, "success_lag_ms": self.success_lag_ms, "flink_watermark_ms": flink_watermark_ms,
            "topic_checks": "done" if has_topic else "skipped",
            "topic_records": topic.num_rows if topic is not None else None,
            "topic_skipped": skipped_counts(topic) if topic is not None else None,
            "enrichment_dimension": "done" if info["has_customers"] else "skipped",
            "routing": routing, "snapshot_rows_unjudged": unjudged,
            "success_checks": "done" if flink_watermark_ms is not None else "premature only (no watermark)",
        }
        return Verdict(anomalies, counts, history, context, stalled)

    # ------------------------------------------------------------------------------------------------ rules
    def _state_mismatch(self, con: duckdb.DuckDBPyConnection, info: dict[str, Any]) -> dict[str, Any]:
        cols = [c for c in STATE_COLUMNS if c in info["final_cols"]]
        distinct = " OR ".join(f"s.{c} IS DISTINCT FROM f.{c}" for c in cols) or "false"
        diff_list = ", ".join(f"CASE WHEN s.{c} IS DISTINCT FROM f.{c} THEN '{c}' END" for c in cols)
        sql = f"""
            WITH covered AS (SELECT DISTINCT order_id AS k FROM truth_changes WHERE order_id IS NOT NULL),
            bad AS (SELECT t_order_id AS k FROM missing WHERE NOT superseded UNION SELECT t_order_id FROM cm
                    UNION SELECT order_id FROM cm UNION SELECT order_id FROM sm2),
            judged AS (SELECT k FROM covered ANTI JOIN bad USING (k)),
            -- the fold: per key the last row in source order, changes and snapshot reads alike: a complete
            -- snapshot epoch replaces the key set (a key it lacks, changed last before it, was deleted while
            -- Debezium was away: that delete has no event)
            cand AS (SELECT lx.t_order_id, frk.rk * {_FILE_RANK} + lx.src_pos AS ck, lx.t_seq AS tb,
                            struct_pack(op, {", ".join(f"lx.{c}" for c in cols)}) AS img
                     FROM lx JOIN frk ON frk.f = lx.src_file WHERE lx.t_seq IS NOT NULL
                     UNION ALL
                     SELECT ls.order_id, frk.rk * {_FILE_RANK} + ls.src_pos, -1,
                            struct_pack(op, {", ".join(f"ls.{c}" for c in cols)})
                     FROM ls JOIN frk ON frk.f = ls.src_file WHERE ls.order_id IS NOT NULL),
            last_epoch AS (SELECT coalesce(max(ck), -1) AS ck FROM epochs WHERE complete),
            folded AS (SELECT t_order_id, arg_max(img, (ck, tb)) AS img, max(ck) AS last_ck FROM cand
                       GROUP BY t_order_id),
            s AS (SELECT t_order_id, unnest(img) FROM folded SEMI JOIN judged ON judged.k = folded.t_order_id
                  WHERE img.op <> 'd' AND folded.last_ck >= (SELECT ck FROM last_epoch)),
            f AS (SELECT * FROM final_state WHERE order_id IN (SELECT k FROM judged))
            SELECT judged.k AS order_id,
                   CASE WHEN f.order_id IS NULL THEN 'in lake, absent from database'
                        WHEN s.t_order_id IS NULL THEN 'in database, absent or deleted in lake'
                        ELSE 'values differ' END AS problem,
                   list_filter([{diff_list}], lambda x: x IS NOT NULL) AS columns,
                   s.version AS lake_version, f.version AS db_version
            FROM judged LEFT JOIN s ON s.t_order_id = judged.k LEFT JOIN f ON f.order_id = judged.k
            WHERE (s.t_order_id IS NULL) <> (f.order_id IS NULL)
               OR (s.t_order_id IS NOT NULL AND ({distinct}))"""
        con.execute(f"CREATE TEMP TABLE sm AS {sql}")
        return {"count": int(con.sql("SELECT count(*) FROM sm").fetchall()[0][0]),
                "examples": con.sql(f"SELECT * FROM sm ORDER BY order_id LIMIT {EXAMPLES}").to_arrow_table()
                .to_pylist()}

    def _wrong_partition(self, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        # matched changes and snapshot reads (phantoms are PHANTOM only); a cheap per-file pass first, the
        # per-row strftime only inside files that are not uniformly right
        con.execute(f"""
            CREATE TEMP VIEW pr AS
                SELECT fid, event_time_ms, src_file, src_pos, src_row, op, order_id FROM lx WHERE t_seq IS NOT NULL
                UNION ALL
                SELECT fid, event_time_ms, src_file, src_pos, src_row, op, order_id FROM ls;
            CREATE TEMP TABLE suspect AS SELECT g.fid FROM (
                    SELECT fid, count(*) AS n, count(event_time_ms) AS nt, min(event_time_ms) AS lo,
                           max(event_time_ms) AS hi FROM pr GROUP BY fid) g JOIN lf USING (fid)
                WHERE g.nt < g.n OR g.lo // {HOUR_MS} <> g.hi // {HOUR_MS}
                    OR strftime(epoch_ms(g.lo), '%Y-%m-%d') IS DISTINCT FROM lf.dt
                    OR strftime(epoch_ms(g.lo), '%H') IS DISTINCT FROM lf.hr
                    OR strftime(epoch_ms(g.hi), '%Y-%m-%d') IS DISTINCT FROM lf.dt
                    OR strftime(epoch_ms(g.hi), '%H') IS DISTINCT FROM lf.hr;
            CREATE TEMP TABLE wp AS SELECT lf.tbl, lf.file, lf.dt, lf.hr, pr.* EXCLUDE (fid),
                    strftime(epoch_ms(event_time_ms), '%Y-%m-%d') AS want_dt,
                    strftime(epoch_ms(event_time_ms), '%H') AS want_hr
                FROM pr JOIN suspect USING (fid) JOIN lf USING (fid)
                WHERE lf.dt IS DISTINCT FROM strftime(epoch_ms(event_time_ms), '%Y-%m-%d')
                   OR lf.hr IS DISTINCT FROM strftime(epoch_ms(event_time_ms), '%H');
        """)
        return {"count": int(con.sql("SELECT count(*) FROM wp").fetchall()[0][0]),
                "examples": con.sql(f"SELECT * FROM wp ORDER BY src_file, src_pos, src_row LIMIT {EXAMPLES}")
                .to_arrow_table().to_pylist()}

    def _late_misrouted(self, con: duckdb.DuckDBPyConnection, has_topic: bool,
                        chains: list[tuple[dict[str, Any], tuple[Any, ...]]]) -> tuple[dict[str, Any], dict[str, Any]]:
        b = self.bound_ms
        if has_topic:
            # highest(file) = max GREATEST(event_time (orders), src_ts_ms) over records appended by the file's
            # commit (+ slack), minus B: a running max over append time, then an ASOF lookup per file mtime
            con.execute(f"""
                CREATE TEMP TABLE fh AS
                WITH g AS (SELECT kafka_ts_ms, max(greatest(
                               CASE WHEN src_table = '{ORDERS_TABLE}' THEN event_time_ms END, src_ts_ms)) AS g
                           FROM topic WHERE kafka_ts_ms IS NOT NULL GROUP BY kafka_ts_ms),
                     run AS (SELECT kafka_ts_ms, max(g) OVER (ORDER BY kafka_ts_ms
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS gmax FROM g),
                     mt AS (SELECT DISTINCT file_mtime_ms FROM lf WHERE file_mtime_ms IS NOT NULL)
                SELECT mt.file_mtime_ms, run.gmax - {b} AS highest
                FROM mt ASOF LEFT JOIN run ON mt.file_mtime_ms + {MTIME_SLACK_MS} >= run.kafka_ts_ms""")
        else:
            con.execute("CREATE TEMP TABLE fh AS SELECT NULL::BIGINT AS file_mtime_ms, NULL::BIGINT AS highest "
                        "WHERE false")
        con.execute(f"""
            CREATE TEMP TABLE rt AS SELECT * FROM (
                SELECT m.t_seq, m.t_src_file, m.t_src_pos, m.t_src_row, m.t_op, m.t_ts_ms, m.t_order_id,
                       m.tbl, m.file, m.file_mtime_ms, m.watermark_ms, m.t_e AS event_time_ms,
                       m.t_ts_ms - {b} AS lowest, fh.highest,
                       m.t_e <= m.t_ts_ms - {b} AND m.tbl <> 'late' AS r1,
                       coalesce(m.t_e > fh.highest AND m.tbl <> 'main', false) AS r2,
                       m.watermark_ms IS NULL OR m.watermark_ms < m.t_ts_ms - {b}
                           OR coalesce(m.watermark_ms > fh.highest, false) AS r3,
                       coalesce((m.tbl = 'main') <> (m.t_e > m.watermark_ms), false) AS r4,
                       coalesce(m.watermark_ms < m.wm_before AND NOT m.bad_kafka, false) AS r5
                FROM (SELECT *, max(CASE WHEN NOT bad_kafka THEN watermark_ms END) OVER (
                                    PARTITION BY kafka_partition ORDER BY kafka_offset
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS wm_before FROM m) m
                LEFT JOIN fh ON fh.file_mtime_ms = m.file_mtime_ms)
            WHERE r1 OR r2 OR r3 OR r4 OR r5""")
        examples = []
        for r in con.sql(f"SELECT * FROM rt ORDER BY t_seq, tbl, file LIMIT {EXAMPLES}").to_arrow_table().to_pylist():
            rules = [text for key, text in (
                ("r1", "event_time <= lowest (commit time - B) but not in the late table"),
                ("r2", "event_time > highest (topic evidence by the file's commit) but not in the main table"),
                ("r3", "watermark_ms outside [lowest, highest]"),
                ("r4", "table disagrees with watermark_ms (main <=> event_time > watermark_ms)"),
                ("r5", "watermark_ms went back along its Kafka partition's offsets")) if r[key]]
            ex = {"binlog": {"seq": r["t_seq"], "src_file": r["t_src_file"], "src_pos": r["t_src_pos"],
                             "src_row": r["t_src_row"], "op": r["t_op"], "ts_ms": r["t_ts_ms"]},
                  "order_id": r["t_order_id"], "rules": rules, "tbl": r["tbl"], "event_time_ms": r["event_time_ms"],
                  "watermark_ms": r["watermark_ms"], "lowest": r["lowest"], "highest": r["highest"],
                  "file": r["file"], "file_mtime_ms": r["file_mtime_ms"]}
            chains.append((ex, (r["t_src_file"], r["t_src_pos"], r["t_src_row"], r["t_op"])))
            examples.append(ex)
        count = int(con.sql("SELECT count(*) FROM rt").fetchall()[0][0])
        unbounded = int(con.sql("SELECT count(*) FROM m LEFT JOIN fh USING (file_mtime_ms) "
                                "WHERE fh.highest IS NULL").fetchall()[0][0])
        return {"count": count, "examples": examples}, {"rows_without_highest": unbounded}

    def _enrichment(self, con: duckdb.DuckDBPyConnection, info: dict[str, Any]) -> dict[str, Any]:
        has_dim = info["has_customers"]
        rel = {"x": "(SELECT *, rowid AS rk FROM lx WHERE t_seq IS NOT NULL)", "l": "(SELECT *, rowid AS rk FROM ls)"}
        if has_dim:
            # The dimension as of a change is the customers row its commit saw: the last customers change before
            # it in the binlog (commit order).  Not by timestamp: binlog timestamps are when a statement began,
            # in whole seconds, so a customers change can carry an earlier second than an order change yet
            # commit after it.  A snapshot read sees what was committed before its consistent point.
            con.execute(f"""
                CREATE TEMP TABLE dim AS SELECT c.customer_id, frk.rk * {_FILE_RANK} + c.src_pos AS ck, c.src_file,
                    c.src_pos, c.ts_ms, c.op, c.region, c.segment FROM customers c JOIN frk ON frk.f = c.src_file
                QUALIFY row_number() OVER (PARTITION BY c.customer_id, ck ORDER BY c.seq DESC) = 1""")
            rel = {k: f"(SELECT r.*, frk.rk * {_FILE_RANK} + r.src_pos AS at_ck FROM {v} r "
                      "LEFT JOIN frk ON frk.f = r.src_file)" for k, v in rel.items()}
        # a narrow first pass finds the wrong rows (by rowid), the second details only those
        derived = (f"line_total IS DISTINCT FROM {_sql_line_total('quantity', 'unit_price')} "
                   f"OR status_category IS DISTINCT FROM {_sql_status_category('status')} "
                   f"OR (coalesce(lake_version, 1) >= {PRICE_TIER_SINCE} "
                   f"AND price_tier IS DISTINCT FROM {_sql_price_tier('unit_price')})")
        region = "CASE WHEN d.op = 'd' THEN NULL ELSE d.region END"
        segment = "CASE WHEN d.op = 'd' THEN NULL ELSE d.segment END"
        bad = [f"SELECT '{k}' AS src, rk FROM {rel[k]} WHERE {derived}" for k in rel]
        if has_dim:
            narrow = " UNION ALL ".join(f"SELECT '{k}' AS src, rk, customer_id, at_ck, customer_region, "
                                        f"customer_segment FROM {rel[k]}" for k in rel)
            bad.append(f"""SELECT e.src, e.rk FROM ({narrow}) e
                           ASOF LEFT JOIN dim d ON e.customer_id = d.customer_id AND e.at_ck > d.ck
                           WHERE e.customer_region IS DISTINCT FROM {region}
                              OR e.customer_segment IS DISTINCT FROM {segment}""")
        con.execute(f"CREATE TEMP TABLE ebad AS {' UNION '.join(bad)}")
        src = """SELECT fid, src_file, src_pos, src_row, op, order_id, version, quantity, unit_price,
                        line_total, status, status_category, customer_id, customer_region, customer_segment,
                        price_tier, lake_version, {at} FROM {rel} r SEMI JOIN ebad b ON b.src = '{k}' AND b.rk = r.rk"""
        er = " UNION ALL ".join(src.format(at="at_ck" if has_dim else "NULL AS at_ck", rel=rel[k], k=k)
                                for k in rel)
        want_lt, want_cat = _sql_line_total("e.quantity", "e.unit_price"), _sql_status_category("e.status")
        want_tier = _sql_price_tier("e.unit_price")
        if has_dim:
            dim_cols = (f"d.src_file AS dim_file, d.src_pos AS dim_pos, d.ts_ms AS dim_ts_ms, {region} AS want_region, "
                        f"{segment} AS want_segment")
            join = "ASOF LEFT JOIN dim d ON e.customer_id = d.customer_id AND e.at_ck > d.ck"
        else:
            dim_cols = ("NULL AS dim_file, NULL AS dim_pos, NULL AS dim_ts_ms, NULL AS want_region, "
                        "NULL AS want_segment")
            join = ""
        con.execute(f"""
            CREATE TEMP TABLE ew AS SELECT e.*, {want_lt} AS want_line_total, {want_cat} AS want_status_category,
                {want_tier} AS want_price_tier, {dim_cols} FROM ({er}) e {join}""")
        examples = []
        for r in con.sql(f"SELECT ew.*, lf.tbl, lf.file FROM ew JOIN lf USING (fid) "
                         f"ORDER BY src_file, src_pos, src_row, op LIMIT {EXAMPLES}") \
                .to_arrow_table().to_pylist():
            checks = [("line_total", "want_line_total"), ("status_category", "want_status_category")]
            if (r["lake_version"] or 1) >= PRICE_TIER_SINCE:
                checks.append(("price_tier", "want_price_tier"))
            if has_dim:
                checks += [("customer_region", "want_region"), ("customer_segment", "want_segment")]
            examples.append({
                "change": {k: _jsonable(r[k]) for k in ("src_file", "src_pos", "src_row", "op")},
                "order_id": r["order_id"], "customer_id": r["customer_id"], "tbl": r["tbl"], "file": r["file"],
                # the customers change the row should carry (none: the customer did not exist yet)
                "dimension_change": None if r["dim_file"] is None else {
                    "src_file": r["dim_file"], "src_pos": r["dim_pos"], "ts_ms": r["dim_ts_ms"]},
                "columns": {c: {"lake": _jsonable(r[c]), "expected": _jsonable(r[w])} for c, w in checks
                            if r[c] != r[w]}})
        return {"count": int(con.sql("SELECT count(*) FROM ew").fetchall()[0][0]), "examples": examples}

    def _success(self, con: duckdb.DuckDBPyConnection, lake: LakeSnapshot, flink_watermark_ms: int | None,
                 has_topic: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        markers = {(f.dt, f.hr): f.last_modified_ms for f in lake.files
                   if f.kind == "success" and f.table == MAIN_TABLE}
        missing: list[dict[str, Any]] = []
        # the hours the main table must hold: those of the true event times of its matched, rightly routed
        # changes (a row in a wrong directory, with a wrong event time, or misrouted is its own anomaly)
        parts = sorted((d, h) for d, h in con.sql(
            "SELECT DISTINCT strftime(epoch_ms(t_e), '%Y-%m-%d'), strftime(epoch_ms(t_e), '%H') FROM m "
            "WHERE tbl = 'main' AND NOT EXISTS (SELECT 1 FROM rt WHERE rt.t_seq = m.t_seq AND rt.tbl = 'main')"
        ).fetchall())
        if flink_watermark_ms is not None:
            for dt_s, hr_s in parts:
                start = _hour_start_ms(dt_s, hr_s)   # type: ignore[arg-type]
                if start is None or (dt_s, hr_s) in markers:
                    continue
                if flink_watermark_ms > start + HOUR_MS + self.success_lag_ms:
                    missing.append({"table": MAIN_TABLE, "dt": dt_s, "hr": hr_s, "hour_end_ms": start + HOUR_MS,
                                    "flink_watermark_ms": flink_watermark_ms})
        premature: list[dict[str, Any]] = []
        if has_topic and markers:
            # (a) the hour could still take on-time changes: the most any routing watermark could be now (every
            # record published so far, minus B) has not passed the hour's end
            highest_now = con.sql(f"""SELECT max(greatest(CASE WHEN src_table = '{ORDERS_TABLE}' THEN event_time_ms
                                     END, src_ts_ms)) - {self.bound_ms} FROM topic""").fetchall()[0][0]
            for (dt_s, hr_s), mtime in sorted(markers.items()):
                start = _hour_start_ms(dt_s, hr_s)   # type: ignore[arg-type]
                if start is not None and (highest_now is None or highest_now <= start + HOUR_MS):
                    premature.append({"table": MAIN_TABLE, "dt": dt_s, "hr": hr_s, "success_last_modified_ms": mtime,
                                      "why": "no routing watermark can have passed the hour's end yet",
                                      "highest_possible_watermark_ms": highest_now})
            # (b) an on-time change of the hour that the broker appended after the marker was written
            con.register("markers", pa.Table.from_pylist(
                [{"dt": d, "hr": h, "marker_ms": ms} for (d, h), ms in markers.items()],
                schema=pa.schema([("dt", pa.string()), ("hr", pa.string()), ("marker_ms", pa.int64())])))
            for r in con.sql(f"""
                    SELECT m.dt, m.hr, any_value(mk.marker_ms) AS marker_ms, count(*) AS rows,
                           min(k.kafka_ts_ms) AS first_appended_ms, any_value(m.file) AS file
                    FROM m JOIN markers mk ON mk.dt = m.dt AND mk.hr = m.hr
                    JOIN topic k ON k.kafka_partition = m.kafka_partition AND k.kafka_offset = m.kafka_offset
                    WHERE m.tbl = 'main' AND k.kafka_ts_ms > mk.marker_ms + {MTIME_SLACK_MS}
                    GROUP BY m.dt, m.hr ORDER BY m.dt, m.hr""").to_arrow_table().to_pylist():
                premature.append({"table": MAIN_TABLE, "dt": r["dt"], "hr": r["hr"],
                                  "success_last_modified_ms": r["marker_ms"],
                                  "why": f"{r['rows']} on-time change(s) of the hour appended to the topic after "
                                         "the marker", "first_appended_ms": r["first_appended_ms"], "file": r["file"]})
        elif markers:   # without the topic: a data file committed after its partition's marker
            premature = [{"table": MAIN_TABLE, "dt": f.dt, "hr": f.hr, "file": f.path,
                          "file_last_modified_ms": f.last_modified_ms,
                          "success_last_modified_ms": markers[(f.dt, f.hr)]}
                         for f in sorted(lake.files, key=lambda f: f.path)
                         if f.kind == "data" and f.table == MAIN_TABLE and (f.dt, f.hr) in markers
                         and f.last_modified_ms > markers[(f.dt, f.hr)]]
        return ({"count": len(missing), "examples": missing[:EXAMPLES]},
                {"count": len(premature), "examples": premature[:EXAMPLES]})

    def _snapshot(self, con: duckdb.DuckDBPyConnection, info: dict[str, Any]) -> tuple[dict[str, Any], int]:
        if con.sql("SELECT count(*) FROM ls").fetchall()[0][0] == 0:
            con.execute("CREATE TEMP TABLE sm2 AS SELECT NULL::BIGINT AS order_id WHERE false")
            return {"count": 0, "examples": []}, 0
        truth_cols: set[str] = info["truth_cols"]
        cols = [c for c in STATE_COLUMNS if c in truth_cols]
        fcols = [c for c in cols if c in info["final_cols"]]
        # the truth image column per basis: the last change before the point (p), the first at/after it (n:
        # only a delete's before image says what the row was), or the final table (f) if the key never changed
        pick = ", ".join(
            f"p.t_{c} AS p_{c}, n.t_{c} AS n_{c}, " + (f"fs.{c} AS f_{c}" if c in fcols else f"NULL AS f_{c}")
            for c in cols)
        con.execute(f"""
            CREATE TEMP TABLE fr AS SELECT f, row_number() OVER (ORDER BY f) AS rk FROM (
                SELECT DISTINCT t_src_file AS f FROM tt WHERE t_src_file IS NOT NULL
                UNION SELECT DISTINCT src_file FROM ls WHERE src_file IS NOT NULL);
            CREATE TEMP TABLE tk AS SELECT tt.*, fr.rk * {_FILE_RANK} + tt.t_src_pos AS ck
                FROM tt JOIN fr ON fr.f = tt.t_src_file
                WHERE tt.t_order_id IN (SELECT order_id FROM ls WHERE order_id IS NOT NULL);
            CREATE TEMP TABLE tlast AS SELECT * FROM tk
                QUALIFY row_number() OVER (PARTITION BY t_order_id, ck ORDER BY t_seq DESC) = 1;
            CREATE TEMP TABLE tfirst AS SELECT * FROM tk
                QUALIFY row_number() OVER (PARTITION BY t_order_id, ck ORDER BY t_seq) = 1;
            CREATE TEMP TABLE sj AS SELECT s.*, p.t_op AS p_op, n.t_op AS n_op, fs.order_id IS NOT NULL AS f_present,
                    {pick},
                    CASE WHEN p.t_op = 'd' THEN 'deleted' WHEN p.t_op IS NOT NULL THEN 'p'
                         WHEN n.t_op = 'c' THEN 'absent' WHEN n.t_op = 'd' THEN 'n' WHEN n.t_op IS NOT NULL
                         THEN 'unknown' WHEN fs.order_id IS NOT NULL THEN 'f' ELSE 'absent' END AS basis
                FROM (SELECT ls.*, fr.rk * {_FILE_RANK} + ls.src_pos AS ck FROM ls LEFT JOIN fr ON fr.f = ls.src_file) s
                ASOF LEFT JOIN tlast p ON s.order_id = p.t_order_id AND s.ck > p.ck
                ASOF LEFT JOIN tfirst n ON s.order_id = n.t_order_id AND s.ck <= n.ck
                LEFT JOIN final_state fs ON fs.order_id = s.order_id;
        """)
        want = {c: f"(CASE basis WHEN 'p' THEN p_{c} WHEN 'n' THEN n_{c} WHEN 'f' THEN f_{c} END)" for c in cols}
        differ = " OR ".join(f"sj.{c} IS DISTINCT FROM {w}" for c, w in want.items()) or "false"
        has_topic = info["has_topic"]
        kafka = (f"""(k.kafka_offset IS NULL OR k.src_table IS DISTINCT FROM '{ORDERS_TABLE}' OR k.op <> 'r'
                      OR k.src_file IS DISTINCT FROM sj.src_file OR k.src_pos IS DISTINCT FROM sj.src_pos
                      OR k.order_id IS DISTINCT FROM sj.order_id)""" if has_topic else "false")
        join = ("LEFT JOIN topic k ON k.kafka_partition = sj.kafka_partition AND k.kafka_offset = sj.kafka_offset"
                if has_topic else "")
        con.execute(f"""
            CREATE TEMP TABLE sm2 AS SELECT sj.*, {kafka} AS bad_kafka,
                {", ".join(f"{w} AS want_{c}" for c, w in want.items())}
            FROM sj {join}
            WHERE basis IN ('deleted', 'absent') OR (basis IN ('p', 'n', 'f') AND ({differ})) OR {kafka}""")
        examples = []
        for r in con.sql(f"SELECT * FROM sm2 ORDER BY src_file, src_pos, order_id LIMIT {EXAMPLES}") \
                .to_arrow_table().to_pylist():
            problem = {"deleted": "deleted at its consistent point", "absent": "absent at its consistent point"}.get(
                r["basis"], "values differ")
            diff = {c: {"lake": _jsonable(r[c]), "truth": _jsonable(r[f"want_{c}"])} for c in cols
                    if r["basis"] in ("p", "n", "f") and r[c] != r[f"want_{c}"]}
            if r["bad_kafka"]:
                diff["kafka_partition/kafka_offset"] = {"lake": f"{r['kafka_partition']}@{r['kafka_offset']}",
                                                        "truth": "no snapshot record of this order there"}
            examples.append({"snapshot_read": {"src_file": r["src_file"], "src_pos": r["src_pos"]},
                             "order_id": r["order_id"], "tbl": r["tbl"], "file": r["file"], "problem": problem,
                             "columns": diff})
        count = int(con.sql("SELECT count(*) FROM sm2").fetchall()[0][0])
        unjudged = int(con.sql("SELECT count(*) FROM sj WHERE basis = 'unknown'").fetchall()[0][0])
        return {"count": count, "examples": examples}, unjudged

    # ------------------------------------------------------------------------------------------------ chains
    @staticmethod
    def _fill_chains(con: duckdb.DuckDBPyConnection, chains: list[tuple[dict[str, Any], tuple[Any, ...]]],
                     has_topic: bool) -> None:
        """binlog coordinates -> the topic records carrying them -> the lake files holding them, per example."""
        if not chains:
            return
        ex = pa.table({"i": pa.array(range(len(chains)), pa.int64()),
                       "f": pa.array([c[1][0] for c in chains], pa.string()),
                       "p": pa.array([c[1][1] for c in chains], pa.int64()),
                       "r": pa.array([c[1][2] for c in chains], pa.int32()),
                       "o": pa.array([c[1][3] for c in chains], pa.string())})
        con.register("ex", ex)
        found = con.sql(f"""
            SELECT ex.i,
                (SELECT list({{'partition': k.kafka_partition, 'offset': k.kafka_offset,
                                'kafka_ts_ms': k.kafka_ts_ms}} ORDER BY k.kafka_partition, k.kafka_offset)
                 FROM topic k WHERE k.src_table = '{ORDERS_TABLE}' AND k.src_file = ex.f AND k.src_pos = ex.p
                   AND k.src_row = ex.r AND k.op = ex.o) AS topic,
                (SELECT list(l.tbl || ':' || l.file ORDER BY l.tbl, l.file) FROM (
                    SELECT src_file, src_pos, src_row, op, tbl, file FROM lake_rows JOIN lf USING (fid)) l
                 WHERE l.src_file = ex.f AND l.src_pos = ex.p AND l.src_row = ex.r AND l.op = ex.o) AS lake
            FROM ex ORDER BY ex.i""").fetchall()
        con.unregister("ex")
        for (example, ident), (_i, topic_recs, lake_files) in zip(chains, found, strict=True):
            f, p, r, o = ident
            if not has_topic:
                topic_part: Any = "topic not read"
                topic_txt = "topic not read"
            elif topic_recs:
                topic_part = topic_recs
                topic_txt = ", ".join(f"p{t['partition']}@{t['offset']} (appended {t['kafka_ts_ms']})"
                                      for t in topic_recs)
            else:
                topic_part, topic_txt = [], "no topic record"
            lake_part: Any = lake_files or "not in the lake"
            lake_txt = ", ".join(lake_files) if lake_files else "not in the lake"
            example["topic"] = topic_part
            example["lake"] = lake_part
            example["chain"] = f"binlog {f}:{p}#{r} op={o} -> {topic_txt} -> {lake_txt}"
