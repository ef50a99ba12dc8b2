"""A conversation can always continue, and the cache is used well (issue 11, points 1 and 6):
ClaudeProvider through the real `anthropic` SDK against the fake Messages API, with the
fake modelling request sizes, "prompt is too long" and the prompt cache (FakeContext)."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from container_runner.context import (
    CLEARED_TOOL_RESULT,
    COMPACTION_BETA,
    CONTEXT_MANAGEMENT_BETA,
    EMPTY_TURN,
    MAX_TOOL_RESULT_CHARS,
    ContextControl,
    ContextPolicy,
    from_latest_compaction,
    supports_context_management,
)
from container_runner.providers.base import ProviderError
from container_runner.providers.claude import (
    MINIMAL_NOTICE,
    SUMMARY_ACK,
    SUMMARY_PREFIX,
    SUMMARY_REQUEST,
    TOO_LONG,
    ClaudeProvider,
)
from container_runner.tools.base import ToolBox, ToolOutcome
from tests.container_runner.providers.test_claude import (
    EchoTool,
    MemoryState,
    assistant,
    maker,
    messages_of,
    no_follow_ups,
    user,
)
from tests.fakes.fake_messages_api import FakeContext, FakeMessagesAPI, FakeReply, RecordedRequest

pytestmark = pytest.mark.timeout(60)

TOO_LONG_ERROR = "prompt is too long: 210000 tokens > 200000 maximum"


class BigTool:
    """Returns `size` characters: a log, a web page, a file read whole."""

    name = "big"

    def __init__(self, size: int) -> None:
        self.size = size

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "description": "Returns a lot of text.", "input_schema": {"type": "object"}}

    def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        return ToolOutcome(
            "".join(f"line {n:07d} of a very long output\n" for n in range(self.size // 32 + 1))[: self.size]
        )


def last_user_text(body: Any) -> str:
    content = body["messages"][-1]["content"]
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


def has_tool_result(body: Any) -> bool:
    return any(block.get("type") == "tool_result" for block in body["messages"][-1]["content"])


def is_summary(request: RecordedRequest) -> bool:
    return request.path.startswith("/v1/messages") and SUMMARY_REQUEST in last_user_text(request.body)


def model_requests(api: FakeMessagesAPI) -> list[RecordedRequest]:
    return [request for request in api.requests if request.path.split("?")[0] == "/v1/messages"]


def tool_loop(body: Any) -> FakeReply:
    """A model that calls the big tool once per message, then answers; and summarises."""
    if SUMMARY_REQUEST in last_user_text(body):
        return FakeReply.text("SUMMARY: we talked about long outputs.")
    if has_tool_result(body):
        return FakeReply.text("done")
    return FakeReply.tool_use("big", {})


@pytest.fixture
def made() -> Iterator[list[ClaudeProvider]]:
    providers: list[ClaudeProvider] = []
    yield providers
    for provider in providers:
        provider.close()


# -- tool results are capped; a huge one does not wedge the session -------------------------


def test_a_100k_character_tool_result_does_not_wedge_the_session(made: list[ClaudeProvider]) -> None:
    # The fake refuses anything over 30k tokens, as the API refuses what passes its window.
    with FakeMessagesAPI(context=FakeContext(window=30_000), responder=tool_loop) as api:
        provider = maker(api, made)(context_window=30_000, archive_dir=None)
        tools = ToolBox([BigTool(100_000)])

        answers = [provider.run(f"message {n}", tools, no_follow_ups).text for n in range(6)]

    assert answers == ["done"] * 6
    results = [
        block["content"]
        for request in model_requests(api)
        for message in request.body["messages"]
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert results and all(len(content) <= MAX_TOOL_RESULT_CHARS + 100 for content in results)
    assert any("characters left out" in content for content in results)


# -- old tool results are cleared first, then the history is compacted ---------------------


def test_old_tool_results_are_cleared_before_any_compaction(made: list[ClaudeProvider]) -> None:
    with FakeMessagesAPI(context=FakeContext(window=40_000), responder=tool_loop) as api:
        provider = maker(api, made)(context_window=40_000)
        tools = ToolBox([BigTool(12_000)])  # about 3,000 tokens each as the fake counts

        for n in range(14):
            provider.run(f"message {n}", tools, no_follow_ups)

    requests = model_requests(api)
    cleared_at = next(i for i, r in enumerate(requests) if CLEARED_TOOL_RESULT in json.dumps(r.body))
    assert not any(is_summary(request) for request in requests[:cleared_at])
    results = [
        block["content"]
        for message in requests[cleared_at].body["messages"]
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    # Oldest first, the last three kept whole.
    kept = [content for content in results if content != CLEARED_TOOL_RESULT]
    assert len(kept) == 3 and results[-3:] == kept
    assert results[0] == CLEARED_TOOL_RESULT


def test_compaction_summary_replaces_old_turns_and_the_transcript_is_archived(
    made: list[ClaudeProvider], tmp_path: Path
) -> None:
    archive = tmp_path / "out" / "compactions"

    def talk(body: Any) -> FakeReply:
        if SUMMARY_REQUEST in last_user_text(body):
            return FakeReply.text("SUMMARY OF EARLIER TURNS")
        return FakeReply.text("an answer of some length " * 40)

    state = MemoryState()
    with FakeMessagesAPI(context=FakeContext(window=10_000), responder=talk) as api:
        provider = maker(api, made)(state, context_window=10_000, archive_dir=archive)
        for n in range(20):
            provider.run(f"message {n}: " + "words " * 300, ToolBox([]), no_follow_ups)

    requests = model_requests(api)
    summaries = [index for index, request in enumerate(requests) if is_summary(request)]
    assert summaries, "never compacted"
    after = messages_of(requests[summaries[0] + 1])
    assert after[0] == user(SUMMARY_PREFIX + "SUMMARY OF EARLIER TURNS")
    # The recent exchange is kept verbatim after the summary; the older turns are gone.
    assert after[-1]["content"][-1]["text"].startswith("message ")
    assert not any(message["content"][0].get("text", "").startswith("message 0:") for message in after)
    conversation = state.conversation()
    assert conversation[0]["content"][0]["text"].startswith(SUMMARY_PREFIX)
    files = sorted(archive.glob("*.json"))
    assert len(files) == len(summaries)
    archived = json.loads(files[0].read_text())
    assert archived["messages"][0] == user("message 0: " + "words " * 300)
    assert archived["reason"]


# -- "prompt is too long" from the API ----------------------------------------------------


def test_prompt_too_long_compacts_and_retries_once(made: list[ClaudeProvider]) -> None:
    with FakeMessagesAPI() as api:
        provider = maker(api, made)()
        provider.run("one", ToolBox([]), no_follow_ups)
        provider.run("two", ToolBox([]), no_follow_ups)
        api.enqueue(FakeReply.error(400, TOO_LONG_ERROR), FakeReply.text("SUMMARY"), FakeReply.text("three answered"))

        result = provider.run("three", ToolBox([]), no_follow_ups)

    assert result.text == "three answered"
    refused, summary, retried = model_requests(api)[2:]
    assert messages_of(refused)[-1] == user("three")
    assert is_summary(summary)
    assert messages_of(retried) == [user(SUMMARY_PREFIX + "SUMMARY"), assistant(SUMMARY_ACK), user("three")]


def test_a_second_too_long_does_not_loop_and_the_next_message_works(made: list[ClaudeProvider]) -> None:
    state = MemoryState()
    with FakeMessagesAPI() as api:
        provider = maker(api, made)(state)
        provider.run("one", ToolBox([]), no_follow_ups)
        too_long = FakeReply.error(400, TOO_LONG_ERROR)
        api.enqueue(too_long, FakeReply.text("SUMMARY"), too_long, FakeReply.text("answered alone"))

        result = provider.run("two", ToolBox([]), no_follow_ups)

        # Minimal history: the latest message alone, and the person is told.
        assert result.text == f"{MINIMAL_NOTICE}\n\nanswered alone"
        assert messages_of(model_requests(api)[-1]) == [user("two")]
        assert state.conversation() == [user("two"), assistant("answered alone")]

        # Refused even alone: a clear error, after a bounded number of requests, not a loop.
        before = len(model_requests(api))
        api.enqueue(too_long, FakeReply.text("S"), too_long, too_long)
        with pytest.raises(ProviderError) as caught:
            provider.run("x" * 50, ToolBox([]), no_follow_ups)
        assert str(caught.value) == TOO_LONG
        assert len(model_requests(api)) - before == 4

        assert provider.run("and now?", ToolBox([]), no_follow_ups).text.startswith("echo: ")


# -- the API's own context management -------------------------------------------------------


@pytest.mark.parametrize(("model", "managed"), [("claude-sonnet-4-5", True), ("claude-test", False)])
def test_context_management_is_sent_only_for_models_that_support_it(
    made: list[ClaudeProvider], model: str, managed: bool
) -> None:
    with FakeMessagesAPI([FakeReply.text("hi")]) as api:
        maker(api, made)(model=model).run("hello", ToolBox([EchoTool()]), no_follow_ups)

    (request,) = api.requests
    if managed:
        edits = request.body["context_management"]["edits"]
        assert [edit["type"] for edit in edits] == ["clear_tool_uses_20250919"]
        assert edits[0]["keep"] == {"type": "tool_uses", "value": 3}
        assert CONTEXT_MANAGEMENT_BETA in request.headers["anthropic-beta"]
    else:
        assert "context_management" not in request.body
        assert CONTEXT_MANAGEMENT_BETA not in request.headers.get("anthropic-beta", "")


@pytest.mark.parametrize(
    ("model", "compacting"),
    [("claude-sonnet-5-5", True), ("claude-opus-4-6", True), ("claude-sonnet-4-5", False), ("claude-test", False)],
)
def test_server_compaction_is_asked_for_only_for_models_that_have_it(
    made: list[ClaudeProvider], model: str, compacting: bool
) -> None:
    with FakeMessagesAPI([FakeReply.text("hi")]) as api:
        maker(api, made)(model=model).run("hello", ToolBox([EchoTool()]), no_follow_ups)

    (request,) = api.requests
    edits = (request.body.get("context_management") or {}).get("edits", [])
    compaction = [edit for edit in edits if edit["type"] == "compact_20260112"]
    if compacting:
        policy = ContextPolicy(model=model, window=200_000)
        assert compaction == [{"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": 120_000}}]
        # After the cheaper clearing, before the client starts counting and shrinking.
        assert 200_000 // 2 < policy.compaction_trigger < policy.near < policy.limit
        assert COMPACTION_BETA in request.headers["anthropic-beta"]
    else:
        assert compaction == []
        assert COMPACTION_BETA not in request.headers.get("anthropic-beta", "")


def test_a_streamed_compaction_block_is_stored_and_sent_back_verbatim_without_what_it_replaced(
    made: list[ClaudeProvider], tmp_path: Path
) -> None:
    state = MemoryState()
    context = FakeContext(server_compaction=True)
    with FakeMessagesAPI(context=context) as api:
        provider = maker(api, made)(
            state, model="claude-sonnet-5-5", context_window=10_000, archive_dir=tmp_path / "compactions"
        )
        trigger = ContextPolicy(model="claude-sonnet-5-5", window=10_000).compaction_trigger
        for n in range(40):
            provider.run(f"message {n}: " + "words " * 300, ToolBox([]), no_follow_ups)
            if context.compactions:
                break
        ((compacted_at, summary),) = context.compactions
        assert compacted_at > trigger
        stored = state.conversation()
        provider.run("after", ToolBox([]), no_follow_ups)

    block = stored[0]["content"][0]
    # As the fake streamed it: the signature with the start, the rest in a compaction_delta.
    assert block == {
        "type": "compaction",
        "content": summary,
        "encrypted_content": f"opaque-{len(summary)}",
        "signature": block["signature"],
        "tool_changes": [],
    }
    assert stored[0]["role"] == "assistant" and stored[0]["content"][1:] == [
        {"type": "text", "text": "echo: " + f"message {n}: " + "words " * 300}
    ]
    assert len(stored) == 1
    # Sent back first and unchanged (the fake refuses it otherwise), and nothing before it:
    # the API takes the block only first in `messages`, in place of what it summarises.
    assert messages_of(model_requests(api)[-1]) == [*stored, user("after")]
    # What it replaced is archived, not lost.
    (archived,) = (tmp_path / "compactions").glob("*.json")
    assert "message 0:" in archived.read_text()


def test_a_failed_compaction_replaces_nothing(made: list[ClaudeProvider]) -> None:
    failed = {"type": "compaction", "content": None}
    state = MemoryState()
    with FakeMessagesAPI(
        [FakeReply.text("one answered"), FakeReply.blocks([failed, {"type": "text", "text": "two"}])]
    ) as api:
        provider = maker(api, made)(state, model="claude-sonnet-5-5")
        provider.run("one", ToolBox([]), no_follow_ups)
        provider.run("two", ToolBox([]), no_follow_ups)
    assert state.conversation() == [user("one"), assistant("one answered"), user("two"), assistant("two")]


def test_a_reply_that_was_only_a_failed_compaction_keeps_its_turn() -> None:
    failed = {"type": "compaction", "content": None}
    history = [user("one"), {"role": "assistant", "content": [failed]}, user("two")]
    kept, dropped = from_latest_compaction(history)
    assert not dropped
    assert kept == [user("one"), assistant(EMPTY_TURN), user("two")]  # the roles still alternate


def test_a_model_without_server_compaction_keeps_the_client_side_path(made: list[ClaudeProvider]) -> None:
    context = FakeContext(window=30_000, server_compaction=True)
    with FakeMessagesAPI(context=context, responder=tool_loop) as api:
        provider = maker(api, made)(model="claude-sonnet-4-5", context_window=30_000)
        tools = ToolBox([BigTool(25_000)])
        for n in range(30):
            assert provider.run(f"turn {n}", tools, no_follow_ups).text == "done", f"turn {n}"

    assert context.compactions == []
    # The client's own shrinking did it: old tool results cleared (a summary is not needed
    # here, as the three kept results fit).
    assert any(CLEARED_TOOL_RESULT in json.dumps(request.body) for request in model_requests(api))


@pytest.mark.timeout(180)
def test_a_100_turn_session_with_server_compaction_never_fails(made: list[ClaudeProvider], tmp_path: Path) -> None:
    state = MemoryState()
    context = FakeContext(window=30_000, server_compaction=True)
    with FakeMessagesAPI(context=context, responder=tool_loop) as api:
        provider = maker(api, made)(
            state, model="claude-sonnet-5-5", context_window=30_000, archive_dir=tmp_path / "compactions"
        )
        tools = ToolBox([BigTool(25_000)])

        for n in range(100):
            assert provider.run(f"turn {n}", tools, no_follow_ups).text == "done", f"turn {n}"

    assert len(context.compactions) >= 10
    requests = model_requests(api)
    # The API's compaction did the work: the client never had to summarise.
    assert not any(is_summary(request) for request in requests)
    compactions = [
        request for request in requests if request.body["messages"][0]["content"][0].get("type") == "compaction"
    ]
    assert len(compactions) >= len(requests) // 2
    assert len(json.dumps(state.conversation())) < 30_000 * 4
    assert len(list((tmp_path / "compactions").glob("*.json"))) == len(context.compactions)


@pytest.mark.parametrize(
    ("model", "thinking"),
    [
        ("claude-sonnet-5-5", {"type": "adaptive"}),
        ("claude-opus-4-5", {"type": "enabled", "budget_tokens": 4096}),
        ("claude-test", None),
    ],
)
def test_thinking_is_asked_for_in_the_form_the_model_takes(
    made: list[ClaudeProvider], model: str, thinking: dict[str, object] | None
) -> None:
    with FakeMessagesAPI([FakeReply.text("hi")]) as api:
        maker(api, made)(model=model, max_tokens=8192).run("hello", ToolBox([EchoTool()]), no_follow_ups)
    (request,) = api.requests
    assert request.body.get("thinking") == thinking


def test_a_budget_that_would_not_fit_below_max_tokens_asks_for_no_thinking(made: list[ClaudeProvider]) -> None:
    with FakeMessagesAPI([FakeReply.text("hi")]) as api:
        maker(api, made)(model="claude-opus-4-5", max_tokens=1024).run("hello", ToolBox([]), no_follow_ups)
    (request,) = api.requests
    assert "thinking" not in request.body


def test_which_models_get_context_management() -> None:
    named = typing.get_args(typing.get_args(anthropic.types.Model)[0])
    assert named and all(supports_context_management(model) for model in named)
    for model in ("claude-3-5-haiku-latest", "claude-3-7-sonnet", "claude-test", "gpt-4"):
        assert not supports_context_management(model)


# -- a long session --------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_a_300_turn_session_with_large_tool_results_never_fails(made: list[ClaudeProvider], tmp_path: Path) -> None:
    state = MemoryState()
    with FakeMessagesAPI(context=FakeContext(window=30_000), responder=tool_loop) as api:
        provider = maker(api, made)(state, context_window=30_000, archive_dir=tmp_path / "compactions")
        tools = ToolBox([BigTool(25_000)])

        for n in range(300):
            assert provider.run(f"turn {n}", tools, no_follow_ups).text == "done", f"turn {n}"

    requests = model_requests(api)
    assert sum(is_summary(request) for request in requests) >= 3
    assert len(json.dumps(state.conversation())) < 30_000 * 4
    assert len(list((tmp_path / "compactions").glob("*.json"))) >= 3


# -- the prompt cache --------------------------------------------------------------------------

LONG_INSTRUCTIONS = "You are a careful assistant. " * 400  # a realistic few thousand tokens


class DocumentedTool(EchoTool):
    def definition(self) -> dict[str, Any]:
        return {**super().definition(), "description": "Echoes its text. " * 300}


def ten_turns_with_pauses(made: list[ClaudeProvider], lifetime: float | None) -> tuple[FakeMessagesAPI, list[Any]]:
    now = [0.0]
    usages: list[Any] = []
    with FakeMessagesAPI(context=FakeContext(clock=lambda: now[0])) as api:
        provider = maker(api, made)(system_prompt=LONG_INSTRUCTIONS, agent_lifetime_s=lifetime)
        for n in range(10):
            provider.run(f"turn {n}", ToolBox([DocumentedTool()]), no_follow_ups)
            usages.append(provider._last_usage)
            now[0] += 20 * 60  # twenty minutes before the next message
    return api, usages


def read_share(usages: list[Any]) -> float:
    read = sum(usage.cache_read_input_tokens for usage in usages)
    total = sum(
        usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens for usage in usages
    )
    return float(read / total)


def test_the_prefix_never_changes_and_cache_reads_dominate_across_paused_turns(made: list[ClaudeProvider]) -> None:
    api, usages = ten_turns_with_pauses(made, lifetime=1800)

    requests = api.requests
    assert len(requests) == 10
    prefixes = {json.dumps({"tools": r.body["tools"], "system": r.body["system"]}) for r in requests}
    assert len(prefixes) == 1
    body = requests[0].body
    hour = {"type": "ephemeral", "ttl": "1h"}
    assert body["tools"][-1]["cache_control"] == hour
    assert body["system"][0]["cache_control"] == hour
    for request in requests:
        marks = [
            block["cache_control"]
            for m in request.body["messages"]
            for block in m["content"]
            if "cache_control" in block
        ]
        assert marks and all(mark == {"type": "ephemeral"} for mark in marks)
    # After the first turn the prefix is read from the cache on every turn, pauses or not.
    assert all(usage.cache_read_input_tokens > 0 for usage in usages[1:])
    assert read_share(usages[1:]) > 0.8


def test_an_agent_living_under_five_minutes_keeps_the_default_ttl(made: list[ClaudeProvider]) -> None:
    api, usages = ten_turns_with_pauses(made, lifetime=240)

    assert api.requests[0].body["system"][0]["cache_control"] == {"type": "ephemeral"}
    # Each twenty-minute pause outlives a five-minute entry: nothing is read.
    assert read_share(usages[1:]) == 0


def test_a_memory_file_edit_reaches_the_next_turn_and_leaves_the_prefix_cached(
    made: list[ClaudeProvider], tmp_path: Path
) -> None:
    memory = tmp_path / "CLAUDE.md"
    memory.write_text("The user's name is Ann.")
    with FakeMessagesAPI(context=FakeContext()) as api:
        provider = maker(api, made)(system_prompt=LONG_INSTRUCTIONS, agent_lifetime_s=1800, memory=memory.read_text)
        provider.run("one", ToolBox([DocumentedTool()]), no_follow_ups)
        memory.write_text("The user's name is Bob.")
        provider.run("two", ToolBox([DocumentedTool()]), no_follow_ups)
        second = provider._last_usage

    first_request, second_request = api.requests
    assert first_request.body["system"][1] == {"type": "text", "text": "The user's name is Ann."}
    assert second_request.body["system"][1] == {"type": "text", "text": "The user's name is Bob."}
    for request in (first_request, second_request):
        assert "cache_control" not in request.body["system"][1]
    assert first_request.body["tools"] == second_request.body["tools"]
    assert first_request.body["system"][0] == second_request.body["system"][0]
    # The tools and instructions were read from the cache; only what follows was written.
    prefix = FakeContext().tokens({"tools": second_request.body["tools"], "system": second_request.body["system"][:1]})
    assert second is not None and second.cache_read_input_tokens == prefix > 2_000


# -- /compact and /context ---------------------------------------------------------------------


def test_compact_now_and_the_context_report(made: list[ClaudeProvider], tmp_path: Path) -> None:
    with FakeMessagesAPI(context=FakeContext()) as api:
        provider = maker(api, made)(memory=lambda: "Remember: Ann likes tea.", archive_dir=tmp_path / "a")
        tools = ToolBox([EchoTool()])
        assert isinstance(provider, ContextControl)
        for n in range(4):
            provider.run(f"message {n} " + "padding " * 200, tools, no_follow_ups)

        report = provider.context_report(tools)
        compacted = provider.compact_now(tools)
        after = provider.context_report(tools)

    lines = report.splitlines()
    assert lines[0].startswith("Context: ") and "counted by the API (count_tokens)" in lines[0]
    for part in ("- tools: ", "- system instructions: ", "- memory file (CLAUDE.md): ", "- conversation: "):
        assert any(line.startswith(part) for line in lines), part
    assert "Last request:" in report and "read from the cache" in report
    before_tokens, after_tokens = (int(word) for word in compacted.split() if word.rstrip(",").isdigit())
    assert compacted.startswith("Compacted the conversation:") and after_tokens < before_tokens
    assert "- conversation: " in after and len(list((tmp_path / "a").glob("*.json"))) == 1


def test_compact_now_on_an_empty_conversation(made: list[ClaudeProvider]) -> None:
    with FakeMessagesAPI() as api:
        provider = maker(api, made)()
        assert provider.compact_now(ToolBox([])).startswith("Nothing to compact")
        assert api.requests == []


def test_estimates_err_high_against_the_fakes_count(made: list[ClaudeProvider]) -> None:
    """The estimate is what keeps requests under the window; the fake counts chars / 4."""
    with FakeMessagesAPI(context=FakeContext()) as api:
        provider = maker(api, made)()
        for n in range(3):
            provider.run(f"message {n} " + "text " * 500, ToolBox([EchoTool()]), no_follow_ups)
        size = provider._size()
        counted = FakeContext().tokens(api.requests[-1].body)
    assert size.total >= counted
