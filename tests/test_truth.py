"""Ground truth from a real MariaDB's binlog: every committed row change identified by its binlog coordinates
(file, rows-event position, row index), with the row image mapped by the Table_map's column names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pymysql
import pytest

from harness import truth
from harness.components.database import Database

DB = "inventory"
ROWS_EVENTS = ("Write_rows", "Update_rows", "Delete_rows")


@pytest.fixture
def conn(database: Database) -> Iterator[pymysql.connections.Connection]:
    c = database.connect(autocommit=True)
    try:
        yield c
    finally:
        c.close()


def sql(conn: pymysql.connections.Connection, *statements: str) -> None:
    with conn.cursor() as cur:
        for s in statements:
            cur.execute(s)


def order_values(order_id: int, product: str = "widget", status: str = "new", quantity: int = 1) -> str:
    product = product.replace("'", "''")
    return (f"({order_id}, 7, '{product}', {quantity}, 1.50, '{status}', '2026-01-01 00:00:00.123', 1, "
            "'2026-01-02 03:04:05.678', '2026-01-02 03:04:05.678')")


def insert_orders(conn: pymysql.connections.Connection, *values: str) -> None:
    sql(conn, "INSERT INTO orders (order_id, customer_id, product, quantity, unit_price, status, event_time, "
              f"version, created_at, updated_at) VALUES {', '.join(values)}")


def start_of(database: Database) -> tuple[str, int]:
    ep = database.endpoints()
    return truth.binlog_position(ep["host"], ep["port"], ep["root_user"], ep["root_password"])


def collect(database: Database, start: tuple[str, int] | None = None, history: Any = None) -> truth.GroundTruth:
    return truth.collect(database.endpoints(), history, start=start)


def rows_events(conn: pymysql.connections.Connection) -> dict[tuple[str, int], str]:
    """(file, Pos) -> event type of every rows event, as the server itself lists them."""
    out: dict[tuple[str, int], str] = {}
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        for (name, *_rest) in cur.fetchall():
            cur.execute(f"SHOW BINLOG EVENTS IN '{name}'")
            for log, pos, kind, *_ in cur.fetchall():
                if kind.startswith(ROWS_EVENTS):
                    out[(log, int(pos))] = kind
    return out


def last_gtid(conn: pymysql.connections.Connection) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT @@last_gtid")
        row = cur.fetchone()
    assert row is not None
    return str(row[0])


def fold(gt: truth.GroundTruth) -> dict[int, dict[str, Any]]:
    """The orders table the truth's changes fold to, by order id."""
    state: dict[int, dict[str, Any]] = {}
    for r in gt.changes.to_pylist():
        if r["op"] == "d":
            state.pop(r["order_id"], None)
        else:
            state[r["order_id"]] = {c: r[c] for c in truth.ORDER_COLUMNS}
    return state


def coords(rows: list[dict[str, Any]]) -> list[tuple[str, int, int, str]]:
    return [(r["src_file"], r["src_pos"], r["src_row"], r["op"]) for r in rows]


# --- the row changes -----------------------------------------------------------------------------------------

def test_multi_row_insert_is_one_event_with_rows_0_1_2(database: Database, conn: Any) -> None:
    start = start_of(database)
    insert_orders(conn, order_values(101, "a'b"), order_values(102), order_values(103))
    gt = collect(database, start)
    changes = gt.changes.to_pylist()
    assert [r["order_id"] for r in changes] == [101, 102, 103]
    assert {r["src_pos"] for r in changes} == {changes[0]["src_pos"]} and changes[0]["src_pos"] > start[1]
    assert [r["src_row"] for r in changes] == [0, 1, 2]
    assert [r["op"] for r in changes] == ["c", "c", "c"]
    seqs = [r["seq"] for r in changes]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    first = changes[0]
    assert first["product"] == "a'b" and first["unit_price"] == Decimal("1.50") and first["quantity"] == 1
    assert first["event_time_ms"] == 1_767_225_600_123
    assert first["created_at_ms"] == first["updated_at_ms"] == 1_767_323_045_678
    assert first["gtid"] == last_gtid(conn) and first["server_id"] == database.config.database.server_id
    assert abs(first["ts_ms"] - time.time() * 1000) < 120_000 and first["ts_ms"] % 1000 == 0
    # the position is the Write_rows event's own, as the server lists it (Debezium's source.pos)
    events = rows_events(conn)
    assert events[(first["src_file"], first["src_pos"])].startswith("Write_rows")


