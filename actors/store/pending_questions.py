"""Pending questions: an agent asked a person to pick an option and waits for the answer.

The row outlives the container that asked, so that an answer arriving after a restart (or a
button pressed hours later) still finds its session.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from actors.store import _rows
from actors.store.db import InvalidValueError, Store
from protocol.timeutil import now_ts

TABLE = "pending_questions"

QuestionStatus = Literal["open", "answered", "expired"]


class PendingQuestion(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # the question id the agent chose, echoed back by the channel's buttons
    session_id: str
    message_out_id: str  # the outbound message that carried the question
    question: str
    options: tuple[str, ...]
    platform_id: str | None
    channel_type: str | None
    thread_id: str | None
    status: QuestionStatus
    answer: str | None
    created_at: str
    answered_at: str | None


_SELECT = _rows.select_from(PendingQuestion, TABLE)
_ORDER = "ORDER BY created_at, rowid"


def _convert(row: sqlite3.Row) -> PendingQuestion:
    values: dict[str, Any] = dict(row)
    values["options"] = msgspec.json.decode(values["options"])
    return msgspec.convert(values, PendingQuestion)


def create(
    store: Store,
    *,
    session_id: str,
    message_out_id: str,
    question: str,
    options: Sequence[str],
    platform_id: str | None = None,
    channel_type: str | None = None,
    thread_id: str | None = None,
    id: str | None = None,
) -> PendingQuestion:
    """Raises AlreadyExistsError for a reused question id, MissingReferenceError for an unknown session."""
    # A bare string is a Sequence[str] too, and would silently become one option per letter.
    if isinstance(options, str) or not all(isinstance(option, str) for option in options):
        raise InvalidValueError(f"question options must be a list of strings, got {options!r}")
    pending = PendingQuestion(
        id=id or uuid.uuid4().hex,
        session_id=session_id,
        message_out_id=message_out_id,
        question=question,
        options=tuple(options),
        platform_id=platform_id,
        channel_type=channel_type,
        thread_id=thread_id,
        status="open",
        answer=None,
        created_at=now_ts(),
        answered_at=None,
    )
    values = msgspec.structs.asdict(pending)
    values["options"] = msgspec.json.encode(list(pending.options)).decode()
    _rows.insert(store, TABLE, values)
    return pending


def get(store: Store, question_id: str) -> PendingQuestion | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE id = ?", (question_id,), _convert)


def open_for_session(store: Store, session_id: str) -> list[PendingQuestion]:
    """Open questions of a session, oldest first."""
    return _rows.fetch_all(
        store, f"{_SELECT} WHERE session_id = ? AND status = 'open' {_ORDER}", (session_id,), _convert
    )


def get_open_by_platform(
    store: Store, channel_type: str, platform_id: str, thread_id: str | None = None
) -> PendingQuestion | None:
    """The newest open question in a chat, for channels where the answer comes back as plain
    text rather than a button carrying the question id. With `thread_id`, only that thread's;
    without, any thread's."""
    sql = f"{_SELECT} WHERE channel_type = ? AND platform_id = ? AND status = 'open'"
    params: list[str] = [channel_type, platform_id]
    if thread_id is not None:
        sql += " AND thread_id = ?"
        params.append(thread_id)
    return _rows.fetch_one(store, f"{sql} ORDER BY created_at DESC, rowid DESC", params, _convert)


def list_all(
    store: Store, *, session_id: str | None = None, status: QuestionStatus | None = None
) -> list[PendingQuestion]:
    clauses: list[str] = []
    params: list[str] = []
    if session_id is not None:
        clauses.append("session_id = ?")
        params.append(session_id)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    return _rows.fetch_all(store, f"{_SELECT} {where}{_ORDER}", params, _convert)


def answer(store: Store, question_id: str, answer: str) -> PendingQuestion | None:
    """Record the answer if the question is still open; returns the answered row, or None if
    it is unknown, already answered or expired, so a double click answers only once."""
    with store.transaction() as conn:
        cursor = conn.execute(
            f"UPDATE {TABLE} SET status = 'answered', answer = ?, answered_at = ? WHERE id = ? AND status = 'open'",
            (answer, now_ts(), question_id),
        )
        if cursor.rowcount == 0:
            return None
        return get(store, question_id)


def expire(store: Store, question_id: str) -> bool:
    """Close an open question without an answer; False if it was not open."""
    with store.transaction() as conn:
        cursor = conn.execute(f"UPDATE {TABLE} SET status = 'expired' WHERE id = ? AND status = 'open'", (question_id,))
        return cursor.rowcount > 0


def expire_for_session(store: Store, session_id: str) -> int:
    """Expire every open question of a session (e.g. when it closes); returns how many."""
    with store.transaction() as conn:
        cursor = conn.execute(
            f"UPDATE {TABLE} SET status = 'expired' WHERE session_id = ? AND status = 'open'", (session_id,)
        )
        return cursor.rowcount


def delete(store: Store, question_id: str) -> bool:
    return _rows.delete_row(store, TABLE, question_id)
