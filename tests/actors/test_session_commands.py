"""`/cost` and `/model`, answered by the host for a chat's owners and admins: nothing of them
reaches an agent, a member is refused and nothing changes, and a model change asks for the
group's running agents to be restarted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.channels.base import InboundChat
from actors.inbound_router import InboundRouter
from actors.pricing import Tokens, default_prices
from actors.session_commands import Answerer, parse_command
from actors.store import agent_groups, members, messaging_group_agents, messaging_groups, sessions, usage
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store, open_store
from protocol.models import DEFAULT_MODEL
from protocol.rows import Routing

pytestmark = pytest.mark.timeout(30)

OWNER = "1001"


class World:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.sent: list[tuple[Routing, str]] = []
        self.restarted: list[str] = []
        answerer = Answerer(store, DEFAULT_MODEL, self.restarted.append, default_prices)
        self.router = InboundRouter(store, {"telegram": OWNER}, self._notify, commands=answerer)

    def _notify(self, routing: Routing, text: str) -> None:
        self.sent.append((routing, text))

    @property
    def main(self) -> AgentGroup:
        group = agent_groups.get_by_folder(self.store, "main")
        assert group is not None
        return group

    def said(self, sender_id: str, text: str, channel: str = "telegram", platform_id: str = "-500") -> str:
        event = InboundChat(
            channel_type=channel, platform_id=platform_id, text=text, sender=f"user {sender_id}",
            sender_id=sender_id, is_group=channel == "telegram",
        )  # fmt: skip
        assert self.router.route_chat(event) == []  # nothing for any agent
        routing, answer = self.sent.pop()
        assert (routing.channel_type, routing.platform_id) == (channel, platform_id)
        return answer


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_store(tmp_path / "central.db") as store:
        main = agent_groups.create(store, name="main", folder="main")
        family = messaging_groups.create(store, channel_type="telegram", platform_id="-500", is_group=True)
        messaging_group_agents.create(
            store, messaging_group_id=family.id, agent_group_id=main.id, session_mode="shared"
        )
        members.put(store, family.id, "7", "member")
        members.put(store, family.id, "8", "admin")
        yield World(store)


def test_parse_takes_only_the_commands() -> None:
    assert parse_command("/cost") is not None
    assert parse_command("/model@hutch_bot claude-opus-5-5") is not None
    assert parse_command("/model") is not None
    for other in ("/costs", "/cost now", "/model a b", "what does /cost say", "", "/clear"):
        assert parse_command(other) is None


def test_model_alone_shows_the_groups_model(world: World) -> None:
    assert world.said(OWNER, "/model") == f"main: {DEFAULT_MODEL} (the host's default)"


def test_an_admin_sets_the_groups_model_and_its_agents_restart(world: World) -> None:
    answer = world.said("8", "/model claude-opus-5-5")
    assert answer == "main now uses claude-opus-5-5, from the next message on."
    assert world.main.model == "claude-opus-5-5"
    assert world.restarted == [world.main.id]
    assert world.said("8", "/model") == "main: claude-opus-5-5"
    assert world.said("8", "/model claude-opus-5-5") == "main already uses claude-opus-5-5."
    assert world.restarted == [world.main.id]  # nothing to restart for no change
    assert "the host's default" in world.said("8", "/model default")
    assert world.main.model is None


def test_an_unknown_claude_model_is_kept_with_a_warning_and_anything_else_refused(world: World) -> None:
    assert "Note: claude-sonnet-9 is not a model this version" in world.said(OWNER, "/model claude-sonnet-9")
    assert world.main.model == "claude-sonnet-9"
    assert "nothing was changed" in world.said(OWNER, "/model gpt-5")
    assert world.main.model == "claude-sonnet-9"


def test_a_member_is_refused_and_nothing_changes(world: World) -> None:
    assert world.said("7", "/model claude-opus-5-5") == "Only this chat's owner or an admin can use /model."
    assert world.said("7", "/cost") == "Only this chat's owner or an admin can use /cost."
    assert world.main.model is None
    assert world.restarted == []
    assert sessions.list_all(world.store) == []  # not even a session was made for it


def test_the_local_chat_is_trusted_as_owner(world: World) -> None:
    local = messaging_groups.create(world.store, channel_type="cli", platform_id="local")
    messaging_group_agents.create(
        world.store, messaging_group_id=local.id, agent_group_id=world.main.id, session_mode="shared"
    )
    assert world.said("me", "/model claude-haiku-5-5", "cli", "local").startswith("main now uses claude-haiku-5-5")


def test_cost_shows_this_conversations_and_the_groups_use(world: World) -> None:
    chat = messaging_groups.get_by_platform(world.store, "telegram", "-500")
    assert chat is not None
    key = sessions.session_key("shared", agent_group_id=world.main.id, messaging_group_id=chat.id)
    here = sessions.create(world.store, agent_group_id=world.main.id, messaging_group_id=chat.id, session_key=key)
    other = sessions.create(world.store, agent_group_id=world.main.id, session_key="elsewhere")
    # Sonnet 5.5: $2 in, $10 out per million.
    usage.record(world.store, agent_group_id=world.main.id, session_id=here.id, model="claude-sonnet-5-5",
                 tokens=Tokens(input=1_000_000, output=100_000))  # fmt: skip
    usage.record(world.store, agent_group_id=world.main.id, session_id=other.id, model="claude-sonnet-5-5",
                 tokens=Tokens(input=500_000, output=0))  # fmt: skip
    # Earlier this month (when today is not the 1st): counted for the month, not today.
    first = usage.utc_day()[:8] + "01"
    if first != usage.utc_day():
        usage.record(world.store, agent_group_id=world.main.id, session_id=here.id, model="claude-sonnet-5-5",
                     tokens=Tokens(input=0, output=100_000), day=first)  # fmt: skip
    answer = world.said("8", "/cost")
    lines = answer.splitlines()
    assert lines[0] == "main, in UTC days:"
    today, month = lines[1], lines[2]
    assert (
        "this conversation 1,100,000 tokens (1,000,000 in, 100,000 out, 0 cache reads, 0 cache writes), $3.00" in today
    )
    assert "the agent group 1,600,000 tokens" in today and "$4.00" in today
    if first != usage.utc_day():
        assert "this conversation 1,200,000 tokens" in month and "$4.00;" in month
        assert "the agent group 1,700,000 tokens" in month and "$5.00" in month


def test_cost_before_any_use_is_zero(world: World) -> None:
    answer = world.said(OWNER, "/cost")
    assert "today: this conversation 0 tokens" in answer
    assert answer.count("$0.00") == 4
