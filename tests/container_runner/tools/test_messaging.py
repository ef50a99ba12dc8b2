from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
import pytest

from container_runner.outbox import OutboxActor
from container_runner.questions import QuestionBoard
from container_runner.tools.base import ToolBox, ToolCall, ToolOutcome
from container_runner.tools.messaging import messaging_tools
from container_runner.turn import TurnContext
from protocol.content import AskQuestionOut, ChatIn, ChatOut, EditOut, ReactionOut
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, MessageOut
from tests.fakes.session import ROUTING, FolderEvents, make_session, replies, write_in

pytestmark = pytest.mark.timeout(30)


@dataclass
class Setup:
    layout: SessionLayout
    workspace: Path
    outbox: pykka.ActorRef[Any]
    context: TurnContext
    board: QuestionBoard
    row: MessageIn

    def box(self, question_timeout_s: float = 10.0) -> ToolBox:
        tools = messaging_tools(self.outbox, self.context, self.layout, self.workspace, self.board, question_timeout_s)
        return ToolBox(tools)


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    layout = make_session(tmp_path / "session")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    row = write_in(layout, ChatIn(text="hello", sender="Ann", sender_id="u1"))
    context = TurnContext()
    context.begin((row,))
    outbox = OutboxActor.start(layout)
    return Setup(layout, workspace, outbox, context, QuestionBoard(), row)


@pytest.fixture
def events(setup: Setup) -> Iterator[FolderEvents]:
    watcher = FolderEvents(setup.layout.root)
    yield watcher
    watcher.close()


def _run(box: ToolBox, name: str, arguments: dict[str, Any]) -> ToolOutcome:
    return box.run(ToolCall("call-1", name, arguments))


def _only_reply(layout: SessionLayout) -> MessageOut:
    (row,) = replies(layout)
    return row


def test_every_definition_names_its_required_fields(setup: Setup) -> None:
    expected = {
        "send_message": ["text"],
        "send_card": ["title"],
        "send_file": ["path"],
        "edit_message": ["message_id", "text"],
        "add_reaction": ["message_id", "emoji"],
        "ask_user_question": ["question", "options"],
    }
    definitions = {d["name"]: d for d in setup.box().definitions()}
    assert set(definitions) == set(expected)
    for name, required in expected.items():
        definition = definitions[name]
        assert isinstance(definition["description"], str) and definition["description"]
        schema = definition["input_schema"]
        assert schema["type"] == "object"
        assert sorted(schema["required"]) == sorted(required)
        assert set(required) <= set(schema["properties"])


def test_send_message_writes_a_chat_row_with_odd_seq_and_the_routing(setup: Setup) -> None:
    outcome = _run(setup.box(), "send_message", {"text": "working on it"})
    row = _only_reply(setup.layout)
    assert not outcome.is_error
    assert outcome.content == f"sent as message {row.seq}"
    assert row.kind == "chat" and row.seq % 2 == 1 and row.seq > setup.row.seq
    assert row.routing == ROUTING
    assert row.in_reply_to == setup.row.id
    assert row.decoded() == ChatOut(text="working on it")


def test_send_file_copies_a_workspace_file_into_the_outbox(setup: Setup) -> None:
    (setup.workspace / "reports").mkdir()
    (setup.workspace / "reports" / "week.txt").write_text("all good")
    outcome = _run(setup.box(), "send_file", {"path": "reports/week.txt", "text": "the report"})
    assert not outcome.is_error, outcome.content
    row = _only_reply(setup.layout)
    assert row.kind == "chat" and row.seq % 2 == 1
    assert row.decoded() == ChatOut(text="the report", files=["week.txt"])
    assert (setup.layout.outbox(row.id) / "week.txt").read_text() == "all good"


