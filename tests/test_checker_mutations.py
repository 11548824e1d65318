"""The checker convicts a real lake: one real pipeline run (the seeded workload: updates that leave `version`
alone, re-inserted ids, multi-row transactions and statements, rollbacks, customers moving, late changes) is
judged CLEAN; then each planted fault, made in place on that lake and undone afterwards, must be reported as
exactly its class.  The evidence (binlog truth, topic, Flink's watermark) is gathered once; only the lake
changes between checks, as it would under a user's hands.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from harness.checker import Verdict
from harness.lake import LakeFile, LakeReader
from harness.lake_schema import CHANGE_SCHEMA, LATE_TABLE, MAIN_TABLE, partition_of
from harness.runner import Evidence, RunSpec, run_with_evidence
from harness.stack import Stack

_INDEX = itertools.count(200)

# one worker builds the live lake and runs every mutation on it (under --dist loadgroup, the suite's default)
pytestmark = pytest.mark.xdist_group("live-lake-mutations")


@dataclass
class LiveLake:
    """A lake written by the real job, with in-place mutations that are undone on exit."""
    fs: pafs.FileSystem
    root: str
    evidence: Evidence
    rng: random.Random
    _saved: dict[str, bytes | None] = field(default_factory=dict)

    def files(self, table: str = MAIN_TABLE, kind: str = "data") -> list[LakeFile]:
        return sorted((f for f in LakeReader(self.fs, self.root).list_files() if f.table == table and f.kind == kind),
                      key=lambda f: f.path)

    def read(self, path: str) -> pa.Table:
        with self.fs.open_input_file(path) as fh:
            return pq.read_table(fh)

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_file(path) as fh:
            return bytes(fh.read())

    def _save(self, path: str) -> None:
        if path not in self._saved:
            try:
                with self.fs.open_input_file(path) as fh:
                    self._saved[path] = fh.read()
            except FileNotFoundError:
                self._saved[path] = None

    def write(self, path: str, table: pa.Table) -> None:
        self._save(path)
        with self.fs.open_output_stream(path) as fh:
            pq.write_table(table.select(CHANGE_SCHEMA.names).cast(CHANGE_SCHEMA), fh)

    def write_bytes(self, path: str, data: bytes) -> None:
        self._save(path)
        with self.fs.open_output_stream(path) as fh:
            fh.write(data)

    def delete(self, path: str) -> None:
        self._save(path)
        self.fs.delete_file(path)

    def restore(self) -> None:
        for path, data in self._saved.items():
            if data is None:
                self.fs.delete_file(path)
            else:
                with self.fs.open_output_stream(path) as fh:
                    fh.write(data)
        self._saved.clear()

    def check(self) -> Verdict:
        return self.evidence.check(LakeReader(self.fs, self.root).snapshot(), context={"mutation": True})

    def rows(self, table: str = MAIN_TABLE) -> list[tuple[LakeFile, pa.Table]]:
        return [(f, self.read(f.path)) for f in self.files(table)]

    def take_row(self, predicate: Callable[[dict], bool], table: str = MAIN_TABLE) -> tuple[LakeFile, pa.Table, int]:
        """A (seeded) random lake row that satisfies ``predicate``: its file, the file's table, its index."""
        found = [(f, t, i) for f, t in self.rows(table) for i, r in enumerate(t.to_pylist()) if predicate(r)]
        assert found, "the live run produced no row of the kind this mutation needs"
        return self.rng.choice(found)


def _replace(t: pa.Table, i: int, **values: object) -> pa.Table:
    rows = t.to_pylist()
    rows[i] = {**rows[i], **values}
    return pa.Table.from_pylist(rows, schema=t.schema)


def _drop(t: pa.Table, i: int) -> pa.Table:
    return pa.concat_tables([t.slice(0, i), t.slice(i + 1)])


def _part_dir(table: str, event_time_ms: int, root: str) -> str:
    d, h = partition_of(event_time_ms)
    return f"{root}/{table}/dt={d}/hr={h}"


# --- the mutations: each plants exactly one fault and names the class it must show as ----------------------

def drop_update_that_left_version_alone(lake: LiveLake) -> str:
    truth = lake.evidence.truth.changes.to_pylist()
    previous: dict[int, int] = {}
    untouched: set[tuple[str, int, int, str]] = set()
    for c in truth:
        if c["op"] == "u" and previous.get(c["order_id"]) == c["version"]:
            untouched.add((c["src_file"], c["src_pos"], c["src_row"], c["op"]))
        previous[c["order_id"]] = c["version"]
    f, t, i = lake.take_row(lambda r: (r["src_file"], r["src_pos"], r["src_row"], r["op"]) in untouched)
    lake.write(f.path, _drop(t, i))
    return f"dropped an update that left version alone from {f.path}"


