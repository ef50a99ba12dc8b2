"""A data folder as a host leaves it (made by the store modules and the protocol's own
helpers), a recording `execute`, and aiohttp's test client run inside `asyncio.run`."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from actors.control.requests import Reply, Request
from actors.control_page.auth import Auth
from actors.control_page.reads import Sources
from actors.control_page.server import ControlPage
from actors.store import agent_groups, messaging_group_agents, messaging_groups, pairing_requests, sessions
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store, open_store
from actors.store.sessions import Session
from protocol.content import ChatIn, TaskIn
from protocol.db import create_session_db, write_transaction
from protocol.inbound import insert_message
from protocol.layout import SessionLayout
from protocol.schema import INBOUND, OUTBOUND
from protocol.timeutil import format_ts, now_ts, utc_now

HOSTILE = '<script>alert("owned")</script><img src=x onerror=alert(1)>'


class Recorder:
    """`execute`: records each request; answers `reply`, or blocks until `release` is set."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.reply = Reply(ok=True, message="done")
        self.block = False
        self.release = threading.Event()
        self.called = threading.Event()

    def __call__(self, request: Request) -> Reply:
        self.requests.append(request)
        self.called.set()
        if self.block:
            self.release.wait(30)
        return self.reply


@dataclass
class Folder:
    path: Path
    store: Store
    main: AgentGroup
    local: Session  # messages both ways (a hostile reply among them), and two tasks
    family: Session  # a telegram group chat's, with no session DBs yet
    family_chat_id: str
    pairing_code: str
    usage: list[Any] = field(default_factory=list)

    @property
    def sessions_dir(self) -> Path:
        return self.path / "sessions"

    def layout(self, session: Session, group: AgentGroup | None = None) -> SessionLayout:
        return SessionLayout(self.sessions_dir / (group or self.main).folder / session.id)

    def sources(self, **changes: Any) -> Sources:
        return Sources(central_db=self.path / "hutch.db", sessions_dir=self.sessions_dir, **changes)


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Folder]:
    path = tmp_path / "data"
    with open_store(path / "hutch.db") as store:
        main = agent_groups.create(store, name="main", folder="main")
        local_chat = messaging_groups.create(store, channel_type="cli", platform_id="local", name="local chat")
        messaging_group_agents.create(
            store, messaging_group_id=local_chat.id, agent_group_id=main.id, session_mode="shared"
        )
        family_chat = messaging_groups.create(
            store, channel_type="telegram", platform_id="-100", name="family", is_group=True, unknown_senders="pair"
        )
        messaging_group_agents.create(
            store,
            messaging_group_id=family_chat.id,
            agent_group_id=main.id,
            session_mode="per-thread",
            trigger_rule="mention",
        )
        local = new_session(store, main, local_chat.id)
        family = new_session(store, main, family_chat.id)
        request, _ = pairing_requests.open_request(store, family_chat.id, "4242", "Grace")
        folder = Folder(path, store, main, local, family, family_chat.id, request.code)
        _fill(folder.layout(local))
        yield folder


def new_session(store: Store, group: AgentGroup, chat_id: str) -> Session:
    key = sessions.session_key("shared", agent_group_id=group.id, messaging_group_id=chat_id)
    return sessions.create(store, agent_group_id=group.id, messaging_group_id=chat_id, session_key=key)


def _fill(layout: SessionLayout) -> None:
    layout.create()
    create_session_db(layout.inbound_db, INBOUND)
    later = format_ts(utc_now() + timedelta(days=1))
    with write_transaction(layout.inbound_db) as conn:
        insert_message(conn, message_id="m1", content=ChatIn(text="hello agent", sender="ada"), timestamp=now_ts())
        insert_message(
            conn,
            message_id="water",
            content=TaskIn(prompt="water the plants"),
            timestamp=now_ts(),
            process_after=later,
            recurrence="0 9 * * *",
            series_id="water",
        )
        insert_message(
            conn,
            message_id="stretch",
            content=TaskIn(prompt="stretch"),
            timestamp=now_ts(),
            process_after=later,
            series_id="stretch",
            status="paused",
        )
    create_session_db(layout.outbound_db, OUTBOUND)
    add_outbound(layout, 7, "r1", '{"text": "hi ada"}')
    add_outbound(layout, 9, "r2", '{"text": ' + json.dumps(HOSTILE) + "}")


def add_outbound(layout: SessionLayout, seq: int, row_id: Any, content: Any, kind: Any = "chat") -> None:
    """A row as an agent could write it: any types in any column."""
    with write_transaction(layout.outbound_db) as conn:
        conn.execute(
            "INSERT INTO messages_out (id, seq, timestamp, kind, content) VALUES (?, ?, ?, ?, ?)",
            (row_id, seq, now_ts(), kind, content),
        )


@pytest.fixture
def execute() -> Recorder:
    return Recorder()


Scenario = Callable[[TestClient[Any, Any], ControlPage], Awaitable[None]]


def serve(page: ControlPage, scenario: Scenario) -> None:
    """Run `scenario` against the page's application on a loopback test server."""

    async def main() -> None:
        async with TestClient(TestServer(page.app(), host="127.0.0.1")) as client:
            await scenario(client, page)

    asyncio.run(main())


def make_page(data: Folder, execute: Callable[[Request], Reply], **options: Any) -> ControlPage:
    sources = options.pop("sources", None) or data.sources()
    return ControlPage(sources, execute, auth=Auth(), **options)


async def log_in(client: TestClient[Any, Any], page: ControlPage) -> str:
    """Logs in with the token; returns the page's CSRF token."""
    response = await client.get(f"/?token={page.auth.token}", allow_redirects=False)
    assert response.status == 303
    page_html = await (await client.get("/")).text()
    return csrf_of(page_html)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)