def test_send_file_accepts_an_absolute_path_and_a_received_attachment(setup: Setup) -> None:
    (setup.workspace / "a.txt").write_text("a")
    attachment = setup.layout.inbox(setup.row.id)
    attachment.mkdir(parents=True)
    (attachment / "photo.jpg").write_bytes(b"\xff\xd8")
    box = setup.box()
    assert not _run(box, "send_file", {"path": str(setup.workspace / "a.txt")}).is_error
    assert not _run(box, "send_file", {"path": str(attachment / "photo.jpg")}).is_error
    first, second = replies(setup.layout)
    assert first.decoded().files == ["a.txt"] and second.decoded().files == ["photo.jpg"]
    assert (setup.layout.outbox(second.id) / "photo.jpg").read_bytes() == b"\xff\xd8"


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "link.txt"])
def test_send_file_refuses_paths_outside_the_workspace(setup: Setup, path: str) -> None:
    outside = setup.workspace.parent / "outside.txt"
    outside.write_text("secret")
    os.symlink(outside, setup.workspace / "link.txt")
    outcome = _run(setup.box(), "send_file", {"path": path})
    assert outcome.is_error
    assert "only files in your workspace" in outcome.content
    assert replies(setup.layout) == []
    assert list((setup.layout.out / "outbox").iterdir()) == []


@pytest.mark.parametrize("path", ["missing.txt", "folder"])
def test_send_file_refuses_what_is_not_a_file(setup: Setup, path: str) -> None:
    (setup.workspace / "folder").mkdir()
    outcome = _run(setup.box(), "send_file", {"path": path})
    assert outcome.is_error
    assert "no such file" in outcome.content
    assert replies(setup.layout) == []


def test_edit_message_accepts_an_earlier_reply(setup: Setup) -> None:
    box = setup.box()
    _run(box, "send_message", {"text": "draft"})
    sent = _only_reply(setup.layout)
    outcome = _run(box, "edit_message", {"message_id": sent.seq, "text": "final"})
    assert not outcome.is_error, outcome.content
    _, edit = replies(setup.layout)
    assert edit.kind == "edit" and edit.seq % 2 == 1 and edit.seq > sent.seq
    assert edit.decoded() == EditOut(message_seq=sent.seq, text="final")
    assert edit.routing == ROUTING
    assert outcome.content == f"edit requested as message {edit.seq}"


def test_edit_message_refuses_unknown_inbound_and_non_chat_seqs(setup: Setup) -> None:
    box = setup.box()
    _run(box, "send_message", {"text": "draft"})
    sent = _only_reply(setup.layout)
    _run(box, "edit_message", {"message_id": sent.seq, "text": "v2"})
    edit = replies(setup.layout)[-1]
    for seq in (999, setup.row.seq, edit.seq):
        outcome = _run(box, "edit_message", {"message_id": seq, "text": "nope"})
        assert outcome.is_error
        assert f"message {seq} is not a message you sent" == outcome.content
    assert len(replies(setup.layout)) == 2


def test_add_reaction_accepts_inbound_and_outbound_seqs(setup: Setup) -> None:
    box = setup.box()
    _run(box, "send_message", {"text": "mine"})
    mine = _only_reply(setup.layout)
    assert not _run(box, "add_reaction", {"message_id": setup.row.seq, "emoji": "👍"}).is_error
    assert not _run(box, "add_reaction", {"message_id": mine.seq, "emoji": "🎉"}).is_error
    _, on_theirs, on_mine = replies(setup.layout)
    assert on_theirs.kind == on_mine.kind == "reaction"
    assert on_theirs.decoded() == ReactionOut(message_seq=setup.row.seq, emoji="👍")
    assert on_mine.decoded() == ReactionOut(message_seq=mine.seq, emoji="🎉")
    assert on_mine.seq % 2 == 1 and on_mine.routing == ROUTING


@pytest.mark.parametrize("seq", [98, 97])
def test_add_reaction_refuses_unknown_seqs(setup: Setup, seq: int) -> None:
    outcome = _run(setup.box(), "add_reaction", {"message_id": seq, "emoji": "👍"})
    assert outcome.is_error
    assert f"no message {seq}" in outcome.content
    assert replies(setup.layout) == []


