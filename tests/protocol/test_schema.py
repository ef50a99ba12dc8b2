"""Creating and upgrading the session DBs: `create_session_db` must be safe to call on every
open, whatever state (new, current, older, WAL) the file is in."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from protocol.db import create_session_db, read_transaction
from protocol.schema import INBOUND, OUTBOUND, Schema


def _shape(path: Path) -> dict[str, Any]:
    """Everything about the file's structure that an upgrade could change."""
    with closing(sqlite3.connect(path)) as conn:
        master = sorted(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall())
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = {table: conn.execute(f"PRAGMA table_info({table})").fetchall() for table in tables}
        indexes = {table: sorted(conn.execute(f"PRAGMA index_list({table})").fetchall()) for table in tables}
    return {"master": master, "columns": columns, "indexes": indexes}


def _columns(path: Path, table: str) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _journal_mode(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])


@pytest.mark.parametrize("schema", [INBOUND, OUTBOUND], ids=lambda schema: schema.name)
def test_creates_every_declared_table_column_and_index(tmp_path: Path, schema: Schema) -> None:
    path = tmp_path / f"{schema.name}.db"
    create_session_db(path, schema)

    shape = _shape(path)
    for table in schema.tables:
        assert [column[1] for column in shape["columns"][table.name]] == list(table.column_names)
    index_names = {row[1] for rows in shape["indexes"].values() for row in rows}
    for statement in (index for table in schema.tables for index in table.indexes):
        # "CREATE [UNIQUE] INDEX IF NOT EXISTS <name> ON ..."
        assert statement.split(" IF NOT EXISTS ")[1].split()[0] in index_names


@pytest.mark.parametrize("schema", [INBOUND, OUTBOUND], ids=lambda schema: schema.name)
def test_second_create_is_a_no_op_and_keeps_data(tmp_path: Path, schema: Schema) -> None:
    path = tmp_path / f"{schema.name}.db"
    create_session_db(path, schema)
    table = schema.tables[0].name
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(f"INSERT INTO {table} ({schema.tables[0].key.name}) VALUES ('kept')")
    before = _shape(path)

    create_session_db(path, schema)

    assert _shape(path) == before
    with read_transaction(path) as conn:
        assert [row[0] for row in conn.execute(f"SELECT {schema.tables[0].key.name} FROM {table}")] == ["kept"]


def test_older_inbound_file_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "inbound.db"
    # What an earlier version might have written: the tables exist, most columns do not.
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE messages_in (id TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL, content TEXT)")
        conn.execute("CREATE TABLE delivered (message_out_id TEXT NOT NULL PRIMARY KEY, platform_message_id TEXT)")
        conn.execute("INSERT INTO messages_in (id, seq, content) VALUES ('m1', 2, '{\"text\": \"hi\"}')")
        conn.execute("INSERT INTO delivered (message_out_id, platform_message_id) VALUES ('o1', 'p1')")

    create_session_db(path, INBOUND)

    for table in INBOUND.tables:
        assert set(_columns(path, table.name)) == set(table.column_names)
    with read_transaction(path) as conn:
        message = dict(conn.execute("SELECT * FROM messages_in").fetchone())
        delivery = dict(conn.execute("SELECT * FROM delivered").fetchone())
    # The old values survive; the new columns carry their declared defaults.
    assert message["id"] == "m1"
    assert message["seq"] == 2
    assert message["content"] == '{"text": "hi"}'
    assert message["kind"] == "chat"
    assert message["status"] == "pending"
    assert message["tries"] == 0
    assert message["trigger"] == 1
    assert message["process_after"] is None
    assert delivery == {
        "message_out_id": "o1",
        "platform_message_id": "p1",
        "status": "retrying",
        "attempts": 0,
        "last_error": None,
        "delivered_at": None,
        "retry_after": None,
    }


def test_older_outbound_file_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "outbound.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE messages_out (id TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL)")
        conn.execute("INSERT INTO messages_out (id, seq) VALUES ('o1', 3)")

    create_session_db(path, OUTBOUND)

    # Tables the older file lacked entirely are created whole.
    for table in OUTBOUND.tables:
        assert set(_columns(path, table.name)) == set(table.column_names)
    with read_transaction(path) as conn:
        row = dict(conn.execute("SELECT * FROM messages_out").fetchone())
        assert conn.execute("SELECT COUNT(*) FROM processing_ack").fetchone()[0] == 0
    assert row["id"] == "o1"
    assert row["seq"] == 3
    assert row["kind"] == "chat"
    assert row["content"] == "{}"
    assert row["timestamp"] == ""
    assert row["in_reply_to"] is None


def test_upgrade_adds_the_unique_seq_index(tmp_path: Path) -> None:
    path = tmp_path / "inbound.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE messages_in (id TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL)")
        conn.execute("INSERT INTO messages_in (id, seq) VALUES ('m1', 2)")

    create_session_db(path, INBOUND)

    # The index is what stops a second writer from ever reusing a seq.
    with closing(sqlite3.connect(path)) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO messages_in (id, seq) VALUES ('m2', 2)")


@pytest.mark.parametrize("schema", [INBOUND, OUTBOUND], ids=lambda schema: schema.name)
def test_journal_mode_is_delete(tmp_path: Path, schema: Schema) -> None:
    path = tmp_path / f"{schema.name}.db"
    create_session_db(path, schema)
    assert _journal_mode(path) == "delete"


@pytest.mark.parametrize("schema", [INBOUND, OUTBOUND], ids=lambda schema: schema.name)
def test_a_wal_file_is_switched_back_to_delete(tmp_path: Path, schema: Schema) -> None:
    # WAL is persistent in the file; its shared memory would not cross the VM boundary.
    path = tmp_path / f"{schema.name}.db"
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        conn.execute("CREATE TABLE unrelated (x)")
        conn.commit()

    create_session_db(path, schema)

    assert _journal_mode(path) == "delete"
    assert not (tmp_path / f"{schema.name}.db-wal").exists()
