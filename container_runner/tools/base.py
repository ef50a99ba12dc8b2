"""What a tool is to the agent: a definition for the model and a function to run it."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    name: str
    input: dict[str, Any]


class ToolOutcome(msgspec.Struct, frozen=True):
    """What goes back to the model as the tool result. Errors are results too: the model
    reads them and can correct itself."""

    content: str
    is_error: bool = False


class ToolError(Exception):
    """Raised by a tool for bad input or a failed action; becomes an `is_error` result."""


class Tool(Protocol):
    @property
    def name(self) -> str: ...

    def definition(self) -> dict[str, Any]:
        """The entry for the Messages API `tools` list (custom or Anthropic-defined type)."""
        ...

    def run(self, arguments: dict[str, Any]) -> ToolOutcome: ...


class ToolBox:
    """The tools of one agent, by name."""

    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}

    def definitions(self) -> list[dict[str, Any]]:
        return [tool.definition() for tool in self._tools.values()]

    def names(self) -> list[str]:
        return list(self._tools)

    def run(self, call: ToolCall) -> ToolOutcome:
        tool = self._tools.get(call.name)
        if tool is None:
            return ToolOutcome(f"unknown tool {call.name!r}; available: {', '.join(self._tools)}", is_error=True)
        try:
            return tool.run(call.input)
        except ToolError as exc:
            return ToolOutcome(str(exc), is_error=True)