def test_a_statement_split_over_many_rows_events_names_each_row_by_its_own_event(database: Database,
                                                                                  conn: Any) -> None:
    """One INSERT, UPDATE and DELETE of 700 rows each: the server splits each statement over several rows
    events (binlog_row_event_max_size, 8 KiB), Debezium names a row by its own event's position and its index
    in that event, and so must the truth (the parser fills the events by row-image sizes, exactly)."""
    start = start_of(database)
    values = [order_values(50_000 + i, "w" * (i % 40) + ("é" if i % 7 == 0 else ""), quantity=i) for i in range(700)]
    insert_orders(conn, *values)
    sql(conn, "UPDATE orders SET status = CONCAT('s', order_id % 13), version = version + 1 "
              "WHERE order_id BETWEEN 50000 AND 50699",
        "DELETE FROM orders WHERE order_id BETWEEN 50000 AND 50699")
    changes = [r for r in collect(database, start).changes.to_pylist() if 50_000 <= r["order_id"] < 50_700]
    events = rows_events(conn)
    for op, kind in (("c", "Write_rows"), ("u", "Update_rows"), ("d", "Delete_rows")):
        rows = [r for r in changes if r["op"] == op]
        assert [r["order_id"] for r in rows] == list(range(50_000, 50_700)), op
        positions = sorted({r["src_pos"] for r in rows})
        assert len(positions) > 3, f"{op}: expected the statement split over several events, got {positions}"
        for pos in positions:
            assert events[(rows[0]["src_file"], pos)].startswith(kind)
            in_event = [r["src_row"] for r in rows if r["src_pos"] == pos]
            assert in_event == list(range(len(in_event))), (op, pos)
        # the statement's events are consecutive in the server's own list
        listed = sorted(p for (f, p), k in events.items() if f == rows[0]["src_file"] and k.startswith(kind)
                        and positions[0] <= p <= positions[-1])
        assert listed == positions, op
    assert [r["product"] for r in changes if r["op"] == "c"][7] == "w" * 7 + "é"


def test_multi_row_update_statement(database: Database, conn: Any) -> None:
    insert_orders(conn, order_values(201), order_values(202))
    start = start_of(database)
    sql(conn, "UPDATE orders SET quantity = quantity + 4, version = version + 1 WHERE order_id IN (201, 202)")
    changes = collect(database, start).changes.to_pylist()
    assert [(r["order_id"], r["op"], r["src_row"], r["quantity"], r["version"]) for r in changes] == [
        (201, "u", 0, 5, 2), (202, "u", 1, 5, 2)]
    assert changes[0]["src_pos"] == changes[1]["src_pos"]
    assert rows_events(conn)[(changes[0]["src_file"], changes[0]["src_pos"])].startswith("Update_rows")


def test_two_changes_of_one_row_in_one_transaction(database: Database, conn: Any) -> None:
    insert_orders(conn, order_values(301))
    start = start_of(database)
    sql(conn, "BEGIN", "UPDATE orders SET status = 'paid' WHERE order_id = 301",
        "UPDATE orders SET status = 'shipped' WHERE order_id = 301", "COMMIT")
    gtid = last_gtid(conn)
    changes = collect(database, start).changes.to_pylist()
    assert [(r["op"], r["status"], r["gtid"]) for r in changes] == [("u", "paid", gtid), ("u", "shipped", gtid)]
    assert changes[0]["src_pos"] < changes[1]["src_pos"] and changes[0]["seq"] + 1 == changes[1]["seq"]
    events = rows_events(conn)
    assert all(events[(r["src_file"], r["src_pos"])].startswith("Update_rows") for r in changes)


