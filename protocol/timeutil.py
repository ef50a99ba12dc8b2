"""UTC timestamps in the one format both sides write and compare (docs/ARCHITECTURE.md, invariant 9)."""

from __future__ import annotations

from datetime import UTC, datetime

# Fixed width, so that two stamps also sort correctly as strings; still, compare parsed values.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_ts(moment: datetime) -> str:
    """Render an aware datetime as `2026-11-25T19:55:47.123456Z`; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: timestamps must carry a time zone")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def now_ts() -> str:
    return format_ts(utc_now())


def parse_ts(text: str) -> datetime:
    """Parse a stamp written by `format_ts`; anything else (local time, no `Z`) is an error."""
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a UTC timestamp in the form YYYY-MM-DDTHH:MM:SS.ffffffZ: {text!r}") from exc


def parse_user_time(text: str, default_zone: str = "UTC") -> datetime:
    """Accept ISO-8601 as a person or a model writes it; a time without an offset is read in
    `default_zone`. Returns an aware UTC datetime."""
    from zoneinfo import ZoneInfo

    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError as exc:
        raise ValueError(f"not an ISO-8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(default_zone))
    return moment.astimezone(UTC)
