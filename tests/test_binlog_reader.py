"""The compiled binlog reader (``harness/binlog_reader``) against the text reader, on a real MariaDB's binlog.

Truth reads binlog files on local disk with the compiled reader and everything else with the text of the
server's own tool; both must make the same changes of the same log, to the last column, and both must refuse
the same broken logs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness import truth
from harness.components.database import Database
from tests.test_truth import DB, fold, insert_orders, order_values, sql

ODD = "tab\there, new\nline, quote ' and \\ backslash, é, ß, €, ™"  # the columns are latin1 (cp1252)


def write_varied_log(conn: Any) -> None:
    """What applications write, in several binlog files: multi-row and split statements, odd strings, key
    updates, delete and re-insert, rolled-back and committed transactions with markers, customers changing,
    a column added mid-stream, extreme decimals and times."""
    sql(conn, "FLUSH BINARY LOGS", "INSERT INTO customers VALUES (1, 'Zoë', 'eu', 'retail'), (2, 'Bo', 'us', 'smb')")
    odd = ODD.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")   # order_values doubles quotes
    insert_orders(conn, order_values(1, odd), order_values(2, "é" * 40), order_values(3, ""), order_values(5, odd))
    insert_orders(conn, *(order_values(10_000 + i, "w" * (i % 90) + ("ü" if i % 5 == 0 else ""), quantity=i)
                          for i in range(900)))
    sql(conn, "UPDATE orders SET status = CONCAT('s', order_id % 7), unit_price = -unit_price * 3 "
              "WHERE order_id BETWEEN 10000 AND 10899",
        "UPDATE orders SET unit_price = 99999999.99, event_time = '1970-01-01 00:00:00', "
        "created_at = '2038-01-19 03:14:07.999' WHERE order_id = 2",
        "UPDATE orders SET unit_price = 0.05 WHERE order_id = 3",
        "UPDATE orders SET event_time = '1969-12-31 23:59:59.5' WHERE order_id = 5",
        "FLUSH BINARY LOGS",
        "DELETE FROM orders WHERE order_id BETWEEN 10000 AND 10449",
        "UPDATE orders SET order_id = 4 WHERE order_id = 3",
        "DELETE FROM orders WHERE order_id = 1")
    insert_orders(conn, order_values(1, "again", quantity=9))
    sql(conn, "BEGIN", f"INSERT INTO {truth.MARKER_TABLE} VALUES (1, 1)")
    insert_orders(conn, order_values(20))
    sql(conn, "ROLLBACK",
        "BEGIN", f"INSERT INTO {truth.MARKER_TABLE} VALUES (2, 1)",
        "UPDATE orders SET status = 'paid' WHERE order_id = 1",
        "UPDATE orders SET status = 'shipped' WHERE order_id = 1",
        "UPDATE customers SET region = 'apac' WHERE customer_id = 1",
        "COMMIT",
        "UPDATE customers SET customer_id = 3 WHERE customer_id = 2",
        "DELETE FROM customers WHERE customer_id = 1",
        "ALTER TABLE orders ADD COLUMN note VARCHAR(300) NULL AFTER product",
        "INSERT INTO orders (order_id, customer_id, product, note, quantity, unit_price, status, event_time) "
        "VALUES (30, 8, 'after', NULL, 3, 2.25, 'new', '2026-01-01 00:00:01.5'), "
        f"(31, 8, 'after', '{'n' * 290}', 3, 2.25, 'new', '2026-01-01 00:00:01')",
        "ALTER TABLE orders DROP COLUMN note",
        "FLUSH BINARY LOGS")


@pytest.fixture(scope="module")
def varied(stack_config: Any) -> Iterator[tuple[Database, list[tuple[str, str]]]]:
    """A server of this module alone with the varied log written; (the server, its complete files and paths)."""
    from conftest import database_alone

    with database_alone(stack_config, "binlog-reader") as db:
        conn = db.connect(autocommit=True)
        write_varied_log(conn)
        conn.close()
        ep = db.endpoints()
        served = truth.binlog_files(ep["host"], ep["port"], ep["root_user"], ep["root_password"])
        complete = [(f, str(Path(ep["binlog_dir"]) / f)) for f in served[:-1]]
        yield db, complete


def text_parse(db: Database, file: str) -> truth.ParsedBinlog:
    ep = db.endpoints()
    lines = truth.stream_binlog(ep["host"], ep["port"], ep["root_user"], ep["root_password"],
                                sources=[(file, None)])
    return truth.parse_binlog_lines(lines, DB)


def as_tuple(p: truth.ParsedBinlog) -> tuple[Any, ...]:
    return (p.orders, p.customers, p.txn_markers, p.events, p.files, p.first, p.end, p.uncommitted_rows_dropped)


def test_every_complete_file_reads_the_same_with_both_readers(varied: tuple[Database, list[tuple[str, str]]]) -> None:
    db, complete = varied
    orders = customers = 0
    for file, path in complete:
        native, text = truth.parse_binlog_file(path, file, DB), text_parse(db, file)
        assert as_tuple(native) == as_tuple(text), file
        orders, customers = orders + native.orders.num_rows, customers + native.customers.num_rows
    assert orders > 2_000 and customers >= 6
    everything = [r for file, path in complete for r in truth.parse_binlog_file(path, file, DB).orders.to_pylist()]
    products = {r["product"] for r in everything}
    assert ODD in products and "é" * 40 in products
    prices = {r["unit_price"] for r in everything if r["order_id"] in (2, 3, 10_001)}
    assert {Decimal("99999999.99"), Decimal("0.05"), Decimal("-4.50")} <= prices
    assert len({(r["src_file"], r["src_pos"]) for r in everything if r["op"] == "u"}) > 5   # split statements
    assert [r["op"] for r in everything if r["order_id"] in (3, 4) and r["op"] != "u"] == ["c", "d", "c"]


def test_truth_reads_local_files_with_the_compiled_reader_and_equals_the_text_reader(
        varied: tuple[Database, list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch) -> None:
    db, _ = varied
    native = truth.collect(db.endpoints(), None)
    calls: list[str] = []
    monkeypatch.setattr(truth, "parse_binlog_file", lambda *a: calls.append(a[1]))   # must not be used
    monkeypatch.setenv(truth.READER_ENV, "text")
    text = truth.collect(db.endpoints(), None)
    assert not calls
    n = min(native.changes.num_rows, text.changes.num_rows)   # the open file may have grown between the reads
    assert n > 2_000 and native.changes.slice(0, n).equals(text.changes.slice(0, n))
    assert native.customers.equals(text.customers) and native.final_state.equals(text.final_state)
    assert native.committed_txns == text.committed_txns == {2: native.committed_txns[2]}
    # the final table, read as CSV the server renders, is the fold of the changes: odd strings and times too
    state = fold(native)
    assert sorted(state.values(), key=lambda r: r["order_id"]) == native.final_state.to_pylist()
    assert state[5]["product"] == ODD and state[5]["event_time_ms"] == -500


def test_a_broken_position_chain_is_refused(varied: tuple[Database, list[tuple[str, str]]], tmp_path: Path) -> None:
    _, complete = varied
    file, path = complete[1]
    data = bytearray(Path(path).read_bytes())
    first = int.from_bytes(data[4 + 9:4 + 13], "little")          # the Format_description event's size
    second = 4 + first
    end = int.from_bytes(data[second + 13:second + 17], "little")
    data[second + 13:second + 17] = (end + 1).to_bytes(4, "little")
    broken = tmp_path / file
    broken.write_bytes(bytes(data))
    with pytest.raises(truth.BinlogParseError, match=rf"binlog file {file}, position {end}: broken position chain"):
        truth.parse_binlog_file(str(broken), file, DB)


def test_an_open_group_at_the_end_is_dropped_and_counted(varied: tuple[Database, list[tuple[str, str]]],
                                                         tmp_path: Path) -> None:
    """A file cut inside its last transaction (the server is still writing it): the whole group is dropped."""
    _, complete = varied
    file, path = complete[-1]
    whole = truth.parse_binlog_file(path, file, DB)
    orders = whole.orders.to_pylist()
    last = orders[-1]
    group = [r for r in orders if r["gtid"] == last["gtid"]]
    data = Path(path).read_bytes()
    cut = tmp_path / file
    cut.write_bytes(data[:last["src_pos"] + 30])       # inside the last rows event
    partial = truth.parse_binlog_file(str(cut), file, DB)
    assert partial.orders.to_pylist() == orders[:len(orders) - len(group)]
    # the group's rows in events before the cut were read, and dropped: counted
    assert partial.uncommitted_rows_dropped == sum(1 for r in group if r["src_pos"] < last["src_pos"])


def test_not_a_binlog_and_a_missing_file_are_named(tmp_path: Path) -> None:
    bogus = tmp_path / "binlog.000001"
    bogus.write_bytes(b"PAR1 not a binlog")
    with pytest.raises(truth.BinlogParseError, match="not a binlog file"):
        truth.parse_binlog_file(str(bogus), bogus.name, DB)
    with pytest.raises(truth.BinlogParseError, match="no such file"):
        truth.parse_binlog_file(str(tmp_path / "binlog.000002"), "binlog.000002", DB)


def test_a_table_map_without_column_names_is_refused(own_database: Database, tmp_path: Path) -> None:
    conn = own_database.connect(autocommit=True)
    try:
        sql(conn, "FLUSH BINARY LOGS", "SET GLOBAL binlog_row_metadata = MINIMAL")
        try:
            insert_orders(conn, order_values(1))
        finally:
            sql(conn, "SET GLOBAL binlog_row_metadata = FULL")
        ep = own_database.endpoints()
        file = truth.binlog_files(ep["host"], ep["port"], ep["root_user"], ep["root_password"])[-1]
        copy = tmp_path / file
        shutil.copy(Path(ep["binlog_dir"]) / file, copy)
    finally:
        conn.close()
    with pytest.raises(truth.BinlogParseError, match="binlog_row_metadata=FULL"):
        truth.parse_binlog_file(str(copy), file, DB)


def test_without_the_compiled_reader_truth_reads_the_text_and_says_so(
        varied: tuple[Database, list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    db, _ = varied
    native = truth.collect(db.endpoints(), None)

    def unbuildable() -> str:
        raise truth.BinlogParseError("no Go here")

    monkeypatch.setattr(truth, "reader_binary", unbuildable)
    monkeypatch.setattr(truth, "_READER_UNAVAILABLE", [])
    text = truth.collect(db.endpoints(), None)
    n = min(native.changes.num_rows, text.changes.num_rows)
    assert n > 2_000 and native.changes.slice(0, n).equals(text.changes.slice(0, n))
    assert "compiled binlog reader is not available (no Go here)" in caplog.text