def test_update_of_status_only_leaves_version(database: Database, conn: Any) -> None:
    insert_orders(conn, order_values(401))
    start = start_of(database)
    sql(conn, "UPDATE orders SET status = 'cancelled' WHERE order_id = 401")
    (change,) = collect(database, start).changes.to_pylist()
    assert (change["op"], change["status"], change["version"], change["quantity"]) == ("u", "cancelled", 1, 1)


def test_delete_and_reinsert_of_one_id(database: Database, conn: Any) -> None:
    insert_orders(conn, order_values(501))
    start = start_of(database)
    sql(conn, "DELETE FROM orders WHERE order_id = 501")
    insert_orders(conn, order_values(501, "again", quantity=9))
    gt = collect(database, start)
    changes = gt.changes.to_pylist()
    assert [(r["order_id"], r["op"], r["product"], r["quantity"]) for r in changes] == [
        (501, "d", "widget", 1), (501, "c", "again", 9)]      # a delete carries the before image
    events = rows_events(conn)
    assert events[(changes[0]["src_file"], changes[0]["src_pos"])].startswith("Delete_rows")
    assert events[(changes[1]["src_file"], changes[1]["src_pos"])].startswith("Write_rows")
    final = {r["order_id"]: r for r in gt.final_state.to_pylist()}
    assert final[501]["product"] == "again" and final[501]["quantity"] == 9


def test_primary_key_update_is_delete_plus_create_at_the_same_coordinates(database: Database, conn: Any) -> None:
    insert_orders(conn, order_values(601, "moved"))
    start = start_of(database)
    sql(conn, "UPDATE orders SET order_id = 602 WHERE order_id = 601")
    changes = collect(database, start).changes.to_pylist()
    assert [(r["order_id"], r["op"], r["product"]) for r in changes] == [(601, "d", "moved"), (602, "c", "moved")]
    assert coords(changes)[0][:3] == coords(changes)[1][:3]
    assert changes[0]["seq"] + 1 == changes[1]["seq"] and changes[0]["gtid"] == changes[1]["gtid"]


def test_rolled_back_transaction_is_absent_and_markers_name_committed_ones(database: Database, conn: Any) -> None:
    start = start_of(database)
    sql(conn, "BEGIN", f"INSERT INTO {truth.MARKER_TABLE} VALUES (9001, 1)")
    insert_orders(conn, order_values(701))
    sql(conn, "ROLLBACK")
    sql(conn, "BEGIN", f"INSERT INTO {truth.MARKER_TABLE} VALUES (9002, 1)")
    insert_orders(conn, order_values(702))
    sql(conn, "COMMIT")
    gtid = last_gtid(conn)
    gt = collect(database, start)
    assert [r["order_id"] for r in gt.changes.to_pylist()] == [702]
    assert gt.changes.column("gtid").to_pylist() == [gtid]
    assert 9001 not in gt.committed_txns and gt.committed_txns[9002] == gtid
    assert 701 not in gt.final_state.column("order_id").to_pylist()


