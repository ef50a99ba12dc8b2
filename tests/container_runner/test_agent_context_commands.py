"""/compact and /context: session commands for owners and admins, run by the provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from container_runner.messages import AgentIdle, Work
from container_runner.tools.base import ToolBox
from tests.container_runner.test_agent import ScriptedProvider, _chat, _start, _text, _written
from tests.fakes.actors import wait_for

pytestmark = pytest.mark.timeout(30)


class ContextProvider(ScriptedProvider):
    """A provider with context control (container_runner.context.ContextControl)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def compact_now(self, tools: ToolBox) -> str:
        self.asked.append("compact")
        return "Compacted the conversation: 900 tokens before, 200 after."

    def context_report(self, tools: ToolBox) -> str:
        self.asked.append("context")
        return f"Context: 900 tokens; tools: {', '.join(tools.names())}"


def test_compact_and_context_are_for_owners_and_admins(tmp_path: Path) -> None:
    provider = ContextProvider()
    actors = _start(tmp_path, provider)
    actors["agent"].tell(Work((_chat(2, "/compact", role="member"),)))
    actors["agent"].tell(Work((_chat(4, "/context"),)))
    actors["agent"].tell(Work((_chat(6, "/compact", role="admin"),)))
    actors["agent"].tell(Work((_chat(8, "/Context", role="owner"),)))
    wait_for(actors["inbox"], AgentIdle, count=4)

    texts = [_text(m) for m in _written(actors["outbox"])]
    assert texts == [
        "Only the chat's owner or an admin can use /compact.",
        "Only the chat's owner or an admin can use /context.",
        "Compacted the conversation: 900 tokens before, 200 after.",
        "Context: 900 tokens; tools: echo",
    ]
    assert provider.asked == ["compact", "context"] and provider.prompts == []


def test_a_provider_without_context_control_says_so(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    actors = _start(tmp_path, provider)
    actors["agent"].tell(Work((_chat(2, "/context", role="owner"),)))
    wait_for(actors["inbox"], AgentIdle, count=1)

    assert [_text(m) for m in _written(actors["outbox"])] == ["/context is not available with this model provider."]
    assert provider.prompts == []
