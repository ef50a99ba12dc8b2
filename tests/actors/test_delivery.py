"""DeliveryActor: one attempt per Deliver, the outcome told to `reply_to`, graceful degradation."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pykka
import pytest

from actors import delivery as delivery_module
from actors.channels.base import CARD, EDIT, FILES, QUESTION, REACTION, Card, ChannelError
from actors.delivery import DeliveryActor
from actors.messages import (
    AskQuestion,
    Deliver,
    Delivered,
    DeliveryAction,
    DeliveryFailed,
    EditText,
    FlushDeliveries,
    Notify,
    React,
    SendCard,
    SendText,
    ShowTyping,
)
from protocol.rows import Routing
from tests.fakes.actors import RecorderActor, wait_for
from tests.fakes.channel import ALL_CAPABILITIES, FakeChannel

pytestmark = pytest.mark.timeout(30)

TARGET = Routing("chat-1", "fake", "thread-9")
SESSION_ID = "s" * 32


@pytest.fixture
def reply_to() -> Iterator[pykka.ActorRef[Any]]:
    ref = RecorderActor.start()
    yield ref
    ref.stop()


StartDelivery = Callable[..., pykka.ActorRef[Any]]


@pytest.fixture
def start_delivery() -> Iterator[StartDelivery]:
    started: list[pykka.ActorRef[Any]] = []

    def start(*channels: FakeChannel) -> pykka.ActorRef[Any]:
        ref = DeliveryActor.start(channels)
        started.append(ref)
        return ref

    yield start
    for ref in started:
        if ref.is_alive():
            ref.stop()


_counter = itertools.count(1)


class Sync(msgspec.Struct, frozen=True):
    """A message the actor ignores; asking it waits until everything before it was handled."""


def deliver(
    delivery: pykka.ActorRef[Any],
    reply_to: pykka.ActorRef[Any],
    action: DeliveryAction,
    *,
    channel_type: str = "fake",
    session_id: str = SESSION_ID,
) -> Delivered | DeliveryFailed:
    """One Deliver; returns what came back to `reply_to` for it."""
    message_out_id = f"out-{next(_counter)}"
    delivery.tell(
        Deliver(
            session_id=session_id,
            message_out_id=message_out_id,
            routing=Routing(TARGET.platform_id, channel_type, TARGET.thread_id),
            action=action,
            reply_to=reply_to,
        )
    )
    (answer,) = wait_for(
        reply_to,
        lambda m: isinstance(m, Delivered | DeliveryFailed) and m.message_out_id == message_out_id,
    )
    assert isinstance(answer, Delivered | DeliveryFailed)
    return answer


# --- sends ---------------------------------------------------------------------------------


def test_send_text_with_files_is_delivered_with_the_platform_id(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any], tmp_path: Path
) -> None:
    channel = FakeChannel()
    delivery = start_delivery(channel)
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"png")

    first = deliver(delivery, reply_to, SendText("hello", (str(picture),)))
    second = deliver(delivery, reply_to, SendText("again"))

    assert first == Delivered(first.message_out_id, "p-1")
    assert second == Delivered(second.message_out_id, "p-2")
    sent = channel.calls_of("send_text")
    assert [call.args for call in sent] == [(TARGET, "hello", (picture,)), (TARGET, "again", ())]


@pytest.mark.parametrize("retryable", [True, False])
def test_channel_error_becomes_delivery_failed_with_its_retry_flag(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any], retryable: bool
) -> None:
    channel = FakeChannel(fail_with=ChannelError("platform says no", retryable=retryable))
    delivery = start_delivery(channel)

    answer = deliver(delivery, reply_to, SendText("hello"))

    assert isinstance(answer, DeliveryFailed)
    assert answer.retryable is retryable
    assert "platform says no" in answer.error
    assert len(channel.calls_of("send_text")) == 1


def test_an_adapter_bug_becomes_a_retryable_failure_and_the_actor_lives_on(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]
) -> None:
    channel = FakeChannel(crash_with=KeyError("oops"))
    delivery = start_delivery(channel)

    answer = deliver(delivery, reply_to, SendText("hello"))

    assert isinstance(answer, DeliveryFailed)
    assert answer.retryable
    assert "KeyError" in answer.error
    assert delivery.is_alive()
    channel.crash_with = None
    assert isinstance(deliver(delivery, reply_to, SendText("hello")), Delivered)


def test_unknown_channel_fails_for_good(start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]) -> None:
    channel = FakeChannel()
    delivery = start_delivery(channel)

    answer = deliver(delivery, reply_to, SendText("hello"), channel_type="telegram")

    assert isinstance(answer, DeliveryFailed)
    assert not answer.retryable
    assert "telegram" in answer.error
    assert channel.sends() == []


def test_a_reply_to_that_stopped_does_not_hurt_the_actor(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]
) -> None:
    channel = FakeChannel()
    delivery = start_delivery(channel)
    gone = RecorderActor.start()
    gone.stop()
    delivery.tell(
        Deliver(
            session_id=SESSION_ID,
            message_out_id="lost",
            routing=TARGET,
            action=SendText("hi"),
            reply_to=gone,
        )
    )

    assert isinstance(deliver(delivery, reply_to, SendText("next")), Delivered)
    assert [call.args[1] for call in channel.calls_of("send_text")] == ["hi", "next"]


# --- degradations --------------------------------------------------------------------------


def test_without_files_the_text_names_the_files(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any], tmp_path: Path
) -> None:
    channel = FakeChannel(capabilities=ALL_CAPABILITIES - {FILES})
    delivery = start_delivery(channel)
    files = (str(tmp_path / "report.pdf"), str(tmp_path / "chart.png"))

    answer = deliver(delivery, reply_to, SendText("here you go", files))

    assert answer == Delivered(answer.message_out_id, "p-1")
    (call,) = channel.calls_of("send_text")
    target, text, sent_files = call.args
    assert target == TARGET
    assert sent_files == ()
    assert text.startswith("here you go")
    assert "report.pdf" in text
    assert "chart.png" in text


def test_edit_with_edit_support_edits_in_place(start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]) -> None:
    channel = FakeChannel()
    delivery = start_delivery(channel)

    answer = deliver(delivery, reply_to, EditText("p-77", "fixed"))

    assert answer == Delivered(answer.message_out_id, "p-77")
    assert [call.args for call in channel.sends()] == [(TARGET, "p-77", "fixed")]


def test_without_edit_a_correction_is_sent(start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]) -> None:
    channel = FakeChannel(capabilities=ALL_CAPABILITIES - {EDIT})
    delivery = start_delivery(channel)

    answer = deliver(delivery, reply_to, EditText("p-77", "fixed"))

    assert answer == Delivered(answer.message_out_id, "p-1")
    assert [call.method for call in channel.sends()] == ["send_text"]
    assert channel.sends()[0].args[1] == "(correction) fixed"


def test_reaction_with_support(start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]) -> None:
    channel = FakeChannel()
    delivery = start_delivery(channel)

    answer = deliver(delivery, reply_to, React("p-5", "👍"))

    assert answer == Delivered(answer.message_out_id, None)
    assert [call.args for call in channel.sends()] == [(TARGET, "p-5", "👍")]


def test_without_reactions_nothing_is_sent_but_it_counts_as_delivered(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]
) -> None:
    channel = FakeChannel(capabilities=ALL_CAPABILITIES - {REACTION})
    delivery = start_delivery(channel)

    answer = deliver(delivery, reply_to, React("p-5", "👍"))

    assert answer == Delivered(answer.message_out_id, None)
    assert channel.sends() == []


def test_without_questions_the_options_are_numbered_text(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]
) -> None:
    channel = FakeChannel(capabilities=ALL_CAPABILITIES - {QUESTION})
    delivery = start_delivery(channel)

    answer = deliver(delivery, reply_to, AskQuestion("q1", "Tea or coffee?", ("Tea", "Coffee")))

    assert answer == Delivered(answer.message_out_id, "p-1")
    (call,) = channel.sends()
    assert call.method == "send_text"
    assert call.args[1] == "Tea or coffee?\n1. Tea\n2. Coffee"


def test_card_with_support(start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]) -> None:
    channel = FakeChannel()
    delivery = start_delivery(channel)
    card = Card("Weather", "Sunny", (("High", "24"),))

    answer = deliver(delivery, reply_to, SendCard(card))

    assert answer == Delivered(answer.message_out_id, "p-1")
    assert [call.args for call in channel.sends()] == [(TARGET, card)]


def test_without_cards_the_card_is_rendered_as_text(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]
) -> None:
    channel = FakeChannel(capabilities=ALL_CAPABILITIES - {CARD})
    delivery = start_delivery(channel)

    answer = deliver(delivery, reply_to, SendCard(Card("Weather", "", (("High", "24"), ("Low", "12")))))

    assert answer == Delivered(answer.message_out_id, "p-1")
    (call,) = channel.sends()
    assert call.method == "send_text"
    assert call.args[1] == "*Weather*\nHigh: 24\nLow: 12"


def test_plain_text_only_channel_degrades_everything(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]
) -> None:
    channel = FakeChannel(capabilities=frozenset())
    delivery = start_delivery(channel)

    for action in (
        SendText("t"),
        EditText("p-1", "e"),
        React("p-1", "x"),
        AskQuestion("q", "Q?", ("a",)),
        SendCard(Card("C")),
    ):
        assert isinstance(deliver(delivery, reply_to, action), Delivered)

    assert {call.method for call in channel.sends()} == {"send_text"}
    assert len(channel.sends()) == 4  # the reaction has no text form


# --- questions -----------------------------------------------------------------------------


@pytest.mark.parametrize("capabilities", [ALL_CAPABILITIES, ALL_CAPABILITIES - {QUESTION}], ids=["buttons", "text"])
def test_a_question_is_shown_as_the_channel_can(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any], capabilities: frozenset[str]
) -> None:
    channel = FakeChannel(capabilities=capabilities)
    delivery = start_delivery(channel)

    answer = deliver(delivery, reply_to, AskQuestion("q-42", "Tea or coffee?", ("Tea", "Coffee")))

    assert answer == Delivered(answer.message_out_id, "p-1")
    if QUESTION in capabilities:
        assert [call.args for call in channel.sends()] == [(TARGET, "q-42", "Tea or coffee?", ("Tea", "Coffee"))]
    else:
        assert [call.args for call in channel.sends()] == [(TARGET, "Tea or coffee?\n1. Tea\n2. Coffee", ())]


# --- notices -------------------------------------------------------------------------------


def test_notify_sends_the_text(start_delivery: StartDelivery) -> None:
    channel = FakeChannel()
    delivery = start_delivery(channel)

    delivery.tell(Notify(TARGET, "your message failed"))
    delivery.ask(FlushDeliveries(), timeout=10)

    assert [call.args for call in channel.sends()] == [(TARGET, "your message failed", ())]


@pytest.mark.parametrize(
    "failure",
    [ChannelError("down", retryable=False), RuntimeError("adapter bug")],
    ids=["channel-error", "adapter-bug"],
)
def test_notify_failures_are_only_logged(
    start_delivery: StartDelivery,
    reply_to: pykka.ActorRef[Any],
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
) -> None:
    caplog.set_level(logging.WARNING, logger="hutch.delivery")
    channel = FakeChannel(fail_with=failure) if isinstance(failure, ChannelError) else FakeChannel(crash_with=failure)
    delivery = start_delivery(channel)

    delivery.tell(Notify(TARGET, "your message failed"))
    delivery.tell(Notify(Routing("chat-1", "telegram"), "nobody hears this"))
    # Answered only after both notices were handled; a crash on either would fail this ask.
    assert delivery.ask(FlushDeliveries(), timeout=10) is None
    channel.fail_with = None
    channel.crash_with = None

    assert delivery.is_alive()
    assert isinstance(deliver(delivery, reply_to, SendText("still here")), Delivered)
    assert [call.args[1] for call in channel.calls_of("send_text")] == ["your message failed", "still here"]
    messages = [record.getMessage() for record in caplog.records if record.name == "hutch.delivery"]
    assert any("your message failed" in message for message in messages)
    assert any("telegram" in message for message in messages)


def test_unexpected_messages_are_ignored(start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]) -> None:
    delivery = start_delivery(FakeChannel())

    assert delivery.ask(Sync()) is None
    assert isinstance(deliver(delivery, reply_to, SendText("ok")), Delivered)


def test_a_slow_channel_holds_up_only_its_own_sends(
    start_delivery: StartDelivery, reply_to: pykka.ActorRef[Any]
) -> None:
    """Each channel sends from a thread of its own: one that hangs (a server down, a long
    timeout) does not keep another channel's messages waiting."""
    stuck = threading.Event()
    release = threading.Event()
    slow = FakeChannel("slow")
    fast = FakeChannel("fake")

    def hang(*_args: Any) -> None:
        stuck.set()
        release.wait(10)

    slow.before_send = hang
    delivery = start_delivery(slow, fast)
    delivery.tell(
        Deliver(session_id=SESSION_ID, message_out_id="m-slow", routing=Routing("c", "slow"),
                action=SendText("waits"), reply_to=reply_to)
    )  # fmt: skip
    assert stuck.wait(10)
    try:
        assert isinstance(deliver(delivery, reply_to, SendText("goes at once")), Delivered)
    finally:
        release.set()
    delivery.ask(FlushDeliveries(), timeout=10)


