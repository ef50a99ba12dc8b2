"""`hutch tasks`: the prompts agents scheduled for themselves, one-shot or recurring, and
pausing, resuming or cancelling them (every future run of a recurring one)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from actors.cli import control
from actors.cli.common import (
    SHORT_ID,
    DataDirOption,
    HostFlags,
    console,
    load,
    one_line,
    open_central,
    session_folder,
    when,
)
from actors.cli.sessions import find
from actors.control.requests import ChangeTask, TaskVerb
from actors.control.tasks import read_tasks
from actors.store import agent_groups, sessions
from protocol.timeutil import utc_now

app = typer.Typer(name="tasks", help="Scheduled tasks: list them, pause, resume or cancel one.")

TaskArgument = Annotated[str, typer.Argument(metavar="TASK", help="A task id, or a prefix only it has.")]
SessionOption = Annotated[
    str | None, typer.Option("--session", metavar="ID", help="Only this session's tasks (an id or a prefix).")
]
# A prompt is shown to this many characters; `hutch sessions show` has the session.
_PROMPT_WIDTH = 60


@app.command("list")
def list_tasks(
    data_dir: DataDirOption = None,
    session_id: SessionOption = None,
    every: Annotated[bool, typer.Option("--all", help="Also the finished and cancelled ones.")] = False,
) -> None:
    """The tasks of every session (or one): id, session, state, next run, recurrence, prompt."""
    config = load(HostFlags(data_dir=data_dir))
    now = utc_now()
    with open_central(config) as store:
        scope = [find(store, session_id)] if session_id else sessions.list_all(store)
        groups = {group.id: group for group in agent_groups.list_all(store)}
    table = Table(title="scheduled tasks", title_justify="left")
    table.add_column("task", no_wrap=True)
    table.add_column("session", no_wrap=True)
    for column in ("group", "state", "next run", "repeats", "prompt"):
        table.add_column(column, overflow="fold")
    unreadable: list[str] = []
    for session in scope:
        group = groups[session.agent_group_id]
        try:
            found = read_tasks(session_folder(config, group, session))
        except Exception as exc:  # one bad session DB must not hide the others' tasks
            unreadable.append(f"session {session.id[:SHORT_ID]}: {one_line(exc)}")
            continue
        for series in found:
            if not every and series.state not in {"scheduled", "paused"}:
                continue
            prompt = series.prompt if len(series.prompt) <= _PROMPT_WIDTH else series.prompt[:_PROMPT_WIDTH] + "…"
            table.add_row(
                series.id,
                session.id[:SHORT_ID],
                group.name,
                series.state,
                when(series.next_run, config.timezone, now) if series.next_run else "-",
                series.recurrence or "once",
                prompt,
            )
    if table.row_count:
        console().print(table)
    else:
        console().print("no scheduled tasks" if not every else "no tasks")
    for line in unreadable:
        typer.echo(f"hutch: cannot read the tasks of {line}", err=True)


def _change(verb: TaskVerb, task: str, session_id: str | None, data_dir: DataDirOption) -> None:
    control.run(load(HostFlags(data_dir=data_dir)), ChangeTask(verb=verb, task=task, session=session_id))


@app.command("pause")
def pause(task: TaskArgument, data_dir: DataDirOption = None, session_id: SessionOption = None) -> None:
    """Keep the task from running until it is resumed (a recurring one: every run)."""
    _change("pause", task, session_id, data_dir)


@app.command("resume")
def resume(task: TaskArgument, data_dir: DataDirOption = None, session_id: SessionOption = None) -> None:
    """Let a paused task run again; one whose time has passed runs now."""
    _change("resume", task, session_id, data_dir)


@app.command("cancel")
def cancel(task: TaskArgument, data_dir: DataDirOption = None, session_id: SessionOption = None) -> None:
    """Cancel the task for good (a recurring one: every future run)."""
    _change("cancel", task, session_id, data_dir)
