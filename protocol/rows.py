"""Typed rows of the session DBs. `content` stays raw JSON here; `decode_content` types it."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec

from protocol.content import decode_content
from protocol.timeutil import parse_ts

InStatus = Literal["pending", "completed", "failed", "paused", "cancelled"]
# `deferred`: handed back unanswered, to be tried again at `retry_after` (a busy model, a spent
# budget); the host mirrors it as `pending` with that `process_after` (docs/ARCHITECTURE.md).
AckStatus = Literal["processing", "completed", "failed", "deferred"]
# Why a batch was deferred; the host counts a try for `busy` only.
DeferReason = Literal["busy", "budget"]
DeliveryStatus = Literal["delivered", "retrying", "failed"]


class Routing(msgspec.Struct, frozen=True):
    """Where a conversation lives on its channel; copied from a message to its replies."""

    platform_id: str | None = None
    channel_type: str | None = None
    thread_id: str | None = None


class MessageIn(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    seq: int
    kind: str
    timestamp: str
    status: InStatus = "pending"
    process_after: str | None = None
    recurrence: str | None = None
    series_id: str | None = None
    tries: int = 0
    trigger: int = 1
    platform_id: str | None = None
    channel_type: str | None = None
    thread_id: str | None = None
    content: str = "{}"

    def decoded(self) -> Any:
        return decode_content("messages_in", self.id, self.kind, self.content)

    @property
    def routing(self) -> Routing:
        return Routing(self.platform_id, self.channel_type, self.thread_id)

    def due_at(self) -> datetime | None:
        return parse_ts(self.process_after) if self.process_after else None

    def is_due(self, now: datetime) -> bool:
        due = self.due_at()
        return due is None or due <= now


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    message_out_id: str
    status: DeliveryStatus
    attempts: int = 0
    platform_message_id: str | None = None
    last_error: str | None = None
    delivered_at: str | None = None
    retry_after: str | None = None


class MessageOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    seq: int
    timestamp: str
    kind: str
    in_reply_to: str | None = None
    deliver_after: str | None = None
    platform_id: str | None = None
    channel_type: str | None = None
    thread_id: str | None = None
    content: str = "{}"

    def decoded(self) -> Any:
        return decode_content("messages_out", self.id, self.kind, self.content)

    @property
    def routing(self) -> Routing:
        return Routing(self.platform_id, self.channel_type, self.thread_id)


class ProcessingAck(msgspec.Struct, frozen=True):
    message_id: str
    status: str
    status_changed: str
    # Of the latest deferral; a later claim leaves them as they were, so the agent can tell
    # whether the person already heard why their message waits.
    retry_after: str | None = None
    reason: str | None = None


RowT = TypeVar("RowT", bound=msgspec.Struct)


def from_row(row_type: type[RowT], row: sqlite3.Row) -> RowT:
    """Build a typed row; columns this code does not know (a newer file) are ignored."""
    fields = set(row_type.__struct_fields__)
    return row_type(**{key: row[key] for key in row.keys() if key in fields})  # noqa: SIM118
