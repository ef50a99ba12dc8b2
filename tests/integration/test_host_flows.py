"""The whole host, in-process: the process runtime, the mock provider, the chat socket."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from actors.channels.webhook import SIGNATURE_HEADER, WebhookChannel, signature
from actors.config import HostConfig
from actors.host import Host, start_host
from actors.store import agent_groups, sessions, webhook_routes
from protocol import inbound, outbound
from protocol.content import ChatOut
from protocol.db import read_transaction, write_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, Routing
from protocol.timeutil import format_ts, now_ts, parse_ts, utc_now
from tests.fakes.chat_client import ChatClient
from tests.fakes.probes import LineWaiter
from tests.fakes.session import FolderEvents
from tests.integration.conftest import RecordingProcessRuntime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def _layout(host: Host) -> SessionLayout:
    (session,) = sessions.list_all(host.store)
    return SessionLayout(host.config.sessions_dir / "main" / session.id)


def _inbound_rows(layout: SessionLayout) -> list[MessageIn]:
    with read_transaction(layout.inbound_db) as conn:
        return [inbound.get_message(conn, row[0]) for row in conn.execute("SELECT id FROM messages_in ORDER BY seq")]  # type: ignore[misc]


@pytest.fixture
def chat(host: Host):
    client = ChatClient(host.config.chat_socket)
    yield client
    client.close()


def test_a_reply_comes_back(host: Host, chat: ChatClient) -> None:
    assert chat.send("hello")["type"] == "ack"
    reply = chat.next_message()
    assert reply["type"] == "message"
    assert reply["text"].startswith("mock: hello")


def test_a_scheduled_task_fires_on_time(host: Host, chat: ChatClient) -> None:
    due = utc_now() + timedelta(seconds=2)
    chat.send(f'!tool schedule_task {{"prompt": "water the plants", "process_after": "{format_ts(due)}"}}')
    confirmation = chat.next_message()
    assert "scheduled" in confirmation["text"]
    fired = chat.next_message()
    assert fired["text"].startswith("mock: water the plants")
    assert utc_now() >= due  # met by a timer, not early
    layout = _layout(host)
    events = FolderEvents(layout.root)
    try:
        # The container's ack reaches messages_in.status on the host's next read.
        events.wait_until(lambda: [r for r in _inbound_rows(layout) if r.kind == "task" and r.status == "completed"])
    finally:
        events.close()


def test_a_recurring_task_gets_its_next_occurrence(host: Host, chat: ChatClient) -> None:
    first = utc_now().replace(second=0, microsecond=0)
    chat.send(
        f'!tool schedule_task {{"prompt": "stretch", "process_after": "{format_ts(first)}", "recurrence": "* * * * *"}}'
    )
    # The task is due at once, so it may join the scheduling turn as a follow-up.
    answered = chat.next_message()["text"]
    if "stretch" not in answered.replace('"prompt": "stretch"', ""):
        answered = chat.next_message()["text"]
    assert "stretch" in answered
    layout = _layout(host)
    events = FolderEvents(layout.root)
    try:
        tasks = events.wait_until(lambda: [r for r in _inbound_rows(layout) if r.kind == "task"][1:] or None)
    finally:
        events.close()
    (following,) = tasks
    original = next(r for r in _inbound_rows(layout) if r.kind == "task")
    assert following.series_id == original.series_id
    # From the scheduled time, not from when it ran: exactly one minute after the first.
    assert parse_ts(following.process_after or "") == first + timedelta(minutes=1)
    assert following.status == "pending"


def test_a_killed_agent_is_retried_and_answers_once(
    host: Host, chat: ChatClient, runtime: RecordingProcessRuntime
) -> None:
    # The first run blocks inside a tool; the retry finds the marker and finishes at once.
    chat.send('slow one\n!tool bash {"command": "test -f marker || { touch marker; sleep 60; }"}')
    marker = host.config.groups_dir / "main" / "marker"
    events = FolderEvents(marker.parent)
    try:
        events.wait_until(marker.exists)  # the turn is inside its tool call now
        os.kill(int(runtime.handles[-1].ident), signal.SIGKILL)
        reply = chat.next_message(timeout=60)
    finally:
        events.close()
    layout = _layout(host)
    assert reply["text"].startswith("mock: slow one")
    chat.send("after")
    assert chat.next_message()["text"].startswith("mock: after")
    with read_transaction(layout.outbound_db) as conn:
        replies = [r for r in outbound.messages_after(conn, 0) if r.kind == "chat" and "slow one" in r.content]
    assert len(replies) == 1
    assert len(runtime.handles) >= 2
    (slow,) = [row for row in _inbound_rows(layout) if "slow one" in row.content]
    assert slow.tries == 1 and slow.status == "completed"


BAD_ROWS = [
    ("chat", "{not json"),
    ("teleport", json.dumps({"text": "x"})),
    ("chat", json.dumps({"text": "x" * 300_000})),
    ("chat", json.dumps({"text": "see file", "files": ["../../../etc/passwd"]})),
    ("chat", json.dumps({"text": 5})),
]


def test_bad_rows_are_rejected_and_the_host_keeps_serving(
    host: Host, chat: ChatClient, caplog: pytest.LogCaptureFixture
) -> None:
    chat.send("first")
    chat.next_message()
    layout = _layout(host)
    caplog.set_level(logging.WARNING, logger="hutch.session")
    with write_transaction(layout.outbound_db) as conn:
        highest = max(outbound.messages_after(conn, 0)[-1].seq, 1)
        for offset, (kind, content) in enumerate(BAD_ROWS):
            conn.execute(
                "INSERT INTO messages_out (id, seq, timestamp, kind, platform_id, channel_type, content)"
                " VALUES (?, ?, ?, ?, 'local', 'cli', ?)",
                (uuid.uuid4().hex, highest + 2 * (offset + 1), now_ts(), kind, content),
            )
        good = outbound.insert_message(
            conn, message_id=uuid.uuid4().hex, content=ChatOut(text="still here"), timestamp=now_ts(),
            highest_inbound_seq=highest + 20, routing=Routing("local", "cli"),
        )  # fmt: skip
    assert chat.next_message()["text"] == "still here"
    with read_transaction(layout.inbound_db) as conn:
        failed = [d for d in inbound.deliveries(conn).values() if d.status == "failed"]
    assert len(failed) == len(BAD_ROWS)
    reasons = " ".join(d.last_error or "" for d in failed)
    for fragment in ("not valid JSON", "unknown kind", "bytes, more than", "not a plain basename", "Expected `str`"):
        assert fragment in reasons
    assert sum("rejected outbound row" in r.getMessage() for r in caplog.records) == len(BAD_ROWS)
    assert good.seq > highest
    chat.send("and now?")
    assert chat.next_message()["text"].startswith("mock: and now?")


def test_a_data_folder_given_relative_works(
    data_dir: Path, runtime: RecordingProcessRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` uses `./data`: an agent runs in its own folder, so a relative path reaching it
    would name nothing there."""
    monkeypatch.chdir(data_dir)
    host = start_host(HostConfig(data_dir=Path("data"), runtime="process", provider="mock"), runtime=runtime)
    try:
        chat = ChatClient(data_dir / "data" / "cli.sock")
        try:
            assert chat.send("hello from a relative folder")["type"] == "ack"
            assert chat.next_message()["text"].startswith("mock: hello from a relative folder")
        finally:
            chat.close()
    finally:
        host.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="agents get uids of their own only from a host run as root")
