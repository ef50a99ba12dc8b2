"""SweepActor: the slow safety net (docs/ARCHITECTURE.md, invariant 7). Every few tens of seconds it asks
each live session to check its agent's liveness and re-read its files, and it finds
sessions with work on disk but no actor (after a restart, or an event that never came)."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pykka

from actors.messages import EnsureSession, SweepCheck, Tellable
from actors.registry import SessionRegistry
from actors.store import agent_groups, sessions
from actors.store.db import Store
from protocol import inbound
from protocol.agent_db import read_agent_db
from protocol.db import read_transaction
from protocol.layout import MAX_OUTBOUND_DB_BYTES, SessionLayout, UnsafePathError
from protocol.logs import session_tag
from protocol.timers import ActorTicker

log = logging.getLogger("hutch.sweep")


class Sweep(msgspec.Struct, frozen=True):
    """Run one sweep now (the ticker's message; tests send it directly)."""


class SweepActor(pykka.ThreadingActor):
    def __init__(
        self,
        store: Store,
        registry: SessionRegistry,
        supervisor: Tellable,
        sessions_root: Path,
        interval_s: float = 30.0,
    ) -> None:
        super().__init__()
        self._store = store
        self._registry = registry
        self._supervisor = supervisor
        self._sessions_root = sessions_root
        self._interval_s = interval_s
        self._ticker: ActorTicker | None = None

    def on_start(self) -> None:
        self._ticker = ActorTicker(self.actor_ref, Sweep(), self._interval_s, name="sweep")
        self._ticker.start()
        self.actor_ref.tell(Sweep())  # at once: a restart may have left work on disk

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Sweep):
            return self._sweep()
        return super().on_receive(message)

    def _sweep(self) -> int:
        """Returns how many sessions without an actor were found with work."""
        found = 0
        folders = {group.id: group.folder for group in agent_groups.list_all(self._store)}
        for session in sessions.list_active(self._store):
            if self._registry.tell(session.id, SweepCheck()):
                continue
            folder = folders.get(session.agent_group_id)
            if folder is None:
                continue
            layout = SessionLayout(self._sessions_root / folder / session.id)
            try:
                work = _has_work(layout)
            except (sqlite3.DatabaseError, OSError, UnsafePathError) as exc:
                # outbound.db is the container's to write: one broken file must not stop the sweep.
                log.warning("%s sweep: cannot read the session's files: %s", session_tag(session.id, folder), exc)
                continue
            if work:
                found += 1
                log.info("%s sweep: the session has work on disk; starting it", session_tag(session.id, folder))
                self._supervisor.tell(EnsureSession(session.id))
        return found


def _has_work(layout: SessionLayout) -> bool:
    """Pending inbound rows (due or not: a future one needs its timer) or outbound rows
    that were never settled."""
    if not layout.inbound_db.exists():
        return False
    with read_transaction(layout.inbound_db) as conn:
        # Context-only rows wait for a trigger; they are no reason to start anything.
        if any(row.trigger or row.process_after for row in inbound.messages_with_status(conn, "pending")):
            return True
        settled = {key for key, d in inbound.deliveries(conn).items() if d.status != "retrying"}
    if not os.path.lexists(layout.outbound_db):
        return False
    # The agent's file: read as the session reads it (protocol/agent_db.py).
    written = read_agent_db(
        layout.outbound_db,
        os.stat(layout.root).st_dev,
        MAX_OUTBOUND_DB_BYTES,
        lambda conn: {row[0] for row in conn.execute("SELECT id FROM messages_out")},
    )
    return bool(written - settled)
