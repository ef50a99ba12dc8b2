"""Queries on `inbound.db`. Writes are the host's alone; the container only reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from protocol.content import InboundContent, encode_content, inbound_kind
from protocol.db import max_seq, next_even_seq
from protocol.rows import Delivery, InStatus, MessageIn, Routing, from_row


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One `messages_in` row to insert; its seq is given on insert."""

    message_id: str
    content: InboundContent
    timestamp: str
    routing: Routing = Routing()
    process_after: str | None = None
    recurrence: str | None = None
    series_id: str | None = None
    trigger: bool = True
    status: InStatus = "pending"


def insert_message(
    conn: sqlite3.Connection,
    *,
    message_id: str,
    content: InboundContent,
    timestamp: str,
    routing: Routing = Routing(),  # noqa: B008 - immutable
    process_after: str | None = None,
    recurrence: str | None = None,
    series_id: str | None = None,
    trigger: bool = True,
    status: InStatus = "pending",
) -> MessageIn:
    """Insert with the next even seq. An id that is already there is returned as it is,
    so that applying the same request twice is harmless."""
    new = NewMessage(
        message_id=message_id, content=content, timestamp=timestamp, routing=routing, process_after=process_after,
        recurrence=recurrence, series_id=series_id, trigger=trigger, status=status,
    )  # fmt: skip
    return insert_messages(conn, [new])[0]


def insert_messages(conn: sqlite3.Connection, messages: Sequence[NewMessage]) -> list[MessageIn]:
    """`insert_message` for many, in order, with one look at the ids and the highest seq: a
    burst costs its rows, not three queries each."""
    known = _by_ids(conn, [message.message_id for message in messages])
    highest = max_seq(conn, "messages_in")
    rows: list[MessageIn] = []
    fresh: list[MessageIn] = []
    for message in messages:
        row = known.get(message.message_id)
        if row is None:
            highest = next_even_seq(highest)
            row = _row(message, highest)
            known[row.id] = row
            fresh.append(row)
        rows.append(row)
    conn.executemany(
        "INSERT INTO messages_in (id, seq, kind, timestamp, status, process_after, recurrence, series_id,"
        " tries, trigger, platform_id, channel_type, thread_id, content)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
        [
            (
                row.id, row.seq, row.kind, row.timestamp, row.status, row.process_after, row.recurrence,
                row.series_id, row.trigger, row.platform_id, row.channel_type, row.thread_id, row.content,
            )
            for row in fresh
        ],
    )  # fmt: skip
    return rows


def _row(message: NewMessage, seq: int) -> MessageIn:
    return MessageIn(
        id=message.message_id,
        seq=seq,
        kind=inbound_kind(message.content),
        timestamp=message.timestamp,
        status=message.status,
        process_after=message.process_after,
        recurrence=message.recurrence,
        series_id=message.series_id,
        trigger=int(message.trigger),
        platform_id=message.routing.platform_id,
        channel_type=message.routing.channel_type,
        thread_id=message.routing.thread_id,
        content=encode_content(message.content),
    )


def _by_ids(conn: sqlite3.Connection, message_ids: list[str]) -> dict[str, MessageIn]:
    found: dict[str, MessageIn] = {}
    for start in range(0, len(message_ids), _ID_CHUNK):
        chunk = message_ids[start : start + _ID_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(f"SELECT * FROM messages_in WHERE id IN ({marks})", chunk):
            found[row["id"]] = from_row(MessageIn, row)
    return found


# An IN list this long stays well below SQLite's limit on bound variables.
_ID_CHUNK = 500


def get_message(conn: sqlite3.Connection, message_id: str) -> MessageIn | None:
    row = conn.execute("SELECT * FROM messages_in WHERE id = ?", (message_id,)).fetchone()
    return from_row(MessageIn, row) if row else None


def get_by_seq(conn: sqlite3.Connection, seq: int) -> MessageIn | None:
    row = conn.execute("SELECT * FROM messages_in WHERE seq = ?", (seq,)).fetchone()
    return from_row(MessageIn, row) if row else None


def messages_with_status(conn: sqlite3.Connection, *statuses: str) -> list[MessageIn]:
    marks = ", ".join("?" for _ in statuses)
    rows = conn.execute(f"SELECT * FROM messages_in WHERE status IN ({marks}) ORDER BY seq", statuses)
    return [from_row(MessageIn, row) for row in rows]


def pending_due(conn: sqlite3.Connection, now: datetime) -> list[MessageIn]:
    """Pending rows whose `process_after` has passed, compared as datetimes."""
    return [row for row in messages_with_status(conn, "pending") if row.is_due(now)]


def series_rows(conn: sqlite3.Connection, series_id: str) -> list[MessageIn]:
    rows = conn.execute("SELECT * FROM messages_in WHERE series_id = ? ORDER BY seq", (series_id,))
    return [from_row(MessageIn, row) for row in rows]


def set_status(conn: sqlite3.Connection, message_ids: Iterable[str], status: str) -> int:
    changed = 0
    for message_id in message_ids:
        changed += conn.execute(
            "UPDATE messages_in SET status = ? WHERE id = ? AND status != ?", (status, message_id, status)
        ).rowcount
    return changed


def schedule_retry(conn: sqlite3.Connection, message_id: str, process_after: str) -> int:
    """Count one more try and hold the row back until `process_after`; returns the new count."""
    conn.execute(
        "UPDATE messages_in SET tries = tries + 1, process_after = ? WHERE id = ?",
        (process_after, message_id),
    )
    row = conn.execute("SELECT tries FROM messages_in WHERE id = ?", (message_id,)).fetchone()
    return int(row[0]) if row else 0


def hold_until(conn: sqlite3.Connection, message_id: str, process_after: str) -> None:
    """Move a pending row's `process_after` without counting a try (a deferral for budget)."""
    conn.execute(
        "UPDATE messages_in SET process_after = ? WHERE id = ? AND status = 'pending'", (process_after, message_id)
    )


def get_delivery(conn: sqlite3.Connection, message_out_id: str) -> Delivery | None:
    row = conn.execute("SELECT * FROM delivered WHERE message_out_id = ?", (message_out_id,)).fetchone()
    return from_row(Delivery, row) if row else None


def record_delivery(conn: sqlite3.Connection, delivery: Delivery) -> None:
    conn.execute(
        "INSERT INTO delivered (message_out_id, platform_message_id, status, attempts, last_error,"
        " delivered_at, retry_after) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(message_out_id) DO UPDATE SET platform_message_id = excluded.platform_message_id,"
        " status = excluded.status, attempts = excluded.attempts, last_error = excluded.last_error,"
        " delivered_at = excluded.delivered_at, retry_after = excluded.retry_after",
        (
            delivery.message_out_id, delivery.platform_message_id, delivery.status, delivery.attempts,
            delivery.last_error, delivery.delivered_at, delivery.retry_after,
        ),
    )  # fmt: skip


def deliveries(conn: sqlite3.Connection) -> dict[str, Delivery]:
    return {row["message_out_id"]: from_row(Delivery, row) for row in conn.execute("SELECT * FROM delivered")}
