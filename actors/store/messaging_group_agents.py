"""Wirings: which agent groups answer in which messaging group, when, and how sessions split."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Literal, get_args

import msgspec
import regex  # type: ignore[import-untyped]  # the engine actors.routing searches with
from msgspec import UNSET, UnsetType

from actors.store import _rows
from actors.store.db import InvalidValueError, Store
from protocol.timeutil import now_ts

TABLE = "messaging_group_agents"

# shared: one session per chat; per-thread: one per thread of the chat;
# agent-shared: one session for the agent across every chat wired to it.
SessionMode = Literal["shared", "per-thread", "agent-shared"]
SESSION_MODES: tuple[str, ...] = get_args(SessionMode)

PREFIX = "prefix:"
PATTERN = "pattern:"
SENDER_SCOPE = "sender-scope:"
# The longest 'pattern:' a wiring takes; a trigger is a short thing, and the search that
# uses it is bounded in time too (actors.routing).
MAX_PATTERN_CHARS = 512
# What a message that does not trigger this wiring becomes: context for its next turn, or nothing.
Untriggered = Literal["context", "drop"]


class Wiring(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    messaging_group_id: str
    agent_group_id: str
    # 'always' | 'mention' | 'mention-sticky' | 'pattern:<regex>' | 'sender-scope:<id>,<id>'
    # | 'prefix:<text>'
    trigger_rule: str
    session_mode: SessionMode
    priority: int  # higher is consulted first
    created_at: str
    untriggered: Untriggered = "context"


_SELECT = _rows.select_from(Wiring, TABLE)
# Ties in priority fall back to the older wiring, so the order never depends on the query plan.
_ORDER = "ORDER BY priority DESC, created_at, rowid"


def _convert(row: sqlite3.Row) -> Wiring:
    return _rows.to_struct(Wiring, row)


def validate_trigger_rule(rule: str) -> str:
    """Refuse a rule now rather than when the first message arrives; a pattern must compile
    (with the engine the router uses) and be at most MAX_PATTERN_CHARS long."""
    if rule in ("always", "mention", "mention-sticky"):
        return rule
    if rule.startswith(PREFIX) and len(rule) > len(PREFIX):
        return rule
    if rule.startswith(PATTERN) and len(rule) > len(PATTERN):
        pattern = rule[len(PATTERN) :]
        if len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidValueError(
                f"trigger rule 'pattern:...': the regular expression is {len(pattern)} characters,"
                f" more than {MAX_PATTERN_CHARS}"
            )
        try:
            regex.compile(pattern)
        except regex.error as exc:
            raise InvalidValueError(f"trigger rule {rule!r}: bad regular expression: {exc}") from exc
        return rule
    if rule.startswith(SENDER_SCOPE) and scope_of(rule):
        return rule
    raise InvalidValueError(
        f"trigger rule {rule!r}: expected 'always', 'mention', 'mention-sticky', 'pattern:<regex>',"
        " 'sender-scope:<id>,<id>' or 'prefix:<text>'"
    )


def scope_of(rule: str) -> frozenset[str]:
    """The sender ids a 'sender-scope:' rule lists."""
    return frozenset(part.strip() for part in rule.removeprefix(SENDER_SCOPE).split(",") if part.strip())


def _validate_mode(mode: str) -> None:
    # The CHECK constraint would refuse it too, but only with SQLite's terse wording.
    if mode not in SESSION_MODES:
        raise InvalidValueError(f"session mode {mode!r}: expected one of {', '.join(SESSION_MODES)}")


def create(
    store: Store,
    *,
    messaging_group_id: str,
    agent_group_id: str,
    session_mode: SessionMode,
    trigger_rule: str = "always",
    untriggered: Untriggered = "context",
    priority: int = 0,
    id: str | None = None,
) -> Wiring:
    """Raises AlreadyExistsError if the agent is already wired to that chat, MissingReferenceError if
    either group does not exist, InvalidValueError for a bad rule or mode."""
    _validate_mode(session_mode)
    wiring = Wiring(
        id=id or uuid.uuid4().hex,
        messaging_group_id=messaging_group_id,
        agent_group_id=agent_group_id,
        trigger_rule=validate_trigger_rule(trigger_rule),
        session_mode=session_mode,
        priority=priority,
        created_at=now_ts(),
        untriggered=untriggered,
    )
    _rows.insert(store, TABLE, msgspec.structs.asdict(wiring))
    return wiring


def get(store: Store, wiring_id: str) -> Wiring | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE id = ?", (wiring_id,), _convert)


def get_pair(store: Store, messaging_group_id: str, agent_group_id: str) -> Wiring | None:
    return _rows.fetch_one(
        store,
        f"{_SELECT} WHERE messaging_group_id = ? AND agent_group_id = ?",
        (messaging_group_id, agent_group_id),
        _convert,
    )


def wirings_for(store: Store, messaging_group_id: str) -> list[Wiring]:
    """The agents wired to a chat, in the order the router should consult them."""
    return _rows.fetch_all(store, f"{_SELECT} WHERE messaging_group_id = ? {_ORDER}", (messaging_group_id,), _convert)


def wirings_of_agent(store: Store, agent_group_id: str) -> list[Wiring]:
    return _rows.fetch_all(store, f"{_SELECT} WHERE agent_group_id = ? {_ORDER}", (agent_group_id,), _convert)


def list_all(store: Store) -> list[Wiring]:
    return _rows.fetch_all(
        store, f"{_SELECT} ORDER BY messaging_group_id, priority DESC, created_at, rowid", (), _convert
    )


def update(
    store: Store,
    wiring_id: str,
    *,
    trigger_rule: str | UnsetType = UNSET,
    untriggered: Untriggered | UnsetType = UNSET,
    session_mode: SessionMode | UnsetType = UNSET,
    priority: int | UnsetType = UNSET,
) -> Wiring | None:
    """Change the given fields; returns the new row, or None if there is no such wiring.
    Changing session_mode does not touch existing sessions: their keys were made by the old mode."""
    if not isinstance(trigger_rule, UnsetType):
        validate_trigger_rule(trigger_rule)
    if not isinstance(session_mode, UnsetType):
        _validate_mode(session_mode)
    changes = {
        "trigger_rule": trigger_rule,
        "untriggered": untriggered,
        "session_mode": session_mode,
        "priority": priority,
    }
    with store.transaction():
        if not _rows.set_fields(store, TABLE, wiring_id, changes):
            return None
        return get(store, wiring_id)


def delete(store: Store, wiring_id: str) -> bool:
    return _rows.delete_row(store, TABLE, wiring_id)


def make_sticky(store: Store, wiring_id: str, thread_key: str) -> None:
    """A 'mention-sticky' wiring was mentioned in this thread ('' for a chat without threads):
    from now on it answers every message there."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO sticky_threads (wiring_id, thread_key, since) VALUES (?, ?, ?)",
            (wiring_id, thread_key, now_ts()),
        )


def is_sticky(store: Store, wiring_id: str, thread_key: str) -> bool:
    with store.read() as conn:
        row = conn.execute(
            "SELECT 1 FROM sticky_threads WHERE wiring_id = ? AND thread_key = ?", (wiring_id, thread_key)
        ).fetchone()
    return row is not None
