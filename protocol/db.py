"""Opening, reading and writing a session DB with the invariants of docs/ARCHITECTURE.md built in.

Every connection is short-lived: a long-lived reader across a VM mount can serve stale
pages, so callers open, do one transaction, and close. Writers take the lock up front with
`BEGIN IMMEDIATE` so that two writers never deadlock on a lock upgrade.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from protocol.schema import Schema, ensure_schema

BUSY_TIMEOUT_MS = 5_000


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN ourselves, so the sqlite3 module never opens a
    # transaction behind our back.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def create_session_db(path: Path, schema: Schema) -> None:
    """Create the file or bring an older one up to date. Only the file's single writer calls it."""
    with closing(_connect(path)) as conn:
        # WAL's shared memory does not cross a VM boundary; DELETE keeps the journal a plain file.
        mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        if mode.lower() != "delete":
            raise sqlite3.OperationalError(f"{path}: could not set journal_mode=DELETE (got {mode})")
        conn.execute("BEGIN IMMEDIATE")
        try:
            ensure_schema(conn, schema)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


@contextmanager
def write_transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """One short write transaction on an existing session DB; commits on success."""
    with closing(_connect(path)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            # SQLite may already have rolled back (e.g. on SQLITE_FULL); keep the original error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


@contextmanager
def read_transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """A consistent snapshot of a DB this side must not write.

    A normal (read-write) connection with `query_only`: unlike `mode=ro`, it can still roll
    back a hot journal that a crashed writer left behind.
    """
    if not path.exists():
        raise FileNotFoundError(path)
    with closing(_connect(path)) as conn:
        conn.execute("PRAGMA query_only=1")
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("ROLLBACK")


def max_seq(conn: sqlite3.Connection, table: str) -> int:
    value = conn.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()[0]
    return int(value)


def next_even_seq(highest: int) -> int:
    """The host's next seq: the smallest even number above `highest`."""
    return highest + 2 if highest % 2 == 0 else highest + 1


def next_odd_seq(highest: int) -> int:
    """The container's next seq: the smallest odd number above `highest`."""
    return highest + 1 if highest % 2 == 0 else highest + 2
