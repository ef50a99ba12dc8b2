"""ClaudeProvider through the real `anthropic` SDK against the fake Messages API."""

from __future__ import annotations

import base64
import itertools
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from container_runner.providers.base import ProviderError, TurnResult
from container_runner.providers.claude import (
    PROXY_PLACEHOLDER_KEY,
    STALLED,
    STATE_KEY,
    SUMMARY_ACK,
    SUMMARY_PREFIX,
    SUMMARY_REQUEST,
    ClaudeProvider,
    ClaudeSettings,
)
from container_runner.tools.base import ToolBox, ToolError, ToolOutcome
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply, FakeUsage, RecordedRequest, tool_use_block
from tests.fakes.probes import MemoryState as BaseMemoryState

pytestmark = pytest.mark.timeout(30)

EPHEMERAL = {"type": "ephemeral"}


class MemoryState(BaseMemoryState):
    def conversation(self) -> list[dict[str, Any]]:
        return json.loads(self.values[STATE_KEY])  # type: ignore[no-any-return]


class EchoTool:
    name = "echo"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def definition(self) -> dict[str, Any]:
        schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
        return {"name": self.name, "description": "Echoes its text.", "input_schema": schema}

    def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append(arguments)
        return ToolOutcome(str(arguments["text"]))


class FailingTool:
    name = "fail"

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "description": "Always fails.", "input_schema": {"type": "object"}}

    def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        raise ToolError("bad input")


def no_follow_ups() -> str | None:
    return None


def strip_cache_control(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: strip_cache_control(item) for key, item in value.items() if key != "cache_control"}
    if isinstance(value, list):
        return [strip_cache_control(item) for item in value]
    return value


def messages_of(request: RecordedRequest) -> list[dict[str, Any]]:
    return strip_cache_control(request.body["messages"])  # type: ignore[no-any-return]


def user(*texts: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text} for text in texts]}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def count_cache_controls(value: Any) -> int:
    if isinstance(value, dict):
        return ("cache_control" in value) + sum(count_cache_controls(item) for item in value.values())
    if isinstance(value, list):
        return sum(count_cache_controls(item) for item in value)
    return 0


@pytest.fixture
def echo() -> EchoTool:
    return EchoTool()


@pytest.fixture
def toolbox(echo: EchoTool) -> ToolBox:
    return ToolBox([echo, FailingTool()])


MakeProvider = Callable[..., ClaudeProvider]


def maker(api: FakeMessagesAPI, made: list[ClaudeProvider]) -> MakeProvider:
    """Makes providers on `api` (test settings, `overrides` on top), each kept in `made`
    for the caller to close."""

    def make(state: MemoryState | None = None, **overrides: Any) -> ClaudeProvider:
        options: dict[str, Any] = {
            "model": "claude-test",
            "max_tokens": 1024,
            "system_prompt": "You are a test assistant.",
            "base_url": api.base_url,
            "api_key": "test-key",
            "max_retries": 0,
            "stall_timeout": 5.0,
        }
        options.update(overrides)
        provider = ClaudeProvider(ClaudeSettings(**options), state if state is not None else MemoryState())
        made.append(provider)
        return provider

    return make


@pytest.fixture
def make_provider(api: FakeMessagesAPI) -> Iterator[MakeProvider]:
    made: list[ClaudeProvider] = []
    yield maker(api, made)
    for provider in made:
        provider.close()


# -- streaming and the tool loop -------------------------------------------------------


def test_streamed_text_reply(api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox) -> None:
    api.enqueue(FakeReply.text("Hello there, how can I help you today?"))

    result = make_provider().run("hi", toolbox, no_follow_ups)

    assert result == TurnResult(text="Hello there, how can I help you today?", model_turns=1)
    (request,) = api.requests
    assert request.path == "/v1/messages"
    assert request.stream
    assert request.body["model"] == "claude-test"
    assert request.body["max_tokens"] == 1024
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": EPHEMERAL}]}
    ]


