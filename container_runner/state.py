"""The session's durable key/value state: written through the OutboxActor (the file's only
writer), read from outbound.db once per key and then from memory."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pykka

from container_runner.messages import DeleteState, SaveState, StageState
from protocol import outbound
from protocol.db import read_transaction
from protocol.layout import SessionLayout

if TYPE_CHECKING:
    from container_runner.outbox import OutboxActor


class SessionState:
    """The one StateStore of a runner. Every write to `session_state` goes through it, so
    what it last read or wrote for a key is what the file holds: no read is needed twice."""

    def __init__(self, layout: SessionLayout, outbox: pykka.ActorRef[OutboxActor]) -> None:
        self._layout = layout
        self._outbox = outbox
        self._lock = threading.Lock()
        self._known: dict[str, str | None] = {}

    def load(self, key: str) -> str | None:
        with self._lock:
            if key in self._known:
                return self._known[key]
        with read_transaction(self._layout.outbound_db) as conn:
            value = outbound.get_state(conn, key)
        with self._lock:
            return self._known.setdefault(key, value)

    def save(self, key: str, value: str) -> None:
        self._outbox.ask(SaveState(key, value), block=True)
        with self._lock:
            self._known[key] = value

    def stage(self, key: str, value: str) -> None:
        # A tell: the outbox handles it before anything this thread asks of it later.
        self._outbox.tell(StageState(key, value))
        with self._lock:
            self._known[key] = value

    def delete(self, key: str) -> None:
        self._outbox.ask(DeleteState(key), block=True)
        with self._lock:
            self._known[key] = None
