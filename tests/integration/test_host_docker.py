"""The whole host on the real Docker runtime: starting one chat's container holds up no other
chat (before, the start ran inside the Supervisor's ask chain, so every chat waited for it;
`make bench` measures the figures, rows d.warm_docker*), and an agent runs as its group's own
uid within its group's limits."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from actors.config import HostConfig
from actors.host import Host
from actors.runtime.docker import LABEL_AGENT_GROUP, LABEL_INSTALLATION, DockerRuntime
from actors.store import agent_groups, agent_uids, messaging_group_agents, messaging_groups
from actors.store.db import open_store
from protocol.layout import SessionLayout
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


@pytest.mark.skipif(os.geteuid() != 0, reason="agents get uids of their own only from a host run as root")
def test_agents_run_as_their_groups_own_uid_within_its_limits(docker_host: Host) -> None:
    """The host (root) gives the group a uid of its own and its own limits; the container runs
    as that uid, reads the host's read-only files, writes its own, and answers."""
    store = docker_host.store
    group = agent_groups.get_by_folder(store, "main")
    assert group is not None
    agent_groups.update(store, group.id, cpus=0.5, memory_mb=256, pids=64, shm_mb=8)
    chat = ChatClient(docker_host.config.chat_socket, timeout=120)
    try:
        assert chat.send("who am i", thread="t1")["type"] == "ack"
        assert chat.next_message(timeout=120)["text"].startswith("mock: who am i")
    finally:
        chat.close()
    uid = agent_uids.uid_for_folder(store, "main", docker_host.config.agent_uids)
    assert uid in docker_host.config.agent_uids

    client = docker.from_env()
    try:
        assert isinstance(docker_host.runtime, DockerRuntime)
        ours = [f"{LABEL_AGENT_GROUP}=main", f"{LABEL_INSTALLATION}={docker_host.runtime.installation_id}"]
        (container,) = client.containers.list(filters={"label": ours}, ignore_removed=True)
        assert container.attrs["Config"]["User"] == f"{uid}:{uid}"
        limits = container.attrs["HostConfig"]
        assert limits["NanoCpus"] == 500_000_000
        assert limits["Memory"] == limits["MemorySwap"] == 256 * 1024 * 1024
        assert limits["PidsLimit"] == 64
        assert limits["ShmSize"] == 8 * 1024 * 1024
        # exec_run runs as the container's user: the agent's view of its folders.
        _, output = container.exec_run(["sh", "-c", "id -u; touch /session/planted 2>/dev/null || echo refused"])
        assert output.decode().split() == [str(uid), "refused"]
    finally:
        client.close()
    (session_dir,) = (docker_host.config.sessions_dir / "main").iterdir()
    out = SessionLayout(session_dir)
    assert (out.outbound_db.stat().st_gid, out.heartbeat.stat().st_uid) == (uid, uid)
    assert not (session_dir / "planted").exists()
