"""Trying an inbound row again after its agent died, got stuck or never started, or handed
it back (a `deferred` ack: the model stayed busy, or the agent group's budget is spent).

A try is counted in inbound.db, not in memory, so a restart cannot retry forever (a trap of
the reference implementation). Runs inside the SessionActor's write transaction; the caller
logs what happened and tells the senders of what was given up.

A deferral for a busy model counts a try like any other failure, so an API that stays
overloaded ends in `failed` after `max_tries` (the person is told); a deferral for a spent
budget counts none: waiting for money is not a fault, and it is bounded by the budget's
period instead, looked at again at least every `MAX_BUDGET_WAIT_S`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from actors.session.info import SessionSettings
from actors.session.recurrence import SeriesStep, continue_series, recurs
from protocol import inbound
from protocol.rows import MessageIn, ProcessingAck
from protocol.timeutil import format_ts, parse_ts

# However long the agent asks for, a deferred row is looked at again within these: a busy
# model's `retry-after` is minutes at most, and a budget can be raised at any moment (a
# running host is told at once; one started after an offline `hutch budget set` is not).
MAX_BUSY_WAIT_S: Final = 15 * 60.0
MAX_BUDGET_WAIT_S: Final = 3600.0


@dataclass(frozen=True)
class Retrying:
    row: MessageIn
    tries: int  # counted so far, the one that just failed included
    delay_s: float


@dataclass
class _Ended:
    given_up: list[MessageIn] = field(default_factory=list)  # as they were before this try
    continued: list[SeriesStep] = field(default_factory=list)


@dataclass
class RetryOutcome(_Ended):
    retrying: list[Retrying] = field(default_factory=list)


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
        _give_up(conn, row, now, settings, outcome)
    return outcome


def _give_up(
    conn: sqlite3.Connection, row: MessageIn, now: datetime, settings: SessionSettings, outcome: _Ended
) -> None:
    """The row's last try failed: it fails for good. One failed run does not end a series."""
    inbound.set_status(conn, [row.id], "failed")
    outcome.given_up.append(row)
    if recurs(row):
        outcome.continued.append(continue_series(conn, row, now, settings.timezone))


@dataclass(frozen=True)
class Deferred:
    row: MessageIn
    until: str
    reason: str  # busy | budget
    tries: int  # counted so far (unchanged for a budget wait)


@dataclass
class DeferOutcome(_Ended):
    deferred: list[Deferred] = field(default_factory=list)


def defer(
    conn: sqlite3.Connection, acks: Mapping[str, ProcessingAck], now: datetime, settings: SessionSettings
) -> DeferOutcome:
    """Mirror `deferred` acks: each row stays pending, held back until its retry time."""
    outcome = DeferOutcome()
    for message_id, ack in acks.items():
        row = inbound.get_message(conn, message_id)
        if row is None or row.status != "pending":
            continue
        reason = "budget" if ack.reason == "budget" else "busy"
        until = format_ts(deferred_until(ack, now, reason, settings))
        if row.process_after == until:
            # Mirrored already (a restarted host reads the same ack again): not a new try.
            outcome.deferred.append(Deferred(row, until, reason, row.tries))
            continue
        if reason == "budget":
            inbound.hold_until(conn, message_id, until)
            outcome.deferred.append(Deferred(row, until, reason, row.tries))
            continue
        tries = inbound.schedule_retry(conn, message_id, until)
        if tries < settings.max_tries:
            outcome.deferred.append(Deferred(row, until, reason, tries))
            continue
        _give_up(conn, row, now, settings, outcome)
    return outcome


def deferred_until(ack: ProcessingAck, now: datetime, reason: str, settings: SessionSettings) -> datetime:
    """The agent's retry time, bounded. The bounds are counted from the ack's own time (not
    `now`, when that is earlier), so a host reading the same ack again computes the same."""
    try:
        anchor = min(now, parse_ts(ack.status_changed))
    except ValueError:
        anchor = now
    longest = MAX_BUDGET_WAIT_S if reason == "budget" else MAX_BUSY_WAIT_S
    try:
        wanted = parse_ts(ack.retry_after or "")
    except ValueError:
        wanted = anchor + timedelta(seconds=settings.retry_base_s)
    return min(max(wanted, anchor), anchor + timedelta(seconds=longest))
