"""actors/access.py's side-effect-free question, asked by a channel before it fetches a file."""

from __future__ import annotations

import pytest

from actors.access import may_reach_an_agent
from actors.store import members, messaging_groups, pairing_requests
from actors.store.db import Store

pytestmark = pytest.mark.timeout(30)

OWNERS = {"telegram": "1001"}


def test_who_could_reach_an_agent(store: Store) -> None:
    family = messaging_groups.create(store, channel_type="telegram", platform_id="-100", is_group=True)
    members.put(store, family.id, "2002", "member")
    assert may_reach_an_agent(store, OWNERS, "telegram", "1001", "1001")  # the owner, even in a new chat
    assert may_reach_an_agent(store, OWNERS, "telegram", "-100", "2002")  # a member
    assert not may_reach_an_agent(store, OWNERS, "telegram", "-100", "3003")  # a stranger in a known chat
    assert not may_reach_an_agent(store, OWNERS, "telegram", "3003", "3003")  # a chat nobody knows
    assert not may_reach_an_agent(store, OWNERS, "telegram", "-100", None)  # no sender id
    assert may_reach_an_agent(store, OWNERS, "cli", "local", None)  # the host's own user


def test_asking_leaves_nothing_behind(store: Store) -> None:
    """Unlike `admit`, no pairing request and no chat come of it, whatever the policy."""
    pairing = messaging_groups.create(store, channel_type="telegram", platform_id="-200", unknown_senders="pair")
    assert not may_reach_an_agent(store, OWNERS, "telegram", "-200", "3003")
    assert not may_reach_an_agent(store, OWNERS, "telegram", "4004", "4004")
    assert pairing_requests.pending(store) == []
    assert [chat.id for chat in messaging_groups.list_all(store)] == [pairing.id]
