"""At most N agents run at once (`HUTCH_MAX_CONTAINERS`); further sessions wait in order.

Slots are shared fairly: a holder tells the slots when its agent has nothing to do, and
while a session waits, the holder idle longest is asked to give its slot up, so nobody waits
for an idle timeout while another agent does nothing (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Holder:
    on_yield: Callable[[], None] | None
    idle_since: int | None = None  # when it became idle, in the order holders did
    asked: bool = False  # asked to give the slot up, and not busy since


class ContainerSlots:
    """Thread-safe: sessions call it from their own actors. Callbacks (a grant to a waiting
    session, a request to an idle holder to yield) run on the caller's thread and must only
    tell an actor."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the container limit must be at least 1")
        self._limit = limit
        self._lock = threading.Lock()
        self._holders: dict[str, _Holder] = {}
        self._waiting: OrderedDict[str, Callable[[], None]] = OrderedDict()
        self._idle_order = itertools.count()  # a clock can tick twice alike; this never does

    def acquire(
        self, session_id: str, on_granted: Callable[[], None], on_yield: Callable[[], None] | None = None
    ) -> bool:
        """True when the session holds a slot now; otherwise it is queued, `on_granted` runs
        later, and the holder idle longest (if any) is asked to yield. `on_yield` is how this
        session, once a holder, is asked to give its slot up."""
        with self._lock:
            if session_id in self._holders:
                return True
            if len(self._holders) < self._limit and not self._waiting:
                self._holders[session_id] = _Holder(on_yield)
                return True
            self._waiting[session_id] = on_granted
            ask = self._longest_idle()
        if ask is not None:
            ask()
        return False

    def set_idle(self, session_id: str, idle: bool) -> None:
        """The holder's agent has nothing to do (or has again); an idle holder is asked to
        yield at once when someone waits."""
        with self._lock:
            holder = self._holders.get(session_id)
            if holder is None:
                return
            if not idle:
                holder.idle_since, holder.asked = None, False
                return
            if holder.idle_since is None:
                holder.idle_since = next(self._idle_order)
            ask = self._longest_idle() if self._waiting else None
        if ask is not None:
            ask()

    def _longest_idle(self) -> Callable[[], None] | None:
        """Under the lock: the yield request of the idle holder not yet asked, idle longest;
        None once as many holders are asked as sessions wait."""
        if sum(holder.asked for holder in self._holders.values()) >= len(self._waiting):
            return None
        idle = [
            holder
            for holder in self._holders.values()
            if holder.idle_since is not None and not holder.asked and holder.on_yield is not None
        ]
        if not idle:
            return None
        chosen = min(idle, key=lambda holder: holder.idle_since or 0)
        chosen.asked = True
        return chosen.on_yield

    def release(self, session_id: str) -> None:
        with self._lock:
            self._waiting.pop(session_id, None)
            self._holders.pop(session_id, None)
            granted: list[Callable[[], None]] = []
            while self._waiting and len(self._holders) < self._limit:
                next_id, callback = self._waiting.popitem(last=False)
                self._holders[next_id] = _Holder(None)
                granted.append(callback)
        for callback in granted:
            callback()

    def adopt(self, session_id: str, on_yield: Callable[[], None]) -> None:
        """A session granted a slot by `release` says how it can be asked to yield."""
        with self._lock:
            holder = self._holders.get(session_id)
            if holder is not None:
                holder.on_yield = on_yield

    def holders(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._holders)

    def waiting(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._waiting)
