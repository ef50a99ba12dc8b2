from __future__ import annotations

import pytest

from actors.store import messaging_group_agents, messaging_groups, sessions
from actors.store.agent_groups import AgentGroup
from actors.store.db import AlreadyExistsError, Store


def test_create_then_get(store: Store) -> None:
    chat = messaging_groups.create(
        store, channel_type="telegram", platform_id="tg:1", name="family", is_group=True, unknown_senders="pair"
    )
    fetched = messaging_groups.get(store, chat.id)
    assert fetched == chat
    assert fetched is not None
    assert fetched.is_group is True
    assert messaging_groups.get_by_platform(store, "telegram", "tg:1") == chat


def test_defaults(store: Store) -> None:
    chat = messaging_groups.create(store, channel_type="cli", platform_id="local")
    assert (chat.name, chat.is_group, chat.unknown_senders) == (None, False, "drop")
    assert messaging_groups.get(store, chat.id) == chat


def test_get_absent_is_none(store: Store) -> None:
    assert messaging_groups.get(store, "nope") is None
    assert messaging_groups.get_by_platform(store, "telegram", "nope") is None


def test_same_platform_id_on_another_channel_is_a_different_chat(store: Store) -> None:
    a = messaging_groups.create(store, channel_type="telegram", platform_id="1")
    b = messaging_groups.create(store, channel_type="slack", platform_id="1")
    assert messaging_groups.get_by_platform(store, "telegram", "1") == a
    assert messaging_groups.get_by_platform(store, "slack", "1") == b


def test_duplicate_platform_is_refused(store: Store) -> None:
    messaging_groups.create(store, channel_type="telegram", platform_id="tg:1")
    with pytest.raises(AlreadyExistsError, match="messaging_groups"):
        messaging_groups.create(store, channel_type="telegram", platform_id="tg:1")


def test_list_all_with_filter(store: Store) -> None:
    messaging_groups.create(store, channel_type="telegram", platform_id="2")
    messaging_groups.create(store, channel_type="telegram", platform_id="1")
    messaging_groups.create(store, channel_type="cli", platform_id="local")
    assert [(c.channel_type, c.platform_id) for c in messaging_groups.list_all(store)] == [
        ("cli", "local"),
        ("telegram", "1"),
        ("telegram", "2"),
    ]
    assert [c.platform_id for c in messaging_groups.list_all(store, channel_type="telegram")] == ["1", "2"]


def test_update(store: Store) -> None:
    chat = messaging_groups.create(store, channel_type="telegram", platform_id="tg:1", name="old")
    updated = messaging_groups.update(store, chat.id, name="new", is_group=True, unknown_senders="pair")
    assert updated is not None
    assert (updated.name, updated.is_group, updated.unknown_senders) == ("new", True, "pair")
    assert (updated.channel_type, updated.platform_id) == ("telegram", "tg:1")
    cleared = messaging_groups.update(store, chat.id, name=None)
    assert cleared is not None
    assert (cleared.name, cleared.is_group) == (None, True)
    assert messaging_groups.update(store, "nope", name="x") is None


def test_delete_cascades_wirings_and_detaches_sessions(store: Store, agent: AgentGroup) -> None:
    chat = messaging_groups.create(store, channel_type="telegram", platform_id="tg:1")
    wiring = messaging_group_agents.create(
        store, messaging_group_id=chat.id, agent_group_id=agent.id, session_mode="shared"
    )
    session = sessions.create(store, agent_group_id=agent.id, messaging_group_id=chat.id, session_key=f"mg:{chat.id}")

    assert messaging_groups.delete(store, chat.id) is True

    assert messaging_groups.get(store, chat.id) is None
    assert messaging_group_agents.get(store, wiring.id) is None
    detached = sessions.get(store, session.id)
    assert detached is not None
    assert detached.messaging_group_id is None
    assert messaging_groups.delete(store, chat.id) is False
