"""The delivery plan: what a checked row asks of a channel, decided from the row and what the
host knows, with no I/O; and `attach_files`, the one step that looks at the disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.channels.base import Card, card_as_text
from actors.messages import AskQuestion, EditText, React, SendCard, SendText
from actors.session import plan
from actors.session.plan import (
    DeliveryRejected,
    References,
    attach_files,
    plan_action,
    referenced_seq,
    release_files,
    target_of,
)
from protocol.content import AskQuestionOut, CardField, CardOut, ChatOut, EditOut, ReactionOut, ScheduleTask
from protocol.layout import SessionLayout
from protocol.rows import MessageOut, Routing

pytestmark = pytest.mark.timeout(30)

ROUTES = frozenset({("cli", "chat-1")})


def row(
    message_id: str = "out-1", *, platform_id: str | None = "chat-1", channel_type: str | None = "cli"
) -> MessageOut:
    return MessageOut(
        id=message_id, seq=7, timestamp="2030-01-01T09:00:00.000Z", kind="chat",
        platform_id=platform_id, channel_type=channel_type, thread_id="t",
    )  # fmt: skip


def test_the_target_is_the_rows_routing_for_a_chat_the_session_knows() -> None:
    assert target_of(row(), ROUTES) == Routing("chat-1", "cli", "t")


@pytest.mark.parametrize(
    ("platform_id", "channel_type", "reason"),
    [(None, "cli", "names no channel"), ("chat-1", None, "names no channel"), ("chat-2", "cli", "never talked to")],
)
def test_a_row_for_no_chat_or_a_stranger_is_rejected(
    platform_id: str | None, channel_type: str | None, reason: str
) -> None:
    with pytest.raises(DeliveryRejected, match=reason):
        target_of(row(platform_id=platform_id, channel_type=channel_type), ROUTES)


def test_plain_actions_need_nothing_known() -> None:
    refs = References()
    assert plan_action(row(), ChatOut(text="hi", files=["a.txt"]), refs) == SendText("hi", ("a.txt",))
    assert plan_action(row(), AskQuestionOut(question_id="q", question="?", options=["y", "n"]), refs) == AskQuestion(
        "q", "?", ("y", "n")
    )
    card = CardOut(title="T", text="x", fields=[CardField(label="k", value="v")])
    assert plan_action(row(), card, refs) == SendCard(Card("T", "x", (("k", "v"),)))


def test_a_card_with_buttons_is_asked_as_a_question_whose_text_is_the_card() -> None:
    card = CardOut(
        title="Deploy?", text="v2 is ready", fields=[CardField(label="tests", value="412")],
        buttons=["Ship it", "Wait"], question_id="c1",
    )  # fmt: skip
    action = plan_action(row(), card, References())
    text = card_as_text(Card("Deploy?", "v2 is ready", (("tests", "412"),)))
    assert action == AskQuestion("c1", text, ("Ship it", "Wait"))
    assert action.question == "*Deploy?*\nv2 is ready\ntests: 412"


def test_an_empty_message_is_rejected() -> None:
    with pytest.raises(DeliveryRejected, match="empty message"):
        plan_action(row(), ChatOut(text="  "), References())


def test_an_edit_needs_a_delivered_message_of_the_agents() -> None:
    sent = References(sent={5: "p-5"})
    assert referenced_seq(EditOut(message_seq=5, text="fixed")) == 5
    assert plan_action(row(), EditOut(message_seq=5, text="fixed"), sent) == EditText("p-5", "fixed")
    with pytest.raises(DeliveryRejected, match="never delivered"):
        plan_action(row(), EditOut(message_seq=9, text="fixed"), sent)
    with pytest.raises(DeliveryRejected, match="not one the agent sent"):
        plan_action(row(), EditOut(message_seq=4, text="fixed"), References(received={4: "p-4"}))


def test_a_reaction_points_at_either_side_by_parity() -> None:
    refs = References(sent={5: "p-5"}, received={4: "pm-4"})
    assert plan_action(row(), ReactionOut(message_seq=5, emoji="👍"), refs) == React("p-5", "👍")
    assert plan_action(row(), ReactionOut(message_seq=4, emoji="👍"), refs) == React("pm-4", "👍")
    with pytest.raises(DeliveryRejected, match="no platform message"):
        plan_action(row(), ReactionOut(message_seq=6, emoji="👍"), refs)


def test_what_a_channel_does_not_deliver_is_rejected() -> None:
    with pytest.raises(DeliveryRejected, match="not something a channel delivers"):
        plan_action(row(), ScheduleTask(task_id="t", prompt="p", process_after="2030-01-01T09:00:00Z"), References())


def test_attach_files_checks_each_file_inside_the_messages_outbox(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "s")
    layout.create()
    folder = layout.outbox("out-1")
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "link").symlink_to(tmp_path)

    attached = attach_files(layout, "out-1", SendText("hi", ("a.txt",)))
    assert attached == SendText("hi", (str(layout.sent("out-1") / "a.txt"),))
    assert (layout.sent("out-1") / "a.txt").read_text() == "a"  # a copy the agent cannot swap
    assert attach_files(layout, "out-1", EditText("p", "x")) == EditText("p", "x")
    for name in ("link", "../s/inbox", "missing.txt"):
        with pytest.raises(DeliveryRejected):
            attach_files(layout, "out-1", SendText("hi", (name,)))


def test_the_files_of_one_message_share_one_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file within its cap, together past the message's: refused, and nothing of the
    message's copies is left behind (20 sparse files of 50 MB once cost 1 GB of disk a row)."""
    monkeypatch.setattr(plan, "MAX_OUTBOX_MESSAGE_BYTES", 10)
    layout = SessionLayout(tmp_path / "s")
    layout.create()
    folder = layout.outbox("out-1")
    folder.mkdir(parents=True)
    for name in ("a", "b", "c"):
        (folder / name).write_bytes(b"x" * 4)
    assert attach_files(layout, "out-1", SendText("two fit", ("a", "b")))
    with pytest.raises(DeliveryRejected, match="more than 2"):
        attach_files(layout, "out-1", SendText("three do not", ("a", "b", "c")))
    assert not layout.sent("out-1").exists()


def test_a_settled_messages_copies_are_released(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "s")
    layout.create()
    folder = layout.outbox("out-1")
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    attach_files(layout, "out-1", SendText("hi", ("a.txt",)))
    release_files(layout, "out-1")
    assert not layout.sent("out-1").exists()
    assert (folder / "a.txt").exists()  # the agent's own file is the agent's
    release_files(layout, "../../etc")  # an id no copy was made under: nothing happens
