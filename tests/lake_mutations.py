"""One planted fault each: the mutations the checker must convict, named by the class it must report.

Each function takes the lake (a pyarrow filesystem + root) and the context of the clean run, changes
exactly one thing, and returns a description for the failure message.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from harness.lake import LakeFile, LakeReader
from harness.lake_schema import CHANGE_SCHEMA, partition_of
from harness.model import reference_job, write_parquet
from harness.workload import Workload


@dataclass
class LakeUnderTest:
    fs: pafs.FileSystem
    root: str
    workload: Workload
    rng: random.Random

    def files(self, kind: str = "data", table: str | None = None) -> list[LakeFile]:
        return [f for f in LakeReader(self.fs, self.root).list_files()
                if f.kind == kind and (table is None or f.table == table)]

    def pick(self, kind: str = "data", table: str | None = "orders") -> LakeFile:
        return self.rng.choice(sorted(self.files(kind, table), key=lambda f: f.path))

    def read(self, path: str) -> pa.Table:
        with self.fs.open_input_file(path) as fh:
            return pq.read_table(fh)

    def write(self, path: str, table: pa.Table) -> None:
        write_parquet(self.fs, path, table)


def drop_row(lake: LakeUnderTest) -> str:
    f = lake.pick()
    t = lake.read(f.path)
    i = lake.rng.randrange(t.num_rows)
    lake.write(f.path, pa.concat_tables([t.slice(0, i), t.slice(i + 1)]))
    return f"dropped row {i} of {f.path}"


def drop_file(lake: LakeUnderTest) -> str:
    f = lake.pick()
    lake.fs.delete_file(f.path)
    return f"deleted {f.path}"


def duplicate_row(lake: LakeUnderTest) -> str:
    f = lake.pick()
    t = lake.read(f.path)
    i = lake.rng.randrange(t.num_rows)
    lake.write(f.path, pa.concat_tables([t, t.slice(i, 1)]))
    return f"row {i} of {f.path} written twice"


def duplicate_file(lake: LakeUnderTest) -> str:
    f = lake.pick()
    copy = f.path.replace("part-", "part-copy-")
    lake.fs.copy_file(f.path, copy)
    return f"copied {f.path} to {copy}"


def change_value(lake: LakeUnderTest) -> str:
    """Change ``product`` in the final version of a key that still exists (so the fold differs)."""
    for f in sorted(lake.files("data", "orders"), key=lambda f: f.path):
        t = lake.read(f.path)
        mask = pc.equal(t["op"], "u")
        for i in [i for i, m in enumerate(mask.to_pylist()) if m]:
            row = t.slice(i, 1).to_pylist()[0]
            if _is_final_live_version(lake, row["order_id"], row["version"]):
                products = t["product"].to_pylist()
                products[i] = products[i] + " (tampered)"
                lake.write(f.path, t.set_column(t.schema.get_field_index("product"), "product",
                                                pa.array(products, pa.string())))
                return f"product of order {row['order_id']} v{row['version']} changed in {f.path}"
    raise AssertionError("no final live version found to tamper with")


def _is_final_live_version(lake: LakeUnderTest, order_id: int, version: int) -> bool:
    ops = [o for o in lake.workload.operations if o.order_id == order_id and not o.rollback]
    return bool(ops) and ops[-1].kind == "update" and ops[-1].version == version


def wrong_partition(lake: LakeUnderTest) -> str:
    f = lake.pick()
    others = sorted({(g.dt, g.hr) for g in lake.files("data", "orders")} - {(f.dt, f.hr)})
    dt, hr = lake.rng.choice(others)
    target = f"{lake.root}/orders/dt={dt}/hr={hr}/part-moved-{lake.rng.randrange(10**6)}.parquet"
    lake.fs.move(f.path, target)
    return f"moved {f.path} to {target}"


def plant_inprogress(lake: LakeUnderTest) -> str:
    f = lake.pick()
    target = f.path.rsplit("/", 1)[0] + "/part-9999-0.parquet.inprogress.0c4f1b2e"
    lake.fs.copy_file(f.path, target)
    return f"planted visible in-progress file {target}"


def truncate_file(lake: LakeUnderTest) -> str:
    f = lake.pick()
    with lake.fs.open_input_file(f.path) as fh:
        data = fh.read()
    with lake.fs.open_output_stream(f.path) as out:
        out.write(data[: len(data) // 2])
    return f"truncated {f.path} to {len(data) // 2} of {len(data)} bytes"


def late_into_main(lake: LakeUnderTest) -> str:
    """Move one late row into the main table's file of the same partition (creating it if needed)."""
    f = lake.pick(table="orders_late")
    t = lake.read(f.path)
    i = lake.rng.randrange(t.num_rows)
    row = t.slice(i, 1)
    lake.write(f.path, pa.concat_tables([t.slice(0, i), t.slice(i + 1)]))
    directory = f"{lake.root}/orders/dt={f.dt}/hr={f.hr}"
    lake.fs.create_dir(directory, recursive=True)
    lake.write(f"{directory}/part-misrouted-0.parquet", row)
    # a job that misroutes would also have committed the partition: keep _SUCCESS consistent
    if lake.fs.get_file_info(f"{f.path.rsplit('/', 1)[0]}/_SUCCESS").type == pafs.FileType.File:
        with lake.fs.open_output_stream(f"{directory}/_SUCCESS") as out:
            out.write(b"")
    return f"moved late row {i} of {f.path} into {directory}"


