from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
import pytest

from container_runner.outbox import OutboxActor
from container_runner.tools.base import ToolBox, ToolCall, ToolOutcome
from container_runner.tools.scheduling import scheduling_tools
from container_runner.turn import TurnContext
from protocol import inbound
from protocol.content import CancelTask, ChatIn, PauseTask, ResumeTask, ScheduleTask, TaskIn
from protocol.db import write_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, MessageOut
from tests.fakes.session import ROUTING, make_session, replies, write_in

pytestmark = pytest.mark.timeout(30)

ZONE = "Europe/Berlin"


@dataclass
class Setup:
    layout: SessionLayout
    outbox: pykka.ActorRef[Any]
    row: MessageIn
    box: ToolBox


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    layout = make_session(tmp_path / "session")
    row = write_in(layout, ChatIn(text="remind me", sender="Ann"))
    context = TurnContext()
    context.begin((row,))
    outbox = OutboxActor.start(layout)
    return Setup(layout, outbox, row, ToolBox(scheduling_tools(outbox, context, layout, ZONE)))


def _run(setup: Setup, name: str, arguments: dict[str, Any]) -> ToolOutcome:
    return setup.box.run(ToolCall("call-1", name, arguments))


def _system_row(layout: SessionLayout) -> MessageOut:
    (row,) = replies(layout)
    assert row.kind == "system" and row.seq % 2 == 1
    assert row.routing == ROUTING
    return row


def _task(layout: SessionLayout, prompt: str, status: str = "pending", **fields: Any) -> MessageIn:
    row = write_in(layout, TaskIn(prompt=prompt), trigger=True, **fields)
    if status != "pending":
        with write_transaction(layout.inbound_db) as conn:
            inbound.set_status(conn, [row.id], status)
    return row


def test_definitions_name_their_required_fields(setup: Setup) -> None:
    expected = {
        "schedule_task": ["process_after", "prompt"],
        "update_task": ["task_id"],
        "list_tasks": [],
        "cancel_task": ["task_id"],
        "pause_task": ["task_id"],
        "resume_task": ["task_id"],
    }
    definitions = {d["name"]: d for d in setup.box.definitions()}
    assert set(definitions) == set(expected)
    for name, required in expected.items():
        definition = definitions[name]
        assert definition["description"]
        schema = definition["input_schema"]
        assert schema["type"] == "object"
        assert sorted(schema.get("required", [])) == required
    assert set(definitions["list_tasks"]["input_schema"]["properties"]) == {"status"}


@pytest.mark.parametrize(
    ("given", "expected_utc", "shown"),
    [
        ("2030-12-01T09:00", "2030-12-01T08:00:00.000000Z", "2030-12-01 09:00 CET"),  # local winter time
        ("2030-07-01T09:00", "2030-07-01T07:00:00.000000Z", "2030-07-01 09:00 CEST"),  # local summer time
        ("2030-12-01T09:00+05:00", "2030-12-01T04:00:00.000000Z", "2030-12-01 05:00 CET"),  # offset honoured
        ("2030-12-01T09:00:00Z", "2030-12-01T09:00:00.000000Z", "2030-12-01 10:00 CET"),
    ],
)
def test_schedule_task_writes_a_system_row_in_utc(setup: Setup, given: str, expected_utc: str, shown: str) -> None:
    outcome = _run(setup, "schedule_task", {"prompt": "water the plants", "process_after": given})
    assert not outcome.is_error, outcome.content
    action = _system_row(setup.layout).decoded()
    assert isinstance(action, ScheduleTask)
    assert action.prompt == "water the plants"
    assert action.process_after == expected_utc
    assert action.recurrence is None
    assert outcome.content == f"task {action.task_id} scheduled for {shown}"


def test_schedule_task_keeps_the_cron_recurrence(setup: Setup) -> None:
    arguments = {"prompt": "standup", "process_after": "2030-12-02T09:00", "recurrence": "0 9 * * 1-5"}
    outcome = _run(setup, "schedule_task", arguments)
    assert not outcome.is_error, outcome.content
    row = _system_row(setup.layout)
    action = row.decoded()
    assert isinstance(action, ScheduleTask)
    assert action.recurrence == "0 9 * * 1-5"
    assert action.process_after == "2030-12-02T08:00:00.000000Z"
    assert row.in_reply_to == setup.row.id


def test_a_past_time_is_scheduled_and_said_to_run_now(setup: Setup) -> None:
    outcome = _run(setup, "schedule_task", {"prompt": "late", "process_after": "2020-01-01T00:00:00Z"})
    assert not outcome.is_error
    assert "runs right away" in outcome.content


def test_each_schedule_gets_its_own_task_id(setup: Setup) -> None:
    for _ in range(2):
        _run(setup, "schedule_task", {"prompt": "again", "process_after": "2030-01-01T00:00"})
    first, second = (row.decoded() for row in replies(setup.layout))
    assert first.task_id != second.task_id


def _retried(setup: Setup) -> ToolBox:
    """The same batch's turn in a new runner, as after a kill."""
    context = TurnContext()
    context.begin((setup.row,))
    return ToolBox(scheduling_tools(setup.outbox, context, setup.layout, ZONE))


