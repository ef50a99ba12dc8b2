"""Which agents get an inbound chat, and whether it starts a turn for each."""

from __future__ import annotations

import logging

import pytest

from actors import routing
from actors.channels.base import InboundChat
from actors.routing import Target, rule_matches, targets
from actors.store import agent_groups, messaging_group_agents, messaging_groups
from actors.store.db import InvalidValueError, Store
from actors.store.messaging_group_agents import Untriggered, Wiring

pytestmark = pytest.mark.timeout(30)


def chat(
    text: str = "hello", *, mentioned: bool = False, sender_id: str = "u1", thread: str | None = None
) -> InboundChat:
    return InboundChat(
        channel_type="telegram", platform_id="g1", text=text, sender="ann", sender_id=sender_id,
        mentions_assistant=mentioned, thread_id=thread, is_group=True,
    )  # fmt: skip


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
        ("pattern:\\bweather\\b", chat("how is the weather today"), True),
        ("pattern:\\bweather\\b", chat("weathered"), False),
        ("pattern:(?i)^remind", chat("Remind me"), True),
        ("pattern:^\\d+$", chat("12345"), True),
        ("pattern:^\\d+$", chat("12a45"), False),
        ("sender-scope:u1,u2", chat("hi", sender_id="u2"), True),
        ("sender-scope:u1,u2", chat("hi", sender_id="u3"), False),
        ("regex:hello", chat("hello"), False),  # the old spelling is migrated, not matched
        ("sometimes", chat("hello"), False),  # an unknown rule never matches
        ("", chat("hello"), False),
    ],
)
def test_rule_matches(rule: str, event: InboundChat, expected: bool) -> None:
    assert rule_matches(rule, event) is expected


def test_a_pattern_sees_a_bounded_part_of_a_strangers_text() -> None:
    assert rule_matches("pattern:needle", chat("x" * 5000 + "needle")) is False
    assert rule_matches("pattern:needle", chat("needle" + "x" * 5000)) is True


@pytest.fixture
def fresh_patterns() -> None:
    """Patterns compiled and warned about by earlier tests are forgotten."""
    routing._compiled.cache_clear()
    routing._warn_once.cache_clear()


@pytest.mark.usefixtures("fresh_patterns")
@pytest.mark.timeout(10)  # `re` would take longer than the universe's age: this returning is the test
def test_a_pattern_that_backtracks_badly_gives_up_as_no_match_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hutch.routing")
    catastrophic = "pattern:^(\\w+\\s?)+$"
    hostile = chat("a" * 4095 + "!")
    assert len(hostile.text) == 4096

    assert rule_matches(catastrophic, hostile) is False
    assert rule_matches(catastrophic, hostile) is False  # the next stranger's message: no second warning

    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert repr(catastrophic.removeprefix("pattern:")) in warning.getMessage() and "no match" in warning.getMessage()
    assert rule_matches(catastrophic, chat("just some words")) is True  # it still matches what it can
    assert rule_matches("pattern:\\bdeploy\\b", chat("please deploy now")) is True


@pytest.mark.usefixtures("fresh_patterns")
def test_a_pattern_stored_before_it_was_checked_never_matches(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hutch.routing")
    assert rule_matches("pattern:(unclosed", chat("(unclosed")) is False
    assert rule_matches("pattern:(unclosed", chat("(unclosed")) is False
    assert len([r for r in caplog.records if "does not compile" in r.getMessage()]) == 1


@pytest.fixture
def wired(store: Store) -> tuple[Store, str]:
    """A group chat; the agents are wired per test."""
    return store, messaging_groups.create(store, channel_type="telegram", platform_id="g1", is_group=True).id


def wire(
    store: Store, chat_id: str, name: str, rule: str = "always", untriggered: Untriggered = "context", priority: int = 0
) -> Wiring:
    group = agent_groups.create(store, name=name, folder=name)
    return messaging_group_agents.create(
        store, messaging_group_id=chat_id, agent_group_id=group.id, session_mode="shared",
        trigger_rule=rule, untriggered=untriggered, priority=priority,
    )  # fmt: skip


def test_a_message_goes_to_every_agent_whose_rule_matches(wired: tuple[Store, str]) -> None:
    store, chat_id = wired
    support = wire(store, chat_id, "support", "pattern:help", priority=10)
    weather = wire(store, chat_id, "weather", "pattern:weather", priority=5)
    main = wire(store, chat_id, "main", "mention")
    wirings = messaging_group_agents.wirings_for(store, chat_id)

    assert targets(store, wirings, chat("help with the weather")) == [
        Target(support, True),
        Target(weather, True),
        Target(main, False),
    ]


def test_a_message_that_does_not_trigger_is_context_or_nothing_as_the_wiring_says(wired: tuple[Store, str]) -> None:
    store, chat_id = wired
    keeps = wire(store, chat_id, "keeps", "mention", untriggered="context")
    wire(store, chat_id, "drops", "mention", untriggered="drop")
    wirings = messaging_group_agents.wirings_for(store, chat_id)

    assert targets(store, wirings, chat("just chatting")) == [Target(keeps, False)]
    assert [t.trigger for t in targets(store, wirings, chat("hey bot", mentioned=True))] == [True, True]


def test_mention_sticky_keeps_answering_in_the_thread_it_was_mentioned_in(wired: tuple[Store, str]) -> None:
    store, chat_id = wired
    sticky = wire(store, chat_id, "sticky", "mention-sticky", untriggered="drop")
    wirings = [sticky]

    assert targets(store, wirings, chat("before", thread="t1")) == []
    assert targets(store, wirings, chat("@bot", thread="t1", mentioned=True)) == [Target(sticky, True)]
    assert targets(store, wirings, chat("and then", thread="t1")) == [Target(sticky, True)]
    assert targets(store, wirings, chat("another thread", thread="t2")) == []
    assert messaging_group_agents.is_sticky(store, sticky.id, "t1")  # remembered across restarts


@pytest.mark.parametrize(
    "rule",
    [
        "regex:x",
        "pattern:(",
        "pattern:",
        "pattern:" + "a" * 513,
        "sender-scope:",
        "sender-scope: , ",
        "sometimes",
        "mention-sticky ",
    ],
)
def test_a_bad_rule_is_refused_when_wired(wired: tuple[Store, str], rule: str) -> None:
    store, chat_id = wired
    with pytest.raises(InvalidValueError):
        wire(store, chat_id, "bad", rule)
