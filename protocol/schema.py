"""The two session databases, declared once as data so that an older file can be brought
up to date: a table is created whole, and any column it lacks is added on open."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    # Must be valid for ALTER TABLE ADD COLUMN too: a NOT NULL column needs a DEFAULT.
    declaration: str


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    key: Column
    columns: tuple[Column, ...]
    indexes: tuple[str, ...] = ()

    def create_sql(self) -> str:
        parts = [f"{self.key.name} {self.key.declaration} PRIMARY KEY"]
        parts += [f"{column.name} {column.declaration}" for column in self.columns]
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(parts)})"

    @property
    def column_names(self) -> tuple[str, ...]:
        return (self.key.name, *(column.name for column in self.columns))


@dataclass(frozen=True, slots=True)
class Schema:
    name: str
    tables: tuple[Table, ...]


MESSAGES_IN = Table(
    name="messages_in",
    key=Column("id", "TEXT NOT NULL"),
    columns=(
        Column("seq", "INTEGER NOT NULL DEFAULT 0"),
        Column("kind", "TEXT NOT NULL DEFAULT 'chat'"),
        Column("timestamp", "TEXT NOT NULL DEFAULT ''"),
        Column("status", "TEXT NOT NULL DEFAULT 'pending'"),
        Column("process_after", "TEXT"),
        Column("recurrence", "TEXT"),
        Column("series_id", "TEXT"),
        Column("tries", "INTEGER NOT NULL DEFAULT 0"),
        Column("trigger", "INTEGER NOT NULL DEFAULT 1"),
        Column("platform_id", "TEXT"),
        Column("channel_type", "TEXT"),
        Column("thread_id", "TEXT"),
        Column("content", "TEXT NOT NULL DEFAULT '{}'"),
    ),
    indexes=(
        "CREATE UNIQUE INDEX IF NOT EXISTS messages_in_seq ON messages_in(seq)",
        "CREATE INDEX IF NOT EXISTS messages_in_status ON messages_in(status, process_after)",
        "CREATE INDEX IF NOT EXISTS messages_in_series ON messages_in(series_id)",
    ),
)

DELIVERED = Table(
    name="delivered",
    key=Column("message_out_id", "TEXT NOT NULL"),
    columns=(
        Column("platform_message_id", "TEXT"),
        # delivered | retrying | failed: `retrying` keeps the count of a send that will be tried again.
        Column("status", "TEXT NOT NULL DEFAULT 'retrying'"),
        Column("attempts", "INTEGER NOT NULL DEFAULT 0"),
        Column("last_error", "TEXT"),
        Column("delivered_at", "TEXT"),
        Column("retry_after", "TEXT"),
    ),
)

MESSAGES_OUT = Table(
    name="messages_out",
    key=Column("id", "TEXT NOT NULL"),
    columns=(
        Column("seq", "INTEGER NOT NULL DEFAULT 0"),
        Column("in_reply_to", "TEXT"),
        Column("timestamp", "TEXT NOT NULL DEFAULT ''"),
        Column("deliver_after", "TEXT"),
        Column("kind", "TEXT NOT NULL DEFAULT 'chat'"),
        Column("platform_id", "TEXT"),
        Column("channel_type", "TEXT"),
        Column("thread_id", "TEXT"),
        Column("content", "TEXT NOT NULL DEFAULT '{}'"),
    ),
    indexes=("CREATE UNIQUE INDEX IF NOT EXISTS messages_out_seq ON messages_out(seq)",),
)

PROCESSING_ACK = Table(
    name="processing_ack",
    key=Column("message_id", "TEXT NOT NULL"),
    columns=(
        Column("status", "TEXT NOT NULL DEFAULT 'processing'"),
        Column("status_changed", "TEXT NOT NULL DEFAULT ''"),
        # A `deferred` ack's retry time and reason (`busy` or `budget`); added on open to older files.
        Column("retry_after", "TEXT"),
        Column("reason", "TEXT"),
    ),
)

SESSION_STATE = Table(
    name="session_state",
    key=Column("key", "TEXT NOT NULL"),
    columns=(
        Column("value", "TEXT NOT NULL DEFAULT ''"),
        Column("updated_at", "TEXT NOT NULL DEFAULT ''"),
    ),
)

INBOUND = Schema("inbound", (MESSAGES_IN, DELIVERED))
OUTBOUND = Schema("outbound", (MESSAGES_OUT, PROCESSING_ACK, SESSION_STATE))


def ensure_schema(conn: sqlite3.Connection, schema: Schema) -> None:
    """Create what is missing; a second call changes nothing. Runs inside the caller's
    write transaction."""
    for table in schema.tables:
        conn.execute(table.create_sql())
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table.name})")}
        for column in table.columns:
            if column.name not in present:
                conn.execute(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.declaration}")
        for index in table.indexes:
            conn.execute(index)
