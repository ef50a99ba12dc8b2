"""Every changing `hutch` subcommand against a real host process: the change is made by the
host itself through its control socket, reaches the running sessions at once, and each
session DB keeps its one writer."""

from __future__ import annotations

import http.client
import json
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from actors.channels.webhook import SIGNATURE_HEADER, signature
from actors.cli.app import app
from actors.runtime.process import agents_in
from actors.store import agent_groups, members, messaging_group_agents, messaging_groups, pairing_requests, sessions
from actors.store.db import open_store
from protocol.db import read_transaction
from protocol.layout import SessionLayout
from protocol.timeutil import format_ts, utc_now
from tests.fakes.chat_client import ChatClient
from tests.fakes.host_process import HostProcess
from tests.fakes.probes import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def host(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostProcess]:
    for name in list(os.environ):
        if name.startswith("HUTCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "250")
    running = HostProcess(data_dir)
    yield running
    running.terminate()


@pytest.fixture
def webhook_host(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostProcess]:
    """A host with its webhook endpoint on a port the system chose."""
    for name in list(os.environ):
        if name.startswith("HUTCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "250")
    running = HostProcess(data_dir, env={"HUTCH_WEBHOOK_PORT": "0"})
    yield running
    running.terminate()


@pytest.fixture
def chat(host: HostProcess, data_dir: Path) -> Iterator[ChatClient]:
    client = ChatClient(data_dir / "cli.sock", sender="ada")
    yield client
    client.close()


def hutch(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)])


