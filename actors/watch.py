"""One watchdog observer over the whole sessions folder. An event on a session's
outbound.db, its journal or .heartbeat becomes `OutboundChanged` for that SessionActor;
handling one twice is harmless, and the sweep recovers any event that never came."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from watchdog.observers.api import BaseObserver

from actors.messages import OutboundChanged
from actors.registry import SessionRegistry
from protocol.filewatch import watch_folder
from protocol.layout import HEARTBEAT, OUTBOUND_DB

log = logging.getLogger("hutch.watch")

_WATCHED = {OUTBOUND_DB, f"{OUTBOUND_DB}-journal", HEARTBEAT}


class SessionWatcher:
    """`sessions/<agent group>/<session id>/<file>`: the session id is the second part."""

    def __init__(self, sessions_root: Path, registry: SessionRegistry) -> None:
        self._root = sessions_root
        self._registry = registry
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        self._observer = watch_folder(self._root, self._on_path, recursive=True)
        log.info("watching %s", self._root)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def session_of(self, path: Path) -> str | None:
        try:
            parts = path.relative_to(self._root).parts
        except ValueError:
            return None
        if len(parts) != 3 or parts[2] not in _WATCHED:
            return None
        return parts[1]

    def _on_path(self, path: Path) -> None:
        session_id = self.session_of(path)
        if session_id is not None:
            self._registry.tell(session_id, OutboundChanged(time.monotonic()))
