"""ActorTimer: one pending tell at a time, and whether one is pending."""

from __future__ import annotations

import pytest

from protocol.timers import ActorTimer
from tests.fakes.actors import RecorderActor, wait_for

pytestmark = pytest.mark.timeout(30)


def test_a_timer_is_pending_until_cancelled_and_fires_its_message() -> None:
    recorder = RecorderActor.start()
    try:
        timer = ActorTimer(recorder, "ping")
        assert not timer.pending
        timer.schedule(3600)
        assert timer.pending
        timer.cancel()
        assert not timer.pending

        timer.schedule(0)
        assert wait_for(recorder, lambda message: message == "ping") == ["ping"]
    finally:
        recorder.stop()