def test_tool_use_over_several_turns(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox, echo: EchoTool
) -> None:
    api.enqueue(
        FakeReply.tool_use("echo", {"text": "one"}, id="toolu_1", text="Let me check."),
        FakeReply.tool_use("echo", {"text": "two"}, id="toolu_2"),
        FakeReply.text("All done."),
    )

    result = make_provider().run("go", toolbox, no_follow_ups)

    assert result == TurnResult(text="All done.", model_turns=3)
    assert echo.calls == [{"text": "one"}, {"text": "two"}]
    first_call = {"type": "tool_use", "id": "toolu_1", "name": "echo", "input": {"text": "one"}}
    first_result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "one", "is_error": False}
    second_call = {"type": "tool_use", "id": "toolu_2", "name": "echo", "input": {"text": "two"}}
    second_result = {"type": "tool_result", "tool_use_id": "toolu_2", "content": "two", "is_error": False}
    assert messages_of(api.requests[2]) == [
        user("go"),
        {"role": "assistant", "content": [{"type": "text", "text": "Let me check."}, first_call]},
        {"role": "user", "content": [first_result]},
        {"role": "assistant", "content": [second_call]},
        {"role": "user", "content": [second_result]},
    ]
    assert [request.body["tools"][0]["name"] for request in api.requests] == ["echo"] * 3


