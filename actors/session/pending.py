"""The session's pending inbound rows, in memory. The SessionActor is the only writer of
inbound.db, so after loading once it can answer "is there due work?" and "when is the next
row due?" without a read; every write it makes updates this index in the same breath."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from protocol.rows import MessageIn
from protocol.timeutil import parse_ts


class PendingRows:
    def __init__(self) -> None:
        self._rows: dict[str, MessageIn] = {}

    def replace(self, rows: Iterable[MessageIn]) -> None:
        """All pending rows, as read inside the transaction that last changed them."""
        self._rows = {row.id: row for row in rows if row.status == "pending"}

    def add(self, row: MessageIn) -> None:
        if row.status == "pending":
            self._rows[row.id] = row

    def pop(self, message_id: str) -> MessageIn | None:
        """No longer pending (its finish is known; the file will say so with the next write)."""
        return self._rows.pop(message_id, None)

    def ids(self) -> list[str]:
        return list(self._rows)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._rows

    def get(self, message_id: str) -> MessageIn | None:
        return self._rows.get(message_id)

    def _due_triggers(self, now: datetime) -> list[MessageIn]:
        """Rows that should start a turn now; context-only rows wait for one."""
        return [row for row in self._rows.values() if row.trigger and row.is_due(now)]

    def due_triggers(self, now: datetime) -> list[str]:
        return [row.id for row in self._due_triggers(now)]

    def due_since(self, now: datetime) -> datetime | None:
        """When the oldest row that should start a turn now became due."""
        return min((row.due_at() or parse_ts(row.timestamp) for row in self._due_triggers(now)), default=None)

    def next_due(self) -> datetime | None:
        """The earliest `process_after` among pending rows (passed or not)."""
        times = [moment for row in self._rows.values() if (moment := row.due_at()) is not None]
        return min(times, default=None)
