"""LakeReader: what a downstream reader of the lake sees, plus everything it should not see.

Reads the main, late and dead-letter tables with pyarrow from the S3 store (or a local directory) and
classifies every object: committed data file, ``_SUCCESS`` marker, hidden file (in-progress/pending,
invisible to readers), a *visible* in-progress file (an anomaly), or an unreadable Parquet file.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from harness.lake_schema import CHANGE_SCHEMA, DLQ_SCHEMA, DLQ_TABLE, LATE_TABLE, MAIN_TABLE, change_schema, version_of

TABLES = (MAIN_TABLE, LATE_TABLE, DLQ_TABLE)
#: the change tables as read: every lake schema version's columns (NULL where a file lacks an added one) and,
#: per file, its partition, path, table, commit time and lake schema version (``lake_version``)
LAKE_COLUMNS = [*change_schema().names, "dt", "hr", "file", "tbl", "file_mtime_ms", "lake_version"]
_IN_PROGRESS_MARKS = ("inprogress", "in-progress", ".pending", "_tmp")


@dataclass
class LakeFile:
    path: str
    table: str
    dt: str | None
    hr: str | None
    size: int
    kind: str          # data | success | hidden | uncommitted_visible | corrupt | stray
    last_modified_ms: int = 0   # the object's commit time (S3 LastModified, a file's mtime)
    lake_version: int | None = None   # a change file's lake schema version, once read (its columns say)


@dataclass
class LakeSnapshot:
    main: pa.Table
    late: pa.Table
    dlq: pa.Table
    files: list[LakeFile] = field(default_factory=list)
    corrupt: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[LakeFile]:
        return [f for f in self.files if f.kind == kind]

    @property
    def success_markers(self) -> set[tuple[str, str | None, str | None]]:
        return {(f.table, f.dt, f.hr) for f in self.of_kind("success")}

    @property
    def data_partitions(self) -> set[tuple[str, str | None, str | None]]:
        return {(f.table, f.dt, f.hr) for f in self.files if f.kind in ("data", "corrupt")}

    def changes(self) -> pa.Table:
        """Main and late tables together, with ``tbl`` = main|late, ``dt``, ``hr``, ``file`` and
        ``file_mtime_ms`` (the file's ``last_modified_ms``)."""
        return pa.concat_tables([self.main, self.late])

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for f in self.files:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        return {"rows_main": self.main.num_rows, "rows_late": self.late.num_rows, "rows_dlq": self.dlq.num_rows,
                "files": kinds, "partitions": len(self.data_partitions)}


def s3_filesystem(endpoint: str, access_key: str, secret_key: str, region: str) -> pafs.S3FileSystem:
    scheme, _, host = endpoint.partition("://")
    return pafs.S3FileSystem(access_key=access_key, secret_key=secret_key, endpoint_override=host,
                             scheme=scheme or "http", region=region, connect_timeout=3, request_timeout=30)


class LakeReader:
    """Reads a lake rooted at ``root`` (``bucket/prefix`` on S3, or a directory) on ``fs``."""

    def __init__(self, fs: pafs.FileSystem, root: str, threads: int = 8) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.threads = threads

    @classmethod
    def for_s3(cls, s3_endpoints: dict[str, Any], prefix: str = "") -> LakeReader:
        fs = s3_filesystem(s3_endpoints["endpoint"], s3_endpoints["access_key"], s3_endpoints["secret_key"],
                           s3_endpoints["region"])
        return cls(fs, posixpath.join(s3_endpoints["bucket"], prefix))

    def list_files(self) -> list[LakeFile]:
        out: list[LakeFile] = []
        for table in TABLES:
            base = f"{self.root}/{table}"
            try:
                infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            except FileNotFoundError:
                continue
            for info in infos:
                if info.type != pafs.FileType.File:
                    continue
                rel = info.path[len(base) + 1:]
                parts = rel.split("/")
                name = parts[-1]
                spec = dict(p.split("=", 1) for p in parts[:-1] if "=" in p)
                if name == "_SUCCESS":
                    kind = "success"
                elif name.startswith((".", "_")):
                    kind = "hidden"
                elif any(m in name for m in _IN_PROGRESS_MARKS):
                    kind = "uncommitted_visible"
                else:
                    kind = "data"
                mtime_ns = info.mtime_ns
                out.append(LakeFile(info.path, table, spec.get("dt"), spec.get("hr"), info.size or 0, kind,
                                    mtime_ns // 1_000_000 if mtime_ns is not None else 0))
        return out

    def _read(self, f: LakeFile) -> pa.Table | str:
        try:
            with self.fs.open_input_file(f.path) as fh:
                table = pq.read_table(fh)
            schema = DLQ_SCHEMA if f.table == DLQ_TABLE else CHANGE_SCHEMA
            missing = [n for n in schema.names if n not in table.column_names]
            if missing:
                return f"missing columns {missing}"
            if f.table == DLQ_TABLE:
                return table.select(schema.names).cast(schema)
            # a change file of any lake schema version: the columns added after it was written read as NULL
            f.lake_version = version_of(table.column_names)
            full = change_schema()
            for field in full:
                if field.name not in table.column_names:
                    table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
            return table.select(full.names).cast(full)
        except (pa.ArrowException, OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def change_files(self, since_ms: int = 0) -> list[LakeFile]:
        """The visible change data files (main and late tables) committed at or after ``since_ms`` (their
        objects' LastModified), each with its ``lake_version`` read from its Parquet footer, not its rows; an
        unreadable footer leaves it None."""
        files = [f for f in self.list_files()
                 if f.kind == "data" and f.table != DLQ_TABLE and f.last_modified_ms >= since_ms]

        def footer(f: LakeFile) -> None:
            try:
                with self.fs.open_input_file(f.path) as fh:
                    f.lake_version = version_of(pq.ParquetFile(fh).schema_arrow.names)
            except (pa.ArrowException, OSError, ValueError):
                f.lake_version = None

        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(footer, files))
        return files

    def snapshot(self) -> LakeSnapshot:
        files = self.list_files()
        data = [f for f in files if f.kind == "data"]
        with ThreadPoolExecutor(self.threads) as pool:
            results = list(pool.map(self._read, data))
        parts: dict[str, list[pa.Table]] = {t: [] for t in TABLES}
        corrupt: list[dict[str, Any]] = []
        for f, res in zip(data, results, strict=True):
            if isinstance(res, str):
                f.kind = "corrupt"
                corrupt.append({"file": f.path, "table": f.table, "dt": f.dt, "hr": f.hr, "error": res[:300]})
                continue
            if f.table != DLQ_TABLE:
                n = res.num_rows
                res = (res.append_column("dt", pa.array([f.dt] * n, pa.string()))
                       .append_column("hr", pa.array([f.hr] * n, pa.string()))
                       .append_column("file", pa.array([f.path] * n, pa.string()))
                       .append_column("tbl", pa.array(["main" if f.table == MAIN_TABLE else "late"] * n,
                                                      pa.string()))
                       .append_column("file_mtime_ms", pa.array([f.last_modified_ms] * n, pa.int64()))
                       .append_column("lake_version", pa.array([f.lake_version] * n, pa.int32())))
            parts[f.table].append(res)
        return LakeSnapshot(
            main=_concat(parts[MAIN_TABLE], _lake_schema()),
            late=_concat(parts[LATE_TABLE], _lake_schema()),
            dlq=_concat(parts[DLQ_TABLE], DLQ_SCHEMA),
            files=files, corrupt=corrupt,
        )


def _lake_schema() -> pa.Schema:
    extra = [("dt", pa.string()), ("hr", pa.string()), ("file", pa.string()), ("tbl", pa.string()),
             ("file_mtime_ms", pa.int64()), ("lake_version", pa.int32())]
    return pa.schema([*change_schema(), *(pa.field(n, t) for n, t in extra)])


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(tables) if tables else schema.empty_table()
