"""The runner's life as its actors see it: stopping (drain, then abandon) and dying.

A runner that lost one of its actors must not go on heartbeating: the host would see a live
agent while messages stay pending. So every actor reports its own death here, and the main
thread, woken by `on_lost`, exits non-zero for the host to start the agent again.

A stop drains first: no new batch starts, the turn in flight may finish within the grace
period. Past it the turn is abandoned: whatever it still does is left unwritten, so its rows
stay claimed (`processing`) and the next start runs them again; a person never sees an error
that only the shutdown caused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, final

import pykka

log = logging.getLogger("container_runner")


class Lifecycle:
    """Shared by the RunnerSystem and its actors; every method is safe from any thread."""

    def __init__(self, on_lost: Callable[[], None] | None = None) -> None:
        self._on_lost = on_lost
        self._draining = threading.Event()
        self._abandoned = threading.Event()
        self._lock = threading.Lock()
        self._lost: str | None = None

    def drain(self) -> None:
        """The runner is stopping: no new batch, no follow-ups, and actors stopping is expected."""
        self._draining.set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def abandon(self) -> None:
        """The grace period is over: a turn still running must write nothing more."""
        self._draining.set()
        self._abandoned.set()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    def lost(self, actor: str, reason: str) -> None:
        """An actor died; the first death wakes the main thread."""
        log.error("runner: %s died: %s", actor, reason)
        with self._lock:
            first = self._lost is None
            if first:
                self._lost = actor
        if first and self._on_lost is not None:
            self._on_lost()

    @property
    def lost_actor(self) -> str | None:
        """The first actor that died, if one did."""
        with self._lock:
            return self._lost


class RunnerActor(pykka.ThreadingActor):
    """Base of the runner's actors: one that fails to start, fails on a told message or
    stops while the runner is not stopping reports it on its Lifecycle.

    pykka calls `on_failure` only for a told message, and an `on_start` that raises only
    stops the actor; so `on_start` and `on_stop` are final here and subclasses put their
    work in `start_up` and `shut_down`. Without a Lifecycle (an actor used on its own, as in
    unit tests) nothing is reported."""

    def __init__(self, lifecycle: Lifecycle | None = None) -> None:
        super().__init__()
        self._lifecycle = lifecycle

    @property
    def draining(self) -> bool:
        return self._lifecycle is not None and self._lifecycle.draining

    @property
    def abandoned(self) -> bool:
        return self._lifecycle is not None and self._lifecycle.abandoned

    def start_up(self) -> None:
        """What the actor does in its own thread before its first message."""

    def shut_down(self) -> None:
        """What the actor does in its own thread when asked to stop."""

    @final
    def on_start(self) -> None:
        try:
            self.start_up()
        except Exception as exc:
            self._report(f"failed to start: {exc!r}")
            raise

    @final
    def on_stop(self) -> None:
        try:
            self.shut_down()
        finally:
            # Only the RunnerSystem stops us, after draining; anything else (pykka stops
            # every actor when one thread meets a BaseException) leaves the runner broken.
            if self._lifecycle is not None and not self._lifecycle.draining:
                self._report("stopped while the runner was running")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._report(repr(exception_value))

    def _report(self, reason: str) -> None:
        if self._lifecycle is not None:
            self._lifecycle.lost(type(self).__name__, reason)


def tell_quietly(ref: pykka.ActorRef[Any], message: object) -> None:
    """A tell whose loss does not matter (a heartbeat touch, an idle notice): to an actor
    already stopped it is dropped rather than failing the caller's turn."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        log.debug("runner: %s is gone; dropped %r", ref, message)
