from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from container_runner.formatting import Formatter
from container_runner.providers.base import ProviderError, StateStore
from container_runner.providers.mock import TURNS_KEY, MockProvider
from container_runner.tools.base import ToolBox, ToolError, ToolOutcome
from protocol.content import ChatIn, encode_content
from protocol.layout import SessionLayout
from protocol.rows import MessageIn
from tests.fakes.probes import MemoryState

pytestmark = pytest.mark.timeout(30)


class RecordingTool:
    name = "record"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "description": "records", "input_schema": {"type": "object"}}

    def run(self, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append(arguments)
        if arguments.get("fail"):
            raise ToolError("asked to fail")
        return ToolOutcome(f"recorded {len(self.calls)}")


class FollowUps:
    def __init__(self, *answers: str | None) -> None:
        self._answers = list(answers)
        self.calls = 0

    def __call__(self) -> str | None:
        self.calls += 1
        return self._answers.pop(0) if self._answers else None


def _chat(seq: int, text: str) -> MessageIn:
    return MessageIn(
        id=f"m{seq}",
        seq=seq,
        kind="chat",
        timestamp="2026-11-25T10:00:00.000000Z",
        content=encode_content(ChatIn(text=text, sender="Ann")),
    )


@pytest.fixture
def formatter(tmp_path: Path) -> Formatter:
    return Formatter(SessionLayout(tmp_path), "UTC")


@pytest.fixture
def tool() -> RecordingTool:
    return RecordingTool()


@pytest.fixture
def box(tool: RecordingTool) -> ToolBox:
    return ToolBox([tool])


def _provider(store: StateStore | None = None) -> MockProvider:
    return MockProvider(store if store is not None else MemoryState())


def test_echoes_the_last_message(formatter: Formatter, box: ToolBox) -> None:
    prompt = formatter.batch([_chat(2, "first"), _chat(4, 'is 1 < 2 & "yes"?')])
    result = _provider().run(prompt, box, FollowUps())
    assert result.text == 'mock: is 1 < 2 & "yes"?\n[turn 1]'
    assert result.model_turns == 1


def test_tool_directives_run_through_the_toolbox(formatter: Formatter, box: ToolBox, tool: RecordingTool) -> None:
    text = 'please do it\n!tool record {"n": 1, "s": "<a & b>"}\n!tool record'
    result = _provider().run(formatter.batch([_chat(2, text)]), box, FollowUps())
    assert tool.calls == [{"n": 1, "s": "<a & b>"}, {}]
    assert result.text.splitlines() == [
        "mock: please do it",
        "record -> recorded 1",
        "record -> recorded 2",
        "[turn 1]",
    ]
    assert result.model_turns == 3


def test_tool_errors_are_listed_in_the_reply(formatter: Formatter, box: ToolBox) -> None:
    text = 'try these\n!tool record {"fail": true}\n!tool nothing {}'
    result = _provider().run(formatter.batch([_chat(2, text)]), box, FollowUps())
    lines = result.text.splitlines()
    assert lines[1] == "record -> error: asked to fail"
    assert lines[2].startswith("nothing -> error: unknown tool 'nothing'")


@pytest.mark.parametrize(
    ("directive", "expected"),
    [("!tool record {oops", "record: bad JSON input"), ("!tool record [1]", "must be a JSON object")],
)
def test_bad_tool_input_is_reported_in_the_reply(
    formatter: Formatter, box: ToolBox, tool: RecordingTool, directive: str, expected: str
) -> None:
    result = _provider().run(formatter.batch([_chat(2, directive)]), box, FollowUps())
    assert expected in result.text
    assert tool.calls == []


def test_silent_gives_empty_text_but_still_runs_tools(formatter: Formatter, box: ToolBox, tool: RecordingTool) -> None:
    result = _provider().run(formatter.batch([_chat(2, "!tool record {}\n!silent")]), box, FollowUps())
    assert result.text == ""
    assert result.model_turns == 2
    assert tool.calls == [{}]


def test_fail_raises_a_provider_error(formatter: Formatter, box: ToolBox, tool: RecordingTool) -> None:
    with pytest.raises(ProviderError, match="asked to fail"):
        _provider().run(formatter.batch([_chat(2, "!tool record {}\n!fail")]), box, FollowUps())
    assert tool.calls == []


def test_crash_raises_an_unexpected_error(formatter: Formatter, box: ToolBox) -> None:
    with pytest.raises(RuntimeError, match="crash"):
        _provider().run(formatter.batch([_chat(2, "!crash")]), box, FollowUps())


def test_follow_ups_are_acknowledged(formatter: Formatter, box: ToolBox) -> None:
    follow_ups = FollowUps(formatter.batch([_chat(4, "and one more thing")]))
    result = _provider().run(formatter.batch([_chat(2, "hello")]), box, follow_ups)
    assert result.text.splitlines() == ["mock: hello", "(also read: and one more thing)", "[turn 1]"]
    assert follow_ups.calls == 1


def test_the_turn_counter_is_persisted_and_reset_by_clear(formatter: Formatter, box: ToolBox) -> None:
    store = MemoryState()
    prompt = formatter.batch([_chat(2, "hi")])
    provider = _provider(store)
    assert provider.run(prompt, box, FollowUps()).text.endswith("[turn 1]")
    assert provider.run(prompt, box, FollowUps()).text.endswith("[turn 2]")
    assert store.values == {TURNS_KEY: "2"}
    # A new provider (a restarted container) continues where the store left off.
    assert _provider(store).run(prompt, box, FollowUps()).text.endswith("[turn 3]")
    provider.clear()
    assert TURNS_KEY not in store.values
    assert provider.run(prompt, box, FollowUps()).text.endswith("[turn 1]")


def test_a_message_of_directives_only_is_echoed_whole(formatter: Formatter, box: ToolBox) -> None:
    result = _provider().run(formatter.batch([_chat(2, "!tool record {}")]), box, FollowUps())
    assert result.text.splitlines() == ["mock: !tool record {}", "record -> recorded 1", "[turn 1]"]


def test_silent_and_failed_turns(formatter: Formatter, box: ToolBox) -> None:
    store = MemoryState()
    provider = _provider(store)
    provider.run(formatter.batch([_chat(2, "!silent")]), box, FollowUps())
    with pytest.raises(ProviderError):
        provider.run(formatter.batch([_chat(4, "!fail")]), box, FollowUps())
    # A silent turn is still a turn; a failed one is not counted.
    assert store.values == {TURNS_KEY: "1"}
