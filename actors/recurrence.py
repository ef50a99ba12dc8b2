"""The next occurrence of a recurring task, computed from its scheduled time, never from
"now", so a series does not drift by however long each run took."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

# A series that has been missed for longer than this many occurrences catches up once.
_MAX_SKIPPED = 100_000


class RecurrenceError(ValueError):
    pass


def check_cron(expression: str) -> None:
    try:
        CronSim(expression, datetime.now(ZoneInfo("UTC")))
    except CronSimError as exc:
        raise RecurrenceError(f"{expression!r} is not a valid cron expression: {exc}") from None


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
