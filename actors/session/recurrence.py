"""The next occurrence of a recurring task, computed from its scheduled time, never from
"now", so a series does not drift by however long each run took."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
from cronsim import CronSim, CronSimError

from protocol import inbound
from protocol.content import TaskIn
from protocol.cron import CronError
from protocol.rows import MessageIn
from protocol.timeutil import format_ts, now_ts, parse_ts

# A series that has been missed for longer than this many occurrences catches up once.
_MAX_SKIPPED = 100_000


class RecurrenceError(CronError):
    """A series whose next occurrence cannot be computed; the series ends there."""


def next_occurrence(expression: str, scheduled: datetime, now: datetime, zone: str) -> datetime:
    """The first occurrence after `scheduled`; if the host was away and several have passed
    since, the latest passed one, so a missed series runs once to catch up, not once per miss."""
    try:
        occurrences = CronSim(expression, scheduled.astimezone(ZoneInfo(zone)))
    except CronSimError as exc:
        raise RecurrenceError(f"{expression!r} is not a valid cron expression: {exc}") from None
    candidate = next(occurrences)
    if candidate > now:
        return candidate
    for _ in range(_MAX_SKIPPED):
        following = next(occurrences)
        if following > now:
            break
        candidate = following
    return candidate


@dataclass(frozen=True)
class SeriesStep:
    """What continuing a series did: the row it added, or why the series ends here."""

    finished: MessageIn
    following: MessageIn | None = None
    error: RecurrenceError | None = None

    @property
    def series(self) -> str:
        return self.finished.series_id or self.finished.id


def recurs(row: MessageIn) -> bool:
    return row.kind == "task" and bool(row.recurrence)


def continue_series(conn: sqlite3.Connection, row: MessageIn, now: datetime, zone: str) -> SeriesStep:
    """Add the occurrence that follows `row`, inside the caller's inbound.db write transaction."""
    content = row.decoded()
    scheduled = _scheduled_time(row, content)
    try:
        following = next_occurrence(row.recurrence or "", scheduled, now, zone)
    except RecurrenceError as exc:
        return SeriesStep(row, error=exc)
    series = row.series_id or row.id
    # Derived from the series and the time, so applying the same ack twice adds nothing.
    next_id = f"{series[:40]}-{following.astimezone(parse_ts(row.timestamp).tzinfo):%Y%m%d%H%M%S}"
    created = inbound.insert_message(
        conn,
        message_id=next_id,
        content=msgspec.structs.replace(content, scheduled_for=format_ts(following))
        if isinstance(content, TaskIn)
        else content,
        timestamp=now_ts(),
        routing=row.routing,
        process_after=format_ts(following),
        recurrence=row.recurrence,
        series_id=series,
    )
    return SeriesStep(row, following=created)


def _scheduled_time(row: MessageIn, content: object) -> datetime:
    if isinstance(content, TaskIn) and content.scheduled_for:
        return parse_ts(content.scheduled_for)
    return row.due_at() or parse_ts(row.timestamp)
