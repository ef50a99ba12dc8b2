"""What the control page shows, read without writing anything: the central DB in one
read-only snapshot of its own (never the host's connection, so a render never holds the
lock the actors write under), and each session's two DBs as the `hutch` command reads them.

Everything is bounded (sessions, messages, tasks, rows, text), because a render runs every
couple of seconds while a page is open. What comes from `outbound.db` is the agent's and so
hostile: the file is checked as the host checks it before opening, oversized content is
never loaded, every column is type-checked by hand, and text is cut to a length; escaping
is the templates' (autoescape)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from actors.session.liveness import heartbeat_mtime
from actors.store import agent_groups, messaging_group_agents, messaging_groups, pairing_requests, sessions
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store
from actors.store.messaging_groups import MessagingGroup
from actors.store.usage import DailyUsage
from protocol.agent_db import read_agent_db
from protocol.content import MAX_CONTENT_BYTES, ContentError, decode_content
from protocol.db import read_transaction
from protocol.layout import MAX_OUTBOUND_DB_BYTES, SessionLayout, UnsafePathError
from protocol.timeutil import parse_ts

MAX_SESSIONS = 30
MAX_MESSAGES = 20
MAX_TASKS = 100
# The most recent task rows looked at per session: a recurring task leaves one per run, and
# the live occurrence of a series is always among its newest.
TASK_ROWS_SCANNED = 200
MAX_WIRINGS = 200
MAX_SENDERS = 100
MAX_TEXT = 500
MAX_NAME = 80
USAGE_DAYS = 30
# A heartbeat younger than this counts as a running agent (the runner beats every 5 s).
AGENT_ALIVE_S = 20.0


# Given the page's own read-only snapshot of the central DB and the first day to show.
UsageSource = Callable[[Store, str], Sequence[DailyUsage]]


@dataclass(frozen=True)
class MessageLine:
    seq: int
    direction: str  # "in" (the host wrote it) or "out" (the agent did)
    kind: str
    when: str
    who: str
    text: str
    status: str


@dataclass(frozen=True)
class TaskLine:
    session_id: str
    group: str
    series_id: str
    prompt: str
    recurrence: str | None
    process_after: str | None
    next_run: str  # process_after, as the page shows a time
    status: str  # the newest occurrence's

    def can(self, verb: str) -> bool:
        allowed = {"pause": {"pending"}, "resume": {"paused"}, "cancel": {"pending", "paused"}}
        return self.status in allowed[verb]


@dataclass(frozen=True)
class SessionView:
    id: str
    group: str
    chat: str
    status: str
    last_active: str
    live: bool | None  # the host holds an actor for it; None: not known
    agent_running: bool
    heartbeat_age: str
    counts: dict[str, int]
    due: int
    messages: list[MessageLine]
    error: str | None = None

    @property
    def pending(self) -> int:
        return self.counts.get("pending", 0)


@dataclass(frozen=True)
class WiringView:
    chat: str
    unknown_senders: str
    group: str
    session_mode: str
    trigger_rule: str
    untriggered: str
    priority: int


@dataclass(frozen=True)
class SenderView:
    code: str
    chat: str
    user_id: str
    user_name: str
    asked: str


@dataclass(frozen=True)
class Snapshot:
    sessions: list[SessionView] = field(default_factory=list)
    sessions_total: int = 0
    tasks: list[TaskLine] = field(default_factory=list)
    wirings: list[WiringView] = field(default_factory=list)
    senders: list[SenderView] = field(default_factory=list)
    usage: list[DailyUsage] = field(default_factory=list)
    usage_note: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Sources:
    """Where the page reads from; `live_sessions` (the host's registry) and `usage` are
    optional: without them the page says it does not know."""

    central_db: Path
    sessions_dir: Path
    timezone: str = "UTC"
    live_sessions: Callable[[], Collection[str]] | None = None
    usage: UsageSource | None = None


def cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_snapshot(sources: Sources, now: datetime) -> Snapshot:
    try:
        with read_transaction(sources.central_db) as conn:
            central = _Central.read(Store(sources.central_db, conn), sources, now)
    except FileNotFoundError:
        return Snapshot(error=f"no central DB at {sources.central_db}")
    except sqlite3.Error as exc:
        return Snapshot(error=f"the central DB cannot be read: {exc}")
    live: Collection[str] | None = None
    if sources.live_sessions is not None:
        live = set(sources.live_sessions())
    views: list[SessionView] = []
    tasks: list[TaskLine] = []
    for session, group, chat in central.sessions:
        folder = sources.sessions_dir / group.folder / session.id
        view, found = _read_session(folder, session, group, chat, live, now, sources.timezone)
        views.append(view)
        tasks += found
    live_first = sorted(tasks, key=lambda task: (task.status not in {"pending", "paused"}, task.process_after or ""))
    return Snapshot(
        sessions=views,
        sessions_total=central.sessions_total,
        tasks=live_first[:MAX_TASKS],
        wirings=central.wirings,
        senders=central.senders,
        usage=central.usage,
        usage_note=central.usage_note,
    )


@dataclass
class _Central:
    sessions: list[tuple[sessions.Session, AgentGroup, MessagingGroup | None]]
    sessions_total: int
    wirings: list[WiringView]
    senders: list[SenderView]
    usage: list[DailyUsage]
    usage_note: str | None

    @classmethod
    def read(cls, store: Store, sources: Sources, now: datetime) -> _Central:
        groups = {group.id: group for group in agent_groups.list_all(store)}
        chats = {chat.id: chat for chat in messaging_groups.list_all(store)}
        active = sessions.list_all(store, status="active")
        recent = sorted(active, key=lambda session: session.last_active_at, reverse=True)[:MAX_SESSIONS]
        shown = [
            (session, groups[session.agent_group_id], _chat_of(session.messaging_group_id, chats))
            for session in recent
            if session.agent_group_id in groups
        ]
        wirings = [
            WiringView(
                chat=chat_label(chats.get(wiring.messaging_group_id)),
                unknown_senders=_policy(chats.get(wiring.messaging_group_id)),
                group=_group_name(groups.get(wiring.agent_group_id)),
                session_mode=wiring.session_mode,
                trigger_rule=cut(wiring.trigger_rule, MAX_NAME),
                untriggered=wiring.untriggered,
                priority=wiring.priority,
            )
            for wiring in messaging_group_agents.list_all(store)[:MAX_WIRINGS]
        ]
        senders = [
            SenderView(
                code=request.code,
                chat=chat_label(chats.get(request.messaging_group_id)),
                user_id=cut(request.user_id, MAX_NAME),
                user_name=cut(request.user_name or "", MAX_NAME),
                asked=when(request.created_at, sources.timezone, now),
            )
            for request in pairing_requests.pending(store)[:MAX_SENDERS]
        ]
        usage, note = _usage(store, sources, now)
        return cls(shown, len(active), wirings, senders, usage, note)


def _usage(store: Store, sources: Sources, now: datetime) -> tuple[list[DailyUsage], str | None]:
    if sources.usage is None:
        return [], "token use is not recorded by this host yet"
    first_day = (now.astimezone(UTC).date() - timedelta(days=USAGE_DAYS - 1)).isoformat()
    try:
        return list(sources.usage(store, first_day)), None
    except sqlite3.Error as exc:  # a host older than the usage table, say
        return [], f"token use cannot be read: {exc}"


def _chat_of(chat_id: str | None, chats: dict[str, MessagingGroup]) -> MessagingGroup | None:
    return None if chat_id is None else chats.get(chat_id)


def chat_label(chat: MessagingGroup | None) -> str:
    if chat is None:
        return "(no chat)"
    return cut(chat.label, MAX_NAME)


def _policy(chat: MessagingGroup | None) -> str:
    return "-" if chat is None else chat.unknown_senders


def _group_name(group: AgentGroup | None) -> str:
    return "(gone)" if group is None else group.name


# -- one session ---------------------------------------------------------------------------------


def _read_session(
    folder: Path,
    session: sessions.Session,
    group: AgentGroup,
    chat: MessagingGroup | None,
    live: Collection[str] | None,
    now: datetime,
    zone: str,
) -> tuple[SessionView, list[TaskLine]]:
    layout = SessionLayout(folder)
    beat = heartbeat_mtime(layout.heartbeat)
    beat_age = None if beat is None else now.timestamp() - beat
    counts: dict[str, int] = {}
    due = 0
    inbound: list[MessageLine] = []
    outbound: list[MessageLine] = []
    tasks: list[TaskLine] = []
    errors: list[str] = []
    try:
        with read_transaction(layout.inbound_db) as conn:
            counts, due = _queue(conn, now)
            inbound = _inbound_lines(conn, zone, now)
            tasks = _tasks(conn, session.id, group.name, zone, now)
            delivered = _delivered(conn)
    except FileNotFoundError:
        delivered = {}
    except sqlite3.Error as exc:
        errors.append(f"inbound.db: {exc}")
        delivered = {}
    try:
        outbound = _outbound_lines(layout, delivered, zone, now)
    except (sqlite3.Error, OSError, UnsafePathError) as exc:
        errors.append(f"outbound.db: {cut(str(exc), MAX_NAME)}")
    messages = sorted(inbound + outbound, key=lambda line: line.seq)[-MAX_MESSAGES:]
    view = SessionView(
        id=session.id,
        group=group.name,
        chat=chat_label(chat),
        status=session.status,
        last_active=when(session.last_active_at, zone, now),
        live=None if live is None else session.id in live,
        agent_running=beat_age is not None and beat_age < AGENT_ALIVE_S,
        heartbeat_age="never" if beat_age is None else age(beat_age),
        counts=counts,
        due=due,
        messages=messages,
        error="; ".join(errors) or None,
    )
    return view, tasks


def _queue(conn: sqlite3.Connection, now: datetime) -> tuple[dict[str, int], int]:
    by_status = conn.execute("SELECT status, COUNT(*) FROM messages_in GROUP BY status")
    counts = {str(status): int(count) for status, count in by_status}
    due = 0
    for (after,) in conn.execute("SELECT process_after FROM messages_in WHERE status = 'pending'"):
        if not after or _before(after, now):
            due += 1
    return counts, due


def _before(stamp: str, now: datetime) -> bool:
    try:
        return parse_ts(stamp) <= now
    except ValueError:
        return True


def _inbound_lines(conn: sqlite3.Connection, zone: str, now: datetime) -> list[MessageLine]:
    rows = conn.execute(
        "SELECT seq, id, kind, timestamp, status,"
        " CASE WHEN length(CAST(content AS BLOB)) > ? THEN NULL ELSE content END AS content"
        " FROM messages_in ORDER BY seq DESC LIMIT ?",
        (MAX_CONTENT_BYTES, MAX_MESSAGES),
    ).fetchall()
    lines = []
    for row in rows:
        who, text = _inbound_text(str(row["id"]), str(row["kind"]), row["content"])
        lines.append(
            MessageLine(
                seq=int(row["seq"]),
                direction="in",
                kind=str(row["kind"]),
                when=when(row["timestamp"], zone, now),
                who=who,
                text=text,
                status=str(row["status"]),
            )
        )
    return lines


def _inbound_text(row_id: str, kind: str, content: str | None) -> tuple[str, str]:
    if content is None:
        return "", "(too large to show)"
    try:
        decoded = msgspec.to_builtins(decode_content("messages_in", row_id, kind, content))
    except ContentError:
        return "", "(unreadable)"
    return _describe(decoded)


def _tasks(conn: sqlite3.Connection, session_id: str, group: str, zone: str, now: datetime) -> list[TaskLine]:
    rows = conn.execute(
        "SELECT id, series_id, recurrence, process_after, status,"
        " CASE WHEN length(CAST(content AS BLOB)) > ? THEN NULL ELSE content END AS content"
        " FROM messages_in WHERE kind = 'task' ORDER BY seq DESC LIMIT ?",
        (MAX_CONTENT_BYTES, TASK_ROWS_SCANNED),
    ).fetchall()
    newest: dict[str, TaskLine] = {}
    for row in rows:
        series = str(row["series_id"] or row["id"])
        if series in newest:
            continue
        _, prompt = _inbound_text(str(row["id"]), "task", row["content"])
        newest[series] = TaskLine(
            session_id=session_id,
            group=group,
            series_id=series,
            prompt=prompt,
            recurrence=row["recurrence"],
            process_after=row["process_after"],
            next_run=when(row["process_after"], zone, now),
            status=str(row["status"]),
        )
    return list(newest.values())


def _delivered(conn: sqlite3.Connection) -> dict[str, str]:
    # The newest outbound rows' outcomes; older ones are not shown.
    rows = conn.execute("SELECT message_out_id, status FROM delivered ORDER BY rowid DESC LIMIT ?", (MAX_MESSAGES * 5,))
    return {str(key): str(status) for key, status in rows}


def _outbound_lines(layout: SessionLayout, delivered: dict[str, str], zone: str, now: datetime) -> list[MessageLine]:
    path = layout.outbound_db
    if not os.path.lexists(path):
        return []
    # As the host reads it (protocol/agent_db.py): no link, one link, the session's device,
    # a size cap, never its journal, nothing the file declares run.
    rows = read_agent_db(
        path,
        os.lstat(layout.root).st_dev,
        MAX_OUTBOUND_DB_BYTES,
        lambda conn: conn.execute(
            "SELECT seq, id, kind, timestamp,"
            " CASE WHEN length(CAST(content AS BLOB)) > ? THEN NULL ELSE content END AS content"
            " FROM messages_out WHERE typeof(seq) = 'integer' ORDER BY seq DESC LIMIT ?",
            (MAX_CONTENT_BYTES, MAX_MESSAGES),
        ).fetchall(),
    )
    lines = []
    for row in rows:
        row_id, kind, stamp, content = (_text_or_none(row[name]) for name in ("id", "kind", "timestamp", "content"))
        if row_id is None or kind is None:
            text = "(a row with a malformed id or kind)"
        elif content is None:
            text = "(too large to show, or not text)"
        else:
            text = _outbound_text(row_id, kind, content)
        lines.append(
            MessageLine(
                seq=int(row["seq"]),
                direction="out",
                kind=cut(kind or "?", MAX_NAME),
                when=when(stamp, zone, now),
                who="agent",
                text=text,
                status=delivered.get(row_id or "", "") if kind != "system" else "",
            )
        )
    return lines


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _outbound_text(row_id: str, kind: str, content: str) -> str:
    try:
        decoded = msgspec.to_builtins(decode_content("messages_out", row_id, kind, content))
    except ContentError as exc:
        return cut(f"(refused: {exc})")
    return _describe(decoded)[1]


def _describe(content: Any) -> tuple[str, str]:
    """(who, what) of a decoded content struct, as short text."""
    if not isinstance(content, dict):
        return "", "(empty)"
    who = str(content.get("sender") or content.get("source") or content.get("answered_by") or "")
    for key in ("text", "prompt", "question", "answer", "title", "emoji"):
        value = content.get(key)
        if isinstance(value, str) and value:
            what = value
            break
    else:
        what = ""
    action = content.get("action")
    if isinstance(action, str):
        task = content.get("task_id", "")
        what = f"{action} {task}: {what}" if what else f"{action} {task}"
    elif content.get("type") == "question_answer":
        what = f"answer: {what}"
    elif "payload" in content:
        what = what or msgspec.json.encode(content.get("payload")).decode()
    if not what and content.get("files"):
        what = f"({len(content['files'])} file(s))"
    return cut(who, MAX_NAME), cut(what or "(no text)")


# -- times ---------------------------------------------------------------------------------------


def when(stamp: str | None, zone: str, now: datetime) -> str:
    """A stored UTC stamp in the users' time zone, with how long ago."""
    if not stamp:
        return "-"
    try:
        moment = parse_ts(stamp)
    except ValueError:
        return cut(stamp, MAX_NAME)
    shown = moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
    return f"{shown} ({age((now - moment).total_seconds())})"


def age(seconds: float) -> str:
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
