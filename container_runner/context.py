"""How a conversation stays within the model's context window, decided in one place.

The order, cheapest first (issue 11, "A conversation can always continue"):

1. Every tool result is capped when it is made (`cap_text`), so no single result can fill
   the window.
2. Where the model supports the API's own context management, the API clears old tool uses
   itself (`context_management`), and the prompt cache is spent only when it must be; where
   it supports server-side compaction, the API summarises the history itself before the
   client-side limit is reached, and the client keeps the conversation from that summary on.
3. Before every request the provider knows its size: the last response's usage plus an
   estimate of what was added since, or an estimate alone, checked with `count_tokens` near
   the limit. Over the limit, old tool results are cleared (oldest first, the last few
   kept), and if that is not enough the older turns are compacted into a summary.
4. A "prompt is too long" from the API all the same compacts and retries once; a second
   one leaves a minimal history, so the same failure never repeats.

The cache TTLs live here too: they follow from how long the agent lives."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

import msgspec
from anthropic.types import ThinkingConfigParam
from anthropic.types.beta import (
    BetaClearToolUses20250919EditParam,
    BetaCompact20260112EditParam,
    BetaContextManagementConfigParam,
)

from container_runner.tools.base import ToolBox
from protocol.models import features

log = logging.getLogger(__name__)

CONTEXT_MANAGEMENT_BETA: Final = "context-management-2025-06-27"
COMPACTION_BETA: Final = "compact-2026-01-12"
# Below the session's `out/`: the transcript before each compaction, a file each.
COMPACTIONS_DIR: Final = "compactions"
EMPTY_TURN: Final = "(nothing)"
CLEARED_TOOL_RESULT: Final = "[this tool result was cleared to save space; run the tool again if it is needed]"
# Tool results kept whole when older ones are cleared: the model is usually still using them.
KEEP_TOOL_RESULTS: Final = 3
# Any one tool result, whatever the tool: about 11k tokens.
MAX_TOOL_RESULT_CHARS: Final = 40_000
# The prompt cache's default lifetime; an agent that idles longer than this before it stops
# would pay for its whole prefix again after every pause.
DEFAULT_CACHE_TTL_S: Final = 300.0
# Thinking with a fixed budget (models before adaptive thinking): at most this much of a
# reply, and never less than the API's minimum.
THINKING_BUDGET_TOKENS: Final = 4096
MIN_THINKING_BUDGET: Final = 1024

CacheTTL = Literal["5m", "1h"]


@dataclass(frozen=True, kw_only=True)
class ContextPolicy:
    """The numbers every decision about the context is made from."""

    model: str
    window: int
    # The share of the window a request may fill before the history is shrunk; the rest
    # is left for the reply and for the estimate's error.
    threshold: float = 0.8
    # The agent's idle timeout: how long a cached prefix may wait for its next read.
    agent_lifetime_s: float | None = None
    keep_tool_results: int = KEEP_TOOL_RESULTS

    @property
    def limit(self) -> int:
        return int(self.window * self.threshold)

    @property
    def near(self) -> int:
        """From here on an estimate is checked with `count_tokens`."""
        return int(self.limit * 0.85)

    @property
    def server_clearing(self) -> bool:
        return supports_context_management(self.model)

    @property
    def server_compaction(self) -> bool:
        return features(self.model).compaction

    @property
    def compaction_trigger(self) -> int:
        """Where the API compacts: past its clearing of tool uses (half the window), so the
        cheaper edit goes first, and below where the client starts counting (`near`) and
        shrinking (`limit`), so the client's own path is only the backstop."""
        return int(self.limit * 0.75)

    def betas(self) -> list[str]:
        """The beta flags the request's `context_management` needs."""
        flags = [CONTEXT_MANAGEMENT_BETA] if self.server_clearing or self.server_compaction else []
        return [*flags, COMPACTION_BETA] if self.server_compaction else flags

    @property
    def prefix_ttl(self) -> CacheTTL:
        lifetime = self.agent_lifetime_s
        return "1h" if lifetime is not None and lifetime > DEFAULT_CACHE_TTL_S else "5m"

    def prefix_cache_control(self) -> dict[str, str]:
        """For the stable prefix (tools, instructions): it outlives every pause of a chat."""
        if self.prefix_ttl == "1h":
            return {"type": "ephemeral", "ttl": "1h"}
        return {"type": "ephemeral"}

    def thinking(self, max_tokens: int) -> ThinkingConfigParam | None:
        """Extended thinking in the form the model takes: adaptive (the model sizes it), or a
        budget that must stay below the request's `max_tokens` (none when that is too small
        to think in), or none for a model nobody here knows."""
        match features(self.model).thinking:
            case "adaptive":
                return {"type": "adaptive"}
            case "enabled":
                budget = min(THINKING_BUDGET_TOKENS, max_tokens // 2)
                return {"type": "enabled", "budget_tokens": budget} if budget >= MIN_THINKING_BUDGET else None
        return None

    def context_management(self) -> BetaContextManagementConfigParam | None:
        """The API-side edits the model has: clearing old tool uses from half the window, and
        server-side compaction from `compaction_trigger`, both well before the client-side
        limit, so the client's own clearing and compaction stay the backstop."""
        edits: list[BetaClearToolUses20250919EditParam | BetaCompact20260112EditParam] = []
        if self.server_clearing:
            edits.append(
                {
                    "type": "clear_tool_uses_20250919",
                    "trigger": {"type": "input_tokens", "value": self.window // 2},
                    "keep": {"type": "tool_uses", "value": self.keep_tool_results},
                    # Clearing rewrites the cached prefix from the first cleared result on:
                    # worth it only when it frees a good part of the window.
                    "clear_at_least": {"type": "input_tokens", "value": self.window // 10},
                }
            )
        if self.server_compaction:
            # Not paused: the reply goes on after the compaction block, so a turn needs no
            # extra round trip.
            edits.append(
                {"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": self.compaction_trigger}}
            )
        return {"edits": edits} if edits else None


def supports_context_management(model: str) -> bool:
    # protocol/models.py is the one table of what each model supports, host and agent alike.
    return features(model).clear_tool_uses


@runtime_checkable
class ContextControl(Protocol):
    """What the session commands `/compact` and `/context` need of a provider."""

    def compact_now(self, tools: ToolBox) -> str:
        """Compact the conversation at once; says how many tokens before and after."""
        ...

    def context_report(self, tools: ToolBox) -> str:
        """The tokens in use, by part."""
        ...


# -- tool results ------------------------------------------------------------------------


def cap_text(text: str, cap: int = MAX_TOOL_RESULT_CHARS) -> str:
    """The start and the end of a long text, with how much was left out between."""
    if len(text) <= cap:
        return text
    keep_start = cap // 2
    keep_end = cap - keep_start
    left_out = len(text) - cap
    return f"{text[:keep_start]}\n[... {left_out} characters left out ...]\n{text[len(text) - keep_end :]}"


def clear_old_tool_results(messages: Sequence[dict[str, Any]], keep: int) -> tuple[list[dict[str, Any]], int]:
    """The conversation with every tool result but the latest `keep` replaced by a short
    placeholder, and how many were cleared. The tool_use blocks stay, so every call still
    has its result; messages that change are copies."""
    places = [
        (index, position)
        for index, message in enumerate(messages)
        if message["role"] == "user"
        for position, block in enumerate(message["content"])
        if block.get("type") == "tool_result" and block.get("content") != CLEARED_TOOL_RESULT
    ]
    doomed = places[: max(0, len(places) - keep)]
    if not doomed:
        return list(messages), 0
    result = list(messages)
    for index, position in doomed:
        message = result[index]
        blocks = list(message["content"])
        blocks[position] = {**blocks[position], "content": CLEARED_TOOL_RESULT}
        result[index] = {**message, "content": blocks}
    return result, len(doomed)


# -- server-side compaction -----------------------------------------------------------


def from_latest_compaction(messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The conversation from its latest `compaction` block on, and whether anything before
    it was dropped. The API takes that block only as the first block of `messages`
    (`compaction_block_misplaced`) and only one with content (`compaction_block_ambiguous`):
    it stands for everything before it, which is therefore dropped here, not kept and
    re-sent. A block without content is a failed compaction the API treats as a no-op: it
    replaces nothing, so it is dropped itself and the history kept."""
    kept: list[dict[str, Any]] = []
    dropped = False
    for message in messages:
        content = message["content"]
        if not any(block.get("type") == "compaction" for block in content):
            kept.append(message)
            continue
        blocks: list[dict[str, Any]] = []
        for block in content:
            if block.get("type") != "compaction":
                blocks.append(block)
            elif block.get("content") is not None:
                dropped = dropped or bool(kept) or bool(blocks)
                kept, blocks = [], [block]
        # A turn left empty (its only block a failed compaction) keeps its place: the roles
        # must still alternate.
        kept.append({**message, "content": blocks or [{"type": "text", "text": EMPTY_TURN}]})
    return kept, dropped


# -- the archive -------------------------------------------------------------------------


def archive_transcript(folder: Path, messages: Sequence[dict[str, Any]], reason: str) -> Path | None:
    """Keeps the conversation as it was before a compaction, one file per compaction, in the
    agent's own part of the session folder. Only the agent reads it (the host never needs
    to); a failure to write it is logged and never stops the compaction."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stamp}.json"
        body = msgspec.json.encode({"archived_at": stamp, "reason": reason, "messages": list(messages)})
        partial = folder / f".{stamp}.partial"
        with open(partial, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except OSError as exc:
        log.warning("the transcript before a compaction could not be archived in %s: %s", folder, exc)
        return None
    return path
