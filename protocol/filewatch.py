"""watchdog glue shared by both sides: file events under a folder become one callback with
the changed path. Handlers downstream are idempotent, so duplicates and bursts are harmless;
a lost event is recovered by each side's slow safety timer."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

# watchdog warns when a folder created under a recursive watch is registered twice; the
# second registration replaces the first, which is what we want.
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)


# Events that change nothing. `closed` (IN_CLOSE_WRITE) is one of them despite its name: a
# SQLite reader opens the file read-write, so every read ends with one, our own included;
# passing it on would wake the reader to read again, without end. A real write always shows
# as `modified`, `created` or `deleted` as well.
_NO_CHANGE = frozenset({"opened", "closed", "closed_no_write"})

# Entries appearing, going or renamed. A reader of a DELETE-mode SQLite file needs no more:
# every commit ends by deleting its journal. Asking the kernel for these alone spares the
# watcher's thread every page write and every open and close of the folder's files.
_ENTRY_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]


class _Forward(FileSystemEventHandler):
    def __init__(self, callback: Callable[[Path], None]) -> None:
        self._callback = callback

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _NO_CHANGE:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = raw.decode() if isinstance(raw, bytes) else raw
                self._callback(Path(path))


def watch_folder(
    folder: Path, callback: Callable[[Path], None], *, recursive: bool, entries_only: bool = False
) -> BaseObserver:
    """Start an observer calling `callback(path)` for every change under `folder`, or, with
    `entries_only`, for every file or folder created, deleted or renamed there."""
    observer = Observer()
    event_filter = _ENTRY_EVENTS if entries_only else None
    observer.schedule(_Forward(callback), str(folder), recursive=recursive, event_filter=event_filter)
    observer.daemon = True
    observer.start()
    return observer


def commit_may_have_finished(path: Path, db_name: str) -> bool:
    """Whether an entry event on `path` can mean that a commit to the DB `db_name` beside it
    has finished.

    In DELETE journal mode a write transaction commits by deleting its journal. While the
    journal is there a read sees nothing new, and its shared lock only makes the writer's
    commit wait (SQLite's busy handler sleeps a millisecond or more). Every write ends with
    the event of its journal's deletion, so the events of a write in progress can be skipped;
    an event on the file itself with no journal beside it means it was created or replaced."""
    journal = f"{db_name}-journal"
    return path.name in {db_name, journal} and not path.with_name(journal).exists()
