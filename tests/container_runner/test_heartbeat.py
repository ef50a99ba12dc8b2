from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from container_runner.heartbeat import HeartbeatActor
from container_runner.messages import Beat
from tests.fakes.session import FolderEvents


def test_touches_on_start_and_on_beat(tmp_path: Path) -> None:
    path = tmp_path / ".heartbeat"
    actor = HeartbeatActor.start(path, 3600, min_beat_spacing_s=0)
    assert actor.ask(Beat(), block=True) >= 2
    assert path.exists()
    os.utime(path, (1_000_000, 1_000_000))
    actor.ask(Beat(), block=True)
    assert path.stat().st_mtime > 1_000_000


def test_ticks_on_its_own_whatever_the_beat_spacing(tmp_path: Path) -> None:
    path = tmp_path / ".heartbeat"
    actor = HeartbeatActor.start(path, 0.05, min_beat_spacing_s=3600)
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


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_beats_closer_than_the_spacing_touch_once(tmp_path: Path) -> None:
    path = tmp_path / ".heartbeat"
    clock = _Clock()
    actor = HeartbeatActor.start(path, 3600, min_beat_spacing_s=1.0, clock=clock)
    assert actor.ask(Beat(), block=True) == 1  # the touch at start is less than 1 s old
    clock.now += 0.99
    assert actor.ask(Beat(), block=True) == 1
    clock.now += 0.01
    assert actor.ask(Beat(), block=True) == 2
    assert actor.ask(Beat(), block=True) == 2


def test_an_unexpected_message_is_logged_by_pykka_and_touches_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    actor = HeartbeatActor.start(tmp_path / ".heartbeat", 3600, min_beat_spacing_s=0)
    with caplog.at_level(logging.WARNING, logger="pykka"):
        assert actor.ask("nonsense", block=True) is None
    assert "nonsense" in caplog.text
    assert actor.ask(Beat(), block=True) == 2