def duplicate_a_row(lake: LiveLake) -> str:
    f, t, i = lake.take_row(lambda r: True)
    lake.write(f.path.rsplit("/", 1)[0] + "/part-planted-dup.parquet", t.slice(i, 1))
    return f"copied row {i} of {f.path} into a new file of the same partition"


def forge_a_phantom(lake: LiveLake) -> str:
    f, t, i = lake.take_row(lambda r: r["op"] == "c")
    row = t.slice(i, 1).to_pylist()[0]
    row["src_pos"] += 1   # a place in the binlog where no change of this row sits
    lake.write(f.path.rsplit("/", 1)[0] + "/part-planted-phantom.parquet",
               pa.Table.from_pylist([row], schema=t.schema))
    return "added a row with forged coordinates"


def change_an_intermediate_change(lake: LiveLake) -> str:
    counts: dict[int, int] = {}
    for c in lake.evidence.truth.changes.select(["order_id"]).to_pylist():
        counts[c["order_id"]] = counts.get(c["order_id"], 0) + 1
    last = {c["order_id"]: c["seq"] for c in lake.evidence.truth.changes.select(["order_id", "seq"]).to_pylist()}
    seq_of = {(c["src_file"], c["src_pos"], c["src_row"], c["op"]): c["seq"] for c in
              lake.evidence.truth.changes.select(["src_file", "src_pos", "src_row", "op", "seq"]).to_pylist()}
    f, t, i = lake.take_row(lambda r: r["op"] == "u" and counts.get(r["order_id"], 0) >= 3
                            and seq_of.get((r["src_file"], r["src_pos"], r["src_row"], r["op"])) != last[r["order_id"]])
    row = t.to_pylist()[i]
    # the derived column follows the forged image, so only the image differs from the truth
    lake.write(f.path, _replace(t, i, quantity=row["quantity"] + 1000,
                                line_total=(row["quantity"] + 1000) * row["unit_price"]))
    return f"quantity of an intermediate change (not its key's last) changed in {f.path}"


def flip_an_op(lake: LiveLake) -> str:
    f, t, i = lake.take_row(lambda r: r["op"] == "u")
    lake.write(f.path, _replace(t, i, op="c"))
    return "an update's op flipped to c"


def shift_event_time_into_its_partition(lake: LiveLake) -> str:
    f, t, i = lake.take_row(lambda r: r["op"] != "d")
    row = t.to_pylist()[i]
    shifted = row["event_time_ms"] - 3 * 3_600_000
    lake.write(f.path, _drop(t, i))
    lake.write(_part_dir(f.table, shifted, lake.root) + "/part-planted-shift.parquet",
               pa.Table.from_pylist([{**row, "event_time_ms": shifted}], schema=t.schema))
    return "an event time moved 3 h back, its row moved to the matching partition"


def move_a_late_change_into_main(lake: LiveLake) -> str:
    f, t, i = lake.take_row(lambda r: r["event_time_ms"] <= r["src_ts_ms"] - 60_000, table=LATE_TABLE)
    row = t.to_pylist()[i]
    lake.write(f.path, _drop(t, i))
    lake.write(_part_dir(MAIN_TABLE, row["event_time_ms"], lake.root) + "/part-planted-late.parquet",
               pa.Table.from_pylist([{**row, "watermark_ms": row["event_time_ms"] - 1}], schema=t.schema))
    return "a change minutes late moved into the main table with a forged watermark"


def route_everything_late(lake: LiveLake) -> str:
    for f, t in lake.rows(MAIN_TABLE):
        forged = t.set_column(t.schema.get_field_index("watermark_ms"), "watermark_ms", t["event_time_ms"])
        lake.delete(f.path)
        lake.write(f.path.replace(f"/{MAIN_TABLE}/", f"/{LATE_TABLE}/"), forged)
    return "every change moved to the late table, each watermark forged to its event time"


def early_success(lake: LiveLake) -> str:
    newest = max(lake.files(MAIN_TABLE), key=lambda f: (f.dt or "", f.hr or ""))
    lake.write_bytes(newest.path.rsplit("/", 1)[0] + "/_SUCCESS", b"")
    return f"_SUCCESS written into the newest hour dt={newest.dt}/hr={newest.hr}"


