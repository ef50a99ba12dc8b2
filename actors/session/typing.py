"""Showing that the assistant is at work: while the agent holds a claim on a chat's message,
the chat is told so again every few seconds (a platform shows it for about five)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from protocol.rows import Routing

# Telegram shows "typing" for 5 s, Discord for 10: said again just before the first ends.
TYPING_INTERVAL_S = 4.0


class TypingHints:
    def __init__(self, interval_s: float = TYPING_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._told: dict[Routing, float] = {}

    @property
    def interval_s(self) -> float:
        return self._interval_s

    def due(self, working: Iterable[Routing]) -> list[Routing]:
        """The chats of `working` not told within the interval (now counted as told); chats
        no longer worked on are forgotten, so a new turn there is shown at once."""
        now = self._clock()
        working = set(working)
        self._told = {routing: at for routing, at in self._told.items() if routing in working}
        due = [r for r in working if now - self._told.get(r, float("-inf")) >= self._interval_s]
        for routing in due:
            self._told[routing] = now
        return due
