"""Retrying inbound rows inside a write transaction on a real inbound.db; no actors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from actors.session.info import SessionSettings
from actors.session.recurrence import continue_series
from actors.session.retries import retry_later
from protocol import inbound
from protocol.content import ChatIn, TaskIn
from protocol.db import create_session_db, write_transaction
from protocol.rows import MessageIn, Routing
from protocol.schema import INBOUND
from protocol.timeutil import format_ts, parse_ts

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
SETTINGS = SessionSettings(retry_base_s=5, max_tries=3)
ROUTING = Routing(platform_id="chat-1", channel_type="cli")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "inbound.db"
    create_session_db(path, INBOUND)
    return path


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    with write_transaction(db) as connection:
        yield connection


def chat(conn: sqlite3.Connection, message_id: str = "m1") -> MessageIn:
    return inbound.insert_message(
        conn, message_id=message_id, content=ChatIn(text="hi", sender="Ada"), timestamp=format_ts(NOW), routing=ROUTING
    )


def task(conn: sqlite3.Connection, recurrence: str) -> MessageIn:
    return inbound.insert_message(
        conn,
        message_id="t1",
        content=TaskIn(prompt="water the plants", scheduled_by=1),
        timestamp=format_ts(NOW - timedelta(days=1)),
        routing=ROUTING,
        process_after=format_ts(NOW),
        recurrence=recurrence,
        series_id="t1",
    )


def stored(conn: sqlite3.Connection, message_id: str) -> MessageIn:
    row = inbound.get_message(conn, message_id)
    assert row is not None
    return row


def test_each_try_holds_the_row_back_twice_as_long(conn: sqlite3.Connection) -> None:
    chat(conn)

    first = retry_later(conn, ["m1"], NOW, SETTINGS)
    assert [(r.tries, r.delay_s) for r in first.retrying] == [(1, 5)]
    assert parse_ts(stored(conn, "m1").process_after or "") == NOW + timedelta(seconds=5)

    second = retry_later(conn, ["m1"], NOW, SETTINGS)
    assert [(r.tries, r.delay_s) for r in second.retrying] == [(2, 10)]
    assert parse_ts(stored(conn, "m1").process_after or "") == NOW + timedelta(seconds=10)
    assert stored(conn, "m1").status == "pending"
    assert second.given_up == []


def test_the_last_try_fails_the_row(conn: sqlite3.Connection) -> None:
    chat(conn)
    retry_later(conn, ["m1"], NOW, SETTINGS)
    retry_later(conn, ["m1"], NOW, SETTINGS)

    last = retry_later(conn, ["m1"], NOW, SETTINGS)

    assert last.retrying == []
    assert [(row.id, row.tries) for row in last.given_up] == [("m1", 2)]  # as it was before this try
    assert stored(conn, "m1").status == "failed"
    assert stored(conn, "m1").tries == 3
    assert last.continued == []


def test_rows_that_are_gone_or_no_longer_pending_are_left_alone(conn: sqlite3.Connection) -> None:
    chat(conn, "done")
    inbound.set_status(conn, ["done"], "completed")

    outcome = retry_later(conn, ["done", "missing"], NOW, SETTINGS)

    assert (outcome.retrying, outcome.given_up, outcome.continued) == ([], [], [])
    assert stored(conn, "done").tries == 0


def test_a_recurring_task_that_is_given_up_still_gets_its_next_occurrence(conn: sqlite3.Connection) -> None:
    task(conn, "0 9 * * *")
    once = SessionSettings(retry_base_s=5, max_tries=1)

    outcome = retry_later(conn, ["t1"], NOW, once)

    assert [row.id for row in outcome.given_up] == ["t1"]
    [step] = outcome.continued
    assert step.error is None and step.following is not None
    assert step.series == "t1"
    following = stored(conn, step.following.id)
    assert (following.status, following.series_id, following.recurrence) == ("pending", "t1", "0 9 * * *")
    assert parse_ts(following.process_after or "") == NOW + timedelta(days=1)


def test_a_series_with_a_broken_schedule_ends_and_says_why(conn: sqlite3.Connection) -> None:
    task(conn, "not a cron line")
    once = SessionSettings(retry_base_s=5, max_tries=1)

    outcome = retry_later(conn, ["t1"], NOW, once)

    [step] = outcome.continued
    assert step.following is None
    assert step.error is not None and "not a valid cron expression" in str(step.error)
    assert [row.id for row in inbound.series_rows(conn, "t1")] == ["t1"]


def test_the_next_occurrence_follows_the_schedule_not_the_retries(conn: sqlite3.Connection) -> None:
    """Retries move `process_after` later; the series still steps from the scheduled time."""
    inbound.insert_message(
        conn,
        message_id="t2",
        content=TaskIn(prompt="hourly check", scheduled_for=format_ts(NOW)),
        timestamp=format_ts(NOW),
        routing=ROUTING,
        process_after=format_ts(NOW),
        recurrence="0 * * * *",
        series_id="t2",
    )
    later = NOW + timedelta(minutes=50)
    retry_later(conn, ["t2"], later, SessionSettings(retry_base_s=600, max_tries=5))
    assert parse_ts(stored(conn, "t2").process_after or "") == later + timedelta(minutes=10)

    step = continue_series(conn, stored(conn, "t2"), later + timedelta(minutes=5), "UTC")

    assert step.following is not None
    assert parse_ts(step.following.process_after or "") == NOW + timedelta(hours=1)
    assert step.following.decoded().scheduled_for == format_ts(NOW + timedelta(hours=1))
