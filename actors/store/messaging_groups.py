"""Messaging groups: one chat (DM, group, channel) on one channel type, named by the platform's id."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Literal, get_args

import msgspec
from msgspec import UNSET, UnsetType

from actors.store import _rows
from actors.store.db import Store
from protocol.timeutil import now_ts

TABLE = "messaging_groups"

UnknownSenders = Literal["drop", "pair"]
UNKNOWN_SENDER_POLICIES: tuple[str, ...] = get_args(UnknownSenders)


class MessagingGroup(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    channel_type: str
    platform_id: str
    name: str | None
    is_group: bool
    created_at: str
    # A sender the chat does not know: dropped (nothing stored), or offered a pairing code.
    unknown_senders: UnknownSenders = "drop"

    @property
    def label(self) -> str:
        """`telegram:12345 (family)`: the channel, the platform's id, and the name if it adds one."""
        named = f" ({self.name})" if self.name and self.name != self.platform_id else ""
        return f"{self.channel_type}:{self.platform_id}{named}"


_SELECT = _rows.select_from(MessagingGroup, TABLE)


def _convert(row: sqlite3.Row) -> MessagingGroup:
    return _rows.to_struct(MessagingGroup, row)


def create(
    store: Store,
    *,
    channel_type: str,
    platform_id: str,
    name: str | None = None,
    is_group: bool = False,
    unknown_senders: UnknownSenders = "drop",
    id: str | None = None,
) -> MessagingGroup:
    """Raises AlreadyExistsError if the id or the (channel_type, platform_id) pair is taken."""
    group = MessagingGroup(
        id=id or uuid.uuid4().hex,
        channel_type=channel_type,
        platform_id=platform_id,
        name=name,
        is_group=is_group,
        created_at=now_ts(),
        unknown_senders=unknown_senders,
    )
    _rows.insert(store, TABLE, msgspec.structs.asdict(group))
    return group


def get(store: Store, messaging_group_id: str) -> MessagingGroup | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE id = ?", (messaging_group_id,), _convert)


def get_by_platform(store: Store, channel_type: str, platform_id: str) -> MessagingGroup | None:
    """The lookup an inbound message needs: the chat it came from, by the platform's own id."""
    return _rows.fetch_one(
        store, f"{_SELECT} WHERE channel_type = ? AND platform_id = ?", (channel_type, platform_id), _convert
    )


def list_all(store: Store, *, channel_type: str | None = None) -> list[MessagingGroup]:
    if channel_type is None:
        return _rows.fetch_all(store, f"{_SELECT} ORDER BY channel_type, platform_id", (), _convert)
    return _rows.fetch_all(store, f"{_SELECT} WHERE channel_type = ? ORDER BY platform_id", (channel_type,), _convert)


def update(
    store: Store,
    messaging_group_id: str,
    *,
    name: str | UnsetType | None = UNSET,
    is_group: bool | UnsetType = UNSET,
    unknown_senders: UnknownSenders | UnsetType = UNSET,
) -> MessagingGroup | None:
    """Change the given fields; returns the new row, or None if there is no such group.
    (channel_type, platform_id) is the chat's identity and stays fixed."""
    changes = {"name": name, "is_group": is_group, "unknown_senders": unknown_senders}
    with store.transaction():
        if not _rows.set_fields(store, TABLE, messaging_group_id, changes):
            return None
        return get(store, messaging_group_id)


def delete(store: Store, messaging_group_id: str) -> bool:
    """Also deletes its wirings; sessions reached through it keep living, detached (SET NULL)."""
    return _rows.delete_row(store, TABLE, messaging_group_id)
