"""One channel future for a message that goes to several sessions.

A channel waits on one `Stored` per message; a message that several agents take is
committed by several sessions. `split` gives each session a future of its own and resolves
the channel's once all of them are: with the first one's row, or with the first failure
(so the sender hears of anything that was not kept)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pykka

from actors.channels.base import Stored


class _Joined:
    def __init__(self, outer: Stored, count: int) -> None:
        self._outer = outer
        self._left = count
        self._first: Any = None
        self._failed = False
        self._lock = threading.Lock()

    def done(self, index: int, value: Any = None, exc_info: Any = None) -> None:
        with self._lock:
            if self._failed:
                return
            if exc_info is not None:
                self._failed = True
            else:
                if index == 0:
                    self._first = value
                self._left -= 1
                if self._left > 0:
                    return
        if exc_info is not None:
            self._outer.set_exception(exc_info)
        else:
            self._outer.set(self._first)


class _Part(pykka.ThreadingFuture[Any]):
    def __init__(self, joined: _Joined, index: int) -> None:
        super().__init__()
        self._joined = joined
        self._index = index

    def set(self, value: Any | None = None) -> None:
        super().set(value)
        self._joined.done(self._index, value=value)

    def set_exception(self, exc_info: Any = None) -> None:
        info = exc_info or sys.exc_info()  # pykka's own default
        super().set_exception(info)
        self._joined.done(self._index, exc_info=info)


def split(outer: Stored, count: int) -> list[Stored]:
    """`count` futures (at least one) that together resolve `outer`."""
    joined = _Joined(outer, count)
    return [_Part(joined, index) for index in range(count)]
