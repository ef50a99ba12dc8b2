"""A deterministic provider for tests and for trying hutch without an API key.

It answers every query with `mock: <the last message's text>` and can be scripted from the
chat itself, one directive per line:

    !tool <name> <json input>   call a tool (results are listed in the reply)
    !silent                     end the turn without text (a tool-only turn)
    !fail                       fail the turn with a ProviderError
    !crash                      raise an unexpected exception
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import Path

from container_runner.images import image_blocks
from container_runner.providers.base import FollowUps, ProviderError, StateStore, TurnResult
from container_runner.tools.base import ToolBox, ToolCall

_TAG = re.compile(r"<[^>]+>")
_TOOL = re.compile(r"^!tool\s+(\S+)\s*(.*)$")
TURNS_KEY = "mock_turns"


class MockProvider:
    def __init__(self, state: StateStore) -> None:
        self._state = state

    def run(self, prompt: str, tools: ToolBox, follow_ups: FollowUps, images: Sequence[Path] = ()) -> TurnResult:
        text = _plain_text(prompt)
        lines = [line.strip() for line in text.splitlines()]
        if "!crash" in lines:
            raise RuntimeError("mock provider asked to crash")
        if "!fail" in lines:
            raise ProviderError("the mock provider was asked to fail")
        results = [self._call(tools, index, line) for index, line in enumerate(lines) if _TOOL.match(line)]
        later = follow_ups()
        turns = self._count_turn()
        if "!silent" in lines:
            return TurnResult("", model_turns=1 + len(results))
        reply = [f"mock: {_last_words(text)}"]
        reply += results
        if later:
            reply.append(f"(also read: {_last_words(_plain_text(later))})")
        pictures = [path.name for path in images if len(image_blocks([path])) == 1]
        if pictures:
            reply.append(f"(pictures seen: {', '.join(pictures)})")
        reply.append(f"[turn {turns}]")
        return TurnResult("\n".join(reply), model_turns=1 + len(results))

    def clear(self) -> None:
        self._state.delete(TURNS_KEY)

    def _call(self, tools: ToolBox, index: int, line: str) -> str:
        match = _TOOL.match(line)
        assert match is not None
        name, raw = match.groups()
        try:
            arguments = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            return f"{name}: bad JSON input: {exc}"
        if not isinstance(arguments, dict):
            return f"{name}: input must be a JSON object"
        outcome = tools.run(ToolCall(f"mock_{index}", name, arguments))
        return f"{name} -> {'error: ' if outcome.is_error else ''}{outcome.content}"

    def _count_turn(self) -> int:
        turns = int(self._state.load(TURNS_KEY) or 0) + 1
        self._state.stage(TURNS_KEY, str(turns))  # as Claude's final state: with the batch's end
        return turns


def _plain_text(prompt: str) -> str:
    return html.unescape(_TAG.sub("", prompt)).strip()


def _last_words(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("!")]
    return lines[-1].strip() if lines else text.strip()
