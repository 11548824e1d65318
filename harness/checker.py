"""ExactlyOnceChecker: ground truth + lake -> a verdict with named anomalies, counts and examples.

Vectorised in DuckDB over Arrow tables (no per-row Python).  A change is identified independently of
Debezium by ``(order_id, version, is_delete)`` (the workload bumps ``version`` on every update).

Each anomaly is reported once, under the most specific class, so a single fault shows as a single class:
changes missing from a partition that holds an unreadable file count under CORRUPT_FILE, not LOST; the
per-key fold (STATE_MISMATCH) is only judged for keys whose changes are all present; phantom rows never
enter the fold.

Verdict JSON (schema_version 1), stable:
``{"schema_version", "verdict": CLEAN|ANOMALIES|STALLED, "clean": bool, "anomalies": {CLASS: {"count",
"examples"}}, "counts": {...}, "history": {...}, "context": {...}}`` with every class present (zero or not).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from harness.enrichment import sql_region, sql_segment, sql_status_category
from harness.lake import LakeSnapshot
from harness.truth import GroundTruth

SCHEMA_VERSION = 1
ANOMALY_CLASSES = (
    "LOST",                 # a committed change missing from the lake
    "DUPLICATE",            # one source change present more than once (main + late together)
    "PHANTOM",              # a lake row no committed change produced
    "STATE_MISMATCH",       # folding a key's changes in source order != the database's final row
    "WRONG_PARTITION",      # dt/hr directory != event_time in UTC
    "LATE_MISROUTED",       # main row behind its watermark / late row not behind / far-late change in main
    "ENRICHMENT_WRONG",     # a derived or dimension field that does not recompute
    "UNCOMMITTED_VISIBLE",  # an in-progress/pending file visible to readers
    "CORRUPT_FILE",         # a visible data file that is not readable Parquet of the lake's schema
    "MISSING_SUCCESS",      # a partition the final watermark passed has no _SUCCESS
)
HISTORY_CLASSES = ("HISTORY_OK_NOT_COMMITTED", "HISTORY_FAILED_BUT_COMMITTED")
HOUR_MS = 3_600_000
EXAMPLES = 5


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
                     f"files {c.get('data_files')}, partitions {c.get('partitions')}")
        for name, a in self.anomalies.items():
            if a["count"]:
                lines.append(f"  {name}: {a['count']}  e.g. {json.dumps(a['examples'][:2], default=str)}")
        for name in HISTORY_CLASSES:
            n = len(self.history.get(name, []))
            if n:
                lines.append(f"  {name}: {n} (client history vs binlog)")
        return "\n".join(lines)


class ExactlyOnceChecker:
    """Judges one lake snapshot against the database's ground truth."""

    def __init__(self, far_late_strict: bool = True) -> None:
        # far_late_strict: a change generated far behind (hours) in the main table is misrouted even if
        # the row's recorded watermark says otherwise (catches a job that records a wrong watermark).
        self.far_late_strict = far_late_strict

    def check(self, truth: GroundTruth, lake: LakeSnapshot, final_watermark_ms: int | None = None,
              stalled: str | None = None, context: dict[str, Any] | None = None) -> Verdict:
        con = duckdb.connect()
        con.execute("SET threads TO 2")
        con.register("truth", truth.changes)
        con.register("final_state", truth.final_state)
        con.register("lake", lake.changes())
        corrupt = pa.Table.from_pylist(
            [{"dt": c["dt"], "hr": c["hr"]} for c in lake.corrupt if c["table"] != "orders_dlq"],
            schema=pa.schema([("dt", pa.string()), ("hr", pa.string())]))
        con.register("corrupt_parts", corrupt)
        con.execute("""
            CREATE TEMP VIEW l AS SELECT *, op = 'd' AS is_delete,
                strftime(epoch_ms(event_time_ms), '%Y-%m-%d') AS want_dt,
                strftime(epoch_ms(event_time_ms), '%H') AS want_hr FROM lake;
            CREATE TEMP VIEW t AS SELECT *,
                strftime(epoch_ms(event_time_ms), '%Y-%m-%d') AS want_dt,
                strftime(epoch_ms(event_time_ms), '%H') AS want_hr FROM truth;
            CREATE TEMP TABLE missing AS SELECT t.*, EXISTS (SELECT 1 FROM corrupt_parts c
                    WHERE c.dt = t.want_dt AND c.hr = t.want_hr) AS in_corrupt_partition
                FROM t ANTI JOIN l USING (order_id, version, is_delete);
            -- one lake row per identity that a committed change produced (the fold's input)
            CREATE TEMP TABLE matched AS SELECT l.*, t.seq FROM
                (SELECT * FROM l QUALIFY row_number() OVER (PARTITION BY order_id, version, is_delete
                                                            ORDER BY tbl, file) = 1) l
                JOIN t USING (order_id, version, is_delete);
        """)

        anomalies: dict[str, dict[str, Any]] = {}

        def record(name: str, sql: str, count_sql: str | None = None) -> None:
            rows = con.sql(f"SELECT * FROM ({sql}) LIMIT {EXAMPLES}").to_arrow_table().to_pylist()
            count = con.sql(count_sql or f"SELECT count(*) FROM ({sql})").fetchall()[0][0]
            anomalies[name] = {"count": int(count), "examples": rows}

        ident = "order_id, version, op"
        record("LOST", f"SELECT {ident}, event_time_ms, want_dt AS dt, want_hr AS hr, event_class FROM missing "
                       "WHERE NOT in_corrupt_partition ORDER BY seq")
        record("DUPLICATE", """SELECT order_id, version, is_delete, count(*) AS copies,
                                list(tbl || ':' || file ORDER BY tbl, file) AS places
                                FROM l GROUP BY order_id, version, is_delete HAVING count(*) > 1
                                ORDER BY order_id, version""",
               "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM l "
               "GROUP BY order_id, version, is_delete HAVING count(*) > 1)")
        record("PHANTOM", f"SELECT {ident}, tbl, file FROM l ANTI JOIN t USING (order_id, version, is_delete) "
                          "ORDER BY order_id, version")
        record("WRONG_PARTITION", f"""SELECT {ident}, tbl, dt, hr, want_dt, want_hr, file FROM l
                                      WHERE dt IS DISTINCT FROM want_dt OR hr IS DISTINCT FROM want_hr
                                      ORDER BY order_id, version""")
        far_late = ("OR (l.tbl = 'main' AND t.event_class = 'late')" if self.far_late_strict else "")
        record("LATE_MISROUTED", f"""SELECT l.order_id, l.version, l.op, l.tbl, l.event_time_ms, l.watermark_ms,
                                     t.event_class, l.file FROM l LEFT JOIN t USING (order_id, version, is_delete)
                                     WHERE (l.tbl = 'main' AND l.watermark_ms IS NOT NULL
                                            AND l.event_time_ms <= l.watermark_ms)
                                        OR (l.tbl = 'late' AND (l.watermark_ms IS NULL
                                            OR l.event_time_ms > l.watermark_ms))
                                        {far_late}
                                     ORDER BY l.order_id, l.version""")
        record("ENRICHMENT_WRONG", f"""SELECT {ident}, quantity, unit_price, line_total, status, status_category,
                                       customer_id, customer_region, customer_segment, file FROM l WHERE
                  line_total IS DISTINCT FROM CAST(quantity * unit_price AS DECIMAL(12, 2))
               OR status_category IS DISTINCT FROM ({sql_status_category('status')})
               OR customer_region IS DISTINCT FROM ({sql_region('customer_id')})
               OR customer_segment IS DISTINCT FROM ({sql_segment('customer_id')})
               ORDER BY order_id, version""")
        record("STATE_MISMATCH", """
            WITH incomplete AS (SELECT DISTINCT order_id FROM missing),
            folded AS (SELECT * FROM matched QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY seq DESC) = 1),
            lake_state AS (SELECT * FROM folded WHERE NOT is_delete),
            keys AS (SELECT order_id FROM lake_state UNION SELECT order_id FROM final_state)
            -- s: the lake's fold, f: the database's final table
            SELECT k.order_id,
                   CASE WHEN f.order_id IS NULL THEN 'in lake, absent from database'
                        WHEN s.order_id IS NULL THEN 'in database, absent or deleted in lake'
                        ELSE 'values differ' END AS problem,
                   list_filter([
                     CASE WHEN s.customer_id IS DISTINCT FROM f.customer_id THEN 'customer_id' END,
                     CASE WHEN s.product IS DISTINCT FROM f.product THEN 'product' END,
                     CASE WHEN s.quantity IS DISTINCT FROM f.quantity THEN 'quantity' END,
                     CASE WHEN s.unit_price IS DISTINCT FROM f.unit_price THEN 'unit_price' END,
                     CASE WHEN s.status IS DISTINCT FROM f.status THEN 'status' END,
                     CASE WHEN s.version IS DISTINCT FROM f.version THEN 'version' END,
                     CASE WHEN s.event_time_ms IS DISTINCT FROM f.event_time_ms THEN 'event_time_ms' END
                   ], lambda x: x IS NOT NULL) AS columns,
                   s.product AS lake_product, f.product AS db_product, s.version AS lake_version,
                   f.version AS db_version
            FROM keys k LEFT JOIN lake_state s USING (order_id) LEFT JOIN final_state f USING (order_id)
            WHERE k.order_id NOT IN (SELECT order_id FROM incomplete)
              AND (s.order_id IS NULL OR f.order_id IS NULL
                   OR s.customer_id IS DISTINCT FROM f.customer_id OR s.product IS DISTINCT FROM f.product
                   OR s.quantity IS DISTINCT FROM f.quantity OR s.unit_price IS DISTINCT FROM f.unit_price
                   OR s.status IS DISTINCT FROM f.status OR s.version IS DISTINCT FROM f.version
                   OR s.event_time_ms IS DISTINCT FROM f.event_time_ms)
            ORDER BY k.order_id""")
        visible = lake.of_kind("uncommitted_visible")
        anomalies["UNCOMMITTED_VISIBLE"] = {"count": len(visible),
                                            "examples": [{"file": f.path, "size": f.size} for f in visible[:EXAMPLES]]}
        unaccounted = con.sql("SELECT count(*) FROM missing WHERE in_corrupt_partition").fetchall()[0][0]
        anomalies["CORRUPT_FILE"] = {"count": len(lake.corrupt), "examples": lake.corrupt[:EXAMPLES],
                                     "changes_unaccounted": int(unaccounted)}
        anomalies["MISSING_SUCCESS"] = self._missing_success(con, lake, final_watermark_ms)
        anomalies = {name: anomalies[name] for name in ANOMALY_CLASSES}

        counts = {
            "truth_changes": truth.changes.num_rows, "final_rows": truth.final_state.num_rows,
            "lake_rows_main": lake.main.num_rows, "lake_rows_late": lake.late.num_rows,
            "lake_rows_dlq": lake.dlq.num_rows, "data_files": len(lake.of_kind("data")),
            "hidden_files": len(lake.of_kind("hidden")), "partitions": len(lake.data_partitions),
            "success_markers": len(lake.success_markers), "final_watermark_ms": final_watermark_ms,
        }
        history = {k: v for k, v in truth.history_anomalies.items()}
        con.close()
        return Verdict(anomalies, counts, history, context or {}, stalled)

    def _missing_success(self, con: duckdb.DuckDBPyConnection, lake: LakeSnapshot,
                         final_watermark_ms: int | None) -> dict[str, Any]:
        """Partitions whose hour ended before the watermark (per table) but lack ``_SUCCESS``.

        Without a watermark from the job, the highest watermark recorded in the table's rows is used: every
        such row was committed by a checkpoint that had already seen that watermark, so it is a safe floor.
        """
        marks = {"orders": None, "orders_late": None}
        for table, tbl in (("orders", "main"), ("orders_late", "late")):
            wm = con.execute("SELECT max(watermark_ms) FROM lake WHERE tbl = ?", [tbl]).fetchall()[0][0]
            marks[table] = final_watermark_ms if final_watermark_ms is not None else wm
        success = lake.success_markers
        examples = []
        import datetime as _dt

        for table, dt_s, hr_s in sorted(lake.data_partitions, key=lambda p: (p[0], p[1] or "", p[2] or "")):
            wm = marks.get(table)
            if wm is None or dt_s is None or hr_s is None:
                continue
            start = int(_dt.datetime.strptime(f"{dt_s} {hr_s}", "%Y-%m-%d %H").replace(tzinfo=_dt.UTC).timestamp()
                        * 1000)
            if start + HOUR_MS < wm and (table, dt_s, hr_s) not in success:
                examples.append({"table": table, "dt": dt_s, "hr": hr_s, "watermark_ms": wm})
        return {"count": len(examples), "examples": examples[:EXAMPLES]}
