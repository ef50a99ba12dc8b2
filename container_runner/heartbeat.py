"""HeartbeatActor: the container's sign of life is the mtime of `.heartbeat`, never a DB
write (docs/ARCHITECTURE.md, invariant 4), touched on a timer and whenever the agent does something."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from container_runner.lifecycle import Lifecycle, RunnerActor
from container_runner.messages import Beat
from protocol.timers import ActorTicker

log = logging.getLogger(__name__)

# Activity touches closer together than this tell the host nothing new (its stale threshold
# is tens of seconds), yet each one is a file event for every watcher of the session folder.
MIN_BEAT_SPACING_S = 1.0


class _Tick(msgspec.Struct, frozen=True):
    pass


class HeartbeatActor(RunnerActor):
    def __init__(
        self,
        path: Path,
        interval_s: float,
        min_beat_spacing_s: float = MIN_BEAT_SPACING_S,
        clock: Callable[[], float] = time.monotonic,
        *,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        super().__init__(lifecycle)
        self._path = path
        self._interval_s = interval_s
        self._min_beat_spacing_s = min_beat_spacing_s
        self._clock = clock
        self._touched_at = -math.inf
        self._ticker: ActorTicker | None = None
        self.beats = 0

    def start_up(self) -> None:
        self._touch()
        self._ticker = ActorTicker(self.actor_ref, _Tick(), self._interval_s, name="heartbeat")
        self._ticker.start()

    def shut_down(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()

    def on_receive(self, message: Any) -> Any:
        match message:
            case _Tick():
                self._touch()
            case Beat():
                if self._clock() - self._touched_at >= self._min_beat_spacing_s:
                    self._touch()
            case _:
                return super().on_receive(message)
        return self.beats

    def _touch(self) -> None:
        try:
            self._path.touch()  # updates the mtime of an existing file too
        except OSError as exc:
            # The session folder may be going away while we stop; a missed beat is not fatal.
            log.warning("heartbeat: cannot touch %s: %s", self._path, exc)
            return
        self._touched_at = self._clock()
        self.beats += 1