def test_added_column_mid_stream_maps_by_name(database: Database, conn: Any) -> None:
    insert_orders(conn, order_values(801))
    start = start_of(database)
    sql(conn, "ALTER TABLE orders ADD COLUMN note VARCHAR(10) AFTER product")
    try:
        sql(conn, "INSERT INTO orders (order_id, customer_id, product, note, quantity, unit_price, status, "
                  "event_time) VALUES (802, 8, 'after', 'n', 3, 2.25, 'new', '2026-01-01 00:00:01')",
            "UPDATE orders SET quantity = 4 WHERE order_id = 801")
        gt = collect(database, start)
    finally:
        sql(conn, "ALTER TABLE orders DROP COLUMN note")
    c, u = gt.changes.to_pylist()
    assert (c["order_id"], c["customer_id"], c["product"], c["quantity"], c["unit_price"], c["status"]) == (
        802, 8, "after", 3, Decimal("2.25"), "new")
    assert c["event_time_ms"] == 1_767_225_601_000 and c["version"] == 1
    assert (u["order_id"], u["product"], u["quantity"], u["status"]) == (801, "widget", 4, "new")


def test_customers_changes_are_all_read_and_never_filtered(database: Database, conn: Any) -> None:
    sql(conn, "INSERT INTO customers VALUES (11, 'Ann', 'eu', 'retail'), (12, 'Bob', 'us', 'smb')")
    start = start_of(database)
    sql(conn, "UPDATE customers SET region = 'apac' WHERE customer_id = 11",
        "DELETE FROM customers WHERE customer_id = 12",
        "UPDATE customers SET customer_id = 13 WHERE customer_id = 11")
    gt = collect(database, start)
    rows = [r for r in gt.customers.to_pylist() if r["customer_id"] in (11, 12, 13)]
    assert [(r["customer_id"], r["op"], r["customer_name"], r["region"], r["segment"]) for r in rows] == [
        (11, "c", "Ann", "eu", "retail"), (12, "c", "Bob", "us", "smb"),       # before start: still there
        (11, "u", "Ann", "apac", "retail"), (12, "d", None, None, None),
        (11, "d", None, None, None), (13, "c", "Ann", "apac", "retail")]
    assert coords([rows[4]])[0][:3] == coords([rows[5]])[0][:3] and rows[4]["seq"] + 1 == rows[5]["seq"]
    seqs = gt.customers.column("seq").to_pylist()
    assert seqs == sorted(seqs) and not set(seqs) & set(gt.changes.column("seq").to_pylist())


def test_start_filters_orders_and_seq_is_global(database: Database, conn: Any) -> None:
    # a customers change of its own: the module's server is shared, and xdist may run this test without the others
    sql(conn, "INSERT IGNORE INTO customers VALUES (21, 'Cy', 'eu', 'retail')")
    insert_orders(conn, order_values(901))
    start = start_of(database)
    insert_orders(conn, order_values(902))
    whole, part = collect(database), collect(database, start)
    assert 901 in whole.changes.column("order_id").to_pylist()
    assert part.changes.column("order_id").to_pylist() == [902]
    (mine,) = [r for r in whole.changes.to_pylist() if r["order_id"] == 902]
    assert part.changes.to_pylist() == [mine]        # the same seq and coordinates from either read
    assert part.customers.num_rows == whole.customers.num_rows > 0
    assert part.binlog["start"] == start and part.binlog["orders_changes_from_start"] == 1
    restricted = part.restricted_to_changed_keys()
    assert restricted.final_state.column("order_id").to_pylist() == [902]
    assert whole.final_state.num_rows > 1


def test_every_change_sits_on_a_rows_event_across_binlog_files(database: Database, conn: Any) -> None:
    sql(conn, "FLUSH BINARY LOGS")
    insert_orders(conn, order_values(1001), order_values(1002))
    sql(conn, "UPDATE orders SET status = 'x' WHERE order_id IN (1001, 1002)",
        "DELETE FROM orders WHERE order_id = 1001")
    gt = collect(database)
    events = rows_events(conn)
    assert len(gt.binlog["files"]) >= 2 and gt.binlog["final_state_consistent"] is True, gt.binlog
    for r in gt.changes.to_pylist() + gt.customers.to_pylist():
        kind = events[(r["src_file"], r["src_pos"])]
        assert kind.startswith({"c": ("Write_rows", "Update_rows"), "u": ("Update_rows",),
                                "d": ("Delete_rows", "Update_rows")}[r["op"]])
    late = [r for r in gt.changes.to_pylist() if r["order_id"] in (1001, 1002)]
    assert {r["src_file"] for r in late} == {gt.binlog["files"][-1]} != {gt.binlog["files"][0]}
    assert gt.changes.column("seq").to_pylist() == sorted(gt.changes.column("seq").to_pylist())
    # the final table as a change fold of the whole binlog
    assert sorted(fold(gt).values(), key=lambda r: r["order_id"]) == gt.final_state.to_pylist()


