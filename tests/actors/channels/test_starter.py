"""A channel whose server is down at start is taken in when it answers; one that cannot
start (a bad token) stops the host from starting with a clear error."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from actors.channels.base import ChannelError
from actors.channels.starter import ChannelStarter
from tests.fakes.channel import FakeChannel

pytestmark = pytest.mark.timeout(10)


class Flaky(FakeChannel):
    """Fails its first `failures` starts with `error`."""

    def __init__(self, failures: int, error: ChannelError) -> None:
        super().__init__("flaky")
        self.failures = failures
        self.error = error
        self.attempts = 0
        self.up = threading.Event()

    def start(self, on_event: Any) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        super().start(on_event)
        self.up.set()


def no_events(_event: Any) -> pykka.ThreadingFuture[Any]:
    return pykka.ThreadingFuture()


def test_a_channel_that_starts_runs_when_start_returns() -> None:
    channel = Flaky(0, ChannelError("down"))
    starter = ChannelStarter(channel, no_events)
    starter.start()
    assert starter.running and channel.up.is_set()
    starter.stop()
    assert [call.method for call in channel.calls] == ["start", "stop"]


def test_a_server_that_is_down_at_start_is_tried_again_until_it_answers() -> None:
    channel = Flaky(3, ChannelError("connection refused", retryable=True))
    starter = ChannelStarter(channel, no_events, first_retry_s=0.01)
    starter.start()  # returns at once: the host goes on without it
    assert channel.up.wait(5)
    assert channel.attempts == 4
    starter.stop()
    assert channel.calls_of("stop")


def test_a_failure_retrying_cannot_fix_is_raised_at_once() -> None:
    channel = Flaky(1, ChannelError("the token was refused", retryable=False))
    with pytest.raises(ChannelError, match="token"):
        ChannelStarter(channel, no_events).start()
    assert channel.attempts == 1


def test_stopping_while_the_server_is_still_down_ends_the_retries() -> None:
    channel = Flaky(10**6, ChannelError("down", retryable=True))
    starter = ChannelStarter(channel, no_events, first_retry_s=0.01)
    starter.start()
    starter.stop()
    attempts = channel.attempts
    assert not starter.running and channel.calls_of("stop") == []
    assert channel.attempts <= attempts + 1  # at most the one in flight
