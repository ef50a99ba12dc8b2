"""Retries where they belong and budgets, end to end: a whole host with the Claude provider
against the fake Messages API.

- A 529 that outlives the SDK's retries hands the batch back: the person is told once that
  the answer is delayed, the row stays pending with a `process_after`, and it is answered
  after the API's `retry-after`.
- A spent budget: the proxy refuses with `budget_exceeded`, the person is told once why,
  the row stays pending (never failed), and `hutch budget set` on the running host lets it
  run at once.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from actors.cli.budget import app as budget_app
from actors.host import Host
from actors.store import agent_groups, budgets, sessions
from protocol import inbound
from protocol.db import read_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageIn
from tests.fakes.chat_client import ChatClient
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply, FakeUsage
from tests.fakes.probes import poll
from tests.integration.claude_support import claude_host as running_claude_host
from tests.integration.conftest import RecordingProcessRuntime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MODEL = "claude-sonnet-4-5"
# The SDK's own retries (container_runner.providers.claude: max_retries=2): three answers in all.
SDK_ATTEMPTS = 3


@pytest.fixture
def claude_host(data_dir: Path, runtime: RecordingProcessRuntime, api: FakeMessagesAPI) -> Iterator[Host]:
    with running_claude_host(data_dir, runtime, api, model=MODEL) as started:
        yield started


def _busy(final_retry_after_ms: int) -> list[FakeReply]:
    """529s for every try the SDK makes; the last one's `retry-after` is what the agent waits."""
    replies = [FakeReply.error(529, "Overloaded") for _ in range(SDK_ATTEMPTS - 1)]
    return [*replies, FakeReply.error(529, "Overloaded", retry_after_ms=final_retry_after_ms)]


def _rows(host: Host) -> list[MessageIn]:
    store = host.store
    main = agent_groups.get_by_name(store, "main")
    assert main is not None
    found = sessions.list_all(store, agent_group_id=main.id)
    if not found:
        return []
    layout = SessionLayout(host.config.sessions_dir / main.folder / found[0].id)
    if not layout.inbound_db.exists():
        return []
    with read_transaction(layout.inbound_db) as conn:
        return [row for row in inbound.messages_with_status(conn, "pending", "completed", "failed") if row.trigger]


def _texts_until(client: ChatClient, wanted: str, timeout_s: float = 40) -> list[str]:
    """Every message the chat gets, up to and including the first containing `wanted`."""
    seen: list[str] = []
    while True:
        try:
            message: dict[str, Any] = client.next_message(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no message with {wanted!r}; got {seen}") from None
        seen.append(str(message.get("text", "")))
        if wanted in seen[-1]:
            return seen


def test_a_busy_model_defers_tells_once_and_answers_after_retry_after(claude_host: Host, api: FakeMessagesAPI) -> None:
    # Two deferrals in a row: the person hears about the first only.
    api.enqueue(*_busy(2500), *_busy(1500), FakeReply.text("here is your answer"))
    client = ChatClient(claude_host.config.chat_socket)
    try:
        assert client.send("hello")["type"] == "ack"
        assert "The model is busy right now" in client.next_message()["text"]
        # Handed back, not failed: pending, held until the API's retry-after, one try counted.
        [row] = poll(
            "the row deferred",
            lambda: [r for r in _rows(claude_host) if r.status == "pending" and r.process_after and r.tries == 1],
            timeout_s=20,
        )
        assert row.status == "pending"
        texts = _texts_until(client, "here is your answer")
    finally:
        client.close()
    assert texts == ["here is your answer"], "told once, then answered"
    [done] = poll("the row completed", lambda: [r for r in _rows(claude_host) if r.status == "completed"], 10)
    assert done.tries == 2  # each busy deferral counted a try
    assert api.pending == 0


def test_a_spent_budget_holds_messages_until_the_owner_raises_it(claude_host: Host, api: FakeMessagesAPI) -> None:
    store = claude_host.store
    main = agent_groups.get_by_name(store, "main")
    assert main is not None
    api.default_usage = FakeUsage(input_tokens=500, output_tokens=20)
    assert budgets.put(store, budgets.Budget(agent_group_id=main.id, daily_tokens=100)) is not None
    client = ChatClient(claude_host.config.chat_socket)
    try:
        client.send("first")
        # The first answer spends the budget; the owner (the local chat, with no channel owner
        # configured) is told it is spent, once.
        seen = _texts_until(client, "has spent its daily budget of 100 tokens")
        if not any("first" in text for text in seen):  # the notice may come before the answer
            seen += _texts_until(client, "first")
        assert len([text for text in seen if "budget" in text]) == 1
        client.send("second")
        told = _texts_until(client, "daily budget of 100 tokens is spent")
        assert told[-1].startswith("I can't answer yet: the agent group's daily budget of 100 tokens is spent")
        [waiting] = poll(
            "the second message waiting",
            lambda: [r for r in _rows(claude_host) if r.status == "pending" and r.process_after],
            timeout_s=20,
        )
        assert waiting.tries == 0  # waiting for money is not a failure
        requests_before = len(api.requests)

        # `hutch budget set` against the running host: through its control socket.
        raised = CliRunner().invoke(
            budget_app, ["set", "main", "--daily-tokens", "1000000", "--data-dir", str(claude_host.config.data_dir)]
        )
        assert raised.exit_code == 0, raised.output
        assert "1 running session(s) try what waited for it now" in raised.output
        answered = _texts_until(client, "second")
    finally:
        client.close()
    assert not any("budget" in text for text in answered), "the person was told once"
    # Only the resumed request reached the API: the refusal never left the host.
    assert len(api.requests) == requests_before + 1
    poll("both completed", lambda: len([r for r in _rows(claude_host) if r.status == "completed"]) == 2, 10)
