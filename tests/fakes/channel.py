"""A channel adapter for tests: it records every call, can be told to fail, and lets a test
play the platform by emitting inbound events into the host."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from actors.channels.base import (
    CARD,
    EDIT,
    FILES,
    QUESTION,
    REACTION,
    TYPING,
    Card,
    ChannelError,
    InboundEvent,
    OnEvent,
)
from protocol.rows import Routing

ALL_CAPABILITIES = frozenset({FILES, EDIT, REACTION, QUESTION, CARD, TYPING})

# One clock for every recorded call, so tests can order calls across fakes (e.g. "the agent
# stopped before the channel did"). `next()` on a count is atomic in CPython.
_ticks = itertools.count(1)


def next_tick() -> int:
    return next(_ticks)


class Call(msgspec.Struct, frozen=True):
    """One call on the adapter: its name, its arguments, and when (by `next_tick`)."""

    method: str
    args: tuple[Any, ...]
    tick: int

    @property
    def target(self) -> Routing | None:
        first = self.args[0] if self.args else None
        return first if isinstance(first, Routing) else None


class FakeChannel:
    """Implements `actors.channels.base.ChannelAdapter`.

    Sends return platform ids "p-1", "p-2", ...; with `fail_with` set, every send records
    the attempt and raises that `ChannelError`; with `crash_with` set it raises that
    (any) exception instead, as a buggy adapter would.
    """

    def __init__(
        self,
        channel_type: str = "fake",
        capabilities: frozenset[str] = ALL_CAPABILITIES,
        *,
        fail_with: ChannelError | None = None,
        crash_with: Exception | None = None,
    ) -> None:
        self._channel_type = channel_type
        self._capabilities = frozenset(capabilities)
        self.fail_with = fail_with
        self.crash_with = crash_with
        # Called at the start of every send (a test makes the channel slow with it).
        self.before_send: Callable[..., None] | None = None
        self._changed = threading.Condition()
        self._calls: list[Call] = []
        self._ids = itertools.count(1)
        self._on_event: OnEvent | None = None
        self._started = threading.Event()

    # --- ChannelAdapter -------------------------------------------------------------------

    @property
    def channel_type(self) -> str:
        return self._channel_type

    @property
    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    def start(self, on_event: OnEvent) -> None:
        self._record("start")
        self._on_event = on_event
        self._started.set()

    def stop(self) -> None:
        self._record("stop")
        self._started.clear()

    def send_text(self, target: Routing, text: str, files: tuple[Path, ...] = ()) -> str | None:
        self._record("send_text", target, text, tuple(files))
        return self._platform_id()

    def edit_text(self, target: Routing, platform_message_id: str, text: str) -> None:
        self._record("edit_text", target, platform_message_id, text)
        self._maybe_fail()

    def add_reaction(self, target: Routing, platform_message_id: str, emoji: str) -> None:
        self._record("add_reaction", target, platform_message_id, emoji)
        self._maybe_fail()

    def ask_question(self, target: Routing, question_id: str, question: str, options: tuple[str, ...]) -> str | None:
        self._record("ask_question", target, question_id, question, tuple(options))
        return self._platform_id()

    def send_card(self, target: Routing, card: Card) -> str | None:
        self._record("send_card", target, card)
        return self._platform_id()

    def show_typing(self, target: Routing) -> None:
        self._record("show_typing", target)

    # --- for tests ------------------------------------------------------------------------

    def emit(self, event: InboundEvent, timeout: float = 10) -> Any:
        """Hand an event to the host as the platform would and wait until it is stored;
        returns the stored row, raises whatever the host refused it with."""
        return self.hand_over(event, timeout).get(timeout=timeout)

    def hand_over(self, event: InboundEvent, timeout: float = 10) -> Any:
        """Hand an event to the host without waiting; returns the future of its row."""
        if not self._started.wait(timeout):
            raise AssertionError(f"channel {self._channel_type!r} was never started")
        assert self._on_event is not None
        return self._on_event(event)

    @property
    def calls(self) -> list[Call]:
        with self._changed:
            return list(self._calls)

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def sends(self) -> list[Call]:
        """Everything that put something in front of a person."""
        return [call for call in self.calls if call.method not in {"start", "stop"}]

    def wait_for_calls(self, method: str, count: int = 1, timeout: float = 10) -> list[Call]:
        """Block until `count` calls of `method` were made (from any thread)."""
        with self._changed:
            done = self._changed.wait_for(
                lambda: sum(call.method == method for call in self._calls) >= count, timeout=timeout
            )
            found = [call for call in self._calls if call.method == method]
        if not done:
            raise AssertionError(f"expected {count} {method} call(s), got {len(found)}: {self.calls}")
        return found

    # --- internals ------------------------------------------------------------------------

    def _record(self, method: str, *args: Any) -> None:
        with self._changed:
            self._calls.append(Call(method, args, next_tick()))
            self._changed.notify_all()

    def _maybe_fail(self) -> None:
        if self.before_send is not None:
            self.before_send()
        if self.crash_with is not None:
            raise self.crash_with
        if self.fail_with is not None:
            raise self.fail_with

    def _platform_id(self) -> str:
        self._maybe_fail()
        return f"p-{next(self._ids)}"
