"""send_card: a card row within CardOut's caps, sent once per turn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from container_runner.outbox import OutboxActor
from container_runner.questions import QuestionBoard
from container_runner.tools.base import ToolBox, ToolCall
from container_runner.tools.messaging import card_question_id, messaging_tools
from container_runner.turn import TurnContext
from protocol.content import MAX_TEXT_CHARS, CardField, CardOut, ChatIn
from protocol.layout import SessionLayout
from protocol.rows import MessageIn
from tests.fakes.session import ROUTING, make_session, replies, write_in

pytestmark = pytest.mark.timeout(30)


class Setup:
    def __init__(self, root: Path) -> None:
        self.layout: SessionLayout = make_session(root / "session")
        self.workspace = root / "workspace"
        self.workspace.mkdir()
        self.row: MessageIn = write_in(self.layout, ChatIn(text="status?", sender="Ann"))
        self.outbox = OutboxActor.start(self.layout)

    def box(self) -> ToolBox:
        context = TurnContext()  # each box a new runner on the same batch, as after a kill
        context.begin((self.row,))
        return ToolBox(messaging_tools(self.outbox, context, self.layout, self.workspace, QuestionBoard(), 1.0))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.outbox.stop()


def _card(box: ToolBox, arguments: dict[str, Any]) -> Any:
    return box.run(ToolCall("call-1", "send_card", arguments))


def test_a_card_is_a_card_row(setup: Setup) -> None:
    arguments = {"title": "Build #12", "text": "all **green**", "fields": [{"label": "tests", "value": "512"}]}
    outcome = _card(setup.box(), arguments)
    (row,) = replies(setup.layout)
    assert not outcome.is_error and outcome.content == f"card sent as message {row.seq}"
    assert row.kind == "card" and row.routing == ROUTING and row.in_reply_to == setup.row.id
    assert row.decoded() == CardOut(title="Build #12", text="all **green**", fields=[CardField("tests", "512")])


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title must not be blank"),
        ({"title": "x" * 257}, "title"),
        ({"title": "t", "text": "x" * (MAX_TEXT_CHARS + 1)}, "text"),
        ({"title": "t", "fields": [{"label": "l", "value": "v"}] * 26}, "fields"),
        ({"title": "t", "fields": [{"label": "", "value": "v"}]}, "label"),
        ({"title": "t", "fields": [{"label": "l"}]}, "value"),
        ({"title": "t", "buttons": ["b"] * 9}, "buttons"),
        ({"title": "t", "buttons": ["b" * 65]}, "buttons"),
        ({"title": "t", "buttons": ["€" * 22]}, "more than 64 bytes"),
        ({"title": "t", "buttons": [" "]}, "must not be blank"),
        ({"title": "t", "colour": "red"}, "colour"),
        # Each part within its cap, the whole past the row's: refused here, not by the host.
        ({"title": "t", "fields": [{"label": "l", "value": "v" * MAX_TEXT_CHARS}] * 5}, "shorten"),
    ],
)
def test_a_card_past_a_cap_is_refused_and_nothing_is_sent(setup: Setup, arguments: dict[str, Any], needle: str) -> None:
    outcome = _card(setup.box(), arguments)
    assert outcome.is_error and needle in outcome.content
    assert replies(setup.layout) == []


def test_a_retried_turn_sends_its_card_once(setup: Setup) -> None:
    arguments = {"title": "Weather", "text": "sunny"}
    first = _card(setup.box(), arguments)
    again = _card(setup.box(), arguments)
    assert again.content == first.content
    assert len(replies(setup.layout)) == 1


def test_a_card_with_buttons_names_its_question_and_a_retried_turn_sends_it_once(setup: Setup) -> None:
    arguments = {"title": "Deploy?", "text": "v2 is ready", "buttons": ["Ship it", "Wait"]}
    first = _card(setup.box(), arguments)
    again = _card(setup.box(), arguments)
    (row,) = replies(setup.layout)
    assert not first.is_error and again.content == first.content == f"card sent as message {row.seq}"
    card = row.decoded()
    assert card.buttons == ["Ship it", "Wait"] and card.question_id == card_question_id(row.id)
    # Short enough for Telegram's 64-byte callback data with the option's index.
    assert len(f"q:{card.question_id}:7".encode()) <= 64


def test_a_retried_turn_that_sends_another_card_asks_another_question(setup: Setup) -> None:
    _card(setup.box(), {"title": "Deploy?", "buttons": ["Ship it"]})
    _card(setup.box(), {"title": "Deploy now?", "buttons": ["Ship it"]})
    first, second = (row.decoded() for row in replies(setup.layout))
    assert first.title == "Deploy?" and second.title == "Deploy now?"
    assert first.question_id != second.question_id
