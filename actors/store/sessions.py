"""Sessions: one conversation of one agent group, found by its routing key."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Literal

import msgspec
from msgspec import UNSET, UnsetType

from actors.store import _rows
from actors.store.db import InvalidValueError, Store
from actors.store.messaging_group_agents import SessionMode
from protocol.timeutil import now_ts

TABLE = "sessions"

SessionStatus = Literal["active", "closed"]


class Session(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    agent_group_id: str
    messaging_group_id: str | None  # None for a session whose chat was deleted
    thread_id: str | None
    session_key: str
    status: SessionStatus
    created_at: str
    last_active_at: str


_SELECT = _rows.select_from(Session, TABLE)


def _convert(row: sqlite3.Row) -> Session:
    return _rows.to_struct(Session, row)


def session_key(
    mode: SessionMode,
    *,
    agent_group_id: str,
    messaging_group_id: str | None = None,
    thread_id: str | None = None,
) -> str:
    """The routing key for an inbound message under a wiring's mode: two messages share a
    session exactly when their keys are equal. The agent is part of every key, so two agents
    wired to one chat never share a session; a message outside any thread in per-thread mode
    belongs to the chat's main session."""
    if mode == "agent-shared":
        return f"ag:{agent_group_id}"
    if messaging_group_id is None:
        raise InvalidValueError(f"session mode {mode!r} needs a messaging group id")
    if mode == "shared" or thread_id is None:
        return f"ag:{agent_group_id}:mg:{messaging_group_id}"
    return f"ag:{agent_group_id}:mg:{messaging_group_id}:t:{thread_id}"


def webhook_session_key(agent_group_id: str, route: str) -> str:
    """One session per webhook route: its deliveries form one conversation of their own."""
    return f"ag:{agent_group_id}:hook:{route}"


def create(
    store: Store,
    *,
    agent_group_id: str,
    session_key: str,
    messaging_group_id: str | None = None,
    thread_id: str | None = None,
    id: str | None = None,
) -> Session:
    """Raises AlreadyExistsError if the key is taken (even by a closed session: reopen that one
    with `update(status="active")`), MissingReferenceError if a group does not exist."""
    stamp = now_ts()
    session = Session(
        id=id or uuid.uuid4().hex,
        agent_group_id=agent_group_id,
        messaging_group_id=messaging_group_id,
        thread_id=thread_id,
        session_key=session_key,
        status="active",
        created_at=stamp,
        last_active_at=stamp,
    )
    _rows.insert(store, TABLE, msgspec.structs.asdict(session))
    return session


def get(store: Store, session_id: str) -> Session | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE id = ?", (session_id,), _convert)


def get_by_key(store: Store, key: str) -> Session | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE session_key = ?", (key,), _convert)


def list_all(store: Store, *, agent_group_id: str | None = None, status: SessionStatus | None = None) -> list[Session]:
    clauses: list[str] = []
    params: list[str] = []
    if agent_group_id is not None:
        clauses.append("agent_group_id = ?")
        params.append(agent_group_id)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    return _rows.fetch_all(store, f"{_SELECT} {where}ORDER BY created_at, rowid", params, _convert)


def list_active(store: Store) -> list[Session]:
    """What the host restarts on boot."""
    return list_all(store, status="active")


def update(store: Store, session_id: str, *, status: SessionStatus | UnsetType = UNSET) -> Session | None:
    """Change the given fields; returns the new row, or None if there is no such session.
    Agent, chat, thread and key are what the session *is*, so they stay fixed."""
    if not isinstance(status, UnsetType) and status not in ("active", "closed"):
        raise InvalidValueError(f"session status {status!r}: expected 'active' or 'closed'")
    with store.transaction():
        if not _rows.set_fields(store, TABLE, session_id, {"status": status}):
            return None
        return get(store, session_id)


def close(store: Store, session_id: str) -> Session | None:
    return update(store, session_id, status="closed")


def touch(store: Store, session_id: str, *, at: str | None = None) -> bool:
    """Record activity now (or at `at`, a `protocol.timeutil` stamp); False if no such session."""
    return _rows.set_fields(store, TABLE, session_id, {"last_active_at": at or now_ts()})


def delete(store: Store, session_id: str) -> bool:
    """Also deletes the session's pending questions."""
    return _rows.delete_row(store, TABLE, session_id)
