"""Reading the DB the other side writes when that side may be hostile: the host reading an
agent's `out/outbound.db` (docs/ARCHITECTURE.md, "The session folder").

A normal SQLite connection trusts the files beside the DB: it rolls back a hot
`outbound.db-journal`, and a journal can name a "super-journal" that SQLite then deletes,
with the host's rights. It opens whatever the journal path is (a FIFO blocks it forever). It
runs the views, generated columns and virtual tables the file declares, so the file's
author chooses what the host's query costs. None of that may be the agent's to decide.

So the host opens the file `immutable`: SQLite takes no lock and never looks at a journal
or a WAL. With no lock, consistency is checked instead. The writer keeps the rollback
journal (`journal_mode=DELETE`), and a commit writes its journal before any page of the DB,
page 1 (with the change counter) first. The read therefore checks, in this order: the
change counter, that no journal exists, the read itself, and the counter again. If the
counter has moved, a commit overlapped the read, and the read is made again. A journal that
exists means a commit is under way (or a crashed one waits for its writer to roll it back):
nothing is read, and `AgentDbBusy` says so; the journal's deletion wakes the reader again.
Only tables and indexes may be declared, with no generated column, and every read runs
against a deadline.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import quote

from protocol.layout import open_agent_file

T = TypeVar("T")

_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_BYTES: Final = 100
# File format write and read versions: 1 is the rollback journal, 2 is WAL.
_ROLLBACK_JOURNAL: Final = 1
_COUNTER: Final = slice(24, 28)

# A commit overlapping a read is rare and short; a few tries in a row then mean a writer
# that never stops committing, which waits for its next event like a busy one.
_TRIES: Final = 3
# What one read may cost the host, whatever the file holds: a read of one page of rows
# takes milliseconds.
READ_DEADLINE_S: Final = 2.0
# SQLite's virtual machine instructions between two looks at the clock.
_PROGRESS_STEPS: Final = 10_000


class AgentDbBusy(sqlite3.OperationalError):
    """The writer is mid-commit (its journal exists): read again on its next event."""


class AgentDbRefused(sqlite3.DatabaseError):
    """The file is not one the host reads: not a rollback-journal SQLite DB, or it declares
    what a read would run (a view, a trigger, a virtual table, a generated column)."""


def read_agent_db(
    path: Path,
    device: int,
    max_bytes: int,
    read: Callable[[sqlite3.Connection], T],
    *,
    deadline_s: float = READ_DEADLINE_S,
) -> T:
    """`read(conn)` on a consistent snapshot of the agent's DB at `path` (checked as
    `open_agent_file` checks it: no link, one link, the session's device, `max_bytes`)."""
    fd, st = open_agent_file(path, device, max_bytes)
    try:
        journal = path.with_name(f"{path.name}-journal")
        for attempt in range(1, _TRIES + 1):
            before = _change_counter(fd)
            if os.path.lexists(journal):
                raise AgentDbBusy(f"{path.name}: a commit is under way ({journal.name} exists)")
            try:
                result = _read_once(path, st, read, deadline_s)
            except sqlite3.DatabaseError:
                # Pages of two commits read as one look malformed: a moved counter says so.
                if _change_counter(fd) != before and attempt < _TRIES:
                    continue
                raise
            if _change_counter(fd) == before:
                return result
        raise AgentDbBusy(f"{path.name}: changed during each of {_TRIES} reads")
    finally:
        os.close(fd)


def _change_counter(fd: int) -> bytes:
    header = os.pread(fd, _HEADER_BYTES, 0)
    if len(header) < _HEADER_BYTES or not header.startswith(_MAGIC):
        raise AgentDbRefused("file is not a database")  # as SQLite says it
    if header[18] != _ROLLBACK_JOURNAL or header[19] != _ROLLBACK_JOURNAL:
        raise AgentDbRefused("not in rollback-journal mode (journal_mode=DELETE)")
    return header[_COUNTER]


def _read_once(path: Path, st: os.stat_result, read: Callable[[sqlite3.Connection], T], deadline_s: float) -> T:
    uri = f"file:{quote(str(path))}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        # SQLite opens by path: the file must still be the one checked through the descriptor
        # (the agent cannot replace the host's file in its sticky folder, but a check costs
        # one stat).
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise AgentDbRefused(f"{path.name} was replaced while it was read")
        conn.row_factory = sqlite3.Row
        deadline = time.monotonic() + deadline_s
        # A non-zero return interrupts the statement (sqlite3.OperationalError: interrupted).
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
        conn.execute("PRAGMA trusted_schema=OFF")
        conn.execute("PRAGMA cell_size_check=ON")
        _check_declarations(conn)
        return read(conn)
    finally:
        conn.close()


def _check_declarations(conn: sqlite3.Connection) -> None:
    """Tables and their indexes only: nothing a read would evaluate on the file's behalf."""
    tables: list[str] = []
    for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master"):
        if kind not in ("table", "index"):
            raise AgentDbRefused(f"declares a {kind} ({name!r})")
        if kind == "table":
            if isinstance(sql, str) and sql.lstrip().upper().startswith("CREATE VIRTUAL"):
                raise AgentDbRefused(f"declares a virtual table ({name!r})")
            tables.append(str(name))
    for table in tables:
        # `hidden` is 2 or 3 for a generated column (computed as it is read).
        for column in conn.execute("SELECT name, hidden FROM pragma_table_xinfo(?)", (table,)):
            if column[1] != 0:
                raise AgentDbRefused(f"declares a computed column ({table}.{column[0]})")
