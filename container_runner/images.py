"""Pictures people sent, as the model sees them: image blocks.

An attachment is shown as an image when its bytes say it is one of the kinds the Messages
API takes (JPEG, PNG, GIF, WebP: read from the file's first bytes, not its name) and it is
small enough to send as it is; anything else stays a path the agent can open with its
tools. Making a big picture smaller is not done here."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

log = logging.getLogger("hutch.agent.images")

# The API takes at most 5 MB per image as sent (base64 grows data by a third).
MAX_IMAGE_BYTES: Final = 3_750_000
# A message of many pictures must not be one enormous request.
MAX_IMAGES: Final = 8

_SIGNATURES: Final = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def media_type(head: bytes) -> str | None:
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_blocks(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """An image block for each picture that can be sent as it is, in order, at most
    MAX_IMAGES; others are skipped (the prompt names every attachment by path anyway)."""
    blocks: list[dict[str, Any]] = []
    for path in paths:
        if len(blocks) == MAX_IMAGES:
            break
        block = _block(path)
        if block is not None:
            blocks.append(block)
    return blocks


def _block(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        log.warning("attachment %s cannot be read: %s", path.name, exc)
        return None
    kind = media_type(data[:16])
    if kind is None:
        return None
    if len(data) > MAX_IMAGE_BYTES:
        log.info("picture %s is over %d bytes: shown by path only", path.name, MAX_IMAGE_BYTES)
        return None
    return {"type": "image", "source": {"type": "base64", "media_type": kind, "data": base64.b64encode(data).decode()}}


def without_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with its pictures replaced by a word: once answered, a picture is
    not sent with every later request, nor kept in the saved state."""
    return [_message_without_images(message) for message in messages]


def _message_without_images(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, list) or not any(block.get("type") == "image" for block in content):
        return message
    blocks = [
        {"type": "text", "text": "[a picture the person sent, shown earlier]"}
        if block.get("type") == "image"
        else block
        for block in content
    ]
    return {**message, "content": blocks}