def stale_region(lake: LiveLake) -> str:
    f, t, i = lake.take_row(lambda r: r["customer_region"] is not None)
    region = t["customer_region"][i].as_py()
    lake.write(f.path, _replace(t, i, customer_region="LATAM" if region != "LATAM" else "EU"))
    return "one row's customer_region replaced by another region"


def wrong_line_total(lake: LiveLake) -> str:
    f, t, i = lake.take_row(lambda r: r["line_total"] is not None)
    lake.write(f.path, _replace(t, i, line_total=t["line_total"][i].as_py() + 1))
    return "one line_total off by one"


def wrong_partition(lake: LiveLake) -> str:
    f, t, i = lake.take_row(lambda r: True)
    row = t.to_pylist()[i]
    lake.write(f.path, _drop(t, i))
    lake.write(_part_dir(f.table, row["event_time_ms"] + 7 * 3_600_000, lake.root) + "/part-planted-wp.parquet",
               pa.Table.from_pylist([row], schema=t.schema))
    return "a row moved into another hour's directory"


def corrupt_a_file(lake: LiveLake) -> str:
    f = lake.rng.choice(lake.files(MAIN_TABLE))
    lake.write_bytes(f.path, b"PAR1 this is not parquet")
    return f"{f.path} overwritten with garbage"


def uncommitted_visible(lake: LiveLake) -> str:
    f = lake.rng.choice(lake.files(MAIN_TABLE))
    lake.write_bytes(f.path.rsplit("/", 1)[0] + "/part-planted.inprogress", lake.read_bytes(f.path))
    return "an in-progress file visible to readers"

MUTATIONS: list[tuple[Callable[[LiveLake], str], set[str]]] = [
    (drop_update_that_left_version_alone, {"LOST"}),
    (duplicate_a_row, {"DUPLICATE"}),
    (forge_a_phantom, {"PHANTOM"}),
    (change_an_intermediate_change, {"CHANGE_MISMATCH"}),
    (flip_an_op, {"PHANTOM", "LOST"}),
    (shift_event_time_into_its_partition, {"CHANGE_MISMATCH"}),
    (move_a_late_change_into_main, {"LATE_MISROUTED"}),
    (route_everything_late, {"LATE_MISROUTED"}),
    (early_success, {"PREMATURE_SUCCESS"}),
    (stale_region, {"ENRICHMENT_WRONG"}),
    (wrong_line_total, {"ENRICHMENT_WRONG"}),
    (wrong_partition, {"WRONG_PARTITION"}),
    (corrupt_a_file, {"CORRUPT_FILE"}),
    (uncommitted_visible, {"UNCOMMITTED_VISIBLE"}),
]


@pytest.fixture(scope="module")
def live(stack: Stack, seed: int) -> Iterator[LiveLake]:
    stack.heal()
    spec = RunSpec(name="mutations", seed=seed, duration_s=15, rate=100,
                   workload={"late_fraction": 0.1, "customer_fraction": 0.08})
    result, evidence, prefix = run_with_evidence(stack, spec, index=next(_INDEX))
    assert result.clean, result.summary
    reader = LakeReader.for_s3(stack.s3.endpoints(), prefix)
    yield LiveLake(reader.fs, reader.root, evidence, random.Random(seed))


def test_the_untouched_live_lake_is_clean(live: LiveLake) -> None:
    verdict = live.check()
    assert verdict.clean, verdict.summary()
    counts = live.evidence.truth.changes.group_by("op").aggregate([("op", "count")]).to_pylist()
    assert {c["op"] for c in counts} == {"c", "u", "d"}, counts
    assert pc.sum(pc.is_valid(pa.concat_arrays(
        [t["customer_region"].combine_chunks() for _, t in live.rows()]))).as_py() > 0   # enriched for real


@pytest.mark.parametrize("mutation, expected", MUTATIONS, ids=[m.__name__ for m, _ in MUTATIONS])
def test_each_planted_fault_is_its_class(live: LiveLake, mutation: Callable[[LiveLake], str],
                                         expected: set[str]) -> None:
    try:
        what = mutation(live)
        verdict = live.check()
    finally:
        live.restore()
    assert verdict.found() == expected, f"{what}: expected {sorted(expected)}\n{verdict.summary()}"
    assert live.check().clean   # undone
