"""The runner end to end: the test plays host, writing inbound.db and watching outbound.db
and `.heartbeat` through real watchdog events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from container_runner.config import RunnerConfig
from container_runner.providers.mock import MockProvider
from container_runner.system import RunnerSystem, build_provider
from protocol import outbound
from protocol.content import ChatIn, ChatOut, ScheduleTask
from protocol.db import write_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageOut
from protocol.timeutil import now_ts
from tests.fakes.probes import MemoryState
from tests.fakes.session import ROUTING, FolderEvents, acks, make_session, replies, write_in

pytestmark = [pytest.mark.timeout(30), pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[2]


class Host:
    """A session folder, an agent folder, and runner processes started on them."""

    def __init__(self, tmp_path: Path) -> None:
        self.layout = make_session(tmp_path / "s")
        self.agent_dir = tmp_path / "agent"
        self.agent_dir.mkdir()
        self.log = tmp_path / "runner.log"
        self.events = FolderEvents(self.layout.root)
        self.processes: list[subprocess.Popen[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("ANTHROPIC_")}
        env.update(
            HUTCH_SESSION_DIR=str(self.layout.root),
            HUTCH_AGENT_DIR=str(self.agent_dir),
            HUTCH_PROVIDER="mock",
            HUTCH_HEARTBEAT_INTERVAL="0.5",
            HUTCH_SAFETY_INTERVAL="30",
        )
        env.update(extra)
        return env

    def start(self, **extra: str) -> subprocess.Popen[bytes]:
        return self.run(["-m", "container_runner"], **extra)

    def run(self, arguments: list[str], **extra: str) -> subprocess.Popen[bytes]:
        """A Python process on the session, as `python <arguments>`."""
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, *arguments],
                env=self.env(**extra),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.processes.append(process)
        return process

    def wait_until_answered(self, message_id: str) -> MessageOut:
        def answered() -> MessageOut | None:
            if message_id not in self.completed():
                return None
            return chat_reply(self.layout, message_id)

        try:
            return self.events.wait_until(answered)
        except TimeoutError:
            raise AssertionError(f"no answer; runner log:\n{self.log.read_text()}") from None

    def completed(self) -> set[str]:
        return {key for key, ack in acks(self.layout).items() if ack.status == "completed"}

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        self.events.close()


def chat_reply(layout: SessionLayout, message_id: str) -> MessageOut | None:
    for row in replies(layout):
        if row.in_reply_to == message_id and row.kind == "chat":
            return row
    return None


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    host = Host(tmp_path)
    try:
        yield host
    finally:
        host.close()


def test_a_message_is_answered_acked_and_the_heartbeat_is_fresh(host: Host) -> None:
    host.start()
    row = write_in(host.layout, ChatIn(text="hello runner", sender="Ann", sender_id="u1"))
    written_ns = host.layout.inbound_db.stat().st_mtime_ns
    reply = host.wait_until_answered(row.id)
    assert reply.seq % 2 == 1 and reply.seq > row.seq
    assert reply.routing == ROUTING
    content = reply.decoded()
    assert isinstance(content, ChatOut) and content.text.startswith("mock: hello runner")
    assert acks(host.layout)[row.id].status == "completed"
    host.events.wait_until(
        lambda: host.layout.heartbeat.exists() and host.layout.heartbeat.stat().st_mtime_ns > written_ns
    )


def test_a_tool_directive_yields_a_system_row(host: Host) -> None:
    host.start()
    text = '!tool schedule_task {"prompt": "x", "process_after": "2030-01-01T00:00:00Z"}'
    row = write_in(host.layout, ChatIn(text=text, sender="Ann"))
    reply = host.wait_until_answered(row.id)
    assert "schedule_task -> task " in reply.decoded().text
    (system,) = [out for out in replies(host.layout) if out.kind == "system"]
    action = system.decoded()
    assert isinstance(action, ScheduleTask)
    assert action.prompt == "x" and action.process_after == "2030-01-01T00:00:00.000000Z"
    assert system.in_reply_to == row.id and system.routing == ROUTING and system.seq % 2 == 1


def test_a_stale_processing_claim_is_cleared_and_the_message_answered(host: Host) -> None:
    row = write_in(host.layout, ChatIn(text="left over", sender="Ann"))
    with write_transaction(host.layout.outbound_db) as conn:
        outbound.set_ack(conn, row.id, "processing", now_ts())
    host.start()
    reply = host.wait_until_answered(row.id)
    assert reply.decoded().text.startswith("mock: left over")
    assert "cleared_claims=1" in host.log.read_text()


def test_sigterm_stops_the_runner_cleanly(host: Host) -> None:
    process = host.start()
    row = write_in(host.layout, ChatIn(text="before stop", sender="Ann"))
    host.wait_until_answered(row.id)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert "runner stopped" in host.log.read_text()


def test_a_bad_configuration_exits_with_a_message(host: Host) -> None:
    process = host.start(HUTCH_PROVIDER="gpt")
    assert process.wait(timeout=10) == 2
    assert "HUTCH_PROVIDER='gpt'" in host.log.read_text()


def test_build_provider_follows_the_config(host: Host) -> None:
    from container_runner.providers.claude import ClaudeProvider

    (host.agent_dir / "CLAUDE.md").write_text("Always answer in French.")
    base = RunnerConfig(session_dir=host.layout.root, agent_dir=host.agent_dir)
    assert isinstance(build_provider(base, MemoryState()), MockProvider)
    claude = RunnerConfig(
        session_dir=host.layout.root,
        agent_dir=host.agent_dir,
        provider="claude",
        model="claude-test",
        proxy_socket=host.layout.proxy_socket,
        stall_timeout_s=7,
    )
    provider = build_provider(claude, MemoryState())  # builds a client; no request is made
    assert isinstance(provider, ClaudeProvider)
    settings = provider._settings
    assert settings.model == "claude-test" and settings.stall_timeout == 7
    assert settings.proxy_socket == host.layout.proxy_socket and settings.api_key is None
    # The memory file is read each turn, a system block of its own after the cached instructions.
    assert settings.memory is not None and "Always answer in French." in settings.memory()
    assert "Always answer in French." not in settings.system_prompt
    provider.close()


def test_in_process_system_answers_and_keeps_state_across_restarts(host: Host) -> None:
    config = RunnerConfig(
        session_dir=host.layout.root,
        agent_dir=host.agent_dir,
        heartbeat_interval_s=0.5,
        safety_interval_s=30,
        stop_timeout_s=5,
    )
    first = write_in(host.layout, ChatIn(text="one", sender="Ann"))
    system = RunnerSystem(config)
    system.start()
    try:
        assert host.wait_until_answered(first.id).decoded().text == "mock: one\n[turn 1]"
    finally:
        system.stop()
    system = RunnerSystem(config)
    system.start()
    try:
        # The turn counter lives in outbound.db, so a restarted runner continues it.
        second = write_in(host.layout, ChatIn(text="two", sender="Ann"))
        assert host.wait_until_answered(second.id).decoded().text == "mock: two\n[turn 2]"
        clear = write_in(host.layout, ChatIn(text="/clear", sender="Boss", sender_id="admin", sender_role="admin"))
        assert host.wait_until_answered(clear.id).decoded().text == "Conversation cleared. Starting afresh."
        third = write_in(host.layout, ChatIn(text="three", sender="Ann"))
        assert host.wait_until_answered(third.id).decoded().text == "mock: three\n[turn 1]"
    finally:
        system.stop()
    assert host.layout.heartbeat.exists()


def _slow_tool(seconds: float) -> str:
    """A message whose turn runs a bash tool for `seconds`, touching `started` first."""
    return f'!tool bash {{"command": "touch started && sleep {seconds} && echo done"}}'


def _wait_until_the_tool_runs(host: Host) -> None:
    events = FolderEvents(host.agent_dir)
    try:
        events.wait_until((host.agent_dir / "started").exists)
    finally:
        events.close()


def test_sigterm_lets_the_turn_in_flight_finish(host: Host) -> None:
    process = host.start()
    row = write_in(host.layout, ChatIn(text=_slow_tool(1), sender="Ann"))
    _wait_until_the_tool_runs(host)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, host.log.read_text()
    assert acks(host.layout)[row.id].status == "completed"
    reply = chat_reply(host.layout, row.id)
    assert reply is not None and "bash -> done" in reply.decoded().text, host.log.read_text()
    assert "did not finish" not in host.log.read_text()


def test_a_turn_longer_than_the_grace_period_is_left_claimed(host: Host) -> None:
    process = host.start(HUTCH_STOP_GRACE="0.3")
    row = write_in(host.layout, ChatIn(text=_slow_tool(4), sender="Ann"))
    _wait_until_the_tool_runs(host)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, host.log.read_text()
    assert time.monotonic() - signalled < 3  # well before the 4 s turn could have ended
    # Still claimed, so the next start runs it again; and no reply at all, least of all an error.
    assert acks(host.layout)[row.id].status == "processing"
    assert replies(host.layout) == []
    assert "did not finish within 0.3 s" in host.log.read_text()


CRASHING_INBOX = textwrap.dedent(
    """
    import sys

    from container_runner.__main__ import main
    from container_runner.inbox import InboxActor

    def broken_check(self):
        raise RuntimeError("the inbox broke")

    InboxActor._check = broken_check  # fails on the first wake, which the inbox sends itself
    sys.exit(main())
    """
)


def test_a_runner_that_loses_an_actor_exits_non_zero(host: Host) -> None:
    process = host.run(["-c", CRASHING_INBOX])
    # Before the fix it heartbeated on for ever; the host restarts an agent that exits.
    assert process.wait(timeout=15) == 1, host.log.read_text()
    log = host.log.read_text()
    assert "InboxActor died: RuntimeError('the inbox broke')" in log
    assert "exiting for the host to start the agent again" in log


NO_INOTIFY = textwrap.dedent(
    """
    import errno
    import sys

    import protocol.filewatch
    from container_runner.__main__ import main

    def no_inotify(self):
        raise OSError(errno.EMFILE, "inotify instance limit reached")

    protocol.filewatch.Observer.start = no_inotify
    sys.exit(main())
    """
)


def test_without_inotify_the_runner_polls_and_answers(host: Host) -> None:
    process = host.run(["-c", NO_INOTIFY])
    row = write_in(host.layout, ChatIn(text="anyone there?", sender="Ann"))
    assert host.wait_until_answered(row.id).decoded().text.startswith("mock: anyone there?")
    assert process.poll() is None
    assert "inotify instance limit reached" in host.log.read_text()
    assert "polling every 1 s instead" in host.log.read_text()
