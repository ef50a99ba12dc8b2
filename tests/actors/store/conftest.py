from __future__ import annotations

import pytest

from actors.store import agent_groups, messaging_groups, sessions
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store
from actors.store.messaging_groups import MessagingGroup
from actors.store.sessions import Session


@pytest.fixture
def agent(store: Store) -> AgentGroup:
    return agent_groups.create(store, name="main", folder="main")


@pytest.fixture
def chat(store: Store) -> MessagingGroup:
    return messaging_groups.create(store, channel_type="telegram", platform_id="tg:100", name="family", is_group=True)


@pytest.fixture
def session(store: Store, agent: AgentGroup, chat: MessagingGroup) -> Session:
    key = sessions.session_key("shared", agent_group_id=agent.id, messaging_group_id=chat.id)
    return sessions.create(store, agent_group_id=agent.id, messaging_group_id=chat.id, session_key=key)
