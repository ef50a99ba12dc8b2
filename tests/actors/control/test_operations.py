"""The control operations carried out with no host running (`OfflineSessions`): each change
lands in the central DB or the session's inbound.db, and each refusal changes nothing."""

from __future__ import annotations

import logging

import msgspec
import pytest

from actors.channels.base import InboundChat
from actors.control.offline import OfflineSessions
from actors.control.operations import Operations
from actors.control.requests import (
    AddGroup,
    AddWebhookRoute,
    AllowSender,
    BlockSender,
    ChangeTask,
    ClearSession,
    DecidePairing,
    RemoveGroup,
    RemoveWebhookRoute,
    Reply,
    Request,
    RotateWebhookSecret,
    SetGroup,
    StopSession,
    Unwire,
    Wire,
    request_decoder,
)
from actors.inbound_router import InboundRouter
from actors.store import (
    agent_groups,
    members,
    messaging_group_agents,
    messaging_groups,
    pairing_requests,
    sessions,
    webhook_routes,
)
from actors.store.agent_groups import AgentGroup
from protocol.content import ChatIn, decode_content
from protocol.db import read_transaction
from protocol.rows import Routing
from tests.actors.control.conftest import World

pytestmark = pytest.mark.timeout(30)


def ok(world: World, request: Request) -> str:
    reply = world.operations.execute(request)
    assert reply.ok, reply.message
    return reply.message


def refused(world: World, request: Request) -> str:
    reply: Reply = world.operations.execute(request)
    assert not reply.ok, reply.message
    return reply.message


# --- tasks ---------------------------------------------------------------------------------


def test_pause_resume_and_cancel_move_a_task_through_its_states(world: World) -> None:
    assert "1 occurrence(s) now paused" in ok(world, ChangeTask(verb="pause", task="tdaily"))
    assert world.statuses(world.local)["tdaily"] == "paused"
    assert "now pending" in ok(world, ChangeTask(verb="resume", task="tdai"))  # a prefix will do
    assert "now cancelled" in ok(world, ChangeTask(verb="cancel", task="tdaily", session=world.local.id[:6]))
    assert world.statuses(world.local) == {"tdaily": "cancelled", "tonce": "pending"}


def test_a_change_that_does_not_apply_says_why_and_changes_nothing(world: World) -> None:
    said = refused(world, ChangeTask(verb="resume", task="tonce"))
    assert said == "task tonce is scheduled: there is nothing to resume"
    ok(world, ChangeTask(verb="cancel", task="tonce"))
    assert "is 1 cancelled: there is nothing to pause" in refused(world, ChangeTask(verb="pause", task="tonce"))


def test_an_unknown_or_ambiguous_task_is_refused(world: World) -> None:
    assert "no task 'nope'" in refused(world, ChangeTask(verb="pause", task="nope"))
    assert "2 tasks start with 't'" in refused(world, ChangeTask(verb="pause", task="t"))
    assert "give a task id" in refused(world, ChangeTask(verb="pause", task="  "))
    assert world.statuses(world.local) == {"tdaily": "pending", "tonce": "pending"}


# --- sessions ------------------------------------------------------------------------------


def test_clear_leaves_an_owners_clear_for_the_agent_with_the_chats_routing(world: World) -> None:
    assert "when the host next runs" in ok(world, ClearSession(session=world.local.id[:8]))
    with read_transaction(world.layout(world.local).inbound_db) as conn:
        row = conn.execute("SELECT * FROM messages_in WHERE kind = 'chat'").fetchone()
    content = decode_content("messages_in", row["id"], row["kind"], row["content"])
    assert isinstance(content, ChatIn)
    assert (content.text, content.sender_role) == ("/clear", "owner")
    assert (row["channel_type"], row["platform_id"], row["status"]) == ("cli", "local", "pending")


def test_clear_of_a_session_that_never_ran_makes_no_file(world: World) -> None:
    family = sessions.create(
        world.store, agent_group_id=world.main.id, messaging_group_id=world.family_chat.id, session_key="k"
    )
    assert "has not run yet" in refused(world, ClearSession(session=family.id))
    assert not world.layout(family).inbound_db.exists()


def test_stop_without_a_host_says_nothing_runs(world: World) -> None:
    assert "no host runs" in ok(world, StopSession(session=world.local.id))


def test_an_unknown_session_is_refused(world: World) -> None:
    assert "no session 'zzz'" in refused(world, StopSession(session="zzz"))


# --- agent groups --------------------------------------------------------------------------


