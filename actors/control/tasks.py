"""The scheduled tasks a session holds, read from its `inbound.db` without writing it: a
task is a series of `task` rows (one per occurrence of a recurring one) sharing a
`series_id` (docs/ARCHITECTURE.md, "Scheduled tasks")."""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from protocol.content import ContentError, TaskIn, decode_content
from protocol.db import read_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, from_row
from protocol.timeutil import parse_ts

# The statuses each change moves a task out of (actors/session/system_actions.py applies it).
CHANGEABLE: dict[str, frozenset[str]] = {
    "pause": frozenset({"pending"}),
    "resume": frozenset({"paused"}),
    "cancel": frozenset({"pending", "paused"}),
}


@dataclass(frozen=True)
class TaskSeries:
    """One task: its id (the series id), what it asks, when it runs next and how its
    occurrences stand."""

    id: str
    prompt: str
    recurrence: str | None
    next_run: str | None  # the earliest pending or paused occurrence's time
    statuses: Counter[str]

    @property
    def state(self) -> str:
        """What a person asks first: will it run? `paused`, `scheduled`, or how it ended."""
        for live in ("pending", "paused"):
            if self.statuses.get(live):
                return "scheduled" if live == "pending" else "paused"
        return ", ".join(f"{count} {status}" for status, count in sorted(self.statuses.items())) or "-"

    def can(self, verb: str) -> bool:
        return any(self.statuses.get(status) for status in CHANGEABLE[verb])


def read_tasks(folder: Path) -> list[TaskSeries]:
    """Every task series in the session folder's inbound.db, soonest first; [] when the
    session has none or no inbound.db yet. sqlite3.Error for a file that is not one."""
    try:
        with read_transaction(SessionLayout(folder).inbound_db) as conn:
            rows = _task_rows(conn)
    except FileNotFoundError:
        return []
    return sorted(_series(rows), key=_soonest)


def _task_rows(conn: sqlite3.Connection) -> list[MessageIn]:
    found = conn.execute("SELECT * FROM messages_in WHERE kind = 'task' ORDER BY seq")
    return [from_row(MessageIn, row) for row in found]


def _series(rows: list[MessageIn]) -> list[TaskSeries]:
    by_series: dict[str, list[MessageIn]] = {}
    for row in rows:
        by_series.setdefault(row.series_id or row.id, []).append(row)
    return [_one(series_id, members) for series_id, members in by_series.items()]


def _one(series_id: str, rows: list[MessageIn]) -> TaskSeries:
    latest = rows[-1]
    live = [row.process_after for row in rows if row.status in {"pending", "paused"} and row.process_after]
    return TaskSeries(
        id=series_id,
        prompt=_prompt(latest),
        recurrence=latest.recurrence,
        next_run=min(live, key=_moment) if live else None,
        statuses=Counter(row.status for row in rows),
    )


def _prompt(row: MessageIn) -> str:
    try:
        content: TaskIn = decode_content("messages_in", row.id, row.kind, row.content)
    except ContentError:
        return "(unreadable)"
    return content.prompt


def _moment(stamp: str) -> float:
    try:
        return parse_ts(stamp).timestamp()
    except ValueError:
        return float("inf")


def _soonest(series: TaskSeries) -> tuple[float, str]:
    return (_moment(series.next_run) if series.next_run else float("inf"), series.id)
