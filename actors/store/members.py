"""A chat's people and their roles: owner, admin, member. The channel's configured owner is
the owner of every chat on that channel without a row here; everyone else needs one to
reach an agent (docs/ARCHITECTURE.md, "Who may talk to an agent")."""

from __future__ import annotations

import sqlite3
from typing import Literal, get_args

import msgspec

from actors.store import _rows
from actors.store.db import Store
from protocol.timeutil import now_ts

TABLE = "members"

Role = Literal["owner", "admin", "member"]
ROLES: tuple[str, ...] = get_args(Role)
# Session commands (/clear, ...) are for these.
ADMIN_ROLES: frozenset[str] = frozenset({"owner", "admin"})


class Member(msgspec.Struct, frozen=True, kw_only=True):
    messaging_group_id: str
    user_id: str
    role: Role
    name: str | None
    added_at: str


_SELECT = _rows.select_from(Member, TABLE)


def _convert(row: sqlite3.Row) -> Member:
    return _rows.to_struct(Member, row)


def put(store: Store, messaging_group_id: str, user_id: str, role: Role, name: str | None = None) -> Member:
    """Add the person, or change their role. MissingReferenceError for an unknown chat."""
    member = Member(messaging_group_id=messaging_group_id, user_id=user_id, role=role, name=name, added_at=now_ts())
    with store.transaction() as conn:
        conn.execute(
            f"INSERT INTO {TABLE} (messaging_group_id, user_id, role, name, added_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (messaging_group_id, user_id) DO UPDATE SET role = excluded.role,"
            " name = COALESCE(excluded.name, name)",
            (messaging_group_id, user_id, role, name, member.added_at),
        )
    return member


def role_of(store: Store, messaging_group_id: str, user_id: str) -> Role | None:
    member = _rows.fetch_one(
        store, f"{_SELECT} WHERE messaging_group_id = ? AND user_id = ?", (messaging_group_id, user_id), _convert
    )
    return None if member is None else member.role


def list_for(store: Store, messaging_group_id: str) -> list[Member]:
    return _rows.fetch_all(
        store, f"{_SELECT} WHERE messaging_group_id = ? ORDER BY added_at", (messaging_group_id,), _convert
    )


def remove(store: Store, messaging_group_id: str, user_id: str) -> bool:
    with store.transaction() as conn:
        cursor = conn.execute(
            f"DELETE FROM {TABLE} WHERE messaging_group_id = ? AND user_id = ?", (messaging_group_id, user_id)
        )
        return cursor.rowcount > 0