def test_complete_files_are_parsed_once_and_read_the_same_as_the_whole_log(database: Database, conn: Any) -> None:
    """Truth over several rotated files: the cached parses of complete files, merged with the last one read
    anew, equal one parse of the whole stream (every column, seq included); a second read reuses the cache.
    Only rotated files are compared: the open file grows with the database's tick between two reads."""
    ep = database.endpoints()
    assert ep.get("binlog_archive"), "the module's database keeps no binlog archive: nothing would be cached"
    sql(conn, "INSERT IGNORE INTO customers VALUES (31, 'Di', 'us', 'retail')")
    insert_orders(conn, order_values(1201))
    sql(conn, "FLUSH BINARY LOGS", "UPDATE customers SET region = 'eu' WHERE customer_id = 31")
    insert_orders(conn, order_values(1202))
    sql(conn, "FLUSH BINARY LOGS", "UPDATE orders SET status = 'paid' WHERE order_id IN (1201, 1202)",
        "FLUSH BINARY LOGS")
    time.sleep(1.0)   # the archive copies the rotated files
    args = (ep["host"], ep["port"], ep["root_user"], ep["root_password"])
    complete = truth.binlog_sources(*args, ep["binlog_archive"])[:-1]
    whole = truth.parse_binlog_lines(truth.stream_binlog(*args, sources=complete), DB)
    truth._COMPLETE_FILES.clear()
    first = truth.parse_sources(*args, True, complete, DB, ep["binlog_archive"])
    cached = dict(truth._COMPLETE_FILES)
    second = truth.parse_sources(*args, True, complete, DB, ep["binlog_archive"])
    assert len(cached) == len(complete) - 1 >= 2 and cached == truth._COMPLETE_FILES
    for got in (first, second):
        assert got.orders == whole.orders and got.customers == whole.customers
        assert (got.txn_markers, got.events, got.files, got.first, got.end, got.uncommitted_rows_dropped) == \
            (whole.txn_markers, whole.events, whole.files, whole.first, whole.end, whole.uncommitted_rows_dropped)
    assert {r["order_id"] for r in whole.orders.to_pylist() if r["op"] == "u"} >= {1201, 1202}


# --- the reader's checks (pure, on real text) ----------------------------------------------------------------

@pytest.fixture(scope="module")
def text(database: Database) -> str:
    with database.connect(autocommit=True) as conn:
        insert_orders(conn, order_values(1101))
    ep = database.endpoints()
    return truth.read_binlog(ep["host"], ep["port"], ep["root_user"], ep["root_password"], DB)


def test_broken_position_chain_raises(text: str) -> None:
    parsed = truth.parse_binlog_text(text, DB)
    last = parsed.orders.to_pylist()[-1]
    marker = f"# at {last['src_pos']}\n"
    assert marker in text
    broken = text.replace(marker, f"# at {last['src_pos'] + 1}\n")
    with pytest.raises(truth.BinlogParseError, match=rf"{last['src_file']}.*{last['src_pos'] + 1}"):
        truth.parse_binlog_text(broken, DB)


def test_row_value_without_a_table_raises(text: str) -> None:
    lines = text.split("\n")
    xid = next(i for i, ln in enumerate(lines) if "\tXid = " in ln)
    lines.insert(xid + 1, "###   @1=5")
    with pytest.raises(truth.BinlogParseError, match="row value"):
        truth.parse_binlog_text("\n".join(lines), DB)


