"""At most N agents run at once (`HUTCH_MAX_CONTAINERS`); further sessions wait in order."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable


class ContainerSlots:
    """Thread-safe: sessions call it from their own actors. A waiting session is called back
    (from the releasing thread) when a slot is its; the callback must only tell an actor."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the container limit must be at least 1")
        self._limit = limit
        self._lock = threading.Lock()
        self._holders: set[str] = set()
        self._waiting: OrderedDict[str, Callable[[], None]] = OrderedDict()

    def acquire(self, session_id: str, on_granted: Callable[[], None]) -> bool:
        """True when the session holds a slot now; otherwise it is queued and `on_granted` runs later."""
        with self._lock:
            if session_id in self._holders:
                return True
            if len(self._holders) < self._limit and not self._waiting:
                self._holders.add(session_id)
                return True
            self._waiting[session_id] = on_granted
            return False

    def release(self, session_id: str) -> None:
        with self._lock:
            self._waiting.pop(session_id, None)
            self._holders.discard(session_id)
            granted: list[Callable[[], None]] = []
            while self._waiting and len(self._holders) < self._limit:
                next_id, callback = self._waiting.popitem(last=False)
                self._holders.add(next_id)
                granted.append(callback)
        for callback in granted:
            callback()

    def holders(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._holders)

    def waiting(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._waiting)