def ok(data_dir: Path, *args: str) -> str:
    result = hutch(data_dir, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def _task_statuses(layout: SessionLayout) -> dict[str, str]:
    with read_transaction(layout.inbound_db) as conn:
        return {
            row["id"]: row["status"] for row in conn.execute("SELECT id, status FROM messages_in WHERE kind='task'")
        }


def _local_session(data_dir: Path) -> tuple[str, SessionLayout]:
    with open_store(data_dir / "hutch.db") as store:
        (session,) = sessions.list_all(store)
    return session.id, SessionLayout(data_dir / "sessions" / "main" / session.id)


def test_tasks_are_listed_paused_resumed_and_cancelled_by_the_host(
    host: HostProcess, chat: ChatClient, data_dir: Path
) -> None:
    later = format_ts(utc_now() + timedelta(days=1))
    chat.send(f'!tool schedule_task {{"prompt": "water the plants", "process_after": "{later}"}}')
    assert "scheduled" in chat.next_message()["text"]
    session_id, layout = _local_session(data_dir)
    (task_id,) = poll("the task row", lambda: list(_task_statuses(layout)) or None, 30)
    listed = ok(data_dir, "tasks", "list")
    assert task_id in listed
    assert "water the plants" in listed
    assert "now paused" in ok(data_dir, "tasks", "pause", task_id)
    assert _task_statuses(layout) == {task_id: "paused"}  # written before the command returned
    assert "paused" in ok(data_dir, "tasks", "list")
    assert "now pending" in ok(data_dir, "tasks", "resume", task_id[:6])
    assert "now cancelled" in ok(data_dir, "tasks", "cancel", task_id, "--session", session_id[:8])
    assert _task_statuses(layout) == {task_id: "cancelled"}
    assert ok(data_dir, "tasks", "list").strip() == "no scheduled tasks"
    refused = hutch(data_dir, "tasks", "pause", task_id)
    assert refused.exit_code == 1
    assert "there is nothing to pause" in refused.stderr
    assert "now cancelled (asked through the control socket)" in "".join(host.log)  # the session's own writer


def test_clear_reaches_the_agent_and_its_answer_the_chat(host: HostProcess, chat: ChatClient, data_dir: Path) -> None:
    chat.send("hello")
    chat.next_message()
    session_id, _ = _local_session(data_dir)
    assert "forgets the conversation" in ok(data_dir, "sessions", "clear", session_id[:8])
    assert chat.next_message()["text"] == "Conversation cleared. Starting afresh."


def test_stop_ends_the_sessions_agent_and_the_next_message_starts_it(
    host: HostProcess, chat: ChatClient, data_dir: Path
) -> None:
    chat.send("hello")
    chat.next_message()
    session_id, _ = _local_session(data_dir)
    assert agents_in(data_dir / "sessions")
    assert "its agent is stopped" in ok(data_dir, "sessions", "stop", session_id)
    assert agents_in(data_dir / "sessions") == []
    assert "no agent of it was running" in ok(data_dir, "sessions", "stop", session_id)
    chat.send("again")
    assert chat.next_message()["text"].startswith("mock: again")


def test_groups_wiring_and_senders_change_what_the_host_routes(host: HostProcess, data_dir: Path) -> None:
    assert "added" in ok(data_dir, "groups", "add", "Family")
    assert (data_dir / "groups" / "family" / "CLAUDE.md").is_file()
    said = ok(data_dir, "wire", "telegram:-100", "Family", "--trigger", "mention", "--unknown-senders", "pair")
    assert said.startswith("telegram:-100 wired to 'Family'")
    ok(data_dir, "senders", "allow", "telegram:-100", "42", "--role", "admin")
    ok(data_dir, "senders", "block", "telegram:-100", "43")
    with open_store(data_dir / "hutch.db") as store:
        chat = messaging_groups.get_by_platform(store, "telegram", "-100")
        assert chat is not None
        assert chat.unknown_senders == "pair"
        assert members.role_of(store, chat.id, "42") == "admin"
        assert pairing_requests.was_refused(store, chat.id, "43")
        request, _ = pairing_requests.open_request(store, chat.id, "44", "Bob")
    said = ok(data_dir, "senders", "approve", request.code)
    assert "is approved" in said
    assert "telegram is not configured on the host" in said  # no channel to tell them on
    ok(data_dir, "unwire", "telegram:-100", "Family")
    assert "removed" in ok(data_dir, "groups", "remove", "Family", "--yes")
    with open_store(data_dir / "hutch.db") as store:
        assert agent_groups.get_by_name(store, "Family") is None
        assert messaging_group_agents.wirings_for(store, chat.id) == []
    assert "hutch.control" in "".join(host.log)  # the host made the changes


def test_a_group_with_a_running_session_is_stopped_before_it_is_removed(
    host: HostProcess, chat: ChatClient, data_dir: Path
) -> None:
    ok(data_dir, "groups", "add", "second")
    ok(data_dir, "wire", "cli:local", "second")
    chat.send("hello both")
    replies = {chat.next_message()["text"] for _ in range(2)}
    assert all(text.startswith("mock: hello both") for text in replies)
    poll("both agents", lambda: len(agents_in(data_dir / "sessions")) == 2 or None, 30)
    assert "1 running session(s) stopped" in ok(data_dir, "groups", "remove", "second", "--yes")
    assert len(agents_in(data_dir / "sessions")) == 1
    chat.send("only main now")
    assert chat.next_message()["text"].startswith("mock: only main now")


def test_groups_set_limits_are_stored_by_the_host_and_restart_the_groups_agents(
    host: HostProcess, chat: ChatClient, data_dir: Path
) -> None:
    chat.send("hello")
    chat.next_message()
    poll("the agent", lambda: agents_in(data_dir / "sessions") or None, 30)
    said = ok(data_dir, "groups", "set", "main", "--cpus", "0.5", "--memory-mb", "300", "--pids", "64")
    assert "its agents may use cpus 0.5, memory 300 MB, pids 64; 1 running agent(s) stopped" in said
    assert agents_in(data_dir / "sessions") == []
    with open_store(data_dir / "hutch.db") as store:
        group = agent_groups.get_by_name(store, "main")
        assert group is not None
        assert (group.cpus, group.memory_mb, group.pids, group.shm_mb) == (0.5, 300, 64, None)
    refused = hutch(data_dir, "groups", "set", "main", "--shm-mb", "0")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("hutch: shm_mb 0: give a whole number from 1")
    cleared = ok(data_dir, "groups", "set", "main", "--memory-mb", "default")
    assert "memory the host's (HUTCH_AGENT_MEMORY_MB)" in cleared
    chat.send("again")
    assert chat.next_message()["text"].startswith("mock: again")
    assert "control: agent group 'main': its agents may use cpus 0.5" in "".join(host.log)


def test_a_refusal_from_the_host_is_one_line_and_exit_1(host: HostProcess, data_dir: Path) -> None:
    result = hutch(data_dir, "groups", "remove", "main", "--yes")
    assert result.exit_code == 1
    assert result.stderr.strip() == "hutch: 'main' is where owners' direct chats are wired; it cannot be removed"


def test_every_reading_subcommand_answers_against_a_running_host(
    host: HostProcess, chat: ChatClient, data_dir: Path
) -> None:
    chat.send("hello")
    chat.next_message()
    session_id, _ = _local_session(data_dir)
    status = ok(data_dir, "status")
    assert f"up (pid {host.pid})" in status
    assert "main" in ok(data_dir, "groups", "list")
    assert session_id[:8] in ok(data_dir, "sessions", "list")
    assert "cli:local (local chat)" in ok(data_dir, "sessions", "show", session_id[:8])
    assert ok(data_dir, "tasks", "list").strip() == "no scheduled tasks"
    assert ok(data_dir, "senders", "pending").strip() == "no open pairing requests"
    assert ok(data_dir, "usage").strip() == "no usage recorded yet"  # the mock provider costs nothing
    assert f"[main/{session_id[:8]}]" in ok(data_dir, "logs", "--session", session_id[:8])
    doctor = hutch(data_dir, "doctor")
    assert f"held by a running host, pid {host.pid}" in doctor.stdout  # COLUMNS is wide: no wrapping


def _webhook_port(host: HostProcess) -> int:
    listening = re.compile(r"webhooks: listening on http://127\.0\.0\.1:(\d+)/hooks/")
    found = poll("the webhook endpoint", lambda: next(filter(None, map(listening.search, host.log)), None), 30)
    return int(found.group(1))


def _post(port: int, route: str, body: bytes, secret: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {SIGNATURE_HEADER: signature(secret, body), "Content-Type": "application/json"}
        conn.request("POST", f"/hooks/{route}", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _webhook_payloads(data_dir: Path) -> list[object]:
    with open_store(data_dir / "hutch.db") as store:
        found = sessions.list_all(store)
    payloads: list[object] = []
    for session in found:
        layout = SessionLayout(data_dir / "sessions" / "main" / session.id)
        if not layout.inbound_db.exists():
            continue
        with read_transaction(layout.inbound_db) as conn:
            rows = conn.execute("SELECT content FROM messages_in WHERE kind = 'webhook' ORDER BY seq").fetchall()
        payloads += [json.loads(row["content"])["payload"] for row in rows]
    return payloads


def test_a_webhook_route_made_with_the_command_takes_signed_posts_until_removed(
    webhook_host: HostProcess, data_dir: Path
) -> None:
    port = _webhook_port(webhook_host)
    body = json.dumps({"status": "deployed", "version": "1.2.3"}).encode()
    assert _post(port, "deploys", body, "x" * 43) == 404  # no such route yet
    said = ok(data_dir, "hooks", "add", "deploys", "main")
    (secret,) = [line.removeprefix("secret: ") for line in said.splitlines() if line.startswith("secret: ")]
    assert "hutch.control" in "".join(webhook_host.log)  # the host made it, through its control socket
    assert secret not in "".join(webhook_host.log)
    assert secret not in ok(data_dir, "hooks", "list")

    assert _post(port, "deploys", body, secret) == 202  # no restart: the endpoint reads routes per request
    assert _webhook_payloads(data_dir) == [{"status": "deployed", "version": "1.2.3"}]  # stored before the 202

    rotated = ok(data_dir, "hooks", "rotate", "deploys")
    (new_secret,) = [line.removeprefix("secret: ") for line in rotated.splitlines() if line.startswith("secret: ")]
    assert _post(port, "deploys", body, secret) == 401
    assert _post(port, "deploys", b'{"n": 2}', new_secret) == 202
    assert _webhook_payloads(data_dir) == [{"status": "deployed", "version": "1.2.3"}, {"n": 2}]

    assert "removed" in ok(data_dir, "hooks", "remove", "deploys")
    assert _post(port, "deploys", b'{"n": 3}', new_secret) == 404
    assert len(_webhook_payloads(data_dir)) == 2
