"""Checker speed and memory: N changes (default 1,000,000) judged from Arrow tables already in memory.

    ./run cdc-chaos bench checker            (or: python -m benchmarks.bench_checker [N])

Builds a synthetic binlog truth (orders with inserts, updates, multi-row events, deletes, ~1% far-late event
times; a customers dimension with region changes mid-run), the topic records a correct Debezium would write
(plus customers changes and heartbeats), and the lake a correct job would write (routing with the documented
floor, one file per 3 s checkpoint, _SUCCESS markers) — without any of the job's code.  Prints the wall time
of ``check()``, its CPU seconds (all threads; independent of other load on the machine) and the peak RSS
(sampled while it runs, and above what was resident before it).
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import duckdb
import numpy as np
import psutil
import pyarrow as pa

from harness.checker import ExactlyOnceChecker
from harness.lake import LakeFile, LakeSnapshot, _lake_schema
from harness.lake_schema import DLQ_SCHEMA
from harness.topic import TOPIC_SCHEMA

T0 = 1_767_225_600_000
B = 5000
STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "returned"]
CATEGORIES = ["open", "open", "in_flight", "done", "cancelled", "cancelled"]


def synthetic_truth(n: int, seed: int = 1) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    i = np.arange(n, dtype=np.int64)
    keys = max(1, n // 5)
    occurrence = i // keys                       # 0: insert, 1..3: updates, 4: delete (odd keys) or update
    order_id = i % keys + 1
    op = np.where(occurrence == 0, "c", np.where((occurrence >= 4) & (order_id % 2 == 1), "d", "u"))
    ts = T0 + (i // 1000) * 1000                 # 1000 changes a second, whole-second binlog timestamps
    late = rng.random(n) < 0.01
    event = np.where(late, ts - rng.integers(10_000, 3_600_000, n), ts - rng.integers(0, 2000, n))
    cents = rng.integers(100, 100_000, n)
    customers_n = 1000
    changes = pa.table({
        "seq": pa.array(i * 2 + 10),
        "src_file": pa.array(np.char.add("mysql-bin.", np.char.zfill((i // 300_000 + 1).astype(str), 6))),
        "src_pos": pa.array(4 + (i // 3) * 400 % 1_000_000_000), "src_row": pa.array((i % 3).astype(np.int32)),
        "op": pa.array(op), "gtid": pa.array(np.char.add("0-1-", (i // 3).astype(str))),
        "server_id": pa.array(np.ones(n, dtype=np.int64)), "ts_ms": pa.array(ts),
        "order_id": pa.array(order_id), "customer_id": pa.array((order_id % customers_n + 1).astype(np.int32)),
        "product": pa.array(np.array(["tea", "jam", "cup", "pot", "mug"])[i % 5]),
        "quantity": pa.array(rng.integers(1, 20, n).astype(np.int32)),
        "unit_price": pa.array(cents),
        "status": pa.array(np.array(STATUSES)[rng.integers(0, 6, n)]),
        "version": pa.array(np.minimum(occurrence + 1, 4).astype(np.int32)),
        "event_time_ms": pa.array(event), "created_at_ms": pa.array(T0 + order_id),
        "updated_at_ms": pa.array(event),
    })
    con = duckdb.connect()
    con.register("c0", changes)
    # cents -> DECIMAL(10,2); the changes' pos is unique per (file, pos, row)
    changes = con.sql("SELECT * REPLACE (CAST(unit_price / 100.0 AS DECIMAL(10, 2)) AS unit_price) FROM c0 "
                      "ORDER BY seq").to_arrow_table()
    cust_ids = np.arange(1, customers_n + 1, dtype=np.int32)
    moved = rng.choice(cust_ids, 100, replace=False)
    regions = np.array(["EU", "NA", "APAC", "LATAM"])
    # the initial customers before every change (file 000000); each move right after the change whose seq it
    # follows, in that change's file, between its event and the next (positions agree with seq order)
    move_seq = np.arange(100) * 2 * (n // 100) + 11
    after = (move_seq - 10) // 2
    customers = pa.table({
        "seq": pa.array(np.concatenate([np.arange(customers_n) - customers_n, move_seq])),
        "src_file": pa.array(["mysql-bin.000000"] * customers_n + [
            f"mysql-bin.{k // 300_000 + 1:06d}" for k in after]),
        "src_pos": pa.array(np.concatenate([np.arange(customers_n, dtype=np.int64) * 7 + 4,
                                            4 + (after // 3) * 400 % 1_000_000_000 + 200])),
        "src_row": pa.array(np.zeros(customers_n + 100, dtype=np.int32)),
        "op": pa.array(["c"] * customers_n + ["u"] * 100), "gtid": pa.array(["0-1-0"] * (customers_n + 100)),
        "ts_ms": pa.array(np.concatenate([np.full(customers_n, T0 - 1000), T0 + np.arange(100) * (n // 100)])),
        "customer_id": pa.array(np.concatenate([cust_ids, moved])),
        "customer_name": pa.array([f"c{c}" for c in np.concatenate([cust_ids, moved])]),
        "region": pa.array(np.concatenate([regions[cust_ids % 4], regions[(moved + 1) % 4]])),
        "segment": pa.array(np.array(["consumer", "smb", "enterprise"])[
            np.concatenate([cust_ids, moved]) % 3]),
    })
    con.register("c", changes)
    final = con.sql("""SELECT order_id, customer_id, product, quantity, unit_price, status, version, event_time_ms,
                              created_at_ms, updated_at_ms FROM c
                       QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY seq DESC) = 1 AND op <> 'd'
                       """).to_arrow_table()
    con.close()
    return SimpleNamespace(changes=changes, customers=customers, final_state=final, history_anomalies={})


def synthetic_pipeline(truth: SimpleNamespace) -> tuple[pa.Table, LakeSnapshot, int]:
    """(topic, lake, flink watermark) as a correct Debezium + job would leave them."""
    con = duckdb.connect()
    con.register("c", truth.changes)
    con.register("cust", truth.customers)
    cat = " ".join(f"WHEN '{s}' THEN '{c}'" for s, c in zip(STATUSES, CATEGORIES, strict=True))
    con.execute(f"""
        CREATE TABLE topic AS
        WITH recs AS (
            SELECT order_id % 3 AS p, ts_ms + 100 AS kts, 'orders' AS src_table, op, src_file, src_pos, src_row,
                   ts_ms AS src_ts_ms, order_id, CASE WHEN op = 'd' THEN ts_ms ELSE event_time_ms END AS e, seq
            FROM c
            UNION ALL SELECT 0, ts_ms + 100, 'customers', op, src_file, src_pos, src_row, ts_ms, NULL, NULL, seq
            FROM cust
            UNION ALL SELECT 1, s + 50, 'cdc_heartbeat', 'u', 'mysql-bin.000001', 2000000000 + s // 1000, 0, s,
                   NULL, NULL, NULL FROM range({T0}, (SELECT max(ts_ms) + 10000 FROM c), 1000) t(s))
        SELECT CAST(p AS INT) AS kafka_partition,
               row_number() OVER (PARTITION BY p ORDER BY kts, seq) - 1 AS kafka_offset, kts AS kafka_ts_ms,
               src_table, op, src_file, src_pos, CAST(src_row AS INT) AS src_row, src_ts_ms, order_id,
               e AS event_time_ms, CAST(NULL AS VARCHAR) AS src_snapshot FROM recs;
        CREATE TABLE dim AS SELECT customer_id, seq, op, region, segment FROM cust;
        CREATE TABLE lake AS
        WITH x AS (SELECT c.*, CASE WHEN op = 'd' THEN ts_ms ELSE event_time_ms END AS e, ts_ms - {B} AS wm,
                          (ts_ms - {T0}) // 3000 AS cp FROM c)
        SELECT x.order_id, x.customer_id, x.product, x.quantity, x.unit_price, x.status, x.version,
               x.created_at_ms, x.updated_at_ms, x.op, x.e AS event_time_ms,
               CAST(x.quantity * x.unit_price AS DECIMAL(12, 2)) AS line_total,
               CASE x.status {cat} ELSE 'unknown' END AS status_category,
               CASE WHEN d.op = 'd' THEN NULL ELSE d.region END AS customer_region,
               CASE WHEN d.op = 'd' THEN NULL ELSE d.segment END AS customer_segment,
               x.src_file, x.src_pos, x.src_row, x.server_id AS src_server_id, x.gtid AS src_gtid,
               x.ts_ms AS src_ts_ms, 'false' AS src_snapshot, t.kafka_partition, t.kafka_offset,
               x.wm AS watermark_ms, x.ts_ms + 300 AS processed_ms,
               strftime(epoch_ms(x.e), '%Y-%m-%d') AS dt, strftime(epoch_ms(x.e), '%H') AS hr,
               CASE WHEN x.e <= x.wm THEN 'late' ELSE 'main' END AS tbl, x.cp
        FROM x ASOF LEFT JOIN dim d ON x.customer_id = d.customer_id AND x.seq > d.seq
        JOIN topic t ON t.src_table = 'orders' AND t.src_file = x.src_file AND t.src_pos = x.src_pos
                    AND t.src_row = x.src_row AND t.op = x.op;
    """)
    con.execute(f"""
        CREATE TABLE lake2 AS SELECT * EXCLUDE (cp),
            'lake/' || CASE tbl WHEN 'main' THEN 'orders' ELSE 'orders_late' END || '/dt=' || dt || '/hr=' || hr
                || '/part-' || cp || '.parquet' AS file,
            {T0} + (cp + 1) * 3000 + 200 AS file_mtime_ms FROM lake""")
    schema = _lake_schema()
    table = con.sql(f"SELECT {', '.join(schema.names)} FROM lake2").to_arrow_table().cast(schema)
    files = [LakeFile(f, "orders" if tbl == "main" else "orders_late", d, h, 1, "data", int(mt))
             for f, tbl, d, h, mt in con.sql("SELECT DISTINCT file, tbl, dt, hr, file_mtime_ms FROM lake2").fetchall()]
    last_ms = max(f.last_modified_ms for f in files)
    files += [LakeFile(f"lake/orders/dt={d}/hr={h}/_SUCCESS", "orders", d, h, 0, "success", last_ms + 1000)
              for d, h in {(f.dt, f.hr) for f in files if f.table == "orders"}]
    topic = con.sql(f"SELECT {', '.join(TOPIC_SCHEMA.names)} FROM topic").to_arrow_table().cast(TOPIC_SCHEMA)
    flink_wm = int(con.sql("SELECT max(ts_ms) FROM c").fetchall()[0][0]) - B
    con.close()
    tbl = table.column("tbl")
    lake = LakeSnapshot(main=table.filter(pa.compute.equal(tbl, "main")),
                        late=table.filter(pa.compute.equal(tbl, "late")), dlq=DLQ_SCHEMA.empty_table(), files=files)
    return topic, lake, flink_wm


def main(n: int = 1_000_000) -> dict[str, Any]:
    t0 = time.monotonic()
    truth = synthetic_truth(n)
    topic, lake, flink_wm = synthetic_pipeline(truth)
    prepared = time.monotonic() - t0
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    peak = [rss_before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t1, cpu1 = time.monotonic(), time.process_time()
    verdict = ExactlyOnceChecker(bound_ms=B).check(truth, lake, topic=topic, flink_watermark_ms=flink_wm)
    seconds, cpu = time.monotonic() - t1, time.process_time() - cpu1
    done.set()
    sampler.join()
    mib = 1024 * 1024
    out = {"changes": truth.changes.num_rows, "topic_records": topic.num_rows,
           "lake_rows": lake.main.num_rows + lake.late.num_rows, "late_rows": lake.late.num_rows,
           "check_seconds": round(seconds, 2), "changes_per_second": round(truth.changes.num_rows / seconds),
           # CPU of every thread of the process while checking: the wall time an otherwise idle machine would see
           # is at most this (DuckDB runs 2 threads), whatever else is loading this one
           "check_cpu_seconds": round(cpu, 2), "load_average_1m": round(psutil.getloadavg()[0], 1),
           "rss_before_check_mib": round(rss_before / mib), "peak_rss_during_check_mib": round(peak[0] / mib),
           "extra_rss_mib": round((peak[0] - rss_before) / mib),
           "process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           "prepare_seconds": round(prepared, 1), "verdict": verdict.verdict}
    if not verdict.clean:
        print(verdict.summary())
    print(out)
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
