"""Each section of the page, rendered from a real central DB and real session DBs; what the
agent wrote is escaped and cut; the buttons go through `execute` and its reply is shown."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from actors.control.requests import ChangeTask, DecidePairing, Reply
from actors.control_page.reads import MAX_TEXT
from actors.control_page.server import ControlPage
from actors.store.usage import DailyUsage
from protocol.content import MAX_CONTENT_BYTES
from protocol.timeutil import utc_now
from tests.actors.control_page.conftest import HOSTILE, Folder, Recorder, add_outbound, log_in, make_page, serve

pytestmark = pytest.mark.timeout(30)


def _page_text(data: Folder, execute: Recorder, **options: Any) -> str:
    found: list[str] = []

    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        await log_in(client, page)
        found.append(await (await client.get("/")).text())

    serve(make_page(data, execute, **options), scenario)
    return found[0]


def _section(html: str, name: str) -> str:
    start = html.index(f'<div id="{name}">')
    return html[start : html.index("</section>", start)]


def test_sessions_show_their_group_chat_agent_and_pending_rows(data: Folder, execute: Recorder) -> None:
    heartbeat = data.layout(data.local).heartbeat
    heartbeat.touch()
    sources = data.sources(live_sessions=lambda: {data.local.id})
    sessions = _section(_page_text(data, execute, sources=sources), "sessions")
    local_row = re.search(rf'<tr class="session" data-session="{data.local.id}">(.*?)</tr>', sessions, re.DOTALL)
    family_row = re.search(rf'<tr class="session" data-session="{data.family.id}">(.*?)</tr>', sessions, re.DOTALL)
    assert local_row and family_row
    assert "main" in local_row.group(1)
    assert "cli:local (local chat)" in local_row.group(1)
    assert ">live<" in local_row.group(1)
    assert ">running<" in local_row.group(1)  # the heartbeat is fresh
    assert "0s ago" in local_row.group(1)
    # m1 is due; the two tasks wait for tomorrow (one is paused, so not pending).
    assert "<td>2 (1 later)</td>" in local_row.group(1)
    assert "telegram:-100 (family)" in family_row.group(1)
    assert ">not loaded<" in family_row.group(1)
    assert ">stopped<" in family_row.group(1)
    assert "never" in family_row.group(1)


def test_recent_messages_show_both_directions(data: Folder, execute: Recorder) -> None:
    sessions = _section(_page_text(data, execute), "sessions")
    details = sessions[sessions.index(f'<details id="messages-{data.local.id}"') :]
    details = details[: details.index("</details>")]
    assert "hello agent" in details
    assert "ada" in details
    assert "hi ada" in details
    assert details.index("hello agent") < details.index("hi ada")  # in seq order


def test_what_the_agent_wrote_is_escaped_and_cut(data: Folder, execute: Recorder) -> None:
    layout = data.layout(data.local)
    add_outbound(layout, 11, "long", '{"text": "' + "A" * 5000 + '"}')
    add_outbound(layout, 13, "huge", '{"text": "' + "B" * (MAX_CONTENT_BYTES + 10) + '"}')
    add_outbound(layout, 15, b"id as a blob", '{"text": "an id that is not text"}')
    add_outbound(layout, 17, "odd", '{"text": "x", "unexpected": "<b>field</b>"}')
    add_outbound(layout, 19, "blob", b"<script>alert(2)</script>")
    add_outbound(layout, 21, "kind", '{"text": "y"}', kind="<i>kind</i>")
    html = _page_text(data, execute)
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>field" not in html
    assert "<i>kind" not in html
    assert "A" * MAX_TEXT not in html
    assert "A" * (MAX_TEXT - 1) + "…" in html
    assert "B" * 100 not in html
    assert "(too large to show, or not text)" in html
    assert "(a row with a malformed id or kind)" in html
    assert "(refused:" in html
    assert HOSTILE not in html


def test_an_outbound_db_that_is_a_link_is_not_followed(data: Folder, execute: Recorder) -> None:
    layout = data.layout(data.local)
    secret = layout.root / "secret.db"
    os.rename(layout.outbound_db, secret)
    os.symlink(secret, layout.outbound_db)
    sessions = _section(_page_text(data, execute), "sessions")
    assert "outbound.db:" in sessions
    assert "hi ada" not in sessions
    assert "hello agent" in sessions  # the host's side still shows


def test_tasks_show_with_the_buttons_their_state_allows(data: Folder, execute: Recorder) -> None:
    tasks = _section(_page_text(data, execute), "tasks")
    water = re.search(r'<tr class="task" data-task="water">(.*?)</tr>', tasks, re.DOTALL)
    stretch = re.search(r'<tr class="task" data-task="stretch">(.*?)</tr>', tasks, re.DOTALL)
    assert water and stretch
    assert "water the plants" in water.group(1)
    assert "0 9 * * *" in water.group(1)
    assert "in 23h" in water.group(1) or "in 1d" in water.group(1)
    assert '<td class="status">pending</td>' in water.group(1)
    assert 'value="pause"' in water.group(1)
    assert 'value="cancel"' in water.group(1)
    assert 'value="resume"' not in water.group(1)
    assert f'name="session" value="{data.local.id}"' in water.group(1)
    assert '<td class="status">paused</td>' in stretch.group(1)
    assert "once" in stretch.group(1)
    assert 'value="resume"' in stretch.group(1)
    assert 'value="pause"' not in stretch.group(1)


def test_wiring_and_pending_senders(data: Folder, execute: Recorder) -> None:
    wiring = _section(_page_text(data, execute), "wiring")
    assert f'<tr class="sender" data-code="{data.pairing_code}">' in wiring
    sender = wiring[wiring.index(f'data-code="{data.pairing_code}"') :]
    sender = sender[: sender.index("</tr>")]
    assert "4242" in sender
    assert "Grace" in sender
    assert "telegram:-100 (family)" in sender
    assert 'value="approve"' in sender
    assert 'value="refuse"' in sender
    rows = wiring[wiring.index("<h3>Wiring</h3>") :]
    assert "cli:local (local chat)" in rows
    assert "<code>mention</code>" in rows
    assert "per-thread" in rows
    assert "<td>pair</td>" in rows


def test_token_use_is_a_chart_over_days(data: Folder, execute: Recorder) -> None:
    today = utc_now().date()

    def row(back: int, group_id: str, name: str, counts: tuple[int, ...], cost: float | None) -> DailyUsage:
        requests, input_tokens, output_tokens, cache_read, cache_write = counts
        return DailyUsage(
            day=(today - timedelta(days=back)).isoformat(),
            agent_group_id=group_id,
            group_name=name,
            requests=requests,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            cost_usd=cost,
        )

    rows = [
        row(0, data.main.id, "main", (3, 1000, 200, 5000, 100), 0.25),
        row(1, data.main.id, "main", (1, 10, 20, 0, 0), 0.01),
        row(0, "other", "<b>family</b>", (1, 10, 20, 0, 0), None),
        row(90, data.main.id, "main", (9, 9, 9, 9, 9), 9.0),  # too old to show
    ]
    asked: list[str] = []

    def usage(store: Any, since: str) -> list[DailyUsage]:
        asked.append(since)
        return rows

    usage_html = _section(_page_text(data, execute, sources=data.sources(usage=usage)), "usage")
    assert asked == [(today - timedelta(days=29)).isoformat()]
    assert '<svg class="chart"' in usage_html
    assert usage_html.count("<rect x=") == 3  # main twice, family once; the old row is not drawn
    assert f"{today.isoformat()} main: 6.3k tokens" in usage_html
    assert "&lt;b&gt;family&lt;/b&gt;" in usage_html
    assert "<b>family" not in usage_html
    assert "$0.26" in usage_html
    assert "unknown" in usage_html  # family's cost is not known


def test_without_a_usage_source_the_chart_says_so(data: Folder, execute: Recorder) -> None:
    usage_html = _section(_page_text(data, execute), "usage")
    assert "not recorded" in usage_html
    assert "<svg" not in usage_html


def test_cancel_a_task_goes_through_execute_and_its_reply_is_shown(data: Folder, execute: Recorder) -> None:
    execute.reply = Reply(ok=True, message="task water <cancelled>")

    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        csrf = await log_in(client, page)
        form = {"csrf": csrf, "verb": "cancel", "task": "water", "session": data.local.id}
        response = await client.post("/tasks", data=form, allow_redirects=False)
        assert response.status == 303
        shown = await (await client.get("/")).text()
        assert '<p id="flash" class="flash ok" role="status">task water &lt;cancelled&gt;</p>' in shown
        again = await (await client.get("/")).text()
        assert 'id="flash"' not in again  # shown once

    serve(make_page(data, execute), scenario)
    assert execute.requests == [ChangeTask(verb="cancel", task="water", session=data.local.id)]


@pytest.mark.parametrize(("decision", "approve"), [("approve", True), ("refuse", False)])
def test_a_sender_is_decided_through_execute(data: Folder, execute: Recorder, decision: str, approve: bool) -> None:
    execute.reply = Reply(ok=False, message="no such code")

    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        csrf = await log_in(client, page)
        form = {"csrf": csrf, "code": data.pairing_code, "decision": decision}
        assert (await client.post("/senders", data=form, allow_redirects=False)).status == 303
        shown = await (await client.get("/")).text()
        assert 'class="flash failed"' in shown
        assert "no such code" in shown

    serve(make_page(data, execute), scenario)
    assert execute.requests == [DecidePairing(code=data.pairing_code, approve=approve)]


def test_a_form_with_bad_values_is_refused_before_execute(data: Folder, execute: Recorder) -> None:
    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        csrf = await log_in(client, page)
        bad_forms = [
            ("/tasks", {"verb": "drop", "task": "water"}),
            ("/tasks", {"verb": "cancel"}),
            ("/tasks", {"verb": "cancel", "task": "w" * 300}),
            ("/senders", {"code": "ABC", "decision": "maybe"}),
            ("/senders", {"decision": "approve"}),
        ]
        for path, form in bad_forms:
            response = await client.post(path, data=form | {"csrf": csrf}, allow_redirects=False)
            assert response.status == 400, (path, form)

    serve(make_page(data, execute), scenario)
    assert execute.requests == []


def test_a_host_that_does_not_answer_in_time_is_told(data: Folder, execute: Recorder) -> None:
    execute.block = True

    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        csrf = await log_in(client, page)
        form = {"csrf": csrf, "verb": "pause", "task": "water"}
        response = await client.post("/tasks", data=form, allow_redirects=False)
        assert response.status == 303
        shown = await (await client.get("/")).text()
        assert "did not answer in time" in shown

    try:
        serve(make_page(data, execute, execute_timeout_s=0.2), scenario)
    finally:
        execute.release.set()
    assert execute.requests == [ChangeTask(verb="pause", task="water")]


def test_a_failing_execute_is_shown_not_raised(data: Folder) -> None:
    def execute(request: Any) -> Reply:
        raise RuntimeError("the control actor is gone")

    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        csrf = await log_in(client, page)
        form = {"csrf": csrf, "code": data.pairing_code, "decision": "approve"}
        assert (await client.post("/senders", data=form, allow_redirects=False)).status == 303
        assert "the control actor is gone" in await (await client.get("/")).text()

    serve(make_page(data, execute), scenario)
