"""Agent groups: one agent identity each, with its own folder under data/groups/ and model."""

from __future__ import annotations

import sqlite3
import uuid

import msgspec
from msgspec import UNSET, UnsetType

from actors.runtime.base import AgentLimits
from actors.store import _rows
from actors.store.db import Store
from protocol.timeutil import now_ts

TABLE = "agent_groups"


class AgentGroup(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    folder: str  # relative to data/groups/
    model: str | None  # None: the host's default model
    created_at: str
    # What the group's agents may use; None: the host's default (HUTCH_AGENT_*).
    cpus: float | None = None
    memory_mb: int | None = None
    pids: int | None = None
    shm_mb: int | None = None

    def limits(self, defaults: AgentLimits) -> AgentLimits:
        """The host's defaults with this group's own settings over them."""
        own = {name: getattr(self, name) for name in ("cpus", "memory_mb", "pids", "shm_mb")}
        return msgspec.structs.replace(defaults, **{name: value for name, value in own.items() if value is not None})


_SELECT = _rows.select_from(AgentGroup, TABLE)


def _convert(row: sqlite3.Row) -> AgentGroup:
    return _rows.to_struct(AgentGroup, row)


def create(
    store: Store,
    *,
    name: str,
    folder: str,
    model: str | None = None,
    id: str | None = None,
    cpus: float | None = None,
    memory_mb: int | None = None,
    pids: int | None = None,
    shm_mb: int | None = None,
) -> AgentGroup:
    """Raises AlreadyExistsError if the id, name or folder is taken; a limit out of bounds is
    refused by the schema (InvalidValueError). A limit left None is the host's default."""
    group = AgentGroup(
        id=id or uuid.uuid4().hex,
        name=name,
        folder=folder,
        model=model,
        created_at=now_ts(),
        cpus=cpus,
        memory_mb=memory_mb,
        pids=pids,
        shm_mb=shm_mb,
    )
    _rows.insert(store, TABLE, msgspec.structs.asdict(group))
    return group


def get(store: Store, agent_group_id: str) -> AgentGroup | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE id = ?", (agent_group_id,), _convert)


def get_by_name(store: Store, name: str) -> AgentGroup | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE name = ?", (name,), _convert)


def get_by_folder(store: Store, folder: str) -> AgentGroup | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE folder = ?", (folder,), _convert)


def list_all(store: Store) -> list[AgentGroup]:
    return _rows.fetch_all(store, f"{_SELECT} ORDER BY name", (), _convert)


def update(
    store: Store,
    agent_group_id: str,
    *,
    name: str | UnsetType = UNSET,
    model: str | UnsetType | None = UNSET,
    cpus: float | UnsetType | None = UNSET,
    memory_mb: int | UnsetType | None = UNSET,
    pids: int | UnsetType | None = UNSET,
    shm_mb: int | UnsetType | None = UNSET,
) -> AgentGroup | None:
    """Change the given fields; returns the new row, or None if there is no such group.
    The folder is not changeable here: renaming it means moving files, which the caller owns.
    A limit set to None falls back to the host's default; one out of bounds is refused by the
    schema (InvalidValueError)."""
    changes = {"name": name, "model": model, "cpus": cpus, "memory_mb": memory_mb, "pids": pids, "shm_mb": shm_mb}
    with store.transaction():
        if not _rows.set_fields(store, TABLE, agent_group_id, changes):
            return None
        return get(store, agent_group_id)


def delete(store: Store, agent_group_id: str) -> bool:
    """Also deletes the group's wirings and sessions (and their pending questions)."""
    return _rows.delete_row(store, TABLE, agent_group_id)