def test_table_map_without_column_names_raises(text: str) -> None:
    stripped = "\n".join(ln for ln in text.split("\n") if not ln.startswith(("# Columns(", "#         ")))
    with pytest.raises(truth.BinlogParseError, match="binlog_row_metadata=FULL"):
        truth.parse_binlog_text(stripped, DB)


def test_open_group_at_the_end_is_dropped(text: str) -> None:
    parsed = truth.parse_binlog_text(text, DB)
    orders = parsed.orders.to_pylist()
    last = orders[-1]
    rows_at = text.index(f"\n# at {last['src_pos']}\n")
    xid = text.index("\tXid = ", rows_at)
    cut = text[:text.rindex("\n# at ", rows_at, xid)]   # the log ends before the last change's Xid
    partial = truth.parse_binlog_text(cut, DB)
    group = [r for r in orders if r["gtid"] == last["gtid"]]
    assert partial.orders.to_pylist() == orders[:len(orders) - len(group)]
    assert partial.uncommitted_rows_dropped >= len(group) >= 1


# --- the history cross-check ---------------------------------------------------------------------------------

def test_cross_check_history() -> None:
    committed = {1: "0-7-1", 2: "0-7-2", 5: "0-7-5", 6: None}
    entries = [SimpleNamespace(txn=t, outcome=o, gtid=g) for t, o, g in [
        (1, "ok", "0-7-1"),          # fine
        (2, "ok", "0-7-9"),          # committed under another GTID than the client recorded
        (3, "ok", None),             # never committed
        (4, "rolled_back", None),    # fine
        (5, "fail", None),           # committed after all
        (6, "info", None),           # indeterminate: committed
        (7, "info", None),           # indeterminate: not committed
        (8, "fail", None),           # fine
    ]]
    found = truth.cross_check_history(committed, SimpleNamespace(entries=entries))
    assert [x["txn"] for x in found["HISTORY_OK_NOT_COMMITTED"]] == [2, 3]
    assert found["HISTORY_OK_NOT_COMMITTED"][0]["binlog_gtid"] == "0-7-2"
    assert [x["txn"] for x in found["HISTORY_FAILED_BUT_COMMITTED"]] == [5]
    assert [(x["txn"], x["committed"]) for x in found["resolved_indeterminate"]] == [(6, True), (7, False)]


def test_collect_cross_checks_the_history(database: Database, conn: Any) -> None:
    sql(conn, "BEGIN", f"INSERT INTO {truth.MARKER_TABLE} VALUES (9101, 2)", "COMMIT")
    gtid = last_gtid(conn)
    history = SimpleNamespace(entries=[SimpleNamespace(txn=9101, outcome="ok", gtid=gtid),
                                       SimpleNamespace(txn=9102, outcome="ok", gtid=None)])
    gt = collect(database, history=history)
    assert [x["txn"] for x in gt.history_anomalies["HISTORY_OK_NOT_COMMITTED"]] == [9102]
    assert gt.committed_txns[9101] == gtid


# --- speed ---------------------------------------------------------------------------------------------------

