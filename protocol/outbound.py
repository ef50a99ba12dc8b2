"""Queries on `outbound.db`. Writes are the container's alone; the host only reads."""

from __future__ import annotations

import sqlite3

from protocol.content import OutboundContent, encode_content, outbound_kind
from protocol.db import max_seq, next_odd_seq
from protocol.rows import MessageOut, ProcessingAck, Routing, from_row


def insert_message(
    conn: sqlite3.Connection,
    *,
    message_id: str,
    content: OutboundContent,
    timestamp: str,
    highest_inbound_seq: int,
    routing: Routing = Routing(),  # noqa: B008 - immutable
    in_reply_to: str | None = None,
    deliver_after: str | None = None,
) -> MessageOut:
    """Insert with the next odd seq above the highest of both tables. An id that is already
    there is returned as it is: a retried turn's side effect is recorded once (the tools give
    each one an id derived from the turn)."""
    existing = conn.execute("SELECT * FROM messages_out WHERE id = ?", (message_id,)).fetchone()
    if existing is not None:
        return from_row(MessageOut, existing)
    seq = next_odd_seq(max(max_seq(conn, "messages_out"), highest_inbound_seq))
    row = MessageOut(
        id=message_id,
        seq=seq,
        timestamp=timestamp,
        kind=outbound_kind(content),
        in_reply_to=in_reply_to,
        deliver_after=deliver_after,
        platform_id=routing.platform_id,
        channel_type=routing.channel_type,
        thread_id=routing.thread_id,
        content=encode_content(content),
    )
    conn.execute(
        "INSERT INTO messages_out (id, seq, in_reply_to, timestamp, deliver_after, kind, platform_id,"
        " channel_type, thread_id, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            row.id, row.seq, row.in_reply_to, row.timestamp, row.deliver_after, row.kind, row.platform_id,
            row.channel_type, row.thread_id, row.content,
        ),
    )  # fmt: skip
    return row


def messages_after(conn: sqlite3.Connection, seq: int, limit: int = 500) -> list[MessageOut]:
    """Rows after a cursor, in seq order, for trusted readers (the container itself, tests);
    the host reads what a container wrote through `actors.session.outbound_reader`."""
    rows = conn.execute("SELECT * FROM messages_out WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))
    return [from_row(MessageOut, row) for row in rows]


def get_by_seq(conn: sqlite3.Connection, seq: int) -> MessageOut | None:
    row = conn.execute("SELECT * FROM messages_out WHERE seq = ?", (seq,)).fetchone()
    return from_row(MessageOut, row) if row else None


def card_asking(conn: sqlite3.Connection, question_id: str) -> MessageOut | None:
    """The card whose buttons are the question `question_id`, if a card asked it."""
    row = conn.execute(
        "SELECT * FROM messages_out WHERE kind = 'card' AND json_valid(content)"
        " AND json_extract(content, '$.question_id') = ? ORDER BY seq LIMIT 1",
        (question_id,),
    ).fetchone()
    return from_row(MessageOut, row) if row else None


def set_ack(conn: sqlite3.Connection, message_id: str, status: str, timestamp: str) -> None:
    """A claim or an end. A deferral's time and reason stay as they were (`defer_ack`)."""
    conn.execute(
        "INSERT INTO processing_ack (message_id, status, status_changed) VALUES (?, ?, ?)"
        " ON CONFLICT(message_id) DO UPDATE SET status = excluded.status,"
        " status_changed = excluded.status_changed",
        (message_id, status, timestamp),
    )


def defer_ack(conn: sqlite3.Connection, message_id: str, retry_after: str, reason: str, timestamp: str) -> bool:
    """Hand the row back to be tried at `retry_after`. True when the row was deferred for the
    same reason before (its person has been told already)."""
    before = conn.execute("SELECT reason FROM processing_ack WHERE message_id = ?", (message_id,)).fetchone()
    conn.execute(
        "INSERT INTO processing_ack (message_id, status, status_changed, retry_after, reason)"
        " VALUES (?, 'deferred', ?, ?, ?) ON CONFLICT(message_id) DO UPDATE SET status = 'deferred',"
        " status_changed = excluded.status_changed, retry_after = excluded.retry_after, reason = excluded.reason",
        (message_id, timestamp, retry_after, reason),
    )
    return before is not None and before[0] == reason


def acks(conn: sqlite3.Connection) -> dict[str, ProcessingAck]:
    rows = conn.execute("SELECT * FROM processing_ack")
    return {row["message_id"]: from_row(ProcessingAck, row) for row in rows}


def clear_processing_acks(conn: sqlite3.Connection) -> list[str]:
    """Drop the claims of a dead predecessor so those messages run again."""
    ids = [row[0] for row in conn.execute("SELECT message_id FROM processing_ack WHERE status = 'processing'")]
    conn.execute("DELETE FROM processing_ack WHERE status = 'processing'")
    return ids


def get_state(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM session_state WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def set_state(conn: sqlite3.Connection, key: str, value: str, timestamp: str) -> None:
    conn.execute(
        "INSERT INTO session_state (key, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, value, timestamp),
    )


def delete_state(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM session_state WHERE key = ?", (key,))
