from __future__ import annotations

from typing import Any

import pytest

from actors.store import agent_groups, messaging_group_agents, messaging_groups
from actors.store.agent_groups import AgentGroup
from actors.store.db import AlreadyExistsError, InvalidValueError, MissingReferenceError, Store
from actors.store.messaging_groups import MessagingGroup


def test_create_then_get(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    wiring = messaging_group_agents.create(
        store,
        messaging_group_id=chat.id,
        agent_group_id=agent.id,
        session_mode="per-thread",
        trigger_rule="mention",
        priority=5,
    )
    assert messaging_group_agents.get(store, wiring.id) == wiring
    assert messaging_group_agents.get_pair(store, chat.id, agent.id) == wiring
    assert (wiring.trigger_rule, wiring.session_mode, wiring.priority) == ("mention", "per-thread", 5)


def test_defaults(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    wiring = messaging_group_agents.create(
        store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode="shared"
    )
    assert (wiring.trigger_rule, wiring.priority) == ("always", 0)


def test_get_absent_is_none(store: Store) -> None:
    assert messaging_group_agents.get(store, "nope") is None
    assert messaging_group_agents.get_pair(store, "a", "b") is None


def test_wirings_for_orders_by_priority_then_age(store: Store, chat: MessagingGroup) -> None:
    names = ["low", "high", "tie-first", "tie-second"]
    priorities = [0, 10, 5, 5]
    for name, priority in zip(names, priorities, strict=True):
        group = agent_groups.create(store, name=name, folder=name)
        messaging_group_agents.create(
            store, messaging_group_id=chat.id, agent_group_id=group.id, session_mode="shared", priority=priority
        )
    other_chat = messaging_groups.create(store, channel_type="cli", platform_id="local")
    stray = agent_groups.create(store, name="stray", folder="stray")
    messaging_group_agents.create(
        store, messaging_group_id=other_chat.id, agent_group_id=stray.id, session_mode="shared"
    )

    ordered = messaging_group_agents.wirings_for(store, chat.id)

    by_id = {g.id: g.name for g in agent_groups.list_all(store)}
    assert [by_id[w.agent_group_id] for w in ordered] == ["high", "tie-first", "tie-second", "low"]
    assert len(messaging_group_agents.list_all(store)) == 5
    assert [w.messaging_group_id for w in messaging_group_agents.wirings_of_agent(store, stray.id)] == [other_chat.id]


def test_duplicate_pair_is_refused(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    messaging_group_agents.create(store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode="shared")
    with pytest.raises(AlreadyExistsError, match="messaging_group_agents"):
        messaging_group_agents.create(
            store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode="per-thread"
        )


def test_unknown_groups_are_refused(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    with pytest.raises(MissingReferenceError):
        messaging_group_agents.create(store, messaging_group_id="nope", agent_group_id=agent.id, session_mode="shared")
    with pytest.raises(MissingReferenceError):
        messaging_group_agents.create(store, messaging_group_id=chat.id, agent_group_id="nope", session_mode="shared")


@pytest.mark.parametrize(
    "rule", ["always", "mention", "mention-sticky", "prefix:!bot", "pattern:^hey\\b", "sender-scope:u1,u2"]
)
def test_valid_trigger_rules(rule: str) -> None:
    assert messaging_group_agents.validate_trigger_rule(rule) == rule


@pytest.mark.parametrize("rule", ["", "sometimes", "prefix:", "pattern:", "pattern:(unclosed", "PREFIX:x", "regex:x"])
def test_invalid_trigger_rules(store: Store, agent: AgentGroup, chat: MessagingGroup, rule: str) -> None:
    with pytest.raises(InvalidValueError, match="trigger rule"):
        messaging_group_agents.create(
            store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode="shared", trigger_rule=rule
        )


def test_a_pattern_is_bounded_in_length(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    longest = "pattern:" + "a" * messaging_group_agents.MAX_PATTERN_CHARS
    assert messaging_group_agents.validate_trigger_rule(longest) == longest
    with pytest.raises(InvalidValueError, match="more than 512"):
        messaging_group_agents.create(
            store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode="shared",
            trigger_rule=longest + "a",
        )  # fmt: skip
    wiring = messaging_group_agents.create(
        store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode="shared"
    )
    with pytest.raises(InvalidValueError, match="bad regular expression"):
        messaging_group_agents.update(store, wiring.id, trigger_rule="pattern:a{2,1}")
    assert messaging_group_agents.get(store, wiring.id) == wiring


def test_invalid_session_mode(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    mode: Any = "per-user"
    with pytest.raises(InvalidValueError, match="session mode"):
        messaging_group_agents.create(store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode=mode)


def test_schema_also_refuses_bad_values(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    for rule, mode in [("sometimes", "shared"), ("always", "per-user")]:
        with pytest.raises(InvalidValueError), store.transaction() as conn:
            conn.execute(
                "INSERT INTO messaging_group_agents "
                "(id, messaging_group_id, agent_group_id, trigger_rule, session_mode, created_at) "
                "VALUES ('w', ?, ?, ?, ?, 'now')",
                (chat.id, agent.id, rule, mode),
            )


def test_update(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    wiring = messaging_group_agents.create(
        store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode="shared"
    )
    updated = messaging_group_agents.update(store, wiring.id, trigger_rule="prefix:@bot", priority=3)
    assert updated is not None
    assert (updated.trigger_rule, updated.session_mode, updated.priority) == ("prefix:@bot", "shared", 3)
    moded = messaging_group_agents.update(store, wiring.id, session_mode="agent-shared")
    assert moded is not None
    assert moded.session_mode == "agent-shared"
    assert messaging_group_agents.get(store, wiring.id) == moded
    assert messaging_group_agents.update(store, "nope", priority=1) is None


def test_update_validates(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    wiring = messaging_group_agents.create(
        store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode="shared"
    )
    with pytest.raises(InvalidValueError):
        messaging_group_agents.update(store, wiring.id, trigger_rule="pattern:[")
    assert messaging_group_agents.get(store, wiring.id) == wiring


def test_delete(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    wiring = messaging_group_agents.create(
        store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode="shared"
    )
    assert messaging_group_agents.delete(store, wiring.id) is True
    assert messaging_group_agents.get(store, wiring.id) is None
    assert messaging_group_agents.delete(store, wiring.id) is False
    assert agent_groups.get(store, agent.id) == agent
    assert messaging_groups.get(store, chat.id) == chat
