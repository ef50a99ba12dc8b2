"""The whole host on the real Docker runtime: starting one chat's container holds up no other
chat. (Before, the start ran inside the Supervisor's ask chain, so every chat waited for it;
`make bench` measures the figures, rows d.warm_docker*.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.config import HostConfig
from actors.host import Host
from actors.runtime.docker import DockerRuntime
from actors.store import agent_groups, messaging_group_agents, messaging_groups
from actors.store.db import open_store
from tests.fakes.chat_client import ChatClient

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def docker_host(data_dir: Path) -> Iterator[Host]:
    reason = DockerRuntime.available()
    if reason is not None:
        pytest.skip(reason)
    with open_store(data_dir / "hutch.db") as store:
        group = agent_groups.create(store, name="main", folder="main")
        chat = messaging_groups.create(store, channel_type="cli", platform_id="local")
        messaging_group_agents.create(
            store, messaging_group_id=chat.id, agent_group_id=group.id, session_mode="per-thread"
        )
    runtime = DockerRuntime(installation_id=f"test-{uuid.uuid4().hex[:12]}")
    config = HostConfig(data_dir=data_dir, runtime="docker", provider="mock", sweep_interval_s=3600)
    host = Host.start(config, runtime=runtime)
    try:
        yield host
    finally:
        host.stop()
        runtime.cleanup_orphans()
        runtime.close()


def _reply_in(chat: ChatClient, replies: list[dict[str, Any]], thread: str) -> int:
    """The position of the first reply in `thread`, reading more lines as needed."""
    while True:
        for index, reply in enumerate(replies):
            if reply.get("thread") == thread:
                return index
        replies.append(chat.next_message(timeout=120))


def test_a_warm_chat_is_answered_while_another_chats_container_starts(docker_host: Host) -> None:
    chat = ChatClient(docker_host.config.chat_socket, timeout=120)
    try:
        assert chat.send("warm up", thread="warm")["type"] == "ack"
        assert chat.next_message(timeout=120)["text"].startswith("mock: warm up")

        assert chat.send("hello, new chat", thread="new")["type"] == "ack"  # its container starts now
        assert chat.send("still there?", thread="warm")["type"] == "ack"  # acked before that start is done

        replies: list[dict[str, Any]] = []
        assert _reply_in(chat, replies, "warm") < _reply_in(chat, replies, "new")
        assert replies[_reply_in(chat, replies, "new")]["text"].startswith("mock: hello, new chat")
    finally:
        chat.close()
