"""A one-shot timer that tells an actor something later.

Shared by both sides because both meet deadlines with timers rather than polls
(docs/ARCHITECTURE.md, invariant 7): `process_after`, heartbeats, safety sweeps, retry backoff.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import pykka


class _Tellable(Protocol):
    def tell(self, message: Any) -> None: ...


class ActorTimer:
    """At most one pending tell at a time; `schedule` replaces the pending one."""

    def __init__(self, target: _Tellable, message: Any, name: str = "actor-timer") -> None:
        self._target = target
        self._message = message
        self._name = name
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def schedule(self, delay_s: float) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(max(0.0, delay_s), self._fire)
            self._timer.name = self._name
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    @property
    def pending(self) -> bool:
        """A tell is scheduled and has not fired yet."""
        with self._lock:
            return self._timer is not None and self._timer.is_alive()

    def _fire(self) -> None:
        try:
            self._target.tell(self._message)
        except pykka.ActorDeadError:
            return  # the actor stopped first; nobody is left to tell


class ActorTicker:
    """Tells an actor something every `interval_s` until cancelled."""

    def __init__(self, target: _Tellable, message: Any, interval_s: float, name: str = "actor-ticker") -> None:
        self._target = target
        self._message = message
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self._target.tell(self._message)
            except pykka.ActorDeadError:
                return
