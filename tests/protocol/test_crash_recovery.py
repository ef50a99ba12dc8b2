"""A writer killed mid-transaction leaves a hot journal; the other side's reader must roll it
back and see exactly the last committed state (docs/ARCHITECTURE.md invariant 2: why readers use a normal
connection with `query_only` and not `mode=ro`)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from protocol import inbound, outbound
from protocol.content import ChatIn, ChatOut
from protocol.db import create_session_db, max_seq, read_transaction, write_transaction
from protocol.schema import INBOUND, OUTBOUND, Schema
from protocol.timeutil import now_ts

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = 3

# Opens the DB the way the real writer does, makes the page cache tiny so that dirty pages
# spill into the DB file before COMMIT (only then is the journal needed to undo them), says
# "ready" and blocks on stdin until it is killed.
WRITER = """
import sys
from pathlib import Path

from protocol.db import _connect

path, table = Path(sys.argv[1]), sys.argv[2]
conn = _connect(path)
assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
conn.execute("PRAGMA cache_size=1")
conn.execute("BEGIN IMMEDIATE")
for i in range(2000):
    conn.execute(
        f"INSERT INTO {table} (id, seq, content) VALUES (?, ?, ?)", (f"doomed-{i}", 100_001 + 2 * i, "x" * 2048)
    )
print("ready", flush=True)
sys.stdin.read()
"""


def _child_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _commit_some(path: Path, schema: Schema) -> list[str]:
    ids = [f"kept-{i}" for i in range(COMMITTED)]
    for message_id in ids:
        with write_transaction(path) as conn:
            if schema is INBOUND:
                inbound.insert_message(
                    conn, message_id=message_id, content=ChatIn(text="hi", sender="ana"), timestamp=now_ts()
                )
            else:
                outbound.insert_message(
                    conn, message_id=message_id, content=ChatOut(text="hi"), timestamp=now_ts(), highest_inbound_seq=0
                )
    return ids


def _kill_mid_transaction(path: Path, table: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), table],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    assert writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "ready"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL


@pytest.mark.integration
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("schema", "table"), [(INBOUND, "messages_in"), (OUTBOUND, "messages_out")], ids=["inbound", "outbound"]
)
def test_reader_rolls_back_a_hot_journal(tmp_path: Path, schema: Schema, table: str) -> None:
    path = tmp_path / f"{schema.name}.db"
    journal = tmp_path / f"{schema.name}.db-journal"
    create_session_db(path, schema)
    kept = _commit_some(path, schema)
    committed_size = path.stat().st_size

    _kill_mid_transaction(path, table)

    # A hot journal, and a DB file that really holds uncommitted pages: without the rollback
    # a reader would see garbage or the doomed rows.
    assert journal.exists()
    assert journal.stat().st_size > 0
    assert path.stat().st_size > committed_size

    with read_transaction(path) as conn:
        ids = [row[0] for row in conn.execute(f"SELECT id FROM {table} ORDER BY seq")]
        assert [tuple(row) for row in conn.execute("PRAGMA integrity_check")] == [("ok",)]
    assert ids == kept
    assert not journal.exists()
    assert path.stat().st_size == committed_size

    # The writer can carry on where the last commit left off.
    with write_transaction(path) as conn:
        assert max_seq(conn, table) < 100_000
        conn.execute(f"INSERT INTO {table} (id, seq) VALUES ('after', 100001)")
    with read_transaction(path) as conn:
        assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == COMMITTED + 1


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_read_only_connection_cannot_recover_a_hot_journal(tmp_path: Path) -> None:
    # Why the readers do not use `mode=ro`: it refuses to read until someone else rolls back.
    path = tmp_path / "inbound.db"
    create_session_db(path, INBOUND)
    _commit_some(path, INBOUND)
    _kill_mid_transaction(path, "messages_in")

    with (
        closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn,
        pytest.raises(sqlite3.OperationalError) as refused,
    ):
        conn.execute("SELECT COUNT(*) FROM messages_in").fetchone()
    assert refused.value.sqlite_errorname == "SQLITE_READONLY_ROLLBACK"
    assert (tmp_path / "inbound.db-journal").exists()

    with read_transaction(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM messages_in").fetchone()[0] == COMMITTED
