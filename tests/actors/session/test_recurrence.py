"""The next occurrence of a recurring task: from its scheduled time, in the users' zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from actors.session.recurrence import RecurrenceError, continue_series, next_occurrence, recurs
from protocol import inbound
from protocol.content import TaskIn
from protocol.cron import CronError, check_cron
from protocol.db import create_session_db, write_transaction
from protocol.schema import INBOUND
from protocol.timeutil import format_ts

pytestmark = pytest.mark.timeout(30)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_the_next_run_counts_from_the_scheduled_time_not_from_now() -> None:
    scheduled = utc(2026, 3, 2, 9)
    late_finish = scheduled + timedelta(minutes=7, seconds=30)

    assert next_occurrence("0 9 * * *", scheduled, late_finish, "UTC") == utc(2026, 3, 3, 9)
    assert next_occurrence("*/15 * * * *", scheduled, late_finish, "UTC") == utc(2026, 3, 2, 9, 15)


def test_the_result_is_strictly_after_the_scheduled_time() -> None:
    scheduled = utc(2026, 3, 2, 9)

    assert next_occurrence("0 9 * * *", scheduled, scheduled, "UTC") == utc(2026, 3, 3, 9)
    assert next_occurrence("0 9 * * *", scheduled - timedelta(seconds=1), scheduled - timedelta(seconds=1), "UTC") == (
        scheduled
    )


def test_a_daily_task_keeps_local_nine_oclock_into_summer_time() -> None:
    scheduled = datetime(2026, 3, 28, 9, tzinfo=BERLIN)  # Saturday, CET (+01:00)
    assert scheduled.astimezone(UTC) == utc(2026, 3, 28, 8)

    following = next_occurrence(
        "0 9 * * *", scheduled.astimezone(UTC), scheduled + timedelta(minutes=1), "Europe/Berlin"
    )

    assert following.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 3, 29, 9)  # Sunday, CEST
    assert following.astimezone(UTC) == utc(2026, 3, 29, 7)  # 23 hours later, not 24


def test_a_daily_task_keeps_local_nine_oclock_into_winter_time() -> None:
    scheduled = utc(2026, 10, 24, 7)  # 09:00 CEST

    following = next_occurrence("0 9 * * *", scheduled, scheduled + timedelta(minutes=1), "Europe/Berlin")

    assert following.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 10, 25, 9)  # CET
    assert following.astimezone(UTC) == utc(2026, 10, 25, 8)  # 25 hours later


def test_the_result_is_aware_and_comparable() -> None:
    following = next_occurrence("30 6 * * 1", utc(2026, 1, 1), utc(2026, 1, 1), "Europe/Berlin")

    assert following.tzinfo is not None
    assert following.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 1, 5, 6, 30)  # the first Monday


def test_after_a_long_gap_the_series_catches_up_once() -> None:
    scheduled = utc(2026, 1, 1, 9)
    now = utc(2026, 2, 15, 12)  # the host was off for six weeks

    catch_up = next_occurrence("0 9 * * *", scheduled, now, "UTC")

    assert catch_up == utc(2026, 2, 15, 9)  # the latest missed run, due at once
    assert catch_up <= now
    # ...and from that one, the series is back on schedule.
    assert next_occurrence("0 9 * * *", catch_up, now + timedelta(minutes=1), "UTC") == utc(2026, 2, 16, 9)


def test_a_gap_of_one_missed_run_does_not_skip_it() -> None:
    scheduled = utc(2026, 1, 1, 9)

    assert next_occurrence("0 9 * * *", scheduled, utc(2026, 1, 2, 10), "UTC") == utc(2026, 1, 2, 9)


@pytest.mark.parametrize("expression", ["not a cron", "61 * * * *", "* * *", "0 0 30 2 *", ""])
def test_a_bad_expression_is_a_recurrence_error(expression: str) -> None:
    with pytest.raises(RecurrenceError, match="not a valid cron expression"):
        next_occurrence(expression, utc(2026, 1, 1), utc(2026, 1, 1), "UTC")
    with pytest.raises(CronError):
        check_cron(expression)


def test_check_cron_accepts_a_good_expression() -> None:
    check_cron("0 9 * * 1-5")


def test_continuing_a_series_twice_adds_one_occurrence(tmp_path: Path) -> None:
    path = tmp_path / "inbound.db"
    create_session_db(path, INBOUND)
    scheduled = utc(2026, 3, 2, 9)
    with write_transaction(path) as conn:
        row = inbound.insert_message(
            conn,
            message_id="daily",
            content=TaskIn(prompt="stand-up notes", scheduled_by=1),
            timestamp=format_ts(scheduled - timedelta(hours=1)),
            process_after=format_ts(scheduled),
            recurrence="0 9 * * *",
        )
        assert recurs(row)

        first = continue_series(conn, row, scheduled + timedelta(minutes=5), "UTC")
        again = continue_series(conn, row, scheduled + timedelta(minutes=6), "UTC")

        assert first.following == again.following
        assert first.series == "daily"
        assert [r.id for r in inbound.series_rows(conn, "daily")] == ["daily-20260303090000"]