def synthetic_binlog(n_txns: int, rows_per_event: int) -> str:
    """Text shaped like mariadb-binlog's: n_txns transactions, each one Update_rows event of orders."""
    cols = ["`order_id` BIGINT NOT NULL", "`customer_id` INT NOT NULL", "`product` VARCHAR(128) NOT NULL",
            "`quantity` INT NOT NULL", "`unit_price` DECIMAL(10,2) NOT NULL", "`status` VARCHAR(16) NOT NULL",
            "`event_time` DATETIME(3) NOT NULL", "`version` INT NOT NULL", "`created_at` DATETIME(3) NOT NULL",
            "`updated_at` DATETIME(3) NOT NULL"]
    head = "#261126  5:56:54 server id 7  end_log_pos {end} CRC32 0x27220e65 \t"
    out = ["# at 4", "#700101  0:00:00 server id 7  end_log_pos 0 CRC32 0x1 \tRotate to binlog.000001  pos: 4",
           "# at 4", head.format(end=256) + "Start: binlog v 4"]
    pos = 256
    for t in range(n_txns):
        out += [f"# at {pos}", head.format(end=pos + 42) + f"GTID 0-7-{t + 1} trans", "START TRANSACTION", "/*!*/;"]
        pos += 42
        out += [f"# at {pos}", head.format(end=pos + 100) + "Table_map: `inventory`.`orders` mapped to number 18",
                "# Columns(" + cols[0] + ",", *("#         " + c + "," for c in cols[1:-1]),
                "#         " + cols[-1] + ")"]
        pos += 100
        out += [f"# at {pos}", head.format(end=pos + 500) + "Update_rows: table id 18 flags: STMT_END_F"]
        for r in range(rows_per_event):
            image = [f"###   @1={t * rows_per_event + r}", "###   @2=3", "###   @3='widget'", "###   @4=2",
                     "###   @5=1.50", "###   @6='new'", "###   @7='2026-01-01 00:00:00.123'", "###   @8=1",
                     "###   @9='2026-01-01 00:00:00.000'", "###   @10='2026-01-01 00:00:00.000'"]
            out += ["### UPDATE `inventory`.`orders`", "### WHERE", *image, "### SET", *image]
        pos += 500
        out += [f"# at {pos}", head.format(end=pos + 31) + "Xid = 5", "COMMIT/*!*/;"]
        pos += 31
    return "\n".join(out) + "\n"


def test_parsing_is_fast() -> None:
    """Linear, and a small multiple of merely looking at each line (the machine may be loaded: relative)."""
    text = synthetic_binlog(4_000, 5)
    t0 = time.perf_counter()
    n = sum(1 for line in text.split("\n") if line.startswith("#") and line.startswith("###   @"))
    baseline = time.perf_counter() - t0
    t0 = time.perf_counter()
    parsed = truth.parse_binlog_text(text, DB)
    seconds = time.perf_counter() - t0
    assert n > 0 and parsed.orders.num_rows == 20_000 and parsed.orders.column("seq")[-1].as_py() == 19_999
    assert seconds < 25 * baseline + 0.5, f"20k updates took {seconds:.2f} s, looking at the lines {baseline:.2f} s"


def test_truth_survives_a_binlog_purge_through_the_archive(own_database: Database) -> None:
    """The stack keeps a raw copy of the binlog from its start: changes in files the server purged are still
    truth, read from the copy with their own coordinates."""
    database = own_database
    conn = database.connect(autocommit=True)
    start = start_of(database)
    insert_orders(conn, order_values(9101), order_values(9102))
    sql(conn, "UPDATE orders SET status = 'paid' WHERE order_id = 9101")
    before = coords(collect(database, start).changes.to_pylist())
    assert len(before) == 3
    archive = database.archive
    assert archive is not None
    sql(conn, "FLUSH BINARY LOGS")
    current = start_of(database)[0]
    # the archive has the purged file to its end before the purge (it streams as the server writes)
    deadline = time.monotonic() + 30
    while current not in archive.files() and time.monotonic() < deadline:
        time.sleep(0.2)
    # the server refuses to purge a file a replication client (the archive) still reads: a moment after the
    # rotation it has moved on
    left: list[str] = []
    while time.monotonic() < deadline + 15:
        sql(conn, f"PURGE BINARY LOGS TO '{current}'")
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            left = [r[0] for r in cur.fetchall()]
        if left == [current]:
            break
        time.sleep(0.5)
    assert left == [current]       # the server no longer has the changes
    gt = collect(database, start)
    conn.close()
    assert coords(gt.changes.to_pylist()) == before
    assert start[0] in gt.binlog["files_from_archive"]
