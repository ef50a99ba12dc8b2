from __future__ import annotations

import os
from pathlib import Path

from container_runner.heartbeat import HeartbeatActor
from container_runner.messages import Beat
from tests.fakes.session import FolderEvents


def test_touches_on_start_and_on_beat(tmp_path: Path) -> None:
    path = tmp_path / ".heartbeat"
    actor = HeartbeatActor.start(path, 3600)
    assert actor.ask(Beat(), block=True) >= 2
    assert path.exists()
    os.utime(path, (1_000_000, 1_000_000))
    actor.ask(Beat(), block=True)
    assert path.stat().st_mtime > 1_000_000


def test_ticks_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / ".heartbeat"
    actor = HeartbeatActor.start(path, 0.05)
    actor.ask(Beat(), block=True)
    events = FolderEvents(tmp_path)
    try:
        os.utime(path, (1_000_000, 1_000_000))
        # Woken by the file events of the touches themselves.
        assert events.wait_until(lambda: path.stat().st_mtime > 1_000_000, timeout=5)
    finally:
        events.close()


def test_missing_folder_is_not_fatal(tmp_path: Path) -> None:
    actor = HeartbeatActor.start(tmp_path / "gone" / ".heartbeat", 3600)
    assert actor.ask(Beat(), block=True) == 0