def test_typing_is_shown_where_the_channel_can_and_is_never_an_error(start_delivery: StartDelivery) -> None:
    can = FakeChannel("fake")
    cannot = FakeChannel("plain", capabilities=frozenset())
    delivery = start_delivery(can, cannot)
    delivery.tell(ShowTyping(TARGET))
    delivery.tell(ShowTyping(Routing("c", "plain")))
    delivery.tell(ShowTyping(Routing("c", "nowhere")))
    delivery.ask(FlushDeliveries(), timeout=10)
    assert [call.args for call in can.calls_of("show_typing")] == [(TARGET,)]
    assert cannot.calls_of("show_typing") == []


def test_a_notice_is_tried_again_while_the_channel_says_it_can_help(
    start_delivery: StartDelivery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pairing code lost to one 502 must still reach its person."""
    monkeypatch.setattr(delivery_module, "NOTICE_RETRY_BASE_S", 0.01)
    channel = FakeChannel(fail_with=ChannelError("502 Bad Gateway", retryable=True))
    delivery = start_delivery(channel)
    delivery.tell(Notify(TARGET, "your pairing code is ABC123"))
    channel.wait_for_calls("send_text", 2)  # tried, and tried again
    channel.fail_with = None
    (*_, last) = channel.wait_for_calls("send_text", 3)
    assert last.args[1] == "your pairing code is ABC123"


def test_a_notice_is_not_tried_again_when_it_cannot_help(start_delivery: StartDelivery) -> None:
    channel = FakeChannel(fail_with=ChannelError("chat not found", retryable=False))
    delivery = start_delivery(channel)
    delivery.tell(Notify(TARGET, "hello"))
    delivery.ask(FlushDeliveries(), timeout=10)
    assert len(channel.calls_of("send_text")) == 1