def test_a_turn_retried_after_a_kill_schedules_its_task_once(setup: Setup) -> None:
    """The agent died after asking for a task; the retried turn asks again, as a model would,
    and there is one request (one task) with the id the first run was told."""
    first = _run(setup, "schedule_task", {"prompt": "water the plants", "process_after": "2030-01-01T09:00"})
    again = _retried(setup).run(
        ToolCall("call-1", "schedule_task", {"prompt": "water the plants", "process_after": "2030-01-01T09:00"})
    )
    assert again.content == first.content
    (row,) = replies(setup.layout)
    assert row.decoded().task_id in first.content


def test_a_retried_turn_asking_for_another_task_gets_it(setup: Setup) -> None:
    _run(setup, "schedule_task", {"prompt": "water the plants", "process_after": "2030-01-01T09:00"})
    box = _retried(setup)
    box.run(ToolCall("call-1", "schedule_task", {"prompt": "feed the cat", "process_after": "2030-01-01T09:00"}))
    box.run(ToolCall("call-2", "cancel_task", {"task_id": "abc"}))
    tasks = [row.decoded() for row in replies(setup.layout)]
    assert [type(t).__name__ for t in tasks] == ["ScheduleTask", "ScheduleTask", "CancelTask"]
    assert tasks[0].task_id != tasks[1].task_id


def test_a_retried_series_action_is_asked_once(setup: Setup) -> None:
    _run(setup, "pause_task", {"task_id": "abc"})
    _retried(setup).run(ToolCall("call-1", "pause_task", {"task_id": "abc"}))
    assert [row.decoded() for row in replies(setup.layout)] == [PauseTask("abc")]


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ({"prompt": "x", "process_after": "next tuesday"}, "not an ISO-8601 time"),
        ({"prompt": "x", "process_after": "2030-13-01T09:00"}, "not an ISO-8601 time"),
        ({"prompt": "x", "process_after": "2030-12-01T09:00", "recurrence": "61 * * * *"}, "not a valid cron"),
        ({"prompt": "x", "process_after": "2030-12-01T09:00", "recurrence": "every day"}, "not a valid cron"),
        ({"prompt": "x"}, "process_after"),
        ({"prompt": "", "process_after": "2030-12-01T09:00"}, "prompt"),
        ({"prompt": "x", "process_after": 20301201}, "process_after"),
    ],
)
def test_schedule_task_rejects_bad_input(setup: Setup, arguments: dict[str, Any], needle: str) -> None:
    outcome = _run(setup, "schedule_task", arguments)
    assert outcome.is_error
    assert needle in outcome.content
    assert replies(setup.layout) == []


def test_list_tasks_without_tasks(setup: Setup) -> None:
    assert _run(setup, "list_tasks", {}) == ToolOutcome("no tasks")


def test_list_tasks_shows_id_status_next_time_and_recurrence(setup: Setup) -> None:
    daily = _task(
        setup.layout,
        "morning briefing",
        process_after="2030-12-01T08:00:00.000000Z",
        recurrence="0 9 * * *",
        series_id="series-daily",
    )
    once = _task(setup.layout, "call mum " * 20, status="paused", process_after="2030-07-01T07:00:00.000000Z")
    now = _task(setup.layout, "right away")
    _task(setup.layout, "old", status="cancelled", series_id="series-old")
    outcome = _run(setup, "list_tasks", {})
    assert not outcome.is_error
    lines = outcome.content.splitlines()
    assert lines[0] == (
        "task_id=series-daily status=pending next=2030-12-01 09:00 CET recurrence='0 9 * * *': morning briefing"
    )
    assert lines[1].startswith(f"task_id={once.id} status=paused next=2030-07-01 09:00 CEST: call mum")
    assert lines[1].endswith("...") and len(lines[1].split(": ", 1)[1]) == 80
    assert lines[2] == f"task_id={now.id} status=pending next=now: right away"
    assert len(lines) == 3  # cancelled tasks and chat messages are not listed
    assert daily.id not in outcome.content  # the series is what cancel/pause act on


@pytest.mark.parametrize("status", ["pending", "paused", "completed", "failed", "cancelled"])
def test_list_tasks_filters_by_status(setup: Setup, status: str) -> None:
    for other in ("pending", "paused", "completed", "failed", "cancelled"):
        _task(setup.layout, f"a {other} task", status=other)
    outcome = _run(setup, "list_tasks", {"status": status})
    (line,) = outcome.content.splitlines()
    assert f"status={status} " in line and line.endswith(f"a {status} task")


def test_list_tasks_rejects_an_unknown_status(setup: Setup) -> None:
    outcome = _run(setup, "list_tasks", {"status": "sleeping"})
    assert outcome.is_error and "status" in outcome.content


@pytest.mark.parametrize(
    ("name", "action", "verb"),
    [
        ("cancel_task", CancelTask, "cancellation"),
        ("pause_task", PauseTask, "pause"),
        ("resume_task", ResumeTask, "resumption"),
    ],
)
def test_series_actions_write_their_system_row(setup: Setup, name: str, action: type[Any], verb: str) -> None:
    outcome = _run(setup, name, {"task_id": "series-daily"})
    assert outcome == ToolOutcome(f"{verb} of task series-daily requested")
    row = _system_row(setup.layout)
    assert row.decoded() == action("series-daily")
    assert row.in_reply_to == setup.row.id
    missing = _run(setup, name, {})
    assert missing.is_error and "task_id" in missing.content
