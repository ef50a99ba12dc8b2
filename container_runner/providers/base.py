"""The contract between the AgentActor and a model provider."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

from container_runner.tools.base import ToolBox


class ProviderError(Exception):
    """A turn that could not be completed. The message is shown to the user as it is."""


class ProviderDeferredError(ProviderError):
    """A turn that a later try will likely get through: the model API stayed busy (429, 529,
    overloaded) past the SDK's own retries, or the agent group's budget is spent. The batch
    is handed back rather than failed (docs/ARCHITECTURE.md, "Deferral"). `retry_after_s` is
    the API's or the proxy's `retry-after`, None when it gave none; `reason` is `busy` or
    `budget`."""

    def __init__(self, message: str, retry_after_s: float | None = None, reason: str = "busy") -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.reason = reason


class TurnResult(msgspec.Struct, frozen=True):
    """The model's final text of a query (may be empty when it only used tools)."""

    text: str
    model_turns: int = 1


class StateStore(Protocol):
    """Durable key/value state of the session (`session_state` in outbound.db)."""

    def load(self, key: str) -> str | None: ...

    def save(self, key: str, value: str) -> None:
        """Durable when it returns: a point a restart can resume from."""
        ...

    def stage(self, key: str, value: str) -> None:
        """Durable with the next write, at the latest in the commit that ends the batch, so a
        batch's final state and its completion become durable together (and one commit
        fewer)."""
        ...

    def delete(self, key: str) -> None: ...


# Called between model turns; returns newly arrived user messages, already formatted, or None.
FollowUps = Callable[[], str | None]


class Provider(Protocol):
    def run(self, prompt: str, tools: ToolBox, follow_ups: FollowUps, images: Sequence[Path] = ()) -> TurnResult:
        """Run one query to completion: the model turn, its tool calls, and further turns
        until the model stops asking for tools. `images` are pictures among the batch's
        attachments, for a provider that can show them. Raises ProviderError on failure."""
        ...

    def clear(self) -> None:
        """Forget the conversation (the `/clear` command)."""
        ...
