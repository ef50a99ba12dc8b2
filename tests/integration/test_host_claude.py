"""The whole host, in-process, with the Claude provider: the real `anthropic` SDK in the
agent process talks through the host's credential proxy to a fake Messages API on
loopback. Also the ask_user_question round trip through the chat socket (mock provider)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.host import Host
from tests.fakes.chat_client import ChatClient
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply, RecordedRequest
from tests.integration.claude_support import REAL_KEY
from tests.integration.claude_support import claude_host as running_claude_host
from tests.integration.conftest import RecordingProcessRuntime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

MEMORY = "# main\n\nRemember: the user's cat is called Pumpernickel-7731.\n"


@pytest.fixture
def claude_host(
    data_dir: Path, runtime: RecordingProcessRuntime, api: FakeMessagesAPI, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Host]:
    # In the host's own environment too, as on a real install: it must still not reach the agent.
    monkeypatch.setenv("ANTHROPIC_API_KEY", REAL_KEY)
    memory = data_dir / "groups" / "main" / "CLAUDE.md"
    memory.parent.mkdir(parents=True)
    memory.write_text(MEMORY)
    with running_claude_host(data_dir, runtime, api, retry_base_s=0.2) as started:
        yield started


@pytest.fixture
def claude_chat(claude_host: Host) -> Iterator[ChatClient]:
    client = ChatClient(claude_host.config.chat_socket)
    yield client
    client.close()


@pytest.fixture
def chat(host: Host) -> Iterator[ChatClient]:
    client = ChatClient(host.config.chat_socket)
    yield client
    client.close()


def _system_text(request: RecordedRequest) -> str:
    system = request.body["system"]
    if isinstance(system, str):
        return system
    return "".join(block["text"] for block in system if block.get("type") == "text")


def _tool_results(request: RecordedRequest) -> list[dict[str, Any]]:
    last = request.body["messages"][-1]
    assert last["role"] == "user"
    return [block for block in last["content"] if block.get("type") == "tool_result"]


def _result_text(result: dict[str, Any]) -> str:
    content = result["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


# -- Claude through the credential proxy ---------------------------------------------------


def test_a_reply_comes_back_through_the_proxy_and_the_key_stays_outside(
    claude_host: Host, claude_chat: ChatClient, api: FakeMessagesAPI, runtime: RecordingProcessRuntime
) -> None:
    api.enqueue(FakeReply.tool_use("bash", {"command": "env"}), FakeReply.text("Hello from the fake model!"))
    assert claude_chat.send("hello")["type"] == "ack"
    reply = claude_chat.next_message()
    assert reply["type"] == "message"
    assert reply["text"] == "Hello from the fake model!"

    first, second = api.requests
    assert len(runtime.handles) == 1
    for request in (first, second):
        assert request.method == "POST" and request.path.split("?")[0] == "/v1/messages"
        assert request.stream
        # The proxy swapped the agent's placeholder for the real key and added nothing else.
        assert request.headers["x-api-key"] == REAL_KEY
        assert "authorization" not in request.headers
    # The system prompt carries the agent group's memory; the tool list is the runner's.
    assert "Pumpernickel-7731" in _system_text(first)
    tool_names = {tool["name"] for tool in first.body["tools"]}
    assert {"send_message", "schedule_task", "bash"} <= tool_names
    assert "hello" in json.dumps(first.body["messages"])

    # The agent's own environment, as its bash tool saw it: no key, no key variable.
    (result,) = _tool_results(second)
    output = _result_text(result)
    assert result.get("is_error") is not True
    assert "HUTCH_PROXY_SOCKET=" in output  # the command really ran in the agent's environment
    assert REAL_KEY not in output
    assert "ANTHROPIC_API_KEY" not in output
    assert REAL_KEY.encode() not in second.raw_body


def test_a_tool_turn_over_several_model_turns_delivers_in_order(
    claude_host: Host, claude_chat: ChatClient, api: FakeMessagesAPI
) -> None:
    api.enqueue(FakeReply.tool_use("send_message", {"text": "working on it"}), FakeReply.text("done"))
    claude_chat.send("do the thing")
    assert claude_chat.next_message()["text"] == "working on it"
    assert claude_chat.next_message()["text"] == "done"
    _, second = api.requests
    (result,) = _tool_results(second)
    (call,) = [block for block in second.body["messages"][-2]["content"] if block["type"] == "tool_use"]
    assert call["name"] == "send_message"
    assert result["tool_use_id"] == call["id"]
    assert "sent as message" in _result_text(result)


def test_a_failing_model_api_gets_an_error_reply_and_the_host_keeps_serving(
    claude_host: Host, claude_chat: ChatClient, api: FakeMessagesAPI
) -> None:
    # One attempt and the SDK's retries: every one of them an internal error. (A busy model
    # is deferred instead: tests/integration/test_deferral_and_budget.py.)
    api.enqueue(FakeReply.error(500), FakeReply.error(500), FakeReply.error(500))
    claude_chat.send("hello?")
    failed = claude_chat.next_message()
    assert "could not answer" in failed["text"]
    assert "internal error" in failed["text"]
    assert api.pending == 0  # retried until the script ran out, then gave up

    api.enqueue(FakeReply.text("I am back."))
    claude_chat.send("and now?")
    assert claude_chat.next_message()["text"] == "I am back."
    assert "and now?" in json.dumps(api.requests[-1].body["messages"])


# -- ask_user_question, end to end (mock provider) ---------------------------------------


def test_a_question_is_asked_answered_and_cannot_be_answered_twice(host: Host, chat: ChatClient) -> None:
    ask = {"question": "Tea or coffee?", "options": ["tea", "coffee"]}
    assert chat.send(f"!tool ask_user_question {json.dumps(ask)}")["type"] == "ack"
    question = chat.next_message()
    assert question["type"] == "question"
    assert question["question"] == "Tea or coffee?"
    assert question["options"] == ["tea", "coffee"]
    question_id = question["question_id"]
    assert isinstance(question_id, str) and question_id

    assert chat.answer(question_id, "coffee")["type"] == "ack"
    reply = chat.next_message()
    assert reply["type"] == "message"
    assert "the user chose: coffee" in reply["text"]

    again = chat.answer(question_id, "tea")
    assert again["type"] == "error"
    assert "already answered" in again["error"]
