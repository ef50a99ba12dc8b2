"""Waiting in the main thread for SIGTERM or SIGINT, reliably.

A process-directed signal may be delivered to any thread. CPython runs the Python handler in
the main thread only when that thread next runs bytecode, and a main thread blocked in
`Event.wait()` does not: with the signal taken by another thread, it would wait for ever
(seen: a host that ignored SIGTERM). So the C-level handler writes the signal's number to a
socket (`signal.set_wakeup_fd`), which wakes the main thread whichever thread took it.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# What `wake()` writes: no signal has the number 0, so it can never be mistaken for one.
_WAKE = 0


class StopSignals:
    """Install before starting any thread; `wait()` returns the first signal that arrives."""

    def __init__(self, signals: Iterable[signal.Signals] = STOP_SIGNALS) -> None:
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._signals = tuple(signals)
        for signum in self._signals:
            # A handler that does nothing: the default would end the process at once.
            signal.signal(signum, _ignore)

    def wait(self) -> signal.Signals:
        while True:
            data = self._reader.recv(1)
            if data and data[0] in self._signals:
                return signal.Signals(data[0])

    def wait_or_wake(self) -> signal.Signals | None:
        """Like `wait()`, but returns None once another thread called `wake()`."""
        while True:
            data = self._reader.recv(1)
            if data and data[0] == _WAKE:
                return None
            if data and data[0] in self._signals:
                return signal.Signals(data[0])

    def wake(self) -> None:
        """From any thread: end the main thread's `wait_or_wake()`, e.g. because a part of
        the program died and the process must exit. Through the same socket, so a wake-up
        given before the main thread waits is not lost."""
        # Closed: nobody is left to wake. Full: only thousands of unread signals would fill
        # it, and those already end the wait.
        with contextlib.suppress(OSError):
            self._writer.send(bytes([_WAKE]))

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()


def _ignore(_signum: int, _frame: object) -> None:
    return None
