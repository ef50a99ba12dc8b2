"""FolderWatcher: one observer; each subscribed folder hears about changes directly inside it."""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.watch import FolderWatcher
from protocol import outbound
from protocol.content import ChatOut
from protocol.db import read_transaction, write_transaction
from protocol.timeutil import now_ts
from tests.fakes.session import make_session

pytestmark = pytest.mark.timeout(30)

WAIT = 10.0


class Heard:
    """A subscriber: the paths it was called with, in order."""

    def __init__(self) -> None:
        self.paths: queue.Queue[Path] = queue.Queue()

    def __call__(self, path: Path) -> None:
        self.paths.put(path)

    def next_named(self, name: str) -> Path:
        while True:
            path = self.paths.get(timeout=WAIT)
            if path.name == name:
                return path

    def all(self) -> list[Path]:
        found = []
        while not self.paths.empty():
            found.append(self.paths.get_nowait())
        return found


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def watcher(root: Path) -> Iterator[FolderWatcher]:
    watcher = FolderWatcher(root)
    yield watcher
    watcher.stop()


def test_start_creates_the_root(watcher: FolderWatcher, root: Path) -> None:
    watcher.start()

    assert root.is_dir()


def test_a_write_reaches_the_folder_it_was_in_and_no_other(watcher: FolderWatcher, root: Path) -> None:
    layout = make_session(root / "family" / "one")
    other = make_session(root / "family" / "two")
    mine, theirs = Heard(), Heard()
    watcher.subscribe(layout.out, mine)
    watcher.subscribe(other.out, theirs)
    watcher.start()

    with write_transaction(layout.outbound_db) as conn:
        outbound.insert_message(
            conn, message_id="m1", content=ChatOut(text="hi"), timestamp=now_ts(), highest_inbound_seq=0
        )
    other.heartbeat.touch()  # a marker: events come in order, so mine are all in once it is

    assert theirs.next_named(".heartbeat").parent == other.out
    heard = mine.all()
    assert "outbound.db-journal" in {path.name for path in heard}  # a commit: its journal came and went
    assert {path.parent for path in heard} == {layout.out}


def test_a_deeper_path_is_not_the_folders_business(watcher: FolderWatcher, root: Path) -> None:
    layout = make_session(root / "family" / "one")
    heard = Heard()
    watcher.subscribe(layout.out, heard)
    watcher.start()

    (layout.out / "outbox" / "m1").mkdir(parents=True)
    (layout.out / "outbox" / "m1" / "outbound.db").write_text("a file the agent made")
    layout.heartbeat.touch()

    heard.next_named(".heartbeat")
    assert all(path.parent == layout.out for path in heard.all())


def test_after_unsubscribing_nothing_is_heard_and_an_unknown_folder_breaks_nothing(
    watcher: FolderWatcher, root: Path
) -> None:
    gone = make_session(root / "family" / "gone")
    kept = make_session(root / "family" / "kept")
    heard_gone, heard_kept = Heard(), Heard()
    watcher.subscribe(gone.out, heard_gone)
    watcher.subscribe(kept.out, heard_kept)
    watcher.start()
    watcher.unsubscribe(gone.out)

    gone.heartbeat.touch()
    kept.heartbeat.touch()

    heard_kept.next_named(".heartbeat")
    assert heard_gone.all() == []


def test_a_folder_spelled_relative_is_the_same_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    watcher = FolderWatcher(Path("sessions"))
    layout = make_session(tmp_path / "sessions" / "family" / "one")
    heard = Heard()
    watcher.subscribe(Path(os.path.relpath(layout.out, tmp_path)), heard)
    watcher.start()
    try:
        layout.heartbeat.touch()
        heard.next_named(".heartbeat")
    finally:
        watcher.stop()


def test_reading_outbound_db_wakes_nobody(watcher: FolderWatcher, root: Path) -> None:
    """A SessionActor reads outbound.db on every event; if a read were an event, it would wake
    itself for ever. (SQLite readers open the file read-write, so closing one is an
    IN_CLOSE_WRITE, which watchdog reports as `closed`.)"""
    reader_layout = make_session(root / "family" / "reader")
    marker_layout = make_session(root / "family" / "marker")
    reader, marker = Heard(), Heard()
    watcher.subscribe(reader_layout.out, reader)
    watcher.subscribe(marker_layout.out, marker)
    watcher.start()

    for _ in range(3):
        with read_transaction(reader_layout.outbound_db) as conn:
            outbound.messages_after(conn, 0)
    marker_layout.heartbeat.touch()

    marker.next_named(".heartbeat")  # events come in order: the reads' would be in by now
    assert reader.all() == []


def test_stop_is_idempotent(watcher: FolderWatcher) -> None:
    watcher.start()
    watcher.stop()
    watcher.stop()
