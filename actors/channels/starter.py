"""Starting a channel whose server may be down: the host must come up anyway and take the
channel in when its server answers (docs/ARCHITECTURE.md, "Channels").

`ChannelStarter.start()` tries once, in the caller's thread: a channel that starts is
running when it returns. A retryable failure (the server unreachable, a 5xx) is logged and
tried again in a thread of its own, backing off from 1 s to a minute, until it starts or
the host stops; a failure that retrying cannot fix (a bad token) is raised at once, so the
person who set the token hears about it when the host starts, not never.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from actors.channels.base import ChannelAdapter, ChannelError, OnEvent

log = logging.getLogger("hutch.channels")

_FIRST_RETRY_S: Final = 1.0
_MAX_RETRY_S: Final = 60.0


class ChannelStarter:
    def __init__(self, channel: ChannelAdapter, on_event: OnEvent, first_retry_s: float = _FIRST_RETRY_S) -> None:
        self._channel = channel
        self._on_event = on_event
        self._first_retry_s = first_retry_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        with self._lock:
            return self._running

    def start(self) -> None:
        """Start now, or later in the background if the server is down. ChannelError for a
        failure that retrying cannot fix."""
        try:
            self._channel.start(self._on_event)
        except ChannelError as exc:
            if not exc.retryable:
                raise
            log.warning("channel %s did not start (%s); trying again in the background", self._name, exc)
            self._thread = threading.Thread(target=self._retry, name=f"start-{self._name}", daemon=True)
            self._thread.start()
            return
        self._started()

    def _retry(self) -> None:
        delay = self._first_retry_s
        while not self._stopping.wait(delay):
            try:
                self._channel.start(self._on_event)
            except ChannelError as exc:
                if not exc.retryable:
                    log.error("channel %s cannot start: %s; it stays off until the host restarts", self._name, exc)
                    return
                delay = min(delay * 2, _MAX_RETRY_S)
                log.warning("channel %s still not started (%s); next try in %.0f s", self._name, exc, delay)
                continue
            with self._lock:
                stopped_meanwhile = self._stopping.is_set()
                self._running = not stopped_meanwhile
            if stopped_meanwhile:  # the host stopped while this start was in flight
                self._channel.stop()
                return
            log.info("channel %s is listening", self._name)
            return

    def _started(self) -> None:
        with self._lock:
            self._running = True
        log.info("channel %s is listening", self._name)

    def stop(self) -> None:
        """Stop retrying, and the channel if it runs."""
        self._stopping.set()
        with self._lock:  # a start in flight sees `_stopping` when it ends and stops itself
            running, self._running = self._running, False
        if self._thread is not None:
            self._thread.join(timeout=5)
        if running:
            self._channel.stop()

    @property
    def _name(self) -> str:
        return self._channel.channel_type
