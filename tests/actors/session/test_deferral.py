"""Mirroring a `deferred` ack (retries.defer) on a real inbound.db: the row stays pending,
held until the agent's retry time within a bound; a busy model counts a try and ends in
`failed` after the last, a spent budget counts none; the same ack read again changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from actors.session.info import SessionSettings
from actors.session.retries import MAX_BUDGET_WAIT_S, MAX_BUSY_WAIT_S, defer
from protocol import inbound
from protocol.content import ChatIn
from protocol.db import create_session_db, write_transaction
from protocol.rows import MessageIn, ProcessingAck
from protocol.schema import INBOUND
from protocol.timeutil import format_ts

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
SETTINGS = SessionSettings(retry_base_s=5, max_tries=3)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "inbound.db"
    create_session_db(path, INBOUND)
    with write_transaction(path) as conn:
        inbound.insert_message(conn, message_id="m1", content=ChatIn(text="hi", sender="a"), timestamp=format_ts(NOW))
    yield path


def _ack(retry_in_s: float, reason: str, changed: datetime = NOW) -> dict[str, ProcessingAck]:
    until = format_ts(changed + timedelta(seconds=retry_in_s))
    return {"m1": ProcessingAck("m1", "deferred", format_ts(changed), until, reason)}


def _row(db: Path) -> MessageIn:
    with write_transaction(db) as conn:
        row = inbound.get_message(conn, "m1")
    assert row is not None
    return row


def _defer(db: Path, acks: dict[str, ProcessingAck], now: datetime = NOW) -> None:
    with write_transaction(db) as conn:
        defer(conn, acks, now, SETTINGS)


def test_a_busy_deferral_counts_a_try_and_holds_the_row_until_its_time(db: Path) -> None:
    _defer(db, _ack(30, "busy"))
    row = _row(db)
    assert (row.status, row.tries, row.process_after) == ("pending", 1, format_ts(NOW + timedelta(seconds=30)))


def test_the_same_ack_read_again_changes_nothing(db: Path) -> None:
    acks = _ack(30, "busy")
    _defer(db, acks)
    _defer(db, acks, NOW + timedelta(seconds=1))  # a restarted host reads it again
    assert _row(db).tries == 1


def test_a_model_busy_for_every_try_ends_failed(db: Path) -> None:
    for attempt in range(SETTINGS.max_tries):
        at = NOW + timedelta(minutes=attempt)
        _defer(db, _ack(30, "busy", at), at)
    assert _row(db).status == "failed"


def test_a_budget_wait_counts_no_try_and_is_bounded(db: Path) -> None:
    for attempt in range(SETTINGS.max_tries + 2):
        at = NOW + timedelta(hours=attempt)
        _defer(db, _ack(10 * 24 * 3600, "budget", at), at)
    row = _row(db)
    assert (row.status, row.tries) == ("pending", 0)
    last = NOW + timedelta(hours=SETTINGS.max_tries + 1)
    assert row.process_after == format_ts(last + timedelta(seconds=MAX_BUDGET_WAIT_S))


def test_a_long_or_unreadable_retry_time_is_bounded(db: Path) -> None:
    _defer(db, _ack(24 * 3600, "busy"))
    assert _row(db).process_after == format_ts(NOW + timedelta(seconds=MAX_BUSY_WAIT_S))
    garbled = {"m1": ProcessingAck("m1", "deferred", format_ts(NOW + timedelta(seconds=1)), "soon", "whatever")}
    _defer(db, garbled, NOW + timedelta(seconds=1))
    assert _row(db).process_after == format_ts(NOW + timedelta(seconds=1 + SETTINGS.retry_base_s))