def test_parallel_tool_calls_answered_in_one_message(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    calls = [tool_use_block("echo", {"text": "a"}, "toolu_a"), tool_use_block("echo", {"text": "b"}, "toolu_b")]
    api.enqueue(FakeReply.blocks(calls, stop_reason="tool_use"), FakeReply.text("ok"))

    make_provider().run("go", toolbox, no_follow_ups)

    results = messages_of(api.requests[1])[-1]["content"]
    assert [(block["tool_use_id"], block["content"]) for block in results] == [("toolu_a", "a"), ("toolu_b", "b")]


def test_tool_errors_go_back_as_error_results(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    calls = [tool_use_block("fail", {}, "toolu_f"), tool_use_block("nope", {}, "toolu_n")]
    api.enqueue(FakeReply.blocks(calls, stop_reason="tool_use"), FakeReply.text("sorry"))

    make_provider().run("go", toolbox, no_follow_ups)

    failed, unknown = messages_of(api.requests[1])[-1]["content"]
    assert failed == {"type": "tool_result", "tool_use_id": "toolu_f", "content": "bad input", "is_error": True}
    assert unknown["is_error"] is True
    assert "unknown tool" in unknown["content"]


def test_follow_ups_come_after_the_tool_results(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    api.enqueue(
        FakeReply.tool_use("echo", {"text": "x"}, id="toolu_1"),
        FakeReply.tool_use("echo", {"text": "y"}, id="toolu_2"),
        FakeReply.text("done"),
    )
    arrivals = iter(["[user] also this, please", None])
    asked: list[str | None] = []

    def follow_ups() -> str | None:
        asked.append(next(arrivals))
        return asked[-1]

    make_provider().run("go", toolbox, follow_ups)

    assert len(asked) == 2
    second_turn = messages_of(api.requests[1])[-1]["content"]
    assert [block["type"] for block in second_turn] == ["tool_result", "text"]
    assert second_turn[1]["text"] == "[user] also this, please"
    third_turn = messages_of(api.requests[2])[-1]["content"]
    assert [block["type"] for block in third_turn] == ["tool_result"]


def test_follow_ups_are_not_asked_without_tool_use(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    api.enqueue(FakeReply.text("plain"))
    asked: list[int] = []

    def follow_ups() -> str | None:
        asked.append(1)
        return "never sent"

    make_provider().run("hi", toolbox, follow_ups)

    assert asked == []


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "words"),
    [(429, "rate limit"), (500, "internal error"), (529, "overloaded"), (401, "credentials")],
)
def test_api_errors_become_readable_provider_errors(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox, status: int, words: str
) -> None:
    api.enqueue(FakeReply.error(status))
    provider = make_provider()

    with pytest.raises(ProviderError, match=words):
        provider.run("hi", toolbox, no_follow_ups)

    assert len(api.requests) == 1
    # The failed prompt is not kept: the next query starts clean.
    api.enqueue(FakeReply.text("ok"))
    provider.run("again", toolbox, no_follow_ups)
    assert messages_of(api.requests[1]) == [user("again")]


def test_sdk_retries_transient_errors(api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox) -> None:
    api.enqueue(FakeReply.error(529), FakeReply.error(500), FakeReply.text("finally"))

    result = make_provider(max_retries=2).run("hi", toolbox, no_follow_ups)

    assert result.text == "finally"
    assert len(api.requests) == 3
    assert [request.headers["x-stainless-retry-count"] for request in api.requests] == ["0", "1", "2"]


def test_retries_run_out(api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox) -> None:
    api.enqueue(*[FakeReply.error(429)] * 3)

    with pytest.raises(ProviderError, match="rate limit"):
        make_provider(max_retries=2).run("hi", toolbox, no_follow_ups)

    assert len(api.requests) == 3


def test_error_event_in_the_stream(api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox) -> None:
    api.enqueue(FakeReply.error(529, "Overloaded", mid_stream=True))

    with pytest.raises(ProviderError, match="overloaded"):
        make_provider().run("hi", toolbox, no_follow_ups)


@pytest.mark.timeout(10)
def test_stalled_stream_is_abandoned(api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox) -> None:
    api.enqueue(FakeReply.stall(30))
    state = MemoryState()

    with pytest.raises(ProviderError) as caught:
        make_provider(state, stall_timeout=0.5).run("hi", toolbox, no_follow_ups)

    assert str(caught.value) == STALLED
    assert STATE_KEY not in state.values


# -- durability -----------------------------------------------------------------------


def test_restarted_provider_resumes_the_conversation(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    state = MemoryState()
    api.enqueue(FakeReply.text("one"), FakeReply.text("two"))
    make_provider(state).run("first", toolbox, no_follow_ups)

    result = make_provider(state).run("second", toolbox, no_follow_ups)

    assert result.text == "two"
    assert messages_of(api.requests[1]) == [user("first"), assistant("one"), user("second")]
    assert state.conversation() == [user("first"), assistant("one"), user("second"), assistant("two")]


def test_no_dangling_tool_use_is_saved(api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox) -> None:
    state = MemoryState()
    api.enqueue(FakeReply.tool_use("echo", {"text": "x"}, id="toolu_1"), FakeReply.error(500))

    with pytest.raises(ProviderError):
        make_provider(state).run("go", toolbox, no_follow_ups)

    saved = state.conversation()
    assert [message["role"] for message in saved] == ["user", "assistant", "user"]
    assert saved[2]["content"][0]["tool_use_id"] == "toolu_1"
    # A restart continues from there; the new prompt joins the trailing user message.
    api.enqueue(FakeReply.text("ok"))
    make_provider(state).run("next", toolbox, no_follow_ups)
    last = messages_of(api.requests[2])[-1]
    assert [block["type"] for block in last["content"]] == ["tool_result", "text"]


def test_reply_cut_off_during_a_tool_call_keeps_no_tool_use(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    state = MemoryState()
    blocks = [{"type": "text", "text": "Let me"}, tool_use_block("echo", {"text": "x"})]
    api.enqueue(FakeReply.blocks(blocks, stop_reason="max_tokens"))

    result = make_provider(state).run("go", toolbox, no_follow_ups)

    assert result.text == "Let me"
    assert state.conversation() == [user("go"), assistant("Let me")]


def test_clear_forgets_the_conversation(api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox) -> None:
    state = MemoryState()
    provider = make_provider(state)
    provider.run("remember me", toolbox, no_follow_ups)

    provider.clear()
    provider.run("fresh", toolbox, no_follow_ups)

    assert messages_of(api.requests[1]) == [user("fresh")]
    assert state.conversation() == [user("fresh"), assistant("echo: fresh")]


# -- prompt caching -------------------------------------------------------------------


def test_cache_prefix_is_identical_across_turns(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    state = MemoryState()
    provider = make_provider(state)
    api.enqueue(FakeReply.tool_use("echo", {"text": "x"}), FakeReply.text("first done"), FakeReply.text("later"))
    provider.run("one", toolbox, no_follow_ups)
    provider.run("two", toolbox, no_follow_ups)

    requests = api.requests
    assert len(requests) == 3
    for before, after in itertools.pairwise(requests):
        assert json.dumps(before.body["tools"]) == json.dumps(after.body["tools"])
        assert json.dumps(before.body["system"]) == json.dumps(after.body["system"])
        sent = messages_of(before)
        assert json.dumps(messages_of(after)[: len(sent)]) == json.dumps(sent)
        # The latest message of a request is marked again in the next one (its cache write).
        assert after.body["messages"][len(sent) - 1]["content"][-1]["cache_control"] == EPHEMERAL
    for request in requests:
        body = request.body
        assert [("cache_control" in tool) for tool in body["tools"]] == [False, True]
        assert body["system"] == [{"type": "text", "text": "You are a test assistant.", "cache_control": EPHEMERAL}]
        assert body["messages"][-1]["content"][-1]["cache_control"] == EPHEMERAL
        assert count_cache_controls(body) <= 4
    assert "cache_control" not in state.values[STATE_KEY]


# -- the credential proxy socket ------------------------------------------------------


def test_unix_socket_mode_carries_no_real_key(
    monkeypatch: pytest.MonkeyPatch, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real-secret")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "real-token-secret")
    # A short folder: Unix socket paths are limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="hutch-") as folder:
        socket_path = Path(folder) / "api.sock"
        with FakeMessagesAPI([FakeReply.text("via proxy")], unix_socket=socket_path) as proxy:
            provider = make_provider(base_url=None, api_key=None, proxy_socket=socket_path)

            result = provider.run("hi", toolbox, no_follow_ups)

            provider.close()
            (request,) = proxy.requests
    assert result.text == "via proxy"
    assert request.transport == "unix"
    assert request.headers["authorization"] == f"Bearer {PROXY_PLACEHOLDER_KEY}"
    assert "x-api-key" not in request.headers
    assert not any("secret" in value for value in request.headers.values())


def test_proxy_socket_and_api_key_are_exclusive() -> None:
    with pytest.raises(ValueError, match="proxy"):
        ClaudeSettings(model="m", api_key="sk-ant", proxy_socket="/tmp/x.sock")


# -- compaction -----------------------------------------------------------------------


def test_compaction_summarises_older_exchanges(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    state = MemoryState()
    provider = make_provider(state, context_window=1000, compaction_threshold=0.8)
    full = FakeUsage(input_tokens=700, cache_read_input_tokens=100, output_tokens=50)
    api.enqueue(
        FakeReply.text("answer one"),
        FakeReply.text("answer two", usage=full),
        FakeReply.text("SUMMARY OF ONE"),
        FakeReply.text("answer three"),
    )
    provider.run("one", toolbox, no_follow_ups)
    provider.run("two", toolbox, no_follow_ups)

    result = provider.run("three", toolbox, no_follow_ups)

    assert result == TurnResult(text="answer three", model_turns=1)
    summary_request, next_request = api.requests[2:]
    assert messages_of(summary_request) == [user("one"), assistant("answer one"), user(SUMMARY_REQUEST)]
    assert summary_request.body["tools"] == api.requests[1].body["tools"]
    compacted = [user(SUMMARY_PREFIX + "SUMMARY OF ONE"), assistant(SUMMARY_ACK)]
    assert messages_of(next_request) == [*compacted, user("two"), assistant("answer two"), user("three")]
    assert state.conversation() == [
        *compacted,
        user("two"),
        assistant("answer two"),
        user("three"),
        assistant("answer three"),
    ]


def test_compaction_inside_a_long_tool_loop(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    provider = make_provider(context_window=1000, compaction_threshold=0.8)
    api.enqueue(
        FakeReply.tool_use("echo", {"text": "x"}, id="toolu_1", usage=FakeUsage(input_tokens=900)),
        FakeReply.text("SUMMARY"),
        FakeReply.text("done"),
    )

    result = provider.run("go", toolbox, no_follow_ups)

    assert result == TurnResult(text="done", model_turns=2)
    assert messages_of(api.requests[1]) == [user("go", SUMMARY_REQUEST)]
    # The pending tool exchange stays whole; no assistant ack is needed before it.
    kept = messages_of(api.requests[2])
    assert kept[0] == user(SUMMARY_PREFIX + "SUMMARY")
    assert [message["role"] for message in kept] == ["user", "assistant", "user"]
    assert kept[1]["content"][0]["id"] == kept[2]["content"][0]["tool_use_id"] == "toolu_1"


def test_failed_summary_does_not_fail_the_query(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    provider = make_provider(context_window=1000)
    api.enqueue(FakeReply.text("a", usage=FakeUsage(input_tokens=900)), FakeReply.error(500), FakeReply.text("b"))
    provider.run("one", toolbox, no_follow_ups)

    result = provider.run("two", toolbox, no_follow_ups)

    assert result.text == "b"
    assert messages_of(api.requests[1])[-1] == user("one", SUMMARY_REQUEST)
    assert messages_of(api.requests[2]) == [user("one"), assistant("a"), user("two")]


@pytest.mark.timeout(10)
def test_stall_before_any_response_is_abandoned(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox
) -> None:
    api.enqueue(FakeReply.stall(30, before_headers=True))

    with pytest.raises(ProviderError, match="stopped responding"):
        make_provider(stall_timeout=0.5).run("hi", toolbox, no_follow_ups)


# -- the fake itself ------------------------------------------------------------------


def test_fake_answers_non_streaming_requests(api: FakeMessagesAPI) -> None:
    api.enqueue(FakeReply.tool_use("echo", {"text": "x"}, id="toolu_9", usage=FakeUsage(input_tokens=42)))
    with anthropic.Anthropic(api_key="k", base_url=api.base_url, max_retries=0) as client:
        message = client.messages.create(
            model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        echoed = client.messages.create(
            model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "say this"}]
        )

    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["tool_use"]
    assert message.usage.input_tokens == 42
    assert echoed.content[0].type == "text"
    assert echoed.content[0].text == "echo: say this"
    assert not api.requests[0].stream


# -- pictures ------------------------------------------------------------------------------


def _png() -> bytes:
    """A real picture: the provider decodes every one before it is sent."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(out, format="PNG")
    return out.getvalue()


PNG = _png()


def test_a_picture_sent_with_the_message_is_an_image_block_for_its_turn_only(
    api: FakeMessagesAPI, make_provider: MakeProvider, toolbox: ToolBox, tmp_path: Path
) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(PNG)
    not_a_picture = tmp_path / "notes.png"  # the name says picture, the bytes do not
    not_a_picture.write_bytes(b"just text")
    state = MemoryState()
    provider = make_provider(state)
    api.enqueue(FakeReply.text("A cat."))
    api.enqueue(FakeReply.text("Still a cat."))

    provider.run("what is this?", toolbox, no_follow_ups, [picture, not_a_picture])
    provider.run("and now?", toolbox, no_follow_ups)

    first = api.requests[0].body["messages"][-1]["content"]
    assert [block["type"] for block in first] == ["image", "text"]
    assert first[0]["source"] == {
        "type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()
    }  # fmt: skip
    # Answered once, the picture is not sent again, nor kept in the saved conversation.
    later = json.dumps(api.requests[1].body["messages"])
    assert '"image"' not in later and "a picture the person sent" in later
    assert '"image"' not in "".join(state.values.values())
