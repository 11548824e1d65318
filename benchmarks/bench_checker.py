"""Checker speed and memory: N changes (default 1,000,000) checked from Arrow tables.

    ./run cdc-chaos bench checker            (or: python -m benchmarks.bench_checker [N])

Prints wall time and peak RSS of the check itself (truth + lake already in memory, as after reading).
"""

from __future__ import annotations

import resource
import sys
import time

import pyarrow as pa

from harness.checker import ExactlyOnceChecker
from harness.lake import LakeSnapshot, _lake_schema
from harness.lake_schema import DLQ_SCHEMA, partition_of
from harness.model import reference_job, simulate_database
from harness.workload import WorkloadConfig, generate


def main(n: int = 1_000_000) -> dict[str, float]:
    t0 = time.monotonic()
    workload = generate(WorkloadConfig(seed=1, duration_s=n / 1000, rate=1000, anchor_ms=1_767_225_600_000,
                                       rollback_fraction=0.0))
    truth = simulate_database(workload)
    rows = reference_job(truth.changes.to_pylist())
    for r in rows:
        r["dt"], r["hr"] = partition_of(r["event_time_ms"])
        r["file"] = f"lake/orders/dt={r['dt']}/hr={r['hr']}/part-0"
    table = pa.Table.from_pylist(rows, schema=_lake_schema())
    lake = LakeSnapshot(main=table.filter(pa.compute.equal(table["tbl"], "main")),
                        late=table.filter(pa.compute.equal(table["tbl"], "late")), dlq=DLQ_SCHEMA.empty_table())
    prepared = time.monotonic() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t1 = time.monotonic()
    verdict = ExactlyOnceChecker().check(truth, lake)
    seconds = time.monotonic() - t1
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"changes": truth.changes.num_rows, "check_seconds": round(seconds, 2),
           "changes_per_second": round(truth.changes.num_rows / seconds), "peak_rss_mib": round(rss_after),
           "rss_before_check_mib": round(rss_before), "prepare_seconds": round(prepared, 1),
           "verdict": verdict.verdict}
    print(out)
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
