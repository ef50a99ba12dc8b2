"""SessionWatcher: file events under the sessions folder become OutboundChanged for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.messages import OutboundChanged
from actors.registry import SessionRegistry
from actors.watch import SessionWatcher
from protocol import outbound
from protocol.content import ChatOut
from protocol.db import read_transaction, write_transaction
from protocol.timeutil import now_ts
from tests.fakes.actors import RecorderActor, received, wait_for
from tests.fakes.session import make_session

pytestmark = pytest.mark.timeout(30)

SESSION = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


@pytest.fixture
def registry() -> SessionRegistry:
    return SessionRegistry()


@pytest.fixture
def watcher(root: Path, registry: SessionRegistry) -> Iterator[SessionWatcher]:
    watcher = SessionWatcher(root, registry)
    yield watcher
    watcher.stop()


@pytest.mark.parametrize("name", ["outbound.db", "outbound.db-journal", ".heartbeat"])
def test_the_watched_files_map_to_their_session(watcher: SessionWatcher, root: Path, name: str) -> None:
    assert watcher.session_of(root / "family" / SESSION / name) == SESSION


@pytest.mark.parametrize(
    "relative",
    [
        f"family/{SESSION}/inbound.db",  # the host's own writes
        f"family/{SESSION}/inbound.db-journal",
        f"family/{SESSION}/outbox/m1/outbound.db",  # too deep: a file the agent made
        f"family/{SESSION}/outbox",
        f"family/{SESSION}",
        "family/outbound.db",  # too shallow
        "family",
        "outbound.db",
        f"family/{SESSION}/outbound.db.tmp",
    ],
)
def test_other_paths_map_to_nothing(watcher: SessionWatcher, root: Path, relative: str) -> None:
    assert watcher.session_of(root / relative) is None


def test_paths_outside_the_root_map_to_nothing(watcher: SessionWatcher, tmp_path: Path) -> None:
    assert watcher.session_of(tmp_path / "elsewhere" / "family" / SESSION / "outbound.db") is None
    assert watcher.session_of(Path("/family") / SESSION / "outbound.db") is None


def test_start_creates_the_root(watcher: SessionWatcher, root: Path) -> None:
    watcher.start()

    assert root.is_dir()


def test_a_write_to_outbound_db_reaches_the_sessions_actor(
    watcher: SessionWatcher, root: Path, registry: SessionRegistry
) -> None:
    layout = make_session(root / "family" / SESSION)
    other = make_session(root / "family" / "another-session")
    session_actor = RecorderActor.start()
    bystander = RecorderActor.start()
    registry.add(SESSION, session_actor)
    registry.add("another-session", bystander)
    watcher.start()

    with write_transaction(layout.outbound_db) as conn:
        outbound.insert_message(
            conn, message_id="m1", content=ChatOut(text="hi"), timestamp=now_ts(), highest_inbound_seq=0
        )

    wait_for(session_actor, OutboundChanged)
    # The other session's folder saw no change, so its actor heard nothing. (Its files were
    # made before the watch began.)
    assert other.outbound_db.exists()
    assert received(bystander) == []


def test_a_heartbeat_reaches_the_sessions_actor(watcher: SessionWatcher, root: Path, registry: SessionRegistry) -> None:
    layout = make_session(root / "family" / SESSION)
    session_actor = RecorderActor.start()
    registry.add(SESSION, session_actor)
    watcher.start()

    layout.heartbeat.touch()

    wait_for(session_actor, OutboundChanged)


def test_an_event_for_a_session_without_an_actor_is_dropped(
    watcher: SessionWatcher, root: Path, registry: SessionRegistry
) -> None:
    silent = make_session(root / "family" / "no-actor-here")
    layout = make_session(root / "family" / SESSION)
    session_actor = RecorderActor.start()
    registry.add(SESSION, session_actor)
    watcher.start()

    silent.heartbeat.touch()  # nobody to tell: must not break the observer
    layout.heartbeat.touch()

    wait_for(session_actor, OutboundChanged)


def test_reading_outbound_db_wakes_nobody(watcher: SessionWatcher, root: Path, registry: SessionRegistry) -> None:
    """The SessionActor reads outbound.db on every OutboundChanged; if a read were an event,
    it would wake itself for ever. (SQLite readers open the file read-write, so closing one
    is an IN_CLOSE_WRITE, which watchdog reports as `closed`.)"""
    reader_layout = make_session(root / "family" / SESSION)
    marker_layout = make_session(root / "family" / "marker")
    reader = RecorderActor.start()
    marker = RecorderActor.start()
    registry.add(SESSION, reader)
    registry.add("marker", marker)
    watcher.start()

    for _ in range(3):
        with read_transaction(reader_layout.outbound_db) as conn:
            outbound.messages_after(conn, 0)
    marker_layout.heartbeat.touch()

    # watchdog hands events over in order: once the marker's has arrived, any the reads made
    # would have been told to the reader already.
    wait_for(marker, OutboundChanged)
    assert received(reader) == []


def test_stop_is_idempotent(watcher: SessionWatcher) -> None:
    watcher.start()
    watcher.stop()
    watcher.stop()