def test_a_host_run_as_root_gives_each_group_a_uid_and_its_folders(host: Host, chat: ChatClient) -> None:
    """Whether or not this machine's Python lets the agent itself drop to that uid (the
    runtime says when not), the folders are laid out for it: nothing of the agent's area is
    root's, nothing of the host's is the agent's."""
    assert chat.send("hello")["type"] == "ack"
    assert chat.next_message()["text"].startswith("mock: hello")
    layout = _layout(host)
    with host.store.read() as conn:
        (uid,) = conn.execute("SELECT uid FROM agent_uids WHERE folder = 'main'").fetchone()
    assert uid in host.config.agent_uids
    assert (layout.root.stat().st_uid, layout.root.stat().st_gid) == (0, uid)
    assert (layout.out.stat().st_uid, layout.out.stat().st_gid) == (0, uid)
    assert (layout.outbound_db.stat().st_uid, layout.outbound_db.stat().st_gid) == (0, uid)
    assert (host.config.groups_dir / "main").stat().st_uid == uid
    assert host.config.central_db.stat().st_mode & 0o077 == 0


def test_a_signed_webhook_reaches_its_agent_and_a_bad_one_writes_nothing(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hutch.webhook")
    answered = LineWaiter("the agent answered route 'deploys'")
    logging.getLogger("hutch.webhook").addHandler(answered)
    config = HostConfig(
        data_dir=data_dir, runtime="process", provider="mock", idle_timeout_s=60, sweep_interval_s=3600, webhook_port=0
    )
    host = start_host(config)
    try:
        main = agent_groups.get_by_folder(host.store, "main")
        assert main is not None
        secret = "a-secret-of-some-length"
        webhook_routes.create(host.store, route="deploys", secret=secret, agent_group_id=main.id)
        (endpoint,) = [c for c in host.channels if isinstance(c, WebhookChannel)]
        body = json.dumps({"status": "deployed", "version": "1.2.3"}).encode()

        def post(signature_value: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
            headers = {SIGNATURE_HEADER: signature_value, "Content-Type": "application/json"}
            conn.request("POST", "/hooks/deploys", body=body, headers=headers)
            status = conn.getresponse().status
            conn.close()
            return status

        assert post("sha256=" + "0" * 64) == 401
        assert sessions.list_all(host.store) == []  # nothing written for a refusal
        assert post(signature(secret, body)) == 202

        (session,) = sessions.list_all(host.store)
        layout = SessionLayout(host.config.sessions_dir / "main" / session.id)
        (row,) = _inbound_rows(layout)
        assert row.kind == "webhook" and row.decoded().payload == {"status": "deployed", "version": "1.2.3"}
        events = FolderEvents(layout.out)
        try:
            events.wait_until(
                lambda: any("the agent answered route 'deploys'" in r.getMessage() for r in caplog.records)
            )
        finally:
            events.close()
    finally:
        host.stop()