def test_a_group_is_added_with_a_folder_and_removed_with_its_wiring(world: World) -> None:
    ok(world, AddGroup(name="Family", model="claude-opus-4-5"))
    group = agent_groups.get_by_name(world.store, "Family")
    assert group is not None
    assert (group.folder, group.model) == ("family", "claude-opus-4-5")
    assert (world.folder.groups_dir / "family" / "CLAUDE.md").is_file()
    ok(world, Wire(chat="telegram:-100", group="family"))  # the folder names it too
    assert "its files stay" in ok(world, RemoveGroup(name="Family"))
    assert agent_groups.get_by_name(world.store, "Family") is None
    assert len(messaging_group_agents.wirings_for(world.store, world.family_chat.id)) == 1  # main's


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (AddGroup(name="main"), "already an agent group 'main'"),
        (AddGroup(name="Main2", folder="main"), "already another agent group's"),
        (AddGroup(name="x", folder="../etc"), "cannot be used"),
        (AddGroup(name="x", folder="global"), "cannot be used"),
        (AddGroup(name="bad\nname"), "control characters"),
        (AddGroup(name="x" * 101), "longer than 100"),
        (AddGroup(name="x", model="gpt-5"), "is not a Claude model id"),
        (RemoveGroup(name="main"), "cannot be removed"),
        (RemoveGroup(name="nobody"), "no agent group 'nobody'"),
    ],
)
def test_bad_group_requests_are_refused(world: World, request_: Request, why: str) -> None:
    before = agent_groups.list_all(world.store)
    assert why in refused(world, request_)
    assert agent_groups.list_all(world.store) == before


def _limits(world: World, name: str) -> tuple[float | None, int | None, int | None, int | None]:
    group = agent_groups.get_by_name(world.store, name)
    assert group is not None
    return group.cpus, group.memory_mb, group.pids, group.shm_mb


class _RunningHost(OfflineSessions):
    """A host with one running agent in every group: records which groups it restarted."""

    host_runs = True

    def __init__(self, world: World) -> None:
        super().__init__(world.store)
        self.restarted: list[str] = []

    def restart_group(self, group: AgentGroup) -> list[str]:
        self.restarted.append(group.name)
        return ["s1"]


def test_a_group_is_added_with_its_own_limits(world: World) -> None:
    said = ok(world, AddGroup(name="Builds", cpus=0.5, memory_mb=300, pids=64, shm_mb=2))
    assert "its agents may use cpus 0.5, memory 300 MB, pids 64, /dev/shm 2 MB" in said
    assert _limits(world, "Builds") == (0.5, 300, 64, 2)


def test_set_group_changes_the_limits_given_and_default_gives_one_back(world: World) -> None:
    said = ok(world, SetGroup(name="main", cpus=2, shm_mb=32))
    assert said == "agent group 'main': its agents may use cpus 2, /dev/shm 32 MB"
    assert _limits(world, "main") == (2.0, None, None, 32)
    said = ok(world, SetGroup(name="main", shm_mb="default", pids=100))
    assert said == "agent group 'main': its agents may use pids 100, /dev/shm the host's (HUTCH_AGENT_SHM_MB)"
    assert _limits(world, "main") == (2.0, None, 100, None)
    said = ok(world, SetGroup(name="main", model="claude-opus-5-5", memory_mb=4096))
    assert said == "agent group 'main' uses claude-opus-5-5; its agents may use memory 4096 MB"
    group = agent_groups.get_by_name(world.store, "main")
    assert group is not None and group.model == "claude-opus-5-5"


