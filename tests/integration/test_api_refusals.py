"""A model the API does not know, end to end: the person is told that retrying will not help
and why, the agent's log line (relayed into the host's log) and the credential proxy's both
carry the API's own message."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.host import Host
from tests.fakes.chat_client import ChatClient
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply
from tests.fakes.probes import LineWaiter
from tests.integration.claude_support import claude_host as running_claude_host
from tests.integration.conftest import RecordingProcessRuntime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

UNKNOWN_MODEL = "claude-nope-1"


@pytest.fixture
def host(data_dir: Path, runtime: RecordingProcessRuntime, api: FakeMessagesAPI) -> Iterator[Host]:
    with running_claude_host(data_dir, runtime, api, model=UNKNOWN_MODEL, retry_base_s=0.2) as started:
        yield started


@pytest.fixture
def waiters() -> Iterator[tuple[LineWaiter, LineWaiter]]:
    agent = LineWaiter("retrying will not help", timeout=30)
    proxy = LineWaiter(" -> 404 ", timeout=30)
    logging.getLogger("hutch.agent").addHandler(agent)
    logging.getLogger("hutch.credentials").addHandler(proxy)
    yield agent, proxy
    logging.getLogger("hutch.agent").removeHandler(agent)
    logging.getLogger("hutch.credentials").removeHandler(proxy)


def test_an_unknown_model_is_told_as_final_and_logged_with_the_apis_message(
    host: Host,
    api: FakeMessagesAPI,
    waiters: tuple[LineWaiter, LineWaiter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    api.enqueue(FakeReply.error(404, f"model: {UNKNOWN_MODEL}"))
    client = ChatClient(host.config.chat_socket)
    try:
        assert client.send("hello")["type"] == "ack"
        reply = client.next_message()
    finally:
        client.close()

    assert reply["text"] == (
        f"Sorry, I could not answer: The model API refused the request, and retrying will not help: "
        f"model: {UNKNOWN_MODEL}. The operator needs to check the model name (HUTCH_MODEL, or the agent group's model)."
    )
    assert len(api.requests) == 1  # the SDK did not retry it either
    agent, proxy = waiters
    agent.wait()
    proxy.wait()
    [agent_line] = [r for r in caplog.records if r.name == "hutch.agent" and "will not help" in r.getMessage()]
    assert agent_line.levelno == logging.ERROR
    assert f"HTTP 404, not_found_error), and retrying will not help: model: {UNKNOWN_MODEL}" in agent_line.getMessage()
    [proxy_line] = [r for r in caplog.records if r.name == "hutch.credentials" and " -> 404 " in r.getMessage()]
    assert proxy_line.levelno == logging.WARNING
    assert proxy_line.getMessage().endswith(f"POST /v1/messages -> 404 not_found_error: model: {UNKNOWN_MODEL}")
