"""Applying the agent's `system` rows to inbound.db. Runs inside the SessionActor's write
transaction, so a system action can only ever touch its own session's file."""

from __future__ import annotations

import sqlite3

import msgspec

from protocol import inbound
from protocol.content import (
    CancelTask,
    ContentError,
    PauseTask,
    ResumeTask,
    ScheduleTask,
    SeriesChange,
    SystemAction,
    TaskIn,
    UpdateTask,
    encode_content,
)
from protocol.cron import CronError, check_cron
from protocol.layout import UnsafePathError, check_message_id
from protocol.rows import MessageIn, Routing
from protocol.timeutil import now_ts, parse_ts


class ActionRejected(ValueError):  # noqa: N818 - reads as the fact it reports
    """The action cannot be applied; the reason is logged and told to the agent."""


# Which task statuses each series action moves, and to what.
_TRANSITIONS: dict[type, tuple[frozenset[str], str]] = {
    CancelTask: (frozenset({"pending", "paused"}), "cancelled"),
    PauseTask: (frozenset({"pending"}), "paused"),
    ResumeTask: (frozenset({"paused"}), "pending"),
}


def apply_action(conn: sqlite3.Connection, action: SystemAction, routing: Routing, requested_by: int) -> str:
    """Apply one action; returns a one-line description for the log."""
    if isinstance(action, ScheduleTask):
        return _schedule(conn, action, routing, requested_by)
    if isinstance(action, UpdateTask):
        return _update(conn, action)
    return _change_series(conn, action)


def _schedule(conn: sqlite3.Connection, action: ScheduleTask, routing: Routing, requested_by: int) -> str:
    try:
        check_message_id(action.task_id)
    except UnsafePathError as exc:
        raise ActionRejected(f"schedule_task: {exc}") from None
    try:
        parse_ts(action.process_after)
    except ValueError as exc:
        raise ActionRejected(f"schedule_task: process_after: {exc}") from None
    if action.recurrence:
        try:
            check_cron(action.recurrence)
        except CronError as exc:
            raise ActionRejected(f"schedule_task: recurrence: {exc}") from None
    existing = inbound.get_message(conn, action.task_id)
    if existing is not None and existing.kind != "task":
        raise ActionRejected(f"schedule_task: id {action.task_id!r} is taken by a {existing.kind} message")
    row = inbound.insert_message(
        conn,
        message_id=action.task_id,
        content=TaskIn(prompt=action.prompt, scheduled_by=requested_by, scheduled_for=action.process_after),
        timestamp=now_ts(),
        routing=routing,
        process_after=action.process_after,
        recurrence=action.recurrence,
        series_id=action.task_id,
    )
    return f"task {row.id} scheduled for {row.process_after} (seq {row.seq})"


def _change_series(conn: sqlite3.Connection, action: SeriesChange) -> str:
    rows = _series_of(conn, action.task_id)
    if not rows:
        raise ActionRejected(f"{type(action).__name__}: there is no task {action.task_id!r}")
    allowed, target = _TRANSITIONS[type(action)]
    changed = inbound.set_status(conn, [row.id for row in rows if row.status in allowed], target)
    return f"task series {rows[0].series_id or rows[0].id}: {changed} occurrence(s) now {target}"


def _update(conn: sqlite3.Connection, action: UpdateTask) -> str:
    changes = (action.prompt, action.process_after, action.recurrence)
    if all(change is None for change in changes) and not action.clear_recurrence:
        raise ActionRejected("update_task: nothing to change")
    if action.recurrence is not None and action.clear_recurrence:
        raise ActionRejected("update_task: a recurrence and clear_recurrence together")
    when = action.process_after
    if when is not None:
        try:
            parse_ts(when)
        except ValueError as exc:
            raise ActionRejected(f"update_task: process_after: {exc}") from None
    if action.recurrence:
        try:
            check_cron(action.recurrence)
        except CronError as exc:
            raise ActionRejected(f"update_task: recurrence: {exc}") from None
    rows = _series_of(conn, action.task_id)
    if not rows:
        raise ActionRejected(f"update_task: there is no task {action.task_id!r}")
    # What ran (or runs now) stays as it was: the change is for what has not started.
    open_rows = [row for row in rows if row.status in ("pending", "paused")]
    if not open_rows:
        raise ActionRejected(f"update_task: task {action.task_id!r} has no pending or paused occurrence to change")
    recurrence_given = action.recurrence is not None or action.clear_recurrence
    for row in open_rows:
        content = _task_content(row)
        if action.prompt is not None:
            content = msgspec.structs.replace(content, prompt=action.prompt)
        if when is not None:
            # The series goes on from the new time, not from the old schedule.
            content = msgspec.structs.replace(content, scheduled_for=when)
        conn.execute(
            "UPDATE messages_in SET content = ?, process_after = ?, recurrence = ? WHERE id = ?",
            (
                encode_content(content),
                when if when is not None else row.process_after,
                (action.recurrence or None) if recurrence_given else row.recurrence,
                row.id,
            ),
        )
    series = rows[0].series_id or rows[0].id
    return f"task series {series}: {len(open_rows)} occurrence(s) updated"


def _task_content(row: MessageIn) -> TaskIn:
    try:
        content = row.decoded()
    except ContentError as exc:
        raise ActionRejected(f"update_task: task {row.id!r} is unreadable: {exc}") from None
    if not isinstance(content, TaskIn):
        raise ActionRejected(f"update_task: {row.id!r} is not a task")
    return content


def _series_of(conn: sqlite3.Connection, task_id: str) -> list[MessageIn]:
    """A task id names its whole series, whichever occurrence's id the agent used."""
    row = inbound.get_message(conn, task_id)
    series_id = row.series_id if row is not None and row.series_id else task_id
    rows = inbound.series_rows(conn, series_id)
    if not rows and row is not None:
        rows = [row]
    return [row for row in rows if row.kind == "task"]