def _question(layout: SessionLayout) -> AskQuestionOut | None:
    for row in replies(layout):
        if row.kind == "ask_question":
            content: AskQuestionOut = row.decoded()
            return content
    return None


def test_ask_user_question_returns_the_answer(setup: Setup, events: FolderEvents) -> None:
    box = setup.box(question_timeout_s=20)
    arguments = {"question": "Which day?", "options": ["Monday", "Tuesday"]}
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_run, box, "ask_user_question", arguments)
        question = events.wait_until(lambda: _question(setup.layout))
        assert question.question == "Which day?" and question.options == ["Monday", "Tuesday"]
        assert setup.board.answer(question.question_id, "Tuesday")
        outcome = pending.result(timeout=10)
    assert outcome == ToolOutcome("the user chose: Tuesday")
    row = _only_reply(setup.layout)
    assert row.seq % 2 == 1 and row.routing == ROUTING and row.in_reply_to == setup.row.id
    # Answered once: a late second answer finds nobody waiting.
    assert not setup.board.answer(question.question_id, "Monday")


def test_ask_user_question_times_out_as_an_error(setup: Setup) -> None:
    outcome = _run(setup.box(question_timeout_s=0.2), "ask_user_question", {"question": "Ok?", "options": ["yes"]})
    assert outcome.is_error
    assert outcome.content.startswith("no answer within")
    question = _question(setup.layout)
    assert question is not None
    assert not setup.board.answer(question.question_id, "yes")


@pytest.mark.parametrize(
    ("name", "arguments", "field"),
    [
        ("send_message", {}, "text"),
        ("send_message", {"text": 5}, "text"),
        ("send_message", {"text": ""}, "text"),
        ("send_file", {"path": "a.txt", "colour": "red"}, "colour"),
        ("edit_message", {"message_id": "three", "text": "x"}, "message_id"),
        ("add_reaction", {"message_id": 2}, "emoji"),
        ("ask_user_question", {"question": "Which?", "options": "a, b"}, "options"),
        ("ask_user_question", {"question": "Which?", "options": []}, "options"),
    ],
)
def test_bad_input_is_an_error_naming_the_field(setup: Setup, name: str, arguments: dict[str, Any], field: str) -> None:
    outcome = _run(setup.box(), name, arguments)
    assert outcome.is_error
    assert outcome.content.startswith(f"invalid input for {name}")
    assert field in outcome.content
    assert replies(setup.layout) == []


def test_an_unknown_tool_is_an_error_listing_the_tools(setup: Setup) -> None:
    outcome = _run(setup.box(), "launch_rocket", {})
    assert outcome.is_error
    assert "launch_rocket" in outcome.content and "send_message" in outcome.content


def test_a_turn_retried_after_a_kill_sends_each_message_once(setup: Setup) -> None:
    """The agent died mid turn after telling the person something; the retried turn says it
    again, as a model would, and the person gets it once. What it says differently goes."""
    _run(setup.box(), "send_message", {"text": "working on it"})
    _run(setup.box(), "send_message", {"text": "half way"})

    retried = TurnContext()  # a new runner, the same batch
    retried.begin((setup.row,))
    setup.context = retried
    box = setup.box()
    assert (
        _run(box, "send_message", {"text": "working on it"}).content
        == f"sent as message {replies(setup.layout)[0].seq}"
    )
    _run(box, "send_message", {"text": "almost there"})  # new in this run: sent

    texts = [row.decoded().text for row in replies(setup.layout)]
    assert texts == ["working on it", "half way", "almost there"]


def test_follow_ups_joining_a_turn_keep_its_count(setup: Setup) -> None:
    _run(setup.box(), "send_message", {"text": "one"})
    later = write_in(setup.layout, ChatIn(text="and also", sender="Ann", sender_id="u1"))
    setup.context.begin((setup.row, later))  # the agent took a follow-up into the turn
    _run(setup.box(), "send_message", {"text": "two"})
    assert [row.id for row in replies(setup.layout)] == [f"{setup.row.id}-e1", f"{setup.row.id}-e2"]
