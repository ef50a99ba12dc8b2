"""The whole host with the Claude provider: what the fake Messages API reports as used ends
up in hutch.db per agent group, session, model and day, through the host's own proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.host import Host
from actors.store import agent_groups, sessions, usage
from tests.fakes.chat_client import ChatClient
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply, FakeUsage
from tests.fakes.probes import poll
from tests.integration.claude_support import claude_host as running_claude_host
from tests.integration.conftest import RecordingProcessRuntime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

MODEL = "claude-sonnet-4-5"  # set on the host; the fake answers with the model asked for


@pytest.fixture
def claude_host(data_dir: Path, runtime: RecordingProcessRuntime, api: FakeMessagesAPI) -> Iterator[Host]:
    with running_claude_host(data_dir, runtime, api, model=MODEL) as started:
        yield started


def test_each_model_answer_is_recorded_for_the_group_and_session(claude_host: Host, api: FakeMessagesAPI) -> None:
    first = FakeUsage(input_tokens=1200, output_tokens=30, cache_creation_input_tokens=800, cache_read_input_tokens=0)
    second = FakeUsage(input_tokens=40, output_tokens=12, cache_creation_input_tokens=0, cache_read_input_tokens=2000)
    api.enqueue(
        FakeReply.tool_use("send_message", {"text": "working on it"}, usage=first),
        FakeReply.text("done", usage=second),
    )
    client = ChatClient(claude_host.config.chat_socket)
    try:
        client.send("hello")
        assert client.next_message()["text"] == "working on it"
        assert client.next_message()["text"] == "done"
    finally:
        client.close()

    store = claude_host.store
    main = agent_groups.get_by_name(store, "main")
    assert main is not None
    [session] = sessions.list_all(store, agent_group_id=main.id)
    today = usage.utc_day()
    # Recorded once each answer has gone to the agent: the reply may arrive first.
    [day] = poll(
        "two answers recorded",
        lambda: [d for d in usage.daily_by_group(store, today) if d.requests == 2],
        timeout_s=20,
    )
    assert (day.agent_group_id, day.group_name) == (main.id, "main")
    assert (day.input_tokens, day.output_tokens, day.cache_read_tokens, day.cache_write_tokens) == (1240, 42, 2000, 800)
    # Sonnet 4.5: $3 in, $15 out, $0.30 cache reads, $3.75 5-minute cache writes, per million.
    assert day.cost_usd == pytest.approx((1240 * 3 + 42 * 15 + 2000 * 0.3 + 800 * 3.75) / 1_000_000)
    with store.read() as conn:
        rows = conn.execute("SELECT session_id, model FROM token_usage").fetchall()
    assert [tuple(row) for row in rows] == [(session.id, MODEL)]
