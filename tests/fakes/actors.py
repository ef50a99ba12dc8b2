"""Fake collaborator actors that record what they receive.

Tests synchronise on futures: `wait_for` hands the recorder a future that it resolves once
a matching message has arrived, so no test ever sleeps to let an actor catch up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pykka


class _Expect(msgspec.Struct, frozen=True):
    predicate: Any
    future: Any
    count: int


class _Received(msgspec.Struct, frozen=True):
    pass


class RecorderActor(pykka.ThreadingActor):
    """Records every message; answers asks with `reply(message)` (None by default)."""

    def __init__(self, reply: Callable[[Any], Any] | None = None) -> None:
        super().__init__()
        self._reply = reply
        self.received: list[Any] = []
        self._expectations: list[_Expect] = []

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Expect):
            self._expectations.append(message)
            self._settle()
            return None
        if isinstance(message, _Received):
            return list(self.received)
        self.received.append(message)
        self._settle()
        return self._reply(message) if self._reply else None

    def _settle(self) -> None:
        for expectation in list(self._expectations):
            matches = [message for message in self.received if expectation.predicate(message)]
            if len(matches) >= expectation.count:
                expectation.future.set(matches)
                self._expectations.remove(expectation)


def wait_for(
    ref: pykka.ActorRef[Any], predicate: Callable[[Any], bool] | type, count: int = 1, timeout: float = 10
) -> list[Any]:
    """Block until `ref` (a RecorderActor) has received `count` matching messages."""
    test = (lambda message: isinstance(message, predicate)) if isinstance(predicate, type) else predicate
    future: pykka.ThreadingFuture[list[Any]] = pykka.ThreadingFuture()
    ref.tell(_Expect(test, future, count))
    matches: list[Any] = future.get(timeout=timeout)
    return matches


def received(ref: pykka.ActorRef[Any]) -> list[Any]:
    result: list[Any] = ref.ask(_Received(), block=True)
    return result
