"""The live SessionActors by session id. Written by the Supervisor only; read from the
sweep's thread, hence the lock.

Its refs are `ActorRef[Any]` on purpose: pykka's refs are invariant in their actor type, and
the sweep's tests register recording actors where the host registers SessionActors; all a
reader does with a ref is tell it something."""

from __future__ import annotations

import threading
from typing import Any

import pykka


class SessionRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}

    def add(self, session_id: str, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            self._refs[session_id] = ref

    def remove(self, session_id: str) -> pykka.ActorRef[Any] | None:
        with self._lock:
            return self._refs.pop(session_id, None)

    def get(self, session_id: str) -> pykka.ActorRef[Any] | None:
        with self._lock:
            ref = self._refs.get(session_id)
        return ref if ref is not None and ref.is_alive() else None

    def items(self) -> list[tuple[str, pykka.ActorRef[Any]]]:
        with self._lock:
            return list(self._refs.items())

    def tell(self, session_id: str, message: Any) -> bool:
        """Tell a live session something; False when it is not running."""
        ref = self.get(session_id)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True
