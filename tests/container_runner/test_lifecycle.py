"""Lifecycle and RunnerActor: an actor that dies says so; a stop asked for is no death.
StopSignals.wake: another thread can end the main thread's wait."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from container_runner.lifecycle import Lifecycle, RunnerActor
from protocol.signals import StopSignals

pytestmark = pytest.mark.timeout(30)


class _BoomError(Exception):
    pass


class _Fragile(RunnerActor):
    """Raises on "boom"; with `fail_start`, fails before its first message."""

    def __init__(self, lifecycle: Lifecycle | None, fail_start: bool = False) -> None:
        super().__init__(lifecycle)
        self._fail_start = fail_start

    def start_up(self) -> None:
        if self._fail_start:
            raise _BoomError("cannot start")

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise _BoomError("broken")
        return message


class _Watch:
    """A Lifecycle whose `on_lost` sets an event the test waits on."""

    def __init__(self) -> None:
        self.woken = threading.Event()
        self.lifecycle = Lifecycle(on_lost=self.woken.set)

    def wait(self) -> str | None:
        assert self.woken.wait(10), "no actor was reported lost"
        return self.lifecycle.lost_actor


def test_an_actor_failing_on_a_told_message_is_reported() -> None:
    watch = _Watch()
    ref = _Fragile.start(watch.lifecycle)
    assert ref.ask("ping") == "ping"
    ref.tell("boom")
    assert watch.wait() == "_Fragile"


def test_an_actor_failing_to_start_is_reported() -> None:
    watch = _Watch()
    _Fragile.start(watch.lifecycle, fail_start=True)
    assert watch.wait() == "_Fragile"


def test_a_failed_ask_is_the_askers_business_not_a_death() -> None:
    watch = _Watch()
    ref = _Fragile.start(watch.lifecycle)
    with pytest.raises(_BoomError):
        ref.ask("boom")
    assert ref.ask("still here") == "still here"
    assert watch.lifecycle.lost_actor is None


def test_a_stop_after_the_drain_is_no_death_and_one_before_it_is() -> None:
    watch = _Watch()
    ref = _Fragile.start(watch.lifecycle)
    ref.stop()  # nobody drained: only a broken runner loses an actor like this
    assert watch.wait() == "_Fragile"

    calm = Lifecycle()
    ref = _Fragile.start(calm)
    calm.drain()
    ref.stop()
    assert calm.lost_actor is None


def test_only_the_first_death_wakes() -> None:
    wakes: list[None] = []
    lifecycle = Lifecycle(on_lost=lambda: wakes.append(None))
    lifecycle.lost("InboxActor", "x")
    lifecycle.lost("AgentActor", "y")
    assert wakes == [None] and lifecycle.lost_actor == "InboxActor"


def test_abandon_implies_drain() -> None:
    lifecycle = Lifecycle()
    assert not lifecycle.draining and not lifecycle.abandoned
    lifecycle.abandon()
    assert lifecycle.draining and lifecycle.abandoned


@pytest.fixture
def usr1_signals() -> Iterator[StopSignals]:
    """StopSignals for SIGUSR1 alone, in this process; the handler is put back after."""
    previous = signal.getsignal(signal.SIGUSR1)
    signals = StopSignals((signal.SIGUSR1,))
    try:
        yield signals
    finally:
        signals.close()
        signal.signal(signal.SIGUSR1, previous)


def test_a_wake_from_another_thread_ends_wait_or_wake(usr1_signals: StopSignals) -> None:
    thread = threading.Thread(target=usr1_signals.wake)
    thread.start()
    thread.join()
    assert usr1_signals.wait_or_wake() is None
    os.kill(os.getpid(), signal.SIGUSR1)
    assert usr1_signals.wait_or_wake() is signal.SIGUSR1


def test_wait_ignores_a_wake(usr1_signals: StopSignals) -> None:
    usr1_signals.wake()
    os.kill(os.getpid(), signal.SIGUSR1)
    assert usr1_signals.wait() is signal.SIGUSR1
