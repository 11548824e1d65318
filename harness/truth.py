"""Ground truth from the database itself, read independently of Debezium.

- the **binlog** (via ``mysql-replication``, as a replication client): every committed row change of
  ``orders``, with its before/after image, in commit order;
- the **final table**: ``SELECT * FROM orders``.

Both are cross-checked against the workload's history: an ``ok`` transaction must be in the binlog, a
failed or rolled-back one must not, and an indeterminate (``info``) one is resolved by what the binlog says.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pymysql

from harness.lake_schema import STATE_COLUMNS
from harness.workload import History

TRUTH_SCHEMA = pa.schema([
    ("order_id", pa.int64()),
    ("version", pa.int32()),
    ("is_delete", pa.bool_()),
    ("op", pa.string()),
    ("customer_id", pa.int32()),
    ("product", pa.string()),
    ("quantity", pa.int32()),
    ("unit_price", pa.decimal128(10, 2)),
    ("status", pa.string()),
    ("event_time_ms", pa.int64()),
    ("commit_ms", pa.int64()),
    ("seq", pa.int64()),                 # position in commit order
    ("event_class", pa.string()),        # from the history: on_time | out_of_order | late | unknown
])

STATE_SCHEMA = pa.schema([("order_id", pa.int64())] + [TRUTH_SCHEMA.field(c) for c in STATE_COLUMNS
                                                         if c != "event_time_ms"]
                         + [("event_time_ms", pa.int64())])


def _ms(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return int(value.replace(tzinfo=dt.UTC).timestamp() * 1000)
    raise TypeError(f"expected a datetime, got {value!r}")


@dataclass
class GroundTruth:
    changes: pa.Table                    # TRUTH_SCHEMA: committed changes of orders, commit order
    final_state: pa.Table                # STATE_SCHEMA: the orders table at the end
    history_anomalies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def restricted_to_changed_keys(self) -> GroundTruth:
        """The same truth with the final table cut to the keys that have a change in ``changes`` (truth read
        from a binlog position says nothing of rows last changed before it)."""
        keys = pc.unique(self.changes.column("order_id"))
        final = self.final_state.filter(pc.is_in(self.final_state.column("order_id"), value_set=keys))
        return GroundTruth(self.changes, final, self.history_anomalies)


def binlog_position(host: str, port: int, user: str, password: str) -> tuple[str, int]:
    """The binlog end now: a scenario's truth starts here, so earlier scenarios' changes are excluded."""
    with pymysql.connect(host=host, port=port, user=user, password=password) as conn, conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    if row is None:
        raise RuntimeError(f"the database at {host}:{port} has no binlog; start it with --log-bin")
    return str(row[0]), int(row[1])


def read_binlog_changes(host: str, port: int, user: str, password: str, database: str,
                        table: str = "orders", is_mariadb: bool = True,
                        start: tuple[str, int] | None = None) -> list[dict[str, Any]]:
    """Every committed row change of ``database.table`` from the start of the binlog, in order.

    Uses the server's own binlog tool as a replication client (``mariadb-binlog`` / ``mysqlbinlog
    --read-from-remote-server -v``): independent of Debezium, and robust where the pure-Python
    ``mysql-replication`` reader loops on MariaDB (it reconnects from the start when a dump is reset).
    """
    with pymysql.connect(host=host, port=port, user=user, password=password) as conn, conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        logs = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s AND TABLE_NAME=%s "
                    "ORDER BY ORDINAL_POSITION", (database, table))
        columns = [r[0] for r in cur.fetchall()]
    if not logs:
        raise RuntimeError(f"the database at {host}:{port} has no binlog; start it with --log-bin")
    first, position = start if start is not None else (logs[0], 4)
    tool = shutil.which("mariadb-binlog" if is_mariadb else "mysqlbinlog") or shutil.which("mysqlbinlog")
    if tool is None:
        raise RuntimeError("no binlog tool (mariadb-binlog or mysqlbinlog) on PATH; install the database client "
                           "(`apt-get install mariadb-client`, or `./run setup`)")
    res = subprocess.run(
        [tool, "--read-from-remote-server", f"--host={host}", f"--port={port}", f"--user={user}",
         f"--password={password}", "--base64-output=DECODE-ROWS", "--verbose", "--to-last-log",
         f"--start-position={position}", first],
        capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, timeout=600, errors="replace",
    )
    if res.returncode != 0:
        raise RuntimeError(f"{tool} failed ({res.returncode}): {res.stderr[-2000:]}")
    return parse_binlog_text(res.stdout, database, table, columns)


_HEADER = re.compile(r"^#(\d{6})\s+(\d{1,2}:\d{2}:\d{2}) server id .*(Write_rows|Update_rows|Delete_rows)")
_STMT = re.compile(r"^### (INSERT INTO|UPDATE|DELETE FROM) `([^`]*)`\.`([^`]*)`")
_VALUE = re.compile(r"^###\s+@(\d+)=(.*)$")


def parse_binlog_text(text: str, database: str, table: str, columns: list[str]) -> list[dict[str, Any]]:
    """Row changes from ``mysqlbinlog -v`` pseudo-SQL (``### UPDATE ... WHERE @1=.. SET @1=..``)."""
    out: list[dict[str, Any]] = []
    commit_ms = 0
    op: str | None = None
    section = ""
    image: dict[str, Any] = {}

    def flush() -> None:
        if op is None or not image:
            return
        out.append(_change(op, image, commit_ms, len(out)))

    for line in text.splitlines():
        if not line.startswith("#"):
            continue
        m = _HEADER.match(line)
        if m:
            day, clock = m.group(1), m.group(2)
            t = dt.datetime.strptime(f"{day} {clock}", "%y%m%d %H:%M:%S").replace(tzinfo=dt.UTC)
            commit_ms = int(t.timestamp()) * 1000
            continue
        m = _STMT.match(line)
        if m:
            flush()
            kind, schema, tbl = m.groups()
            op = {"INSERT INTO": "c", "UPDATE": "u", "DELETE FROM": "d"}[kind] if (schema, tbl) == (
                database, table) else None
            section, image = ("SET" if kind == "INSERT INTO" else "WHERE"), {}
            continue
        if op is None:
            continue
        if line.strip() in ("### WHERE", "### SET"):
            section = line.strip()[4:]
            if op == "u" and section == "SET":
                image = {}   # an update's change is its after image
            continue
        m = _VALUE.match(line)
        if m and (op != "u" or section == "SET"):
            image[columns[int(m.group(1)) - 1]] = _literal(m.group(2))
    flush()
    return out


def _literal(raw: str) -> Any:
    raw = re.sub(r" /\* .* \*/$", "", raw.strip())   # type comments some versions append
    raw = re.sub(r" \(\d+\)$", "", raw)             # unsigned re-interpretation, e.g. -1 (4294967295)
    if raw == "NULL":
        return None
    if raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape").encode(
            "latin-1").decode("utf-8", "replace")
    return raw


