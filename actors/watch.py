"""File events for session folders: one watchdog observer, many subscribers.

The host runs one `FolderWatcher` over the whole sessions folder (one inotify instance, however
many sessions) and each SessionActor subscribes its own folder; an embedded SessionActor with
no watcher handed in runs one over its folder alone. A subscriber is called, on the
observer's thread, with each changed path directly inside its folder; it only tells its actor.
Handling an event twice is harmless, and the sweep recovers any event that never came.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from watchdog.observers.api import BaseObserver

from protocol.filewatch import watch_folder

log = logging.getLogger("hutch.watch")

OnChange = Callable[[Path], None]


class Subscriptions(Protocol):
    """What a SessionActor needs of a watcher."""

    def subscribe(self, folder: Path, on_change: OnChange) -> None: ...

    def unsubscribe(self, folder: Path) -> None: ...


def _key(folder: Path) -> str:
    # Events carry paths spelled as the watched root was; abspath makes both ends agree.
    return os.path.abspath(folder)


class FolderWatcher:
    def __init__(self, root: Path, *, recursive: bool = True) -> None:
        self._root = root
        self._recursive = recursive
        self._lock = threading.Lock()
        self._subscribers: dict[str, OnChange] = {}
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        # Entries only (created, deleted, renamed): a commit to outbound.db ends by deleting
        # its journal, and the heartbeat's mtime is read when liveness is checked; page
        # writes, opens and touches would only wake this thread for nothing.
        self._observer = watch_folder(self._root, self._on_path, recursive=self._recursive, entries_only=True)
        log.debug("watching %s", self._root)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def subscribe(self, folder: Path, on_change: OnChange) -> None:
        with self._lock:
            self._subscribers[_key(folder)] = on_change

    def unsubscribe(self, folder: Path) -> None:
        with self._lock:
            self._subscribers.pop(_key(folder), None)

    def _on_path(self, path: Path) -> None:
        with self._lock:
            on_change = self._subscribers.get(_key(path.parent))
        if on_change is not None:
            on_change(path)
