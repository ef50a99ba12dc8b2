"""The page keeps itself up to date (server-sent events, or polling `/fragments`), and every
part of it is bounded: streams, bodies, rows and messages."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from actors.control_page.reads import MAX_MESSAGES, MAX_SESSIONS
from actors.control_page.server import MAX_BODY_BYTES, ControlPage
from actors.control_page.templates import SECTIONS
from actors.store import messaging_groups
from actors.store import sessions as sessions_store
from protocol.content import ChatIn
from protocol.db import write_transaction
from protocol.inbound import insert_message
from protocol.timeutil import now_ts
from tests.actors.control_page.conftest import Folder, Recorder, log_in, make_page, new_session, serve

pytestmark = pytest.mark.timeout(30)


async def next_update(response: ClientResponse) -> dict[str, str]:
    """The next `update` event's sections (comments and the retry line skipped)."""
    while True:
        block = (await response.content.readuntil(b"\n\n")).decode()
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines() if not line.startswith(":"))
        if fields.get("event") == "update":
            parsed: dict[str, str] = json.loads(fields["data"])
            return parsed


def _new_chat_session(data: Folder, platform_id: str) -> str:
    chat = messaging_groups.create(data.store, channel_type="telegram", platform_id=platform_id, name="newcomers")
    return new_session(data.store, data.main, chat.id).id


def test_events_send_every_section_then_what_changed(data: Folder, execute: Recorder) -> None:
    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        await log_in(client, page)
        response = await client.get("/events")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        first = await next_update(response)
        assert set(first) == set(SECTIONS)
        assert "hello agent" in first["sessions"]
        assert 'name="csrf"' in first["tasks"]
        added = _new_chat_session(data, "-200")
        while True:
            update = await next_update(response)
            if added in update.get("sessions", ""):
                break
        assert "telegram:-200 (newcomers)" in update["sessions"]
        assert "wiring" not in update  # unchanged sections are not sent again
        response.close()

    serve(make_page(data, execute, update_interval_s=0.05), scenario)


def test_fragments_give_fresh_content_for_polling(data: Folder, execute: Recorder) -> None:
    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        await log_in(client, page)
        before = await (await client.get("/fragments")).json()
        assert set(before) == set(SECTIONS)
        added = _new_chat_session(data, "-300")
        assert added not in before["sessions"]
        after = await (await client.get("/fragments")).json()
        assert added in after["sessions"]

    # A zero interval: every request reads anew, so the second one must see the new session.
    serve(make_page(data, execute, update_interval_s=0.0), scenario)


def test_update_streams_are_bounded(data: Folder, execute: Recorder) -> None:
    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        await log_in(client, page)
        first = await client.get("/events")
        await next_update(first)
        second = await client.get("/events")
        assert second.status == 503
        assert "polls" in await second.text()
        first.close()

    serve(make_page(data, execute, update_interval_s=0.05, max_event_clients=1), scenario)


def test_a_body_past_the_cap_is_refused(data: Folder, execute: Recorder) -> None:
    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        csrf = await log_in(client, page)
        form = {"csrf": csrf, "verb": "cancel", "task": "water", "padding": "x" * (MAX_BODY_BYTES + 1)}
        response = await client.post("/tasks", data=form, allow_redirects=False)
        assert response.status == 413
        login = await client.post("/login", data={"token": "x" * (MAX_BODY_BYTES + 1)}, allow_redirects=False)
        assert login.status == 413

    serve(make_page(data, execute), scenario)
    assert execute.requests == []


def test_sessions_and_messages_shown_are_bounded(data: Folder, execute: Recorder) -> None:
    for number in range(MAX_SESSIONS + 5):
        _new_chat_session(data, f"-{1000 + number}")
    with write_transaction(data.layout(data.local).inbound_db) as conn:
        for number in range(MAX_MESSAGES + 10):
            insert_message(
                conn,
                message_id=f"more{number}",
                content=ChatIn(text=f"more {number}", sender="ada"),
                timestamp=now_ts(),
            )
    sessions_store.touch(data.store, data.local.id)  # the most recently active again
    pages: list[str] = []

    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        await log_in(client, page)
        pages.append((await (await client.get("/fragments")).json())["sessions"])

    serve(make_page(data, execute), scenario)
    (sessions,) = pages
    assert len(re.findall(r'<tr class="session"', sessions)) == MAX_SESSIONS
    assert f"The {MAX_SESSIONS} most recently active of {MAX_SESSIONS + 7} active sessions." in sessions
    local = re.search(rf'<details id="messages-{data.local.id}".*?</details>', sessions, re.DOTALL)
    assert local
    assert local.group(0).count("<li") == MAX_MESSAGES
    assert f"more {MAX_MESSAGES + 9}" in local.group(0)  # the newest ones