def _change(op: str, image: dict[str, Any], commit_ms: int, seq: int) -> dict[str, Any]:
    return {
        "order_id": int(image["order_id"]), "version": int(image["version"]),
        "is_delete": op == "d", "op": op, "customer_id": int(image["customer_id"]),
        "product": image["product"], "quantity": int(image["quantity"]),
        "unit_price": Decimal(image["unit_price"]), "status": image["status"],
        "event_time_ms": commit_ms if op == "d" else _ms(
            dt.datetime.strptime(image["event_time"], "%Y-%m-%d %H:%M:%S.%f")),
        "commit_ms": commit_ms, "seq": seq,
    }


def read_final_state(conn: pymysql.connections.Connection, table: str = "orders") -> pa.Table:
    cols = ", ".join(["order_id", *[c for c in STATE_COLUMNS if c != "event_time_ms"], "event_time"])
    with conn.cursor() as cur:
        cur.execute(f"SELECT {cols} FROM {table} ORDER BY order_id")
        rows = cur.fetchall()
    data: dict[str, list[Any]] = {f.name: [] for f in STATE_SCHEMA}
    for r in rows:
        *vals, event_time = r
        for name, v in zip(["order_id", *[c for c in STATE_COLUMNS if c != "event_time_ms"]], vals, strict=True):
            data[name].append(v)
        data["event_time_ms"].append(_ms(event_time))
    return pa.Table.from_pydict(data, schema=STATE_SCHEMA)


def changes_table(changes: list[dict[str, Any]], history: History | None) -> pa.Table:
    classes: dict[tuple[int, int, bool], str] = {}
    if history is not None:
        for op, _entry, _rows in history.operations():
            classes[(op.order_id, op.version, op.is_delete)] = op.event_class
    for c in changes:
        c["event_class"] = classes.get((c["order_id"], c["version"], c["is_delete"]), "unknown")
    return pa.Table.from_pylist(changes, schema=TRUTH_SCHEMA)


def cross_check_history(changes: list[dict[str, Any]], history: History) -> dict[str, list[dict[str, Any]]]:
    """Anomalies between what the client saw and what the database committed.

    - ``HISTORY_OK_NOT_COMMITTED``: the client saw COMMIT succeed but the binlog lacks the change;
    - ``HISTORY_FAILED_BUT_COMMITTED``: the client saw a failure or rollback, yet the change is in the binlog.
    Indeterminate transactions are resolved (``resolved``) and never counted as either.
    """
    seen = {(c["order_id"], c["version"], c["is_delete"]) for c in changes}
    deleted = {c["order_id"] for c in changes if c["is_delete"]}
    out: dict[str, list[dict[str, Any]]] = {"HISTORY_OK_NOT_COMMITTED": [], "HISTORY_FAILED_BUT_COMMITTED": [],
                                             "resolved_indeterminate": []}
    for op, entry, rows in history.operations():
        key = (op.order_id, op.version, op.is_delete)
        # a delete's before-image version is the database's, which may differ from the generator's
        present = op.order_id in deleted if op.kind == "delete" else key in seen
        example = {"txn": entry.txn, "op": op.kind, "order_id": op.order_id, "version": op.version}
        if entry.outcome == "ok" and rows > 0 and not present:
            out["HISTORY_OK_NOT_COMMITTED"].append(example)
        elif entry.outcome in ("fail", "rolled_back") and present and rows != 0:
            out["HISTORY_FAILED_BUT_COMMITTED"].append(example)
        elif entry.outcome == "info":
            out["resolved_indeterminate"].append({**example, "committed": present})
    return out


def collect(db_endpoints: dict[str, Any], history: History | None,
            start: tuple[str, int] | None = None) -> GroundTruth:
    """Read the binlog (from ``start``) and the final table of a running database (``Database.endpoints()``)."""
    host, port = db_endpoints["host"], db_endpoints["port"]
    user, password = db_endpoints["root_user"], db_endpoints["root_password"]
    changes = read_binlog_changes(host, port, user, password, db_endpoints["database"],
                                  is_mariadb=db_endpoints.get("kind", "mariadb") == "mariadb", start=start)
    with pymysql.connect(host=host, port=port, user=user, password=password,
                         database=db_endpoints["database"]) as conn:
        final = read_final_state(conn)
    anomalies = cross_check_history(changes, history) if history is not None else {}
    return GroundTruth(changes_table(changes, history), final, anomalies)