def test_a_limits_change_restarts_the_groups_running_agents(world: World) -> None:
    host = _RunningHost(world)
    operations = Operations(world.store, world.folder, host)
    reply = operations.execute(SetGroup(name="main", memory_mb=512))
    assert reply.ok, reply.message
    assert reply.message.endswith("; 1 running agent(s) stopped, the next message starts them as the group now is")
    assert host.restarted == ["main"]
    refused_reply = operations.execute(SetGroup(name="main", memory_mb=10))
    assert not refused_reply.ok
    assert host.restarted == ["main"]  # a refused change restarts nothing


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (
            SetGroup(name="main"),
            "nothing to change for 'main': give a model or a limit (cpus, memory_mb, pids, shm_mb)",
        ),
        (SetGroup(name="main", cpus=0), "cpus 0: give a share of this machine's CPUs from 0.01 to "),
        (SetGroup(name="main", cpus=100_000.0), "(Docker refuses more)"),
        (SetGroup(name="main", cpus=float("inf")), "cpus inf: give a share"),
        (SetGroup(name="main", memory_mb=63), "memory_mb 63: give a whole number from 64 to 1048576 MB"),
        (SetGroup(name="main", memory_mb=2**70), "memory_mb 1180591620717411303424: give a whole number"),
        (SetGroup(name="main", pids=15), "pids 15: give a whole number from 16 to 4194304"),
        (SetGroup(name="main", shm_mb=0), "shm_mb 0: give a whole number from 1 to 1048576 MB (Docker reads 0 as"),
        (SetGroup(name="main", shm_mb=-1), "shm_mb -1: give a whole number from 1"),
        (SetGroup(name="main", pids=True), "pids True: give a whole number"),
        (SetGroup(name="main", memory_mb=512, model="gpt-5"), "is not a Claude model id"),
        (SetGroup(name="nobody", pids=64), "no agent group 'nobody'"),
        (AddGroup(name="x", pids=8), "pids 8: give a whole number from 16"),
        (AddGroup(name="x", cpus=-1.0), "cpus -1.0: give a share"),
    ],
)
def test_bad_limits_are_refused_in_one_line_and_change_nothing(world: World, request_: Request, why: str) -> None:
    before = agent_groups.list_all(world.store)
    said = refused(world, request_)
    assert why in said
    assert "\n" not in said
    assert agent_groups.list_all(world.store) == before


def test_a_limits_request_decodes_strictly() -> None:
    line = b'{"op": "groups.set", "name": "main", "cpus": 1, "pids": "default"}'
    assert request_decoder.decode(line) == SetGroup(name="main", cpus=1.0, pids="default")
    for bad in (
        b'{"op": "groups.set", "name": "main", "pids": true}',
        b'{"op": "groups.set", "name": "main", "memory_mb": 1.5}',
        b'{"op": "groups.set", "name": "main", "cpus": "lots"}',
        b'{"op": "groups.set", "name": "main", "swap_mb": 1}',
        b'{"op": "groups.add", "name": "x", "cpus": "default"}',
    ):
        with pytest.raises(msgspec.ValidationError):
            request_decoder.decode(bad)


# --- wiring --------------------------------------------------------------------------------


def test_wire_makes_the_chat_and_rewires_an_existing_pair(world: World) -> None:
    ok(world, AddGroup(name="helper"))
    said = ok(world, Wire(chat="discord:555", group="helper", trigger_rule="mention", unknown_senders="pair"))
    assert said.startswith("discord:555 wired to 'helper'")
    chat = messaging_groups.get_by_platform(world.store, "discord", "555")
    assert chat is not None
    assert chat.unknown_senders == "pair"
    said = ok(world, Wire(chat="discord:555", group="helper", trigger_rule="pattern:^hey", untriggered="drop"))
    assert said.startswith("discord:555 rewired to 'helper'")
    (wiring,) = messaging_group_agents.wirings_for(world.store, chat.id)
    assert (wiring.trigger_rule, wiring.untriggered) == ("pattern:^hey", "drop")
    assert "unwired" in ok(world, Unwire(chat="discord:555", group="helper"))
    assert messaging_group_agents.wirings_for(world.store, chat.id) == []
    assert "is not wired" in refused(world, Unwire(chat="discord:555", group="helper"))


def test_a_telegram_group_id_makes_a_group_chat(world: World) -> None:
    ok(world, Wire(chat="telegram:-2001", group="main"))
    chat = messaging_groups.get_by_platform(world.store, "telegram", "-2001")
    assert chat is not None
    assert chat.is_group


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (Wire(chat="telegram", group="main"), "is not a chat"),
        (Wire(chat="irc:#x", group="main"), "is not a chat"),
        (Wire(chat="telegram:", group="main"), "is not a chat"),
        (Wire(chat="telegram:1", group="nobody"), "no agent group"),
        (Wire(chat="telegram:1", group="main", trigger_rule="pattern:("), "pattern"),
        (Unwire(chat="telegram:999", group="main"), "no chat telegram:999"),
    ],
)
def test_bad_wiring_requests_change_nothing(world: World, request_: Request, why: str) -> None:
    before = (messaging_groups.list_all(world.store), messaging_group_agents.list_all(world.store))
    assert why in refused(world, request_)
    assert (messaging_groups.list_all(world.store), messaging_group_agents.list_all(world.store)) == before


# --- senders -------------------------------------------------------------------------------