def phantom_from_rollback(lake: LakeUnderTest) -> str:
    """Add the row a rolled-back transaction would have produced (routed and enriched correctly)."""
    op = next(o for o in lake.workload.operations if o.rollback and o.kind == "insert")
    change = {"order_id": op.order_id, "version": op.version, "op": "c", **op.values,
              "unit_price": __import__("decimal").Decimal(op.values["unit_price"]),
              "event_time_ms": op.event_time_ms, "commit_ms": op.commit_ms}
    row = reference_job([change])[0]          # first row of a job: no watermark yet, so on time
    dt, hr = partition_of(op.event_time_ms)
    directory = f"{lake.root}/orders/dt={dt}/hr={hr}"
    lake.fs.create_dir(directory, recursive=True)
    lake.write(f"{directory}/part-phantom-0.parquet",
               pa.Table.from_pylist([{k: row[k] for k in CHANGE_SCHEMA.names}], schema=CHANGE_SCHEMA))
    return f"added rolled-back insert of order {op.order_id} to {directory}"


def remove_success(lake: LakeUnderTest) -> str:
    f = lake.pick(kind="success")
    lake.fs.delete_file(f.path)
    return f"removed {f.path}"


#: mutation -> the one anomaly class the checker must report for it
MUTATIONS: dict[str, tuple[Callable[[LakeUnderTest], str], str]] = {
    "drop_row": (drop_row, "LOST"),
    "drop_file": (drop_file, "LOST"),
    "duplicate_row": (duplicate_row, "DUPLICATE"),
    "duplicate_file": (duplicate_file, "DUPLICATE"),
    "change_value": (change_value, "STATE_MISMATCH"),
    "wrong_partition": (wrong_partition, "WRONG_PARTITION"),
    "plant_inprogress": (plant_inprogress, "UNCOMMITTED_VISIBLE"),
    "truncate_file": (truncate_file, "CORRUPT_FILE"),
    "late_into_main": (late_into_main, "LATE_MISROUTED"),
    "phantom_from_rollback": (phantom_from_rollback, "PHANTOM"),
    "remove_success": (remove_success, "MISSING_SUCCESS"),
}


def describe(found: set[str], expected: str, what: str, verdict: Any) -> str:
    return f"mutation ({what}) expected exactly {{{expected}}}, checker found {sorted(found)}\n{verdict.summary()}"
