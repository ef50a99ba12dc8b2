"""Dead or stuck: decided from acks and the heartbeat's mtime against a fixed `now`."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from actors.session.info import SessionSettings
from actors.session.liveness import agent_problem, claims_since, heartbeat_mtime
from protocol.rows import ProcessingAck
from protocol.timeutil import format_ts

pytestmark = pytest.mark.timeout(30)

STARTED = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
SETTINGS = SessionSettings(stale_heartbeat_s=30, claim_ceiling_s=600)


def ack(key: str, at: datetime, status: str = "processing") -> ProcessingAck:
    return ProcessingAck(key, status, format_ts(at))


def claims(*acks: ProcessingAck) -> dict[str, ProcessingAck]:
    return {entry.message_id: entry for entry in acks}


def seconds_after_start(seconds: float) -> datetime:
    return STARTED + timedelta(seconds=seconds)


def beat_at(moment: datetime) -> float:
    return moment.timestamp()


def test_only_processing_acks_since_the_start_are_the_agents() -> None:
    acks = claims(
        ack("leftover", STARTED - timedelta(minutes=5)),
        ack("just-before", STARTED - timedelta(milliseconds=500)),
        ack("mine", STARTED + timedelta(seconds=3)),
        ack("done", STARTED + timedelta(seconds=4), status="completed"),
        ack("gave-up", STARTED + timedelta(seconds=4), status="failed"),
    )

    assert set(claims_since(acks, STARTED)) == {"just-before", "mine"}


def test_an_unreadable_ack_stamp_is_a_leftover() -> None:
    acks = {"odd": ProcessingAck("odd", "processing", "yesterday")}

    assert claims_since(acks, STARTED) == {}


def test_an_agent_with_no_claims_is_never_a_problem() -> None:
    now = seconds_after_start(3600)

    assert agent_problem(now, STARTED, None, {}, SETTINGS) is None
    assert agent_problem(now, STARTED, beat_at(STARTED), {}, SETTINGS) is None


def test_a_missing_heartbeat_is_fine_until_the_stale_threshold_has_passed_since_the_start() -> None:
    working = claims(ack("a", STARTED))

    assert agent_problem(seconds_after_start(30), STARTED, None, working, SETTINGS) is None
    assert agent_problem(seconds_after_start(31), STARTED, None, working, SETTINGS) == (
        "no heartbeat in 30 s since it started"
    )


def test_a_stale_heartbeat_is_a_problem_a_fresh_one_is_not() -> None:
    working = claims(ack("a", STARTED))
    now = seconds_after_start(300)

    assert agent_problem(now, STARTED, beat_at(now - timedelta(seconds=29)), working, SETTINGS) is None
    assert agent_problem(now, STARTED, beat_at(now - timedelta(seconds=45)), working, SETTINGS) == (
        "last heartbeat 45 s ago"
    )


def test_a_claim_older_than_the_ceiling_is_stuck_even_with_a_fresh_heartbeat() -> None:
    working = claims(ack("old", STARTED + timedelta(seconds=10)), ack("new", STARTED + timedelta(seconds=500)))
    now = seconds_after_start(600)
    fresh_beat = beat_at(now)

    assert agent_problem(now, STARTED, fresh_beat, working, SETTINGS) is None
    later = seconds_after_start(611)
    assert agent_problem(later, STARTED, beat_at(later), working, SETTINGS) == (
        "a message has been processing for 601 s"
    )


def test_heartbeat_mtime_reads_the_file_and_none_when_there_is_none(tmp_path: Path) -> None:
    beat = tmp_path / ".heartbeat"
    assert heartbeat_mtime(beat) is None

    beat.touch()
    os.utime(beat, (1_900_000_000, 1_900_000_000))

    assert heartbeat_mtime(beat) == 1_900_000_000
