"""HeartbeatActor: the container's sign of life is the mtime of `.heartbeat`, never a DB
write (DESIGN invariant 4), touched on a timer and whenever the agent does something."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import pykka

from container_runner.messages import Beat
from protocol.timers import ActorTicker

log = logging.getLogger(__name__)


class _Tick(msgspec.Struct, frozen=True):
    pass


class HeartbeatActor(pykka.ThreadingActor):
    def __init__(self, path: Path, interval_s: float) -> None:
        super().__init__()
        self._path = path
        self._interval_s = interval_s
        self._ticker: ActorTicker | None = None
        self.beats = 0

    def on_start(self) -> None:
        self._touch()
        self._ticker = ActorTicker(self.actor_ref, _Tick(), self._interval_s, name="heartbeat")
        self._ticker.start()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Beat | _Tick):
            self._touch()
            return self.beats
        log.warning("heartbeat: ignoring unexpected message %r", message)
        return None

    def _touch(self) -> None:
        try:
            self._path.touch()  # updates the mtime of an existing file too
        except OSError as exc:
            # The session folder may be going away while we stop; a missed beat is not fatal.
            log.warning("heartbeat: cannot touch %s: %s", self._path, exc)
            return
        self.beats += 1
