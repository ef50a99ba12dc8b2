"""The central DB: one SQLite file shared by every actor of the host.

Unlike the session DBs (short-lived connections across a VM mount, see `protocol.db`), this
file is local to the host and only the host opens it, so one long-lived connection in WAL
mode is both simpler and faster. The actors run in different threads, so the connection is
shared under an `RLock`: besides serialising access, the lock keeps a reader in one thread
from seeing another thread's uncommitted writes on the same connection.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from protocol.timeutil import now_ts

BUSY_TIMEOUT_MS = 5_000
MIGRATIONS_PACKAGE = "actors.store.migrations"
_MIGRATION_NAME = re.compile(r"^(\d+)_[\w-]+\.sql$")


class StoreError(Exception):
    """Base of every error the store raises on purpose; callers can catch this one."""


class StoreVersionError(StoreError):
    """The file was written by a newer hutch; touching it could corrupt what that one expects."""


class MigrationError(StoreError):
    """A migration failed; its transaction was rolled back, so the file is at the previous version."""


class AlreadyExistsError(StoreError):
    """A create or update collided with a UNIQUE key (id, name, folder, platform id, ...)."""


class MissingReferenceError(StoreError):
    """A row points at another row (agent group, messaging group, session) that does not exist."""


class InvalidValueError(StoreError, ValueError):
    """A value the schema refuses: an unknown mode or status, a malformed trigger rule, ..."""


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


def load_migrations(package: str = MIGRATIONS_PACKAGE) -> tuple[Migration, ...]:
    """Read the shipped `NNN_*.sql` files; the versions must run 1..N with no gap, because a
    gap would mean a file went missing from the package and a DB could skip a step."""
    found: list[Migration] = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"migrations in {package} must be numbered 1..N without gaps, found {versions}")
    return tuple(found)


# Read at import so that a broken package fails at start-up, not at the first open.
MIGRATIONS: tuple[Migration, ...] = load_migrations()


class Store:
    """A connection to the central DB, shared by threads. Use `transaction()` to write and
    `read()` to query; both hold the lock for their whole block."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.lock = threading.RLock()
        self._depth = 0  # nesting level of transaction(); only touched under the lock

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Commit on success, roll back on any exception. Nested calls become savepoints, so
        entity functions compose into one atomic write and an inner failure that the caller
        catches undoes only the inner part."""
        with self.lock:
            savepoint = f"sp{self._depth}" if self._depth else None
            self.conn.execute(f"SAVEPOINT {savepoint}" if savepoint else "BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self.conn
            except sqlite3.IntegrityError as exc:
                self._undo(savepoint)
                raise translate_integrity_error(exc) from exc
            except BaseException:
                self._undo(savepoint)
                raise
            else:
                self._finish(savepoint)
            finally:
                self._depth -= 1

    def _finish(self, savepoint: str | None) -> None:
        try:
            self.conn.execute(f"RELEASE {savepoint}" if savepoint else "COMMIT")
        except BaseException:
            self._undo(savepoint)
            raise

    def _undo(self, savepoint: str | None) -> None:
        # SQLite rolls the whole transaction back by itself after some errors (e.g. SQLITE_FULL);
        # a second ROLLBACK would then raise and hide the original error.
        if not self.conn.in_transaction:
            return
        if savepoint:
            self.conn.execute(f"ROLLBACK TO {savepoint}")
            self.conn.execute(f"RELEASE {savepoint}")
        else:
            self.conn.execute("ROLLBACK")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """Query under the lock; several statements in one block see one consistent state
        because no other thread can write in between."""
        with self.lock:
            yield self.conn

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def translate_integrity_error(exc: sqlite3.IntegrityError) -> StoreError:
    """Turn SQLite's constraint failure into the store's own error, keeping its detail
    (e.g. "UNIQUE constraint failed: agent_groups.name") in the message."""
    detail = str(exc)
    if "UNIQUE constraint failed" in detail:
        return AlreadyExistsError(f"already exists: {detail}")
    if "FOREIGN KEY constraint failed" in detail:
        return MissingReferenceError(f"refers to a row that does not exist: {detail}")
    return InvalidValueError(f"refused by the schema: {detail}")


def open_store(path: Path) -> Store:
    """Create or open the central DB at `path`, bring its schema up to date, and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = _connect(path)
    try:
        _configure(conn, path)
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return Store(path, conn)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN ourselves, so the sqlite3 module never opens a
    # transaction behind our back. check_same_thread=False: the Store's lock serialises use.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    # Readers do not block the writer and vice versa, which matters with many actors.
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: could not switch to journal_mode=WAL (got {mode})")
    if conn.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
        raise StoreError(f"{path}: this SQLite build cannot enforce foreign keys")


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply every migration the file lacks, each in its own transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    # Looked up at call time (not bound at import) so tests can substitute the list.
    migrations = MIGRATIONS
    newest_known = migrations[-1].version if migrations else 0
    current = current_version(conn)
    if current > newest_known:
        raise StoreVersionError(
            f"central DB {path} is at schema version {current}, newer than this code's {newest_known}: "
            "upgrade hutch or use another data folder"
        )
    for migration in migrations:
        if migration.version > current:
            _apply(conn, migration)


def current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])


def _apply(conn: sqlite3.Connection, migration: Migration) -> None:
    # Not executescript(): on Python 3.11 it COMMITs first, which would break the
    # all-or-nothing promise. Statements run one by one inside our own transaction instead.
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated between our version check and the lock.
        if conn.execute("SELECT 1 FROM schema_version WHERE version = ?", (migration.version,)).fetchone():
            conn.execute("ROLLBACK")
            return
        for statement in split_statements(migration.sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (migration.version, now_ts()))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise MigrationError(f"migration {migration.name} failed and was rolled back: {exc}") from exc
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements. `sqlite3.complete_statement` knows about
    string literals and trigger bodies, so a `;` inside them does not cut a statement short."""
    statements: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if _has_code(pending):
                statements.append(pending.strip())
            pending = ""
    if _has_code(pending.rstrip(";")):
        raise StoreError(f"incomplete SQL statement at the end of a migration: {pending.strip()!r}")
    return statements


def _has_code(sql: str) -> bool:
    """True unless `sql` is only whitespace, comments and semicolons."""
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", sql, flags=re.DOTALL)
    return bool(without_comments.replace(";", "").strip())
