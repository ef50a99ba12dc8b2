"""`hutch sessions`: the conversations, each of one agent group, with the work they hold."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from actors.cli import control
from actors.cli.common import (
    SHORT_ID,
    CliError,
    DataDirOption,
    HostFlags,
    Queue,
    age,
    console,
    load,
    open_central,
    read_queue,
    session_folder,
    when,
)
from actors.control.operations import OperationError, find_session
from actors.control.requests import ClearSession, StopSession
from actors.store import agent_groups, messaging_groups, pending_questions, sessions
from actors.store.db import Store
from actors.store.messaging_groups import MessagingGroup
from actors.store.sessions import Session
from protocol.layout import SessionLayout
from protocol.timeutil import utc_now

app = typer.Typer(name="sessions", help="The sessions: one conversation of one agent group each.")

SessionArgument = Annotated[str, typer.Argument(metavar="ID", help="A session id, or a prefix only it has.")]


@app.command("list")
def list_sessions(
    data_dir: DataDirOption = None,
    active: Annotated[bool, typer.Option("--active", help="Only the active sessions.")] = False,
) -> None:
    """Every session: id, group, chat, status, last activity and pending rows."""
    config = load(HostFlags(data_dir=data_dir))
    now = utc_now()
    with open_central(config) as store:
        found = sessions.list_all(store, status="active" if active else None)
        groups = {group.id: group for group in agent_groups.list_all(store)}
        chats = {chat.id: chat for chat in messaging_groups.list_all(store)}
    if not found:
        console().print("no active sessions" if active else "no sessions yet")
        return
    table = Table(title="sessions", title_justify="left")
    table.add_column("id", no_wrap=True)
    for column in ("group", "chat", "status", "last active"):
        table.add_column(column, overflow="fold")
    table.add_column("pending", justify="right")
    for session in found:
        group = groups[session.agent_group_id]  # a foreign key: the group is there
        queue = read_queue(session_folder(config, group, session), now)
        table.add_row(
            session.id[:SHORT_ID],
            group.name,
            chat_label(session, _chat_of(session, chats)),
            session.status,
            when(session.last_active_at, config.timezone, now),
            "-" if queue is None else queue.label(),
        )
    console().print(table)


@app.command("show")
def show(
    session_id: SessionArgument,
    data_dir: DataDirOption = None,
) -> None:
    """One session in full: its chat, folder, rows by status, agent heartbeat and open questions."""
    config = load(HostFlags(data_dir=data_dir))
    now = utc_now()
    with open_central(config) as store:
        session = find(store, session_id)
        group = agent_groups.get(store, session.agent_group_id)
        chat = None if session.messaging_group_id is None else messaging_groups.get(store, session.messaging_group_id)
        questions = pending_questions.open_for_session(store, session.id)
    if group is None:
        raise CliError(f"session {session.id} belongs to no agent group")
    folder = session_folder(config, group, session).absolute()
    queue = read_queue(folder, now)
    table = Table(show_header=False, title=f"session {session.id}", title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    rows = [
        ("status", session.status),
        ("agent group", f"{group.name} (folder {group.folder})"),
        ("chat", chat_label(session, chat)),
        ("thread", session.thread_id or "-"),
        ("key", session.session_key),
        ("created", when(session.created_at, config.timezone, now)),
        ("last active", when(session.last_active_at, config.timezone, now)),
        ("folder", str(folder)),
        ("inbound rows", _rows_label(queue)),
        ("agent heartbeat", _heartbeat(SessionLayout(folder), now)),
        ("open questions", "; ".join(question.question for question in questions) or "none"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console().print(table)


def find(store: Store, wanted: str) -> Session:
    """The session with this id, or the one whose id starts with it; CliError otherwise."""
    try:
        return find_session(store, wanted)
    except OperationError as exc:
        raise CliError(str(exc)) from None


@app.command("stop")
def stop(session_id: SessionArgument, data_dir: DataDirOption = None) -> None:
    """Stop the session's agent now; its work stays.

    The agent gets its stop grace (HUTCH_STOP_GRACE) to finish a turn; the next message starts it again.
    """
    control.run(load(HostFlags(data_dir=data_dir)), StopSession(session=session_id))


@app.command("clear")
def clear(session_id: SessionArgument, data_dir: DataDirOption = None) -> None:
    """Make the session's agent forget the conversation.

    As the owner's /clear in the chat does; the agent's answer goes to the chat.
    """
    control.run(load(HostFlags(data_dir=data_dir)), ClearSession(session=session_id))


def chat_label(session: Session, chat: MessagingGroup | None) -> str:
    """Where the session's messages come from, as a person would name it."""
    thread = f" thread {session.thread_id}" if session.thread_id else ""
    if chat is not None:
        return f"{chat.label}{thread}"
    hook = sessions.webhook_session_key(session.agent_group_id, "")
    if session.session_key.startswith(hook):
        return f"webhook route {session.session_key.removeprefix(hook)}"
    if session.session_key == sessions.session_key("agent-shared", agent_group_id=session.agent_group_id):
        return "every chat wired to the group"
    return "(its chat was deleted)"


def _chat_of(session: Session, chats: dict[str, MessagingGroup]) -> MessagingGroup | None:
    return None if session.messaging_group_id is None else chats.get(session.messaging_group_id)


def _rows_label(queue: Queue | None) -> str:
    if queue is None:
        return "no inbound.db yet"
    if queue.error is not None:
        return f"unreadable: {queue.error}"
    if not queue.counts:
        return "none"
    counts = ", ".join(f"{count} {status}" for status, count in sorted(queue.counts.items()))
    return f"{counts}; of the pending, {queue.due} due now, {queue.later} later"


def _heartbeat(layout: SessionLayout, now: datetime) -> str:
    """How long ago the agent last touched its heartbeat (invariant 4: its mtime is the beat)."""
    try:
        # Not followed: out/ is the agent's, and a link there must not make us look elsewhere.
        beat = os.stat(layout.heartbeat, follow_symlinks=False).st_mtime
    except OSError:
        return "none (no agent has started, or the host cleared it before a start)"
    return age(now.timestamp() - beat)
