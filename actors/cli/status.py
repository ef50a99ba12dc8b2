"""`hutch status`: whether the host runs, what it is configured with, which agents live and
what work waits, from the data folder alone (it works the same with the host down)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from rich.table import Table

from actors.cli.common import (
    SHORT_ID,
    DataDirOption,
    HostFlags,
    Queue,
    console,
    host_state,
    load,
    one_line,
    plural,
    read_queue,
    schema_gap,
    session_folder,
)
from actors.config import HostConfig
from actors.store import agent_groups, messaging_groups, sessions, webhook_routes
from actors.store.db import MIGRATIONS, Store, open_store
from protocol.timeutil import utc_now

# An engine that takes longer than this to answer is reported as not checked.
DOCKER_TIMEOUT_S = 2


@dataclass(frozen=True)
class QueuedSession:
    session_id: str
    group: str
    queue: Queue


@dataclass(frozen=True)
class Report:
    rows: list[tuple[str, str]]
    queued: list[QueuedSession]


def status(data_dir: DataDirOption = None) -> None:
    """Host up or down, runtime, provider, channels, live agents and queued work."""
    config = load(HostFlags(data_dir=data_dir))
    report = gather(config, utc_now())
    out = console()
    table = Table(show_header=False, title="hutch status", title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in report.rows:
        table.add_row(name, value)
    out.print(table)
    if report.queued:
        queued = Table(title="queued work", title_justify="left")
        queued.add_column("session", no_wrap=True)
        queued.add_column("group")
        queued.add_column("due now", justify="right")
        queued.add_column("later", justify="right")
        for item in report.queued:
            queued.add_row(item.session_id[:SHORT_ID], item.group, str(item.queue.due), str(item.queue.later))
        out.print(queued)


def gather(config: HostConfig, now: datetime) -> Report:
    """Everything `hutch status` shows, as (what, state) rows."""
    data_dir = config.data_dir.absolute()
    if not data_dir.is_dir():
        rows = [
            ("host", "down"),
            ("data folder", f"{data_dir} does not exist (HUTCH_DATA_DIR or --data-dir; `hutch run` makes it)"),
            *_configured(config, None),
        ]
        return Report(rows, [])
    state = host_state(data_dir)
    rows = [
        ("host", f"up (pid {state.pid or 'unknown'})" if state.up else "down"),
        ("data folder", str(data_dir)),
    ]
    gap = schema_gap(config)
    if gap is not None:
        rows.append(("central DB", gap))
        rows += _configured(config, None)
        rows += _agents(config)
        return Report(rows, [])
    with open_store(config.central_db) as store:
        rows.append(("central DB", f"{config.central_db.name}, schema version {MIGRATIONS[-1].version}"))
        rows += _configured(config, store)
        rows += _agents(config)
        rows += _people_and_sessions(store)
        queued = list(_queued(config, store, now))
    rows.append(("queued work", _queued_summary(queued)))
    return Report(rows, [item for item in queued if item.queue.pending or item.queue.error])


def _configured(config: HostConfig, store: Store | None) -> list[tuple[str, str]]:
    provider = config.provider
    if provider == "claude" and not config.api_key:
        provider += " (no ANTHROPIC_API_KEY: the host uses mock)"
    return [
        ("runtime", config.runtime),
        ("provider", provider),
        ("model", config.model),
        *_channels(config, store),
    ]


def _channels(config: HostConfig, store: Store | None) -> list[tuple[str, str]]:
    """What `Host._configured_channels` would start; tokens are never shown."""
    rows = [("channel local chat", f"on: {config.chat_socket.absolute()}")]
    if config.telegram_bot_token:
        if config.telegram_webhook_url:
            mode = f"webhook {config.telegram_webhook_url} -> 127.0.0.1:{config.telegram_webhook_port}"
        else:
            mode = "long polling"
        rows.append(("channel telegram", f"on: {mode}{_owner(config.telegram_owner)}"))
    else:
        rows.append(("channel telegram", "off (TELEGRAM_BOT_TOKEN not set)"))
    if config.discord_bot_token:
        rows.append(("channel discord", f"on{_owner(config.discord_owner)}"))
    else:
        rows.append(("channel discord", "off (DISCORD_BOT_TOKEN not set)"))
    if config.webhook_port is not None:
        routes = "" if store is None else f", {len(webhook_routes.list_all(store))} routes"
        rows.append(("channel webhooks", f"on: 127.0.0.1:{config.webhook_port}{routes}"))
    else:
        rows.append(("channel webhooks", "off (HUTCH_WEBHOOK_PORT not set)"))
    if config.control_port is not None:
        # The token is new at each start and printed only by the host: never shown here.
        port = "a free port (see the host's output)" if config.control_port == 0 else str(config.control_port)
        rows.append(("control page", f"on: http://127.0.0.1:{port}/ (the login token is in the host's output)"))
    else:
        rows.append(("control page", "off (HUTCH_CONTROL_PORT not set)"))
    rows.append(("unknown senders", config.unknown_senders))
    return rows


def _owner(owner: str | None) -> str:
    return f", owner {owner}" if owner else ", no owner set"


def _agents(config: HostConfig) -> list[tuple[str, str]]:
    from actors.runtime.process import agents_in

    # The host scans its sessions folder as given and resolved; either may be how an agent
    # was started, so both are asked (a pid counts once).
    folder = config.sessions_dir.absolute()
    pids = set(agents_in(folder)) | set(agents_in(folder.resolve()))
    return [("agents (process)", f"{len(pids)} live"), ("agents (docker)", _docker_agents(config))]


def _docker_agents(config: HostConfig) -> str:
    from actors.host import INSTALLATION_FILE
    from actors.runtime.docker import LABEL_INSTALLATION

    # The host writes this file when it first picks Docker; without it no container can
    # be this data folder's, and asking an engine would only cost time.
    marker = config.data_dir / INSTALLATION_FILE
    if not marker.is_file():
        return "not checked (no agent of this data folder has run in Docker)"
    installation = marker.read_text().strip()
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=DOCKER_TIMEOUT_S)
        try:
            client.ping()
            running = client.containers.list(
                filters={"label": f"{LABEL_INSTALLATION}={installation}"}, ignore_removed=True
            )
        finally:
            client.close()
    except (DockerException, OSError) as exc:  # requests' connection errors are OSErrors
        return f"not checked ({one_line(exc)[:160]})"
    return f"{len(running)} running"


def _people_and_sessions(store: Store) -> list[tuple[str, str]]:
    groups = agent_groups.list_all(store)
    active = len(sessions.list_all(store, status="active"))
    closed = len(sessions.list_all(store, status="closed"))
    names = ", ".join(group.name for group in groups)
    return [
        ("agent groups", f"{len(groups)}" + (f" ({names})" if names else "")),
        ("chats", str(len(messaging_groups.list_all(store)))),
        ("sessions", f"{active} active, {closed} closed"),
    ]


def _queued(config: HostConfig, store: Store, now: datetime) -> Iterator[QueuedSession]:
    groups = {group.id: group for group in agent_groups.list_all(store)}
    for session in sessions.list_all(store):
        group = groups.get(session.agent_group_id)
        if group is None:
            continue
        queue = read_queue(session_folder(config, group, session), now)
        if queue is not None:
            yield QueuedSession(session.id, group.name, queue)


def _queued_summary(queued: list[QueuedSession]) -> str:
    waiting = [item for item in queued if item.queue.pending]
    unreadable = sum(1 for item in queued if item.queue.error)
    text = "nothing pending"
    if waiting:
        pending = sum(item.queue.pending for item in waiting)
        due = sum(item.queue.due for item in waiting)
        text = f"{pending} pending in {plural(len(waiting), 'session')}: {due} due now, {pending - due} later"
    if unreadable:
        text += f"; the inbound.db of {plural(unreadable, 'session')} unreadable"
    return text