def test_a_decision_without_a_host_says_the_person_is_not_told(world: World) -> None:
    request, _ = pairing_requests.open_request(world.store, world.family_chat.id, "u7", "Bob")
    said = ok(world, DecidePairing(code=request.code.lower(), approve=True))
    assert said == (
        f"{request.code}: Bob (u7) is approved in telegram:-100 (family). "
        "They are not told (no host runs): tell them yourself."
    )
    assert members.role_of(world.store, world.family_chat.id, "u7") == "member"
    assert "is not open: it was approved" in refused(world, DecidePairing(code=request.code, approve=False))
    assert "no pairing request NOPE" in refused(world, DecidePairing(code="nope", approve=True))


def test_allow_adds_a_member_and_settles_their_open_request(world: World) -> None:
    request, _ = pairing_requests.open_request(world.store, world.family_chat.id, "u8", None)
    ok(world, AllowSender(chat="telegram:-100", user="u8", role="admin"))
    assert members.role_of(world.store, world.family_chat.id, "u8") == "admin"
    settled = pairing_requests.get(world.store, request.code)
    assert settled is not None
    assert settled.status == "approved"


def test_block_removes_a_member_and_is_never_asked_again(world: World) -> None:
    members.put(world.store, world.family_chat.id, "u9", "member")
    assert "no longer a member" in ok(world, BlockSender(chat="telegram:-100", user="u9"))
    assert members.role_of(world.store, world.family_chat.id, "u9") is None
    assert pairing_requests.was_refused(world.store, world.family_chat.id, "u9")
    ok(world, AllowSender(chat="telegram:-100", user="u9"))  # the owner changes their mind
    assert members.role_of(world.store, world.family_chat.id, "u9") == "member"


def test_the_configured_owner_cannot_be_blocked(world: World) -> None:
    assert "configured owner" in refused(world, BlockSender(chat="telegram:-100", user="1"))
    assert not pairing_requests.was_refused(world.store, world.family_chat.id, "1")


def test_senders_of_an_unknown_chat_are_refused(world: World) -> None:
    assert "no chat telegram:5" in refused(world, AllowSender(chat="telegram:5", user="u"))
    assert "no chat telegram:5" in refused(world, BlockSender(chat="telegram:5", user="u"))


def test_wire_stores_a_chat_whose_id_does_not_tell_as_a_group(world: World) -> None:
    """A Discord id alone does not say DM or server channel: a new chat is a group, so the
    router never takes it for the owner's direct chat (where pairing requests are posted)."""
    ok(world, Wire(chat="discord:400000000000000001", group="main", trigger_rule="mention"))
    ok(world, Wire(chat="telegram:2002", group="main"))  # a Telegram direct chat's id is the person's
    ok(world, Wire(chat="cli:desk", group="main"))
    kinds = {
        (chat.channel_type, chat.platform_id): chat.is_group
        for chat in messaging_groups.list_all(world.store)
        if chat.id not in (world.local_chat.id, world.family_chat.id)
    }
    assert kinds == {("discord", "400000000000000001"): True, ("telegram", "2002"): False, ("cli", "desk"): False}


def test_wire_leaves_a_known_chats_kind_as_its_messages_made_it(world: World) -> None:
    dm = messaging_groups.create(world.store, channel_type="discord", platform_id="77", is_group=False)
    ok(world, Wire(chat="discord:77", group="main"))
    again = messaging_groups.get(world.store, dm.id)
    assert again is not None
    assert not again.is_group


# --- webhook routes ------------------------------------------------------------------------


def test_a_webhook_route_is_added_rotated_and_removed(world: World) -> None:
    secret = "s" * 16
    said = ok(world, AddWebhookRoute(route="git-hub_1", group="main", secret=secret))
    assert said == "webhook route 'git-hub_1' added for 'main': POST /hooks/git-hub_1 reaches it"
    route = webhook_routes.get(world.store, "git-hub_1")
    assert route is not None
    assert (route.agent_group_id, route.secret) == (world.main.id, secret)
    new_secret = "n" * 40
    said = ok(world, RotateWebhookSecret(route="git-hub_1", secret=new_secret))
    assert "has a new secret" in said
    assert new_secret not in said
    rotated = webhook_routes.get(world.store, "git-hub_1")
    assert rotated is not None
    assert (rotated.secret, rotated.created_at, rotated.agent_group_id) == (new_secret, route.created_at, world.main.id)
    assert "removed" in ok(world, RemoveWebhookRoute(route="git-hub_1"))
    assert webhook_routes.list_all(world.store) == []
    assert "no webhook route 'git-hub_1'" in refused(world, RemoveWebhookRoute(route="git-hub_1"))
    assert "no webhook route 'git-hub_1'" in refused(world, RotateWebhookSecret(route="git-hub_1", secret=secret))


