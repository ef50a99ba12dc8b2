"""Pictures people sent, as the model sees them: image blocks within the API's limits.

An attachment is a picture when its bytes say it is one of the kinds the Messages API takes
(JPEG, PNG, GIF, WebP: read from the file's first bytes, not its name). Every one is decoded
with Pillow before it is sent, because the API refuses the whole request for one broken
picture. One that fits (at most `MAX_EDGE` pixels on its long edge, at most `MAX_IMAGE_BYTES`)
goes as it is; a larger one is scaled down to `MAX_EDGE`, which the API would do anyway while
billing the full size. A picture that cannot be shown (unreadable, or so many pixels that
decoding it is an attack: a chat is hostile input) is refused with a short reason, never an
exception the turn would die of."""

from __future__ import annotations

import base64
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from PIL import Image, ImageOps

log = logging.getLogger("hutch.agent.images")

# The API takes at most 5 MB per image as sent (base64 grows data by a third).
MAX_IMAGE_BYTES: Final = 3_750_000
# A message of many pictures must not be one enormous request.
MAX_IMAGES: Final = 8
# The API scales anything larger down to this long edge before the model sees it.
MAX_EDGE: Final = 1568
# What a header may declare before decoding is refused: 50 MP (a phone's largest common
# photo) decodes to at most 200 MB; a few kilobytes of PNG can declare gigapixels.
MAX_SOURCE_PIXELS: Final = 50_000_000
# Read no more of a file than this; a picture larger is refused unread.
MAX_SOURCE_BYTES: Final = 40_000_000
_JPEG_QUALITY: Final = 85

_SIGNATURES: Final = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# Pillow is told which decoder to use, so a file never reaches a plugin its bytes did not name.
_PILLOW_FORMATS: Final = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}


class ImageRefused(Exception):  # noqa: N818 - reads as the fact it reports
    """The picture cannot be shown; the message says why, in a few words, for the model."""


def media_type(head: bytes) -> str | None:
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_block(data: bytes, kind: str) -> dict[str, Any]:
    """An image block for a picture's bytes, scaled down when needed; ImageRefused when it
    cannot be shown."""
    if kind not in _PILLOW_FORMATS:
        raise ImageRefused(f"{kind} is not a picture kind the model takes")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check only warns below twice its limit: make it a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            kind, data = _fitted(data, kind)
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRefused("too many pixels to decode safely") from exc
    except Exception as exc:
        # Pillow's decoders raise many kinds of error on hostile or broken input (OSError,
        # ValueError, SyntaxError, struct.error, ...): all mean the same here.
        raise ImageRefused(f"unreadable picture ({type(exc).__name__})") from exc
    return {"type": "image", "source": {"type": "base64", "media_type": kind, "data": base64.b64encode(data).decode()}}


def _fitted(data: bytes, kind: str) -> tuple[str, bytes]:
    with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[kind]]) as image:
        width, height = image.size
        # Decided on the header alone, before a single pixel is decoded.
        if width * height > MAX_SOURCE_PIXELS:
            raise ImageRefused(f"too many pixels to decode safely ({width}x{height})")
        if max(width, height) <= MAX_EDGE and len(data) <= MAX_IMAGE_BYTES:
            image.load()  # a broken file fails here rather than failing the request
            return kind, data
        # A JPEG decodes straight at a smaller scale: a 48 MP photo costs what a 3 MP one does.
        image.draft("RGB", (MAX_EDGE, MAX_EDGE))
        oriented = ImageOps.exif_transpose(image)
        oriented.thumbnail((MAX_EDGE, MAX_EDGE), Image.Resampling.LANCZOS)
        return _encoded(oriented)


def _encoded(image: Image.Image) -> tuple[str, bytes]:
    """PNG where transparency matters and it fits, else JPEG: a photo as PNG at 1568 px can
    be larger than the API takes."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        data = _save(rgba, "PNG")
        if len(data) <= MAX_IMAGE_BYTES:
            return "image/png", data
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    data = _save(image.convert("RGB"), "JPEG", quality=_JPEG_QUALITY)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRefused("too large even when scaled down")
    return "image/jpeg", data


def _save(image: Image.Image, format_name: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format_name, **options)
    return out.getvalue()


def read_picture(path: Path) -> tuple[bytes, str] | None:
    """The bytes and kind of a picture file, None when it is not one; ImageRefused when it is
    one that cannot be read or is past `MAX_SOURCE_BYTES`."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        log.warning("attachment %s cannot be read: %s", path.name, exc)
        return None
    kind = media_type(data[:16])
    if kind is None:
        return None
    if len(data) > MAX_SOURCE_BYTES:
        raise ImageRefused(f"larger than {MAX_SOURCE_BYTES // 1_000_000} MB")
    return data, kind


def image_blocks(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """An image block for each picture that can be shown, in order, at most MAX_IMAGES;
    others are skipped (container_runner.attachments says why to the model)."""
    blocks: list[dict[str, Any]] = []
    for path in paths:
        if len(blocks) == MAX_IMAGES:
            break
        try:
            found = read_picture(path)
            if found is not None:
                blocks.append(image_block(*found))
        except ImageRefused as exc:
            log.info("picture %s not shown: %s", path.name, exc)
    return blocks


# What an answered attachment block becomes in the kept conversation.
_SHOWN_EARLIER: Final = {
    "image": "[a picture the person sent, shown earlier]",
    "document": "[a document the person sent, shown earlier; its path is in the message]",
}


def without_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with its pictures and documents replaced by a word: once answered,
    an attachment is not sent with every later request, nor kept in the saved state."""
    return [_message_without_images(message) for message in messages]


def _message_without_images(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, list) or not any(block.get("type") in _SHOWN_EARLIER for block in content):
        return message
    blocks = [
        {"type": "text", "text": _SHOWN_EARLIER[block["type"]]} if block.get("type") in _SHOWN_EARLIER else block
        for block in content
    ]
    return {**message, "content": blocks}
