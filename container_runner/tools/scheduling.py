"""Tools for tasks the agent sets itself. The container never writes inbound.db
(docs/ARCHITECTURE.md, invariant 5): every change goes out as a `system` row; the host validates and applies it."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import msgspec
import pykka

from container_runner.messages import WriteMessage
from container_runner.outbox import OutboxActor
from container_runner.tools.base import Tool, ToolError, ToolOutcome
from container_runner.tools.function import FunctionTool
from container_runner.turn import TurnContext
from protocol import inbound
from protocol.content import (
    CancelTask,
    ContentError,
    PauseTask,
    ResumeTask,
    ScheduleTask,
    SystemAction,
    TaskIn,
    UpdateTask,
    encode_content,
)
from protocol.cron import CronError, check_cron
from protocol.db import read_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, MessageOut
from protocol.timeutil import format_ts, parse_ts, parse_user_time, utc_now


class _Requester:
    """Writes the `system` rows. Each gets the turn's next effect id, so a turn retried after
    a kill asks for the same change once (as the messaging tools send once); only the same
    content counts as the same request: a retried model may ask for something else."""

    def __init__(self, outbox: pykka.ActorRef[OutboxActor], context: TurnContext) -> None:
        self._outbox = outbox
        self._context = context

    def effect_id(self) -> str | None:
        return self._context.effect_id()

    def request(self, action: SystemAction, effect_id: str | None) -> bool:
        """Write the row under `effect_id`; False when that id already holds another request
        (nothing is written then: the caller makes a fresh one)."""
        write = WriteMessage(action, self._context.routing, self._context.reply_to, effect_id)
        written: MessageOut = self._outbox.ask(write, block=True)
        return effect_id is None or written.content == encode_content(action)

    def request_once(self, action: SystemAction) -> None:
        if not self.request(action, self.effect_id()):
            self.request(action, None)


def _new_task_id(effect_id: str | None = None) -> str:
    """A short id; the same for the same effect, so a retried turn names the same task (and
    never an id the turn's own effects could take)."""
    if effect_id is None:
        return uuid.uuid4().hex[:12]
    return "t" + hashlib.sha256(effect_id.encode()).hexdigest()[:11]


_WHEN = "When to run first: ISO-8601, e.g. 2026-12-01T09:00 (local time unless an offset is given)."
_CRON = "Optional cron expression for a recurring task, in local time, e.g. '0 9 * * 1-5'."


class ScheduleTaskInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prompt: Annotated[str, msgspec.Meta(min_length=1, description="What to do when the task runs.")]
    process_after: Annotated[
        str,
        msgspec.Meta(
            description="When to run first: ISO-8601, e.g. 2026-12-01T09:00 (local time unless an offset is given)."
        ),
    ]
    recurrence: Annotated[
        str | None,
        msgspec.Meta(description="Optional cron expression for a recurring task, in local time, e.g. '0 9 * * 1-5'."),
    ] = None


class ScheduleTaskTool(FunctionTool[ScheduleTaskInput]):
    name = "schedule_task"
    description = "Schedule a prompt for yourself to run later, once or on a cron schedule."
    input_type = ScheduleTaskInput

    def __init__(self, requester: _Requester, zone: str) -> None:
        self._requester = requester
        self._zone = zone

    def call(self, arguments: ScheduleTaskInput) -> ToolOutcome:
        try:
            when = parse_user_time(arguments.process_after, self._zone)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        if arguments.recurrence:
            try:
                check_cron(arguments.recurrence)
            except CronError as exc:
                raise ToolError(f"recurrence {exc}") from None
        # A retried turn asks for the same task under the same ids: the same row.
        effect = self._requester.effect_id()
        action = ScheduleTask(_new_task_id(effect), arguments.prompt, format_ts(when), arguments.recurrence or None)
        if not self._requester.request(action, effect):
            action = msgspec.structs.replace(action, task_id=_new_task_id())
            self._requester.request(action, None)
        task_id = action.task_id
        local = when.astimezone(ZoneInfo(self._zone)).strftime("%Y-%m-%d %H:%M %Z")
        late = " (that time has passed: it runs right away)" if when < utc_now() else ""
        return ToolOutcome(f"task {task_id} scheduled for {local}{late}")


class UpdateTaskInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    task_id: Annotated[str, msgspec.Meta(min_length=1, description="The task_id from schedule_task or list_tasks.")]
    prompt: Annotated[str | None, msgspec.Meta(description="A new prompt; leave out to keep it.")] = None
    process_after: Annotated[
        str | None,
        msgspec.Meta(description="A new time for its next run, as in schedule_task; leave out to keep it."),
    ] = None
    recurrence: Annotated[
        str | None, msgspec.Meta(description="A new cron expression, in local time; leave out to keep it.")
    ] = None
    clear_recurrence: Annotated[bool, msgspec.Meta(description="True to make a recurring task run only once more.")] = (
        False
    )


class UpdateTaskTool(FunctionTool[UpdateTaskInput]):
    name = "update_task"
    description = (
        "Change a scheduled task's prompt, next time or recurrence (all its pending and paused runs); "
        "give only what changes."
    )
    input_type = UpdateTaskInput

    def __init__(self, requester: _Requester, zone: str) -> None:
        self._requester = requester
        self._zone = zone

    def call(self, arguments: UpdateTaskInput) -> ToolOutcome:
        said: list[str] = []
        when = None
        if arguments.prompt is not None:
            if not arguments.prompt.strip():
                raise ToolError("prompt must not be empty; leave it out to keep it")
            said.append("prompt")
        if arguments.process_after is not None:
            try:
                when = parse_user_time(arguments.process_after, self._zone)
            except ValueError as exc:
                raise ToolError(str(exc)) from None
            said.append(when.astimezone(ZoneInfo(self._zone)).strftime("time %Y-%m-%d %H:%M %Z"))
        recurrence = arguments.recurrence or None
        if recurrence is not None:
            if arguments.clear_recurrence:
                raise ToolError("give either a recurrence or clear_recurrence, not both")
            try:
                check_cron(recurrence)
            except CronError as exc:
                raise ToolError(f"recurrence {exc}") from None
            said.append(f"recurrence {recurrence!r}")
        if arguments.clear_recurrence:
            said.append("no more recurrence")
        if not said:
            raise ToolError("nothing to change: give a prompt, process_after, recurrence or clear_recurrence")
        action = UpdateTask(
            arguments.task_id,
            prompt=arguments.prompt,
            process_after=format_ts(when) if when is not None else None,
            recurrence=recurrence,
            clear_recurrence=arguments.clear_recurrence,
        )
        # Under the turn's effect id, as pause and cancel: a retried turn asks for it once.
        self._requester.request_once(action)
        return ToolOutcome(f"update of task {arguments.task_id} requested: {', '.join(said)}")


class ListTasksInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: Literal["pending", "paused", "completed", "failed", "cancelled"] | None = None


class ListTasks(FunctionTool[ListTasksInput]):
    name = "list_tasks"
    description = "List your scheduled tasks, optionally only those with one status."
    input_type = ListTasksInput

    def __init__(self, layout: SessionLayout, zone: str) -> None:
        self._layout = layout
        self._zone = ZoneInfo(zone)

    def call(self, arguments: ListTasksInput) -> ToolOutcome:
        with read_transaction(self._layout.inbound_db) as conn:
            statuses = (arguments.status,) if arguments.status else ("pending", "paused", "completed", "failed")
            rows = [row for row in inbound.messages_with_status(conn, *statuses) if row.kind == "task"]
        if not rows:
            return ToolOutcome("no tasks")
        return ToolOutcome("\n".join(self._line(row) for row in rows))

    def _line(self, row: MessageIn) -> str:
        try:
            prompt = row.decoded().prompt if isinstance(row.decoded(), TaskIn) else ""
        except ContentError:
            prompt = "?"
        when = (
            parse_ts(row.process_after).astimezone(self._zone).strftime("%Y-%m-%d %H:%M %Z")
            if row.process_after
            else "now"
        )
        repeat = f" recurrence={row.recurrence!r}" if row.recurrence else ""
        excerpt = prompt if len(prompt) <= 80 else prompt[:77] + "..."
        return f"task_id={row.series_id or row.id} status={row.status} next={when}{repeat}: {excerpt}"


class TaskIdInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    task_id: Annotated[str, msgspec.Meta(min_length=1, description="The task_id from schedule_task or list_tasks.")]


class _SeriesAction(FunctionTool[TaskIdInput]):
    input_type = TaskIdInput
    action: type[CancelTask | PauseTask | ResumeTask]
    verb: str

    def __init__(self, requester: _Requester) -> None:
        self._requester = requester

    def call(self, arguments: TaskIdInput) -> ToolOutcome:
        self._requester.request_once(self.action(arguments.task_id))
        return ToolOutcome(f"{self.verb} of task {arguments.task_id} requested")


class CancelTaskTool(_SeriesAction):
    name = "cancel_task"
    description = "Cancel a task, with all its future occurrences."
    action = CancelTask
    verb = "cancellation"


class PauseTaskTool(_SeriesAction):
    name = "pause_task"
    description = "Pause a task (all its occurrences) until it is resumed."
    action = PauseTask
    verb = "pause"


class ResumeTaskTool(_SeriesAction):
    name = "resume_task"
    description = "Resume a paused task."
    action = ResumeTask
    verb = "resumption"


def scheduling_tools(
    outbox: pykka.ActorRef[OutboxActor], context: TurnContext, layout: SessionLayout, zone: str
) -> list[Tool]:
    requester = _Requester(outbox, context)
    return [
        ScheduleTaskTool(requester, zone),
        UpdateTaskTool(requester, zone),
        ListTasks(layout, zone),
        CancelTaskTool(requester),
        PauseTaskTool(requester),
        ResumeTaskTool(requester),
    ]
