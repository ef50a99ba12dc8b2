"""When a chat is told again that the agent is at work."""

from __future__ import annotations

from actors.session.typing import TypingHints
from protocol.rows import Routing

A = Routing("chat-a", "telegram")
B = Routing("chat-b", "telegram", "topic-1")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_chat_is_told_at_once_then_once_per_interval() -> None:
    clock = Clock()
    hints = TypingHints(interval_s=4, clock=clock)
    assert hints.due([A]) == [A]
    clock.now += 3.9
    assert hints.due([A]) == []
    clock.now += 0.1
    assert hints.due([A]) == [A]


def test_each_chat_has_its_own_interval_and_a_finished_one_is_forgotten() -> None:
    clock = Clock()
    hints = TypingHints(interval_s=4, clock=clock)
    assert hints.due([A]) == [A]
    clock.now += 1
    assert hints.due([A, B]) == [B]
    assert hints.due([B]) == []  # A's turn ended
    assert hints.due([A, B]) == [A]  # a new turn in A is shown at once
