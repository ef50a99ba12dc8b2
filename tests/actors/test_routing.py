"""Which wiring gets an inbound chat, and whether it starts a turn."""

from __future__ import annotations

import pytest

from actors.channels.base import InboundChat
from actors.routing import choose_wiring, rule_matches
from actors.store.messaging_group_agents import SessionMode, Wiring

pytestmark = pytest.mark.timeout(30)


def chat(text: str = "hello", *, mentioned: bool = False) -> InboundChat:
    return InboundChat(channel_type="cli", platform_id="local", text=text, sender="ann", mentions_assistant=mentioned)


def wiring(name: str, rule: str = "always", priority: int = 0, mode: SessionMode = "shared") -> Wiring:
    return Wiring(
        id=f"w-{name}",
        messaging_group_id="mg",
        agent_group_id=f"ag-{name}",
        trigger_rule=rule,
        session_mode=mode,
        priority=priority,
        created_at="2026-01-01T00:00:00.000000Z",
    )


@pytest.mark.parametrize(
    ("rule", "event", "expected"),
    [
        ("always", chat("anything"), True),
        ("always", chat(""), True),
        ("mention", chat("hey", mentioned=True), True),
        ("mention", chat("hey @assistant"), False),  # the platform decides what a mention is
        ("prefix:!bot", chat("!bot what time is it"), True),
        ("prefix:!bot", chat("what time is it !bot"), False),
        ("prefix:!bot", chat("!BOT shout"), False),
        ("regex:\\bweather\\b", chat("how is the weather today"), True),
        ("regex:\\bweather\\b", chat("weathered"), False),
        ("regex:(?i)^remind", chat("Remind me"), True),
        ("regex:^\\d+$", chat("12345"), True),
        ("regex:^\\d+$", chat("12a45"), False),
        ("sometimes", chat("hello"), False),  # an unknown rule never matches
        ("", chat("hello"), False),
    ],
)
def test_rule_matches(rule: str, event: InboundChat, expected: bool) -> None:
    assert rule_matches(rule, event) is expected


def test_the_highest_priority_match_wins() -> None:
    # The store hands wirings over ordered by priority, highest first.
    wirings = [
        wiring("support", "prefix:!help", priority=10),
        wiring("weather", "regex:weather", priority=5),
        wiring("main", "always", priority=0),
    ]

    assert choose_wiring(wirings, chat("!help weather")) == (wirings[0], True)
    assert choose_wiring(wirings, chat("the weather?")) == (wirings[1], True)
    assert choose_wiring(wirings, chat("hi")) == (wirings[2], True)


def test_a_mention_rule_above_an_always_rule() -> None:
    wirings = [wiring("bot", "mention", priority=1), wiring("logger", "always")]

    assert choose_wiring(wirings, chat("hi", mentioned=True)) == (wirings[0], True)
    assert choose_wiring(wirings, chat("hi")) == (wirings[1], True)


def test_no_match_goes_to_the_top_wiring_as_context() -> None:
    wirings = [wiring("first", "mention", priority=3), wiring("second", "prefix:!", priority=1)]

    assert choose_wiring(wirings, chat("just talking")) == (wirings[0], False)


def test_no_wiring_means_nowhere_to_go() -> None:
    assert choose_wiring([], chat("hello")) is None
