"""protocol/agent_db.py: the host reads an agent's DB without trusting anything the agent
can plant: a hot journal naming a super-journal (which SQLite would delete with the host's
rights), a FIFO where the journal goes (which would block the host's open), a view, trigger,
virtual table or generated column in place of a table (which the host's query would run), a
WAL file, and a read that overlaps a commit."""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
from pathlib import Path

import pytest

from protocol.agent_db import AgentDbBusy, AgentDbRefused, read_agent_db
from protocol.layout import UnsafePathError

pytestmark = pytest.mark.timeout(30)

CAP = 1 << 30


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "outbound.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("CREATE TABLE messages_out (id TEXT PRIMARY KEY, seq INTEGER)")
        conn.execute("INSERT INTO messages_out VALUES ('a', 1)")
    conn.close()
    return path


def count(path: Path, **kwargs: float) -> int:
    def read(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT count(*) FROM messages_out").fetchone()[0])

    return read_agent_db(path, os.stat(path.parent).st_dev, CAP, read, **kwargs)


def super_journal_naming(victim: Path) -> bytes:
    """A rollback journal whose last record names `victim` as its super-journal: a normal
    connection rolling it back deletes that file."""
    name = str(victim).encode()
    magic = bytes([0xD9, 0xD5, 0x05, 0xF9, 0x20, 0xA1, 0x63, 0xD7])
    return (
        b"X" * 512
        + struct.pack(">I", 0x7FFFFFFF)
        + name
        + struct.pack(">I", len(name))
        + struct.pack(">I", sum(name) & 0xFFFFFFFF)
        + magic
    )


def test_a_consistent_file_is_read(db: Path) -> None:
    assert count(db) == 1


def test_a_planted_journal_is_never_rolled_back_and_its_super_journal_never_deleted(db: Path, tmp_path: Path) -> None:
    victim = tmp_path / "host-file"
    victim.write_text("precious")
    (tmp_path / "outbound.db-journal").write_bytes(super_journal_naming(victim))
    with pytest.raises(AgentDbBusy, match="journal"):
        count(db)
    assert victim.read_text() == "precious"


def test_the_attack_works_on_a_normal_connection(db: Path, tmp_path: Path) -> None:
    """What the test above guards against: SQLite itself deletes the named file."""
    victim = tmp_path / "host-file"
    victim.write_text("precious")
    (tmp_path / "outbound.db-journal").write_bytes(super_journal_naming(victim))
    # A reserved lock on the DB makes the journal "hot" only when nobody holds it: nobody does.
    with sqlite3.connect(db) as conn:
        conn.execute("SELECT count(*) FROM messages_out").fetchone()
    conn.close()
    assert not victim.exists()


def test_a_fifo_journal_does_not_block_the_reader(db: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "outbound.db-journal")
    with pytest.raises(AgentDbBusy):
        count(db)


@pytest.mark.parametrize(
    "replace",
    [
        # A view over an endless recursive query where the table was.
        "ALTER TABLE messages_out RENAME TO old;"
        " CREATE VIEW messages_out AS WITH RECURSIVE r(id, seq) AS (SELECT 'x', 1 UNION ALL SELECT id, seq + 1 FROM r)"
        " SELECT * FROM r",
        "CREATE TRIGGER t AFTER INSERT ON messages_out BEGIN SELECT 1; END",
        "CREATE TABLE g (a TEXT, b TEXT AS (zeroblob(1000000000)))",
        "CREATE VIRTUAL TABLE v USING fts5(x)",
    ],
    ids=["view", "trigger", "generated-column", "virtual-table"],
)
def test_a_file_declaring_what_a_read_would_run_is_refused(db: Path, replace: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.executescript(replace)
    conn.close()
    with pytest.raises(AgentDbRefused):
        count(db)


def test_a_wal_file_is_refused_without_opening_its_wal(db: Path, tmp_path: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    os.mkfifo(tmp_path / "outbound.db-wal")  # opening it would block
    with pytest.raises(AgentDbRefused, match="rollback-journal"):
        count(db)


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbound.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(AgentDbRefused, match="not a database"):
        count(path)


def test_a_link_is_never_followed(db: Path, tmp_path: Path) -> None:
    link = tmp_path / "elsewhere" / "outbound.db"
    link.parent.mkdir()
    link.symlink_to(db)
    with pytest.raises(UnsafePathError):
        count(link)


def test_a_read_past_its_deadline_is_interrupted(db: Path) -> None:
    def endless(conn: sqlite3.Connection) -> object:
        return conn.execute(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT max(n) FROM r"
        ).fetchone()

    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        read_agent_db(db, os.stat(db.parent).st_dev, CAP, endless, deadline_s=0.2)


def test_a_commit_during_the_read_makes_it_read_again(db: Path) -> None:
    reads: list[int] = []

    def read_while_the_agent_commits(conn: sqlite3.Connection) -> int:
        seen = int(conn.execute("SELECT count(*) FROM messages_out").fetchone()[0])
        reads.append(seen)
        if len(reads) == 1:  # the agent commits while the first read is under way
            with sqlite3.connect(db) as writer:
                writer.execute("INSERT INTO messages_out VALUES ('b', 3)")
            writer.close()
        return seen

    result = read_agent_db(db, os.stat(db.parent).st_dev, CAP, read_while_the_agent_commits)
    assert reads == [1, 2]
    assert result == 2


def test_reads_never_block_on_a_writer_holding_its_lock(db: Path) -> None:
    """An immutable read takes no lock: a writer mid-transaction (its journal not yet
    written, as before its first page spills) does not hold the host up."""
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        done = threading.Event()

        def read() -> None:
            count(db)
            done.set()

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        # An exclusive lock before any page is written leaves a journal in place, so the
        # read says busy or reads the last commit; either way it returns at once.
        thread.join(5)
        assert not thread.is_alive()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
