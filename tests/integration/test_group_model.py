"""Each agent group's model reaches the model API, and a change (`/model` in chat, `hutch
groups set`) is used from the next message on: the host stops the group's running agents and
the next message starts them with the group's model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from actors.cli.app import app
from actors.host import Host
from actors.runtime.process import agents_in
from actors.store import agent_groups
from actors.store.db import open_store
from protocol.models import DEFAULT_MODEL
from tests.fakes.chat_client import ChatClient
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply
from tests.fakes.host_process import HostProcess
from tests.fakes.probes import poll
from tests.integration.claude_support import claude_host as running_claude_host
from tests.integration.conftest import RecordingProcessRuntime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def claude_host(data_dir: Path, runtime: RecordingProcessRuntime, api: FakeMessagesAPI) -> Iterator[Host]:
    with running_claude_host(data_dir, runtime, api) as started:
        yield started


@pytest.fixture
def chat(claude_host: Host) -> Iterator[ChatClient]:
    client = ChatClient(claude_host.config.chat_socket)
    yield client
    client.close()


def _turn(chat: ChatClient, api: FakeMessagesAPI, text: str) -> str:
    """One message answered by the fake model; the model that turn asked for."""
    before = len(api.requests)
    api.enqueue(FakeReply.text(f"re: {text}"))
    chat.send(text)
    assert chat.next_message()["text"] == f"re: {text}"
    (request,) = api.requests[before:]
    model: str = request.body["model"]
    return model


def test_a_groups_own_model_is_what_its_agent_asks_for(
    claude_host: Host, chat: ChatClient, api: FakeMessagesAPI
) -> None:
    main = agent_groups.get_by_folder(claude_host.store, "main")
    assert main is not None
    agent_groups.update(claude_host.store, main.id, model="claude-opus-5-5")
    assert _turn(chat, api, "hello") == "claude-opus-5-5"


def test_model_in_chat_changes_the_group_and_the_next_turn_uses_it(
    claude_host: Host, chat: ChatClient, api: FakeMessagesAPI, runtime: RecordingProcessRuntime
) -> None:
    assert _turn(chat, api, "first") == DEFAULT_MODEL
    requests = len(api.requests)
    chat.send("/model claude-haiku-5-5")
    assert chat.next_message()["text"] == "main now uses claude-haiku-5-5, from the next message on."
    assert len(api.requests) == requests  # the command never reached the agent
    main = agent_groups.get_by_folder(claude_host.store, "main")
    assert main is not None and main.model == "claude-haiku-5-5"
    assert _turn(chat, api, "second") == "claude-haiku-5-5"
    assert len(runtime.handles) == 2  # the agent was started again with the group's model
    chat.send("/model")
    assert chat.next_message()["text"] == "main: claude-haiku-5-5"


# -- `hutch groups set`, against a host process and with none running ---------------------


@pytest.fixture
def host(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostProcess]:
    for name in list(os.environ):
        if name.startswith("HUTCH_"):
            monkeypatch.delenv(name)
    running = HostProcess(data_dir)
    yield running
    running.terminate()


def _hutch(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    return result.stdout


def _agent_model(pid: int) -> str | None:
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"HUTCH_MODEL="):
            return item.split(b"=", 1)[1].decode()
    return None


def test_groups_set_restarts_a_running_hosts_agents_and_works_offline(host: HostProcess, data_dir: Path) -> None:
    sessions_dir = data_dir / "sessions"
    client = ChatClient(data_dir / "cli.sock", sender="ada")
    try:
        client.send("hello")
        client.next_message()
        (pid,) = agents_in(sessions_dir)
        assert _agent_model(pid) == DEFAULT_MODEL
        said = _hutch(data_dir, "groups", "set", "main", "--model", "claude-opus-5-5")
        assert "uses claude-opus-5-5; 1 running agent(s) stopped" in said
        assert agents_in(sessions_dir) == []
        client.send("again")
        client.next_message()
        (pid,) = poll("the agent again", lambda: agents_in(sessions_dir) or None, 30)
        assert _agent_model(pid) == "claude-opus-5-5"
    finally:
        client.close()
    host.terminate()

    said = _hutch(data_dir, "groups", "set", "main", "--model", "default")
    assert said.startswith("agent group 'main' uses the host's model (HUTCH_MODEL)")
    with open_store(data_dir / "hutch.db") as store:
        main = agent_groups.get_by_folder(store, "main")
    assert main is not None and main.model is None
    refused = CliRunner().invoke(app, ["groups", "set", "main", "--model", "gpt-5", "--data-dir", str(data_dir)])
    assert refused.exit_code == 1
    assert "is not a Claude model id" in refused.output
