"""Who may talk to an agent, and where their messages go: the owner's first direct message,
strangers dropped or paired, roles, answers by button, a message for several agents."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.channels.base import InboundAnswer, InboundChat
from actors.inbound_router import InboundRouter, RoutingError
from actors.store import (
    agent_groups,
    members,
    messaging_group_agents,
    messaging_groups,
    pairing_requests,
    pending_questions,
    sessions,
)
from actors.store.db import Store, open_store
from actors.store.messaging_groups import UnknownSenders
from protocol.content import ChatIn, QuestionAnswer
from protocol.rows import Routing

pytestmark = pytest.mark.timeout(30)

OWNER = "1001"
OWNERS = {"telegram": OWNER}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "central.db") as opened:
        agent_groups.create(opened, name="main", folder="main")
        yield opened


class Notices:
    def __init__(self) -> None:
        self.sent: list[tuple[Routing, str]] = []

    def __call__(self, routing: Routing, text: str) -> None:
        self.sent.append((routing, text))

    def to(self, platform_id: str) -> list[str]:
        return [text for routing, text in self.sent if routing.platform_id == platform_id]


def router(store: Store, notices: Notices, policy: UnknownSenders = "drop") -> InboundRouter:
    return InboundRouter(store, OWNERS, notices, unknown_senders=policy)


def dm(sender_id: str, text: str = "hello", name: str = "Ann") -> InboundChat:
    # Telegram: a direct chat's id is the person's id.
    return InboundChat(channel_type="telegram", platform_id=sender_id, text=text, sender=name, sender_id=sender_id)


def in_group(sender_id: str, text: str = "hello", mentioned: bool = False) -> InboundChat:
    return InboundChat(
        channel_type="telegram", platform_id="-500", text=text, sender=f"user {sender_id}", sender_id=sender_id,
        is_group=True, mentions_assistant=mentioned,
    )  # fmt: skip


def test_the_owners_first_direct_message_wires_their_chat_to_main(store: Store) -> None:
    notices = Notices()
    (routed,) = router(store, notices).route_chat(dm(OWNER))
    chat = messaging_groups.get_by_platform(store, "telegram", OWNER)
    assert chat is not None
    (wiring,) = messaging_group_agents.wirings_for(store, chat.id)
    assert wiring.agent_group_id == agent_groups.get_by_folder(store, "main").id  # type: ignore[union-attr]
    assert routed.request.trigger is True
    assert routed.request.content == ChatIn(text="hello", sender="Ann", sender_id=OWNER, sender_role="owner")
    assert members.role_of(store, chat.id, OWNER) == "owner"  # where pairing requests are announced
    assert notices.sent == []


def test_a_stranger_is_dropped_by_default_and_nothing_is_stored(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hutch.routing")
    notices = Notices()
    assert router(store, notices).route_chat(dm("666", "let me in")) == []
    assert sessions.list_all(store) == []
    assert messaging_groups.get_by_platform(store, "telegram", "666") is None  # not even the chat
    assert notices.sent == []
    assert "666" in caplog.text and "dropped" in caplog.text


def test_a_stranger_under_pair_gets_a_code_once_and_the_owner_is_asked(store: Store) -> None:
    notices = Notices()
    route = router(store, notices, policy="pair")
    route.route_chat(dm(OWNER))  # the owner has a chat with the bot: asked there
    assert route.route_chat(dm("666", "hi", name="Eve")) == []
    assert route.route_chat(dm("666", "hello??", name="Eve")) == []
    (request,) = pairing_requests.pending(store)
    assert [text for text in notices.to("666") if request.code in text] == notices.to("666")
    assert len(notices.to("666")) == 1, "the stranger is given the code once"
    (ask,) = notices.to(OWNER)
    assert f"/approve {request.code}" in ask and "Eve (666)" in ask
    stranger_chat = messaging_groups.get_by_platform(store, "telegram", "666")
    assert stranger_chat is not None
    assert [s for s in sessions.list_all(store) if s.messaging_group_id == stranger_chat.id] == []


def test_an_approved_stranger_is_answered_as_a_member(store: Store) -> None:
    notices = Notices()
    route = router(store, notices, policy="pair")
    route.route_chat(dm(OWNER))
    route.route_chat(dm("666", "hi", name="Eve"))
    (request,) = pairing_requests.pending(store)

    assert route.route_chat(dm(OWNER, f"/approve {request.code.lower()}")) == []  # never reaches an agent

    assert "Eve is approved." in notices.to(OWNER)
    assert "You can talk to the assistant now." in notices.to("666")
    (routed,) = route.route_chat(dm("666", "thanks", name="Eve"))
    assert isinstance(routed.request.content, ChatIn) and routed.request.content.sender_role == "member"


def test_a_refused_stranger_is_not_offered_another_code(store: Store) -> None:
    notices = Notices()
    route = router(store, notices, policy="pair")
    route.route_chat(dm(OWNER))
    route.route_chat(dm("666", "hi"))
    (request,) = pairing_requests.pending(store)
    route.route_chat(dm(OWNER, f"/refuse {request.code}"))
    assert "The owner declined your request." in notices.to("666")
    assert route.route_chat(dm("666", "please")) == []
    assert pairing_requests.pending(store) == []
    assert route.route_chat(dm(OWNER, "/approve NOPE12")) == []
    assert "There is no open pairing request NOPE12." in notices.to(OWNER)


def test_members_of_a_group_have_their_roles_and_others_are_dropped(store: Store) -> None:
    notices = Notices()
    route = router(store, notices)
    chat = messaging_groups.create(store, channel_type="telegram", platform_id="-500", is_group=True)
    main = agent_groups.get_by_folder(store, "main")
    assert main is not None
    messaging_group_agents.create(store, messaging_group_id=chat.id, agent_group_id=main.id, session_mode="shared")
    members.put(store, chat.id, "7", "admin")
    members.put(store, chat.id, "8", "member")

    roles = [r.request.content.sender_role for r in route.route_chat(in_group("7")) + route.route_chat(in_group("8"))]  # type: ignore[union-attr]
    assert roles == ["admin", "member"]
    assert route.route_chat(in_group("9")) == []
    (owner,) = route.route_chat(in_group(OWNER))
    assert owner.request.content.sender_role == "owner"  # type: ignore[union-attr]


def test_an_unwired_group_chat_is_an_error_for_its_owner(store: Store) -> None:
    with pytest.raises(RoutingError, match="no agent is wired"):
        router(store, Notices()).route_chat(in_group(OWNER))


def test_a_message_goes_to_every_agent_whose_rule_matches(store: Store) -> None:
    chat = messaging_groups.create(store, channel_type="telegram", platform_id="-500", is_group=True)
    for name, rule in (("helper", "mention"), ("logger", "always")):
        group = agent_groups.create(store, name=name, folder=name)
        messaging_group_agents.create(
            store, messaging_group_id=chat.id, agent_group_id=group.id, session_mode="shared", trigger_rule=rule
        )
    routed = router(store, Notices()).route_chat(in_group(OWNER, "@bot hi", mentioned=True))
    assert len(routed) == 2 and len({r.session.id for r in routed}) == 2
    assert all(r.request.trigger for r in routed)


def _question(store: Store) -> str:
    (routed,) = router(store, Notices()).route_chat(dm(OWNER))
    question = pending_questions.create(
        store, session_id=routed.session.id, message_out_id="out-1", question="Tea or coffee?",
        options=["Tea", "Coffee"], platform_id=OWNER, channel_type="telegram",
    )  # fmt: skip
    return question.id


def test_an_answer_by_button_is_looked_up_in_the_question(store: Store) -> None:
    question_id = _question(store)
    answer = InboundAnswer(
        channel_type="telegram", platform_id=OWNER, question_id=question_id, option_index=1, sender="Ann",
        sender_id=OWNER,
    )  # fmt: skip
    (routed,) = router(store, Notices()).route_answer(answer)
    assert routed.request.content == QuestionAnswer(question_id=question_id, answer="Coffee", answered_by="Ann")
    with pytest.raises(RoutingError, match="already answered"):
        router(store, Notices()).route_answer(answer)


def test_an_answer_out_of_range_or_from_a_stranger_is_refused(store: Store) -> None:
    question_id = _question(store)
    bad = InboundAnswer(
        channel_type="telegram", platform_id=OWNER, question_id=question_id, option_index=7, sender_id=OWNER
    )
    with pytest.raises(RoutingError, match="no option 7"):
        router(store, Notices()).route_answer(bad)
    stranger = InboundAnswer(
        channel_type="telegram", platform_id=OWNER, question_id=question_id, option_index=0, sender_id="666"
    )
    assert router(store, Notices()).route_answer(stranger) == []
    assert pending_questions.get(store, question_id).status == "open"  # type: ignore[union-attr]


def _pending_code(store: Store, route: InboundRouter) -> str:
    route.route_chat(dm(OWNER))
    route.route_chat(dm("2007", "hi", name="Zed"))
    (request,) = pairing_requests.pending(store)
    return request.code


def test_an_owner_by_role_cannot_decide_pairing_and_learns_nothing_of_the_code(store: Store) -> None:
    notices = Notices()
    route = router(store, notices, policy="pair")
    code = _pending_code(store, route)
    group = messaging_groups.create(store, channel_type="telegram", platform_id="-500", is_group=True)
    members.put(store, group.id, "2006", "owner")  # `hutch senders allow telegram:-500 2006 --role owner`
    own_dm = messaging_groups.create(store, channel_type="telegram", platform_id="2006")
    members.put(store, own_dm.id, "2006", "owner")

    for event in (
        in_group("2006", f"/approve {code}"),
        in_group("2006", "/approve NOPE12"),
        dm("2006", f"/refuse {code}"),
    ):
        assert route.route_chat(event) == []  # never an agent's either

    refusals = notices.to("-500")
    assert len(refusals) == 2 and refusals[0] == refusals[1], "the same answer whether the code is open or not"
    assert code not in refusals[0] and "owner" in refusals[0]
    assert notices.to("2006") == refusals[:1]
    assert [r.code for r in pairing_requests.pending(store)] == [code]
    assert notices.to("2007") == [t for t in notices.to("2007") if "pairing code" in t]  # not told anything
    stranger = messaging_groups.get_by_platform(store, "telegram", "2007")
    assert stranger is not None and messaging_group_agents.wirings_for(store, stranger.id) == []


def test_the_configured_owner_decides_only_in_their_direct_chat(store: Store) -> None:
    notices = Notices()
    route = router(store, notices, policy="pair")
    code = _pending_code(store, route)
    group = messaging_groups.create(store, channel_type="telegram", platform_id="-500", is_group=True)
    main = agent_groups.get_by_folder(store, "main")
    assert main is not None
    messaging_group_agents.create(store, messaging_group_id=group.id, agent_group_id=main.id, session_mode="shared")

    assert route.route_chat(in_group(OWNER, f"/approve {code}")) == []
    assert [r.code for r in pairing_requests.pending(store)] == [code]
    assert all("approved" not in text for text in notices.to("-500"))

    assert route.route_chat(dm(OWNER, f"/approve {code}")) == []
    assert "Zed is approved." in notices.to(OWNER)
    assert "You can talk to the assistant now." in notices.to("2007")
    assert pairing_requests.pending(store) == []


def test_a_pairing_request_is_shown_only_to_the_configured_owner(store: Store) -> None:
    notices = Notices()
    route = router(store, notices, policy="pair")
    someone = messaging_groups.create(store, channel_type="telegram", platform_id="2006")
    members.put(store, someone.id, "2006", "owner")
    code = _pending_code(store, route)
    assert any(code in text for text in notices.to(OWNER))
    assert notices.to("2006") == []


def discord_chat(sender_id: str, place: str, *, is_group: bool, text: str = "hello") -> InboundChat:
    return InboundChat(
        channel_type="discord", platform_id=place, text=text, sender=f"user {sender_id}", sender_id=sender_id,
        is_group=is_group, mentions_assistant=True,
    )  # fmt: skip


def test_a_chat_stored_as_direct_is_made_a_group_when_the_platform_says_so(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hutch.routing")
    notices = Notices()
    route = InboundRouter(store, {"discord": "42"}, notices, unknown_senders="pair")
    # An older `hutch wire discord:400` guessed a direct chat.
    channel = messaging_groups.create(store, channel_type="discord", platform_id="400", unknown_senders="pair")
    main = agent_groups.get_by_folder(store, "main")
    assert main is not None
    messaging_group_agents.create(store, messaging_group_id=channel.id, agent_group_id=main.id, session_mode="shared")

    route.route_chat(discord_chat("42", "400", is_group=True))
    route.route_chat(discord_chat("42", "400", is_group=True))
    assert messaging_groups.get(store, channel.id).is_group is True  # type: ignore[union-attr]
    assert len([r for r in caplog.records if "corrected" in r.getMessage()]) == 1

    # The owner's real direct chat; a stranger's request is announced there, not in #general.
    route.route_chat(discord_chat("42", "900", is_group=False))
    route.route_chat(discord_chat("77", "901", is_group=False))
    (request,) = pairing_requests.pending(store)
    assert any(request.code in text for text in notices.to("900"))
    assert all(request.code not in text for text in notices.to("400"))


def test_a_discord_chat_stored_as_a_group_is_made_direct_but_a_telegram_one_never(store: Store) -> None:
    route = InboundRouter(store, {"discord": "42", "telegram": OWNER}, Notices())
    main = agent_groups.get_by_folder(store, "main")
    assert main is not None
    dm_stored_as_group = messaging_groups.create(store, channel_type="discord", platform_id="900", is_group=True)
    broadcast = messaging_groups.create(store, channel_type="telegram", platform_id="-1007", is_group=True)
    for chat in (dm_stored_as_group, broadcast):
        messaging_group_agents.create(store, messaging_group_id=chat.id, agent_group_id=main.id, session_mode="shared")

    route.route_chat(discord_chat("42", "900", is_group=False))
    # Telegram reports a broadcast channel (a negative id) as not a group: believed never.
    route.route_chat(
        InboundChat(channel_type="telegram", platform_id="-1007", text="post", sender="Ann", sender_id=OWNER)
    )

    assert messaging_groups.get(store, dm_stored_as_group.id).is_group is False  # type: ignore[union-attr]
    assert messaging_groups.get(store, broadcast.id).is_group is True  # type: ignore[union-attr]
