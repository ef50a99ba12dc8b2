"""The session's durable key/value state: read straight from outbound.db, written through
the OutboxActor (the file's only writer)."""

from __future__ import annotations

from typing import Any

import pykka

from container_runner.messages import DeleteState, SaveState
from protocol import outbound
from protocol.db import read_transaction
from protocol.layout import SessionLayout


class SessionState:
    def __init__(self, layout: SessionLayout, outbox: pykka.ActorRef[Any]) -> None:
        self._layout = layout
        self._outbox = outbox

    def load(self, key: str) -> str | None:
        with read_transaction(self._layout.outbound_db) as conn:
            return outbound.get_state(conn, key)

    def save(self, key: str, value: str) -> None:
        self._outbox.ask(SaveState(key, value), block=True)

    def delete(self, key: str) -> None:
        self._outbox.ask(DeleteState(key), block=True)
