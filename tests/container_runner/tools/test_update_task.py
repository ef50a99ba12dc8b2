"""update_task on the agent's side: one `system` row, in UTC, asked for once per turn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from container_runner.outbox import OutboxActor
from container_runner.tools.base import ToolBox, ToolCall, ToolOutcome
from container_runner.tools.scheduling import scheduling_tools
from container_runner.turn import TurnContext
from protocol.content import ChatIn, UpdateTask
from protocol.layout import SessionLayout
from protocol.rows import MessageIn
from tests.fakes.session import make_session, replies, write_in

pytestmark = pytest.mark.timeout(30)

ZONE = "Europe/Berlin"


class Setup:
    def __init__(self, root: Path) -> None:
        self.layout: SessionLayout = make_session(root / "session")
        self.row: MessageIn = write_in(self.layout, ChatIn(text="move my reminder", sender="Ann"))
        self.outbox = OutboxActor.start(self.layout)

    def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        """In a new runner each time, on the same batch: what a turn retried after a kill is."""
        context = TurnContext()
        context.begin((self.row,))
        box = ToolBox(scheduling_tools(self.outbox, context, self.layout, ZONE))
        return box.run(ToolCall("call-1", "update_task", arguments))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.outbox.stop()


def test_an_update_is_one_system_row_in_utc(setup: Setup) -> None:
    outcome = setup.run(
        {"task_id": "t1", "prompt": "water the roses", "process_after": "2030-12-01T09:00", "recurrence": "0 9 * * 1"}
    )
    assert outcome == ToolOutcome(
        "update of task t1 requested: prompt, time 2030-12-01 09:00 CET, recurrence '0 9 * * 1'"
    )
    (row,) = replies(setup.layout)
    assert row.kind == "system" and row.in_reply_to == setup.row.id
    assert row.decoded() == UpdateTask(
        "t1", prompt="water the roses", process_after="2030-12-01T08:00:00.000000Z", recurrence="0 9 * * 1"
    )


def test_clearing_the_recurrence_alone(setup: Setup) -> None:
    assert not setup.run({"task_id": "t1", "clear_recurrence": True}).is_error
    (row,) = replies(setup.layout)
    assert row.decoded() == UpdateTask("t1", clear_recurrence=True)


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ({"task_id": "t1"}, "nothing to change"),
        ({"prompt": "x"}, "task_id"),
        ({"task_id": "t1", "prompt": " "}, "prompt must not be empty"),
        ({"task_id": "t1", "process_after": "next tuesday"}, "not an ISO-8601 time"),
        ({"task_id": "t1", "recurrence": "61 * * * *"}, "not a valid cron"),
        ({"task_id": "t1", "recurrence": "0 9 * * *", "clear_recurrence": True}, "not both"),
        ({"task_id": "t1", "when": "now"}, "when"),
    ],
)
def test_bad_input_is_refused_before_any_row(setup: Setup, arguments: dict[str, Any], needle: str) -> None:
    outcome = setup.run(arguments)
    assert outcome.is_error and needle in outcome.content
    assert replies(setup.layout) == []


def test_a_retried_turn_asks_for_its_update_once(setup: Setup) -> None:
    arguments = {"task_id": "t1", "prompt": "water the roses"}
    first = setup.run(arguments)
    again = setup.run(arguments)
    assert again == first
    assert [row.decoded() for row in replies(setup.layout)] == [UpdateTask("t1", prompt="water the roses")]


def test_a_retried_turn_asking_for_another_update_gets_it(setup: Setup) -> None:
    setup.run({"task_id": "t1", "prompt": "water the roses"})
    setup.run({"task_id": "t1", "prompt": "water the tulips"})
    prompts = [row.decoded().prompt for row in replies(setup.layout)]
    assert prompts == ["water the roses", "water the tulips"]
