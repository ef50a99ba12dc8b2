"""Trying an inbound row again after its agent died, got stuck or never started.

A try is counted in inbound.db, not in memory, so a restart cannot retry forever (a trap of
the reference implementation). Runs inside the SessionActor's write transaction; the caller
logs what happened and tells the senders of what was given up.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from actors.session.info import SessionSettings
from actors.session.recurrence import SeriesStep, continue_series, recurs
from protocol import inbound
from protocol.rows import MessageIn
from protocol.timeutil import format_ts


@dataclass(frozen=True)
class Retrying:
    row: MessageIn
    tries: int  # counted so far, the one that just failed included
    delay_s: float


@dataclass
class RetryOutcome:
    retrying: list[Retrying] = field(default_factory=list)
    given_up: list[MessageIn] = field(default_factory=list)  # as they were before this try
    continued: list[SeriesStep] = field(default_factory=list)


def retry_later(
    conn: sqlite3.Connection, message_ids: Iterable[str], now: datetime, settings: SessionSettings
) -> RetryOutcome:
    """Hold each pending row back 5 s, doubling per try; after the last try it fails."""
    outcome = RetryOutcome()
    for message_id in message_ids:
        row = inbound.get_message(conn, message_id)
        if row is None or row.status != "pending":
            continue  # finished or cancelled meanwhile: nothing to retry
        delay = settings.retry_base_s * 2**row.tries
        tries = inbound.schedule_retry(conn, message_id, format_ts(now + timedelta(seconds=delay)))
        if tries < settings.max_tries:
            outcome.retrying.append(Retrying(row, tries, delay))
            continue
        inbound.set_status(conn, [message_id], "failed")
        outcome.given_up.append(row)
        if recurs(row):
            # One failed run does not end the series.
            outcome.continued.append(continue_series(conn, row, now, settings.timezone))
    return outcome