def test_a_webhook_route_follows_its_group_by_name_or_folder_and_goes_with_it(world: World) -> None:
    ok(world, AddGroup(name="Builds"))
    ok(world, AddWebhookRoute(route="ci", group="builds", secret="c" * 20))  # its folder names it too
    group = agent_groups.get_by_name(world.store, "Builds")
    route = webhook_routes.get(world.store, "ci")
    assert group is not None and route is not None
    assert route.agent_group_id == group.id
    ok(world, RemoveGroup(name="Builds"))
    assert webhook_routes.get(world.store, "ci") is None


def test_no_reply_holds_the_secret(world: World, caplog: pytest.LogCaptureFixture) -> None:
    secret = "top-secret-top-secret"
    caplog.set_level(logging.DEBUG)
    replies = [
        world.operations.execute(AddWebhookRoute(route="r", group="main", secret=secret)),
        world.operations.execute(AddWebhookRoute(route="r", group="main", secret=secret)),  # refused: it exists
        world.operations.execute(RotateWebhookSecret(route="r", secret=secret + "2")),
        world.operations.execute(RotateWebhookSecret(route="r", secret="short")),
    ]
    assert [reply.ok for reply in replies] == [True, False, True, False]
    assert all(secret not in reply.message for reply in replies)
    assert secret not in caplog.text


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (AddWebhookRoute(route="", group="main", secret="s" * 16), "1 to 64 letters, digits"),
        (AddWebhookRoute(route="a/b", group="main", secret="s" * 16), "1 to 64 letters, digits"),
        (AddWebhookRoute(route="../x", group="main", secret="s" * 16), "1 to 64 letters, digits"),
        (AddWebhookRoute(route="a b", group="main", secret="s" * 16), "1 to 64 letters, digits"),
        (AddWebhookRoute(route="é", group="main", secret="s" * 16), "1 to 64 letters, digits"),
        (AddWebhookRoute(route="x" * 65, group="main", secret="s" * 16), "1 to 64 letters, digits"),
        (AddWebhookRoute(route="ok", group="nobody", secret="s" * 16), "no agent group 'nobody'"),
        (AddWebhookRoute(route="ok", group="main", secret="s" * 15), "at least 16 characters"),
        (AddWebhookRoute(route="ok", group="main", secret="s" * 257), "at most 256 characters"),
        (AddWebhookRoute(route="ok", group="main", secret="s" * 16 + "\n"), "no control characters"),
        (AddWebhookRoute(route="ok", group="main", secret=" " + "s" * 16), "no space at either end"),
        (RotateWebhookSecret(route="existing", secret="short"), "at least 16 characters"),
        (RemoveWebhookRoute(route="a/b"), "1 to 64 letters, digits"),
        (AddWebhookRoute(route="existing", group="main", secret="s" * 16), "already a webhook route 'existing'"),
    ],
)
def test_bad_webhook_route_requests_change_nothing(world: World, request_: Request, why: str) -> None:
    webhook_routes.create(world.store, route="existing", secret="e" * 16, agent_group_id=world.main.id)
    before = webhook_routes.list_all(world.store)
    assert why in refused(world, request_)
    assert webhook_routes.list_all(world.store) == before


def test_a_discord_channel_wired_by_command_never_hears_a_strangers_pairing_request(world: World) -> None:
    """The reviewer's case: the owner speaks in a wired server channel, then a stranger
    writes in a DM; the request goes to the owner's DM only, never into the channel."""
    told: list[tuple[Routing, str]] = []
    router = InboundRouter(world.store, {"discord": "owner-1"}, lambda to, text: told.append((to, text)), "pair")
    ok(world, Wire(chat="discord:400000000000000001", group="main", trigger_rule="mention"))

    def say(platform_id: str, sender_id: str, *, is_group: bool) -> None:
        event = InboundChat(
            channel_type="discord", platform_id=platform_id, text="hi @bot", sender=sender_id,
            sender_id=sender_id, is_group=is_group, mentions_assistant=True,
        )  # fmt: skip
        router.route_chat(event)

    say("400000000000000001", "owner-1", is_group=True)  # in the server channel
    say("500000000000000001", "owner-1", is_group=False)  # the owner's own DM with the bot
    say("600000000000000001", "stranger-2", is_group=False)  # a stranger's DM
    asked = [to.platform_id for to, text in told if "asks to talk to the assistant" in text]
    assert asked == ["500000000000000001"]
