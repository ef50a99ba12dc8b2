"""Reading what a container wrote: it is untrusted (docs/ARCHITECTURE.md, invariant 6). Every row is
checked column by column and its content decoded strictly; a bad row becomes a
`RejectedRow` with a reason, never an exception that could stop the session."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from protocol.agent_db import read_agent_db
from protocol.content import MAX_CONTENT_BYTES, ContentError, OutboundContent, decode_content
from protocol.layout import MAX_OUTBOUND_DB_BYTES
from protocol.rows import MessageOut, ProcessingAck
from protocol.timeutil import parse_ts

_COLUMNS = "id, seq, in_reply_to, timestamp, deliver_after, kind, platform_id, channel_type, thread_id"


class ReadRow(msgspec.Struct, frozen=True):
    row: MessageOut
    content: OutboundContent


class RejectedRow(msgspec.Struct, frozen=True):
    key: str
    seq: int
    reason: str


class Snapshot(msgspec.Struct, frozen=True):
    """What one read of outbound.db saw: rows after the cursor, and the acks of the rows
    the host still has pending. `full` means the page was full and more may follow."""

    rows: list[ReadRow | RejectedRow]
    acks: dict[str, ProcessingAck]
    full: bool


# An IN list this long stays well below SQLite's limit on bound variables.
_ACK_CHUNK = 500


def read_snapshot(
    path: Path, cursor: int, pending: Collection[str], limit: int = 200, device: int | None = None
) -> Snapshot:
    """One consistent read: rows with seq above `cursor`, in seq order (oversized content
    is never loaded), and the acks of the `pending` inbound rows. The file is read as any
    DB the agent made (`protocol.agent_db`): a link, a second link or another device than
    `device` (by default the folder's) raises `UnsafePathError`, and nothing is opened;
    a commit under way raises `AgentDbBusy`."""
    if not os.path.lexists(path):
        return Snapshot([], {}, False)
    if device is None:
        device = os.stat(path.parent).st_dev

    def read(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], dict[str, ProcessingAck]]:
        raw = conn.execute(
            f"SELECT {_COLUMNS}, length(CAST(content AS BLOB)) AS content_bytes,"
            " CASE WHEN length(CAST(content AS BLOB)) > ? THEN NULL ELSE content END AS content"
            " FROM messages_out WHERE typeof(seq) = 'integer' AND seq > ? ORDER BY seq LIMIT ?",
            (MAX_CONTENT_BYTES, cursor, limit),
        ).fetchall()
        return raw, _acks_of(conn, list(pending))

    raw, acks = read_agent_db(path, device, MAX_OUTBOUND_DB_BYTES, read)
    return Snapshot([_check(dict(row)) for row in raw], acks, len(raw) >= limit)


def _acks_of(conn: sqlite3.Connection, ids: list[str]) -> dict[str, ProcessingAck]:
    found: dict[str, ProcessingAck] = {}
    for start in range(0, len(ids), _ACK_CHUNK):
        chunk = ids[start : start + _ACK_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        # `*`: a file the agent has not opened since the deferral columns came has none yet.
        for row in conn.execute(f"SELECT * FROM processing_ack WHERE message_id IN ({marks})", chunk):
            message_id, status, changed = row["message_id"], row["status"], row["status_changed"]
            # Typed by hand: the container may have stored anything in these columns.
            if isinstance(message_id, str) and isinstance(status, str) and isinstance(changed, str):
                retry_after = _short_text(row, "retry_after")
                reason = _short_text(row, "reason")
                found[message_id] = ProcessingAck(message_id, status, changed, retry_after, reason)
    return found


def _short_text(row: sqlite3.Row, column: str) -> str | None:
    value = row[column] if column in row.keys() else None  # noqa: SIM118 - sqlite3.Row
    return value if isinstance(value, str) and len(value) <= 64 else None


def _check(raw: dict[str, Any]) -> ReadRow | RejectedRow:
    key = str(raw.get("id"))[:64]
    seq = int(raw["seq"])
    where = f"messages_out row {key!r}"
    size = raw.pop("content_bytes")
    if raw.get("content") is None:
        return RejectedRow(key, seq, f"{where}: content is {size} bytes, more than {MAX_CONTENT_BYTES}")
    if seq % 2 == 0:
        return RejectedRow(key, seq, f"{where}: seq {seq} is even; the container's seqs are odd")
    try:
        row = msgspec.convert(raw, MessageOut, strict=True)
    except msgspec.ValidationError as exc:
        return RejectedRow(key, seq, f"{where}: {exc}")
    try:
        content = decode_content("messages_out", row.id, row.kind, row.content)
    except ContentError as exc:
        return RejectedRow(key, seq, str(exc))
    return ReadRow(row, content)


def parse_container_ts(stamp: str) -> datetime:
    """A stamp the container wrote; an unreadable one must not stop the session, so it reads
    as the earliest possible time."""
    try:
        return parse_ts(stamp)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
