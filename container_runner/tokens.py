"""A cheap estimate of how many tokens a request takes, before it is sent.

Counting exactly needs a round trip (`count_tokens`), so the provider estimates every
request and asks the API only when the estimate comes near the limit. The estimate errs
high: English runs nearer four characters a token than three and a half, so a conversation
the estimate lets through is not one the API turns away as too long."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

CHARS_PER_TOKEN: Final = 3.5
# A picture costs about (width x height) / 750 tokens and the API scales anything larger
# down to about 1.15 megapixels, so no picture costs much more than this.
IMAGE_TOKENS: Final = 1_600
# A PDF is read as text and as a picture of each page; without opening it, its size is the
# only clue: a page of a typical PDF is some tens of kilobytes of base64.
DOCUMENT_BASE64_CHARS_PER_TOKEN: Final = 20
# What the API adds on its side and never shows: the tool-use instructions once there are
# tools, and the built-in tools' own (longer) definitions.
TOOL_USE_SYSTEM_TOKENS: Final = 350
BUILTIN_TOOL_TOKENS: Final[Mapping[str, int]] = {
    "bash_20250124": 245,
    "text_editor_20250728": 700,
    "text_editor_20250429": 700,
    "text_editor_20250124": 700,
}
# Role markers and block framing.
MESSAGE_OVERHEAD_TOKENS: Final = 4
BLOCK_OVERHEAD_TOKENS: Final = 3

METHOD: Final = (
    f"estimated: characters / {CHARS_PER_TOKEN:g}, {IMAGE_TOKENS} a picture, and the API's fixed cost of the "
    "built-in tools; checked with the API's count_tokens near the limit"
)


def estimate_text(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 1 if text else 0


def estimate_value(value: Any) -> int:
    """Any JSON-like value: its strings and keys, a picture at its fixed price."""
    return int(_chars(value) / CHARS_PER_TOKEN) + _fixed(value)


def estimate_tools(tools: Sequence[Mapping[str, Any]]) -> int:
    if not tools:
        return 0
    total = TOOL_USE_SYSTEM_TOKENS
    for tool in tools:
        total += BUILTIN_TOOL_TOKENS.get(str(tool.get("type", "")), 0) + estimate_value(tool)
    return total


def estimate_system(blocks: Iterable[Mapping[str, Any]]) -> int:
    return sum(estimate_value(block) + BLOCK_OVERHEAD_TOKENS for block in blocks)


def estimate_messages(messages: Iterable[Mapping[str, Any]]) -> int:
    return sum(estimate_message(message) for message in messages)


def estimate_message(message: Mapping[str, Any]) -> int:
    content = message.get("content")
    blocks = content if isinstance(content, list) else [content]
    return MESSAGE_OVERHEAD_TOKENS + sum(estimate_value(block) + BLOCK_OVERHEAD_TOKENS for block in blocks)


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        if _is_binary_source(value):
            return 0
        return sum(len(key) + 2 + _chars(item) for key, item in value.items() if key != "cache_control")
    if isinstance(value, list | tuple):
        return sum(_chars(item) + 1 for item in value)
    return len(str(value)) if value is not None else 0


def _fixed(value: Any) -> int:
    """The tokens of pictures and documents, which characters do not measure."""
    if isinstance(value, dict):
        kind = value.get("type")
        source = value.get("source")
        if kind == "image" and isinstance(source, dict):
            return IMAGE_TOKENS
        if kind == "document" and isinstance(source, dict) and _is_binary_source(source):
            return len(str(source.get("data", ""))) // DOCUMENT_BASE64_CHARS_PER_TOKEN + IMAGE_TOKENS
        return sum(_fixed(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_fixed(item) for item in value)
    return 0


def _is_binary_source(value: Mapping[str, Any]) -> bool:
    return value.get("type") == "base64" and isinstance(value.get("data"), str)
