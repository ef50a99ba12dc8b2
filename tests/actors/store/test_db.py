from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from actors.store import agent_groups, db
from actors.store.db import (
    AlreadyExistsError,
    Migration,
    MigrationError,
    MissingReferenceError,
    Store,
    StoreVersionError,
    open_store,
)

TABLES = {
    "schema_version",
    "agent_groups",
    "messaging_groups",
    "messaging_group_agents",
    "sessions",
    "pending_questions",
    "agent_uids",
}
NEWEST = [m.version for m in db.MIGRATIONS]


def table_names(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {row[0] for row in rows}


def versions(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def test_fresh_file_gets_every_table_and_every_version(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "central.db"
    with open_store(path) as store:
        assert path.exists()
        assert table_names(store.conn) >= TABLES
        assert versions(store.conn) == NEWEST == list(range(1, len(NEWEST) + 1))
        assert db.current_version(store.conn) == NEWEST[-1]


def test_reopen_is_a_no_op_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    with open_store(path) as store:
        group = agent_groups.create(store, name="main", folder="main")
    with open_store(path) as store:
        assert versions(store.conn) == NEWEST
        assert agent_groups.get(store, group.id) == group


def test_newer_file_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 'later')")
    conn.close()

    with pytest.raises(StoreVersionError) as caught:
        open_store(path)

    message = str(caught.value)
    assert f"central DB {path} is at schema version 99, newer than this code's {NEWEST[-1]}" in message
    assert "upgrade hutch or use another data folder" in message


def test_connection_settings(store: Store) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_failed_migration_leaves_no_partial_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Migration(2, "002_broken.sql", "CREATE TABLE half_done (x TEXT);\nCREATE TABLE broken (")
    monkeypatch.setattr(db, "MIGRATIONS", (db.MIGRATIONS[0], broken))
    path = tmp_path / "central.db"

    with pytest.raises(MigrationError, match="002_broken"):
        open_store(path)

    with sqlite3.connect(path) as conn:
        assert versions(conn) == [1]
        tables = table_names(conn)
    conn.close()
    assert "agent_groups" in tables
    assert "half_done" not in tables


def test_later_migrations_apply_on_reopen_and_keep_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "central.db"
    shipped = db.MIGRATIONS
    monkeypatch.setattr(db, "MIGRATIONS", shipped[:1])  # a data folder of the first release
    with open_store(path) as store, store.transaction() as conn:
        conn.execute("INSERT INTO agent_groups (id, name, folder, created_at) VALUES ('g1', 'main', 'main', 'then')")
    added = Migration(len(shipped) + 1, "099_notes.sql", "-- a; comment\nCREATE TABLE notes (body TEXT DEFAULT 'a;b');")
    monkeypatch.setattr(db, "MIGRATIONS", (*shipped, added))

    with open_store(path) as store:
        assert versions(store.conn) == [*NEWEST, added.version]
        assert "notes" in table_names(store.conn)
        group = agent_groups.get(store, "g1")
        assert group is not None and group.name == "main" and group.cpus is None


def test_shipped_migrations_are_numbered_from_1() -> None:
    assert [m.version for m in db.load_migrations()] == list(range(1, len(db.MIGRATIONS) + 1))
    assert db.MIGRATIONS[0].name == "001_initial.sql"


def test_split_statements_respects_comments_strings_and_triggers() -> None:
    script = """
        -- header; with a semicolon
        CREATE TABLE t (x TEXT DEFAULT ';');
        CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN
            UPDATE t SET x = 'y;' WHERE rowid = NEW.rowid;
        END;
        /* trailing; comment */
    """
    statements = db.split_statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER")
    assert statements[1].rstrip().endswith("END;")


def test_split_statements_refuses_an_unterminated_statement() -> None:
    with pytest.raises(db.StoreError, match="incomplete"):
        db.split_statements("CREATE TABLE t (x TEXT DEFAULT 'oops);")


def test_transaction_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        agent_groups.create(store, name="lost", folder="lost")
        raise RuntimeError("boom")
    assert agent_groups.list_all(store) == []
    assert not store.conn.in_transaction


def test_nested_failure_caught_by_caller_keeps_the_outer_work(store: Store) -> None:
    with store.transaction():
        kept = agent_groups.create(store, name="kept", folder="kept")
        with pytest.raises(AlreadyExistsError):
            agent_groups.create(store, name="kept", folder="other")
        after = agent_groups.create(store, name="after", folder="after")
    assert {g.id for g in agent_groups.list_all(store)} == {kept.id, after.id}


def test_constraint_failures_become_store_errors(store: Store) -> None:
    with pytest.raises(MissingReferenceError), store.transaction() as conn:
        conn.execute(
            "INSERT INTO sessions (id, agent_group_id, session_key, created_at, last_active_at) "
            "VALUES ('s', 'no-such-agent', 'k', 'now', 'now')"
        )
    with pytest.raises(db.InvalidValueError), store.transaction() as conn:
        conn.execute("INSERT INTO agent_groups (id, name, folder, created_at) VALUES ('a', 'n', 'f', NULL)")


def test_threads_can_share_one_store(store: Store) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(20):
                agent_groups.create(store, name=f"w{worker}-{i}", folder=f"w{worker}-{i}")
                agent_groups.list_all(store)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(agent_groups.list_all(store)) == 160
