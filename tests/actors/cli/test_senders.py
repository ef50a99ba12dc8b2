"""`hutch senders`: pairing requests listed, approved and refused in hutch.db, where a running
host (here: its own store connection, open throughout) sees the decision at once."""

from __future__ import annotations

import pytest

from actors.store import members, messaging_group_agents, messaging_groups, pairing_requests
from actors.store.messaging_groups import MessagingGroup
from actors.store.pairing_requests import PairingRequest
from tests.actors.cli.conftest import Folder, hutch, one_error_line

pytestmark = pytest.mark.timeout(60)


def _stranger(data: Folder, user: str, *, is_group: bool = False) -> tuple[MessagingGroup, PairingRequest]:
    chat = messaging_groups.create(
        data.store,
        channel_type="telegram",
        platform_id=f"chat-{user}",
        name=f"{user}'s chat",
        is_group=is_group,
        unknown_senders="pair",
    )
    request, _ = pairing_requests.open_request(data.store, chat.id, f"u-{user}", user)
    return chat, request


def test_pending_lists_the_open_requests(data: Folder) -> None:
    _, bob = _stranger(data, "bob")
    _, eve = _stranger(data, "eve")
    pairing_requests.decide(data.store, eve.code, False)
    result = hutch("senders", "pending", "--data-dir", str(data.path))
    assert result.exit_code == 0, result.output
    assert bob.code in result.stdout
    assert "telegram:chat-bob (bob's chat)" in result.stdout
    assert "u-bob" in result.stdout
    assert eve.code not in result.stdout


def test_no_pending_request_says_so(data: Folder) -> None:
    result = hutch("senders", "pending", "--data-dir", str(data.path))
    assert (result.exit_code, result.stdout.strip()) == (0, "no open pairing requests")


def test_approve_makes_a_member_the_running_host_sees_at_once(data: Folder) -> None:
    chat, bob = _stranger(data, "bob")
    result = hutch("senders", "approve", bob.code.lower(), "--data-dir", str(data.path))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{bob.code}: bob (u-bob) is approved in telegram:chat-bob (bob's chat)")
    # data.store is the host's long-lived connection: no restart, no reopen.
    assert members.role_of(data.store, chat.id, "u-bob") == "member"
    request = pairing_requests.get(data.store, bob.code)
    assert request is not None
    assert request.status == "approved"


def test_approving_a_direct_chat_wires_it_to_main_as_the_host_does(data: Folder) -> None:
    chat, bob = _stranger(data, "bob")
    result = hutch("senders", "approve", bob.code, "--data-dir", str(data.path))
    assert "the chat is wired to 'main'" in result.stdout
    wirings = messaging_group_agents.wirings_for(data.store, chat.id)
    assert [(w.agent_group_id, w.session_mode) for w in wirings] == [(data.main.id, "shared")]


def test_approving_in_a_group_chat_wires_nothing(data: Folder) -> None:
    chat, bob = _stranger(data, "bob", is_group=True)
    assert hutch("senders", "approve", bob.code, "--data-dir", str(data.path)).exit_code == 0
    assert messaging_group_agents.wirings_for(data.store, chat.id) == []


def test_a_second_approve_says_the_request_is_not_open(data: Folder) -> None:
    _, bob = _stranger(data, "bob")
    assert hutch("senders", "approve", bob.code, "--data-dir", str(data.path)).exit_code == 0
    result = hutch("senders", "approve", bob.code, "--data-dir", str(data.path))
    assert result.exit_code == 1
    assert one_error_line(result).startswith(f"hutch: pairing request {bob.code} is not open: it was approved at ")


def test_refuse_refuses_and_adds_no_member(data: Folder) -> None:
    chat, eve = _stranger(data, "eve")
    result = hutch("senders", "refuse", eve.code, "--data-dir", str(data.path))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{eve.code}: eve (u-eve) is refused")
    assert members.role_of(data.store, chat.id, "u-eve") is None
    assert pairing_requests.was_refused(data.store, chat.id, "u-eve")
    assert messaging_group_agents.wirings_for(data.store, chat.id) == []


def test_an_unknown_code_is_one_line(data: Folder) -> None:
    line = one_error_line(hutch("senders", "refuse", "zzzzzz", "--data-dir", str(data.path)))
    assert line == "hutch: no pairing request ZZZZZZ (`hutch senders pending` lists the open ones)"
