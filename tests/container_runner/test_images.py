"""Which attachments the model sees as pictures, and at what size."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from container_runner import images
from container_runner.images import (
    MAX_EDGE,
    MAX_IMAGES,
    ImageRefused,
    image_block,
    image_blocks,
    media_type,
    without_images,
)

pytestmark = pytest.mark.timeout(30)

JPEG_HEAD = b"\xff\xd8\xff\xe0" + b"\x00" * 32
WEBP_HEAD = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 16


def picture(width: int, height: int, format_name: str = "PNG", mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), "red" if mode == "RGB" else (255, 0, 0, 128)).save(out, format=format_name)
    return out.getvalue()


def noisy_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: a photo's worth of bytes, not a flat colour's."""
    import random

    noise = random.Random(7).randbytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), noise).save(out, format="PNG")
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring `width` x `height`, with almost no data: what a hostile
    chat sends to make a decoder allocate gigabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def decoded(block: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(block["source"]["data"])))


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (JPEG_HEAD, "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"GIF89a", "image/gif"),
        (WEBP_HEAD, "image/webp"),
        (b"%PDF-1.7", None),
        (b"<svg xmlns=", None),  # not a kind the API takes
        (b"", None),
    ],
)
def test_the_kind_is_read_from_the_bytes(head: bytes, kind: str | None) -> None:
    assert media_type(head[:16]) == kind


def test_a_picture_that_fits_goes_as_it_is() -> None:
    data = picture(640, 480)
    block = image_block(data, "image/png")
    assert block["source"] == {"type": "base64", "media_type": "image/png", "data": base64.b64encode(data).decode()}


def test_a_large_picture_is_scaled_to_the_long_edge_the_api_uses() -> None:
    block = image_block(picture(4000, 3000), "image/png")
    scaled = decoded(block)
    assert scaled.size == (MAX_EDGE, MAX_EDGE * 3 // 4)
    assert block["source"]["media_type"] == "image/jpeg"  # a photo without transparency


def test_a_tall_picture_with_transparency_stays_a_png() -> None:
    block = image_block(picture(1000, 2400, mode="RGBA"), "image/png")
    scaled = decoded(block)
    assert block["source"]["media_type"] == "image/png" and scaled.mode == "RGBA"
    assert max(scaled.size) == MAX_EDGE and scaled.size[0] == round(1000 * MAX_EDGE / 2400)


def test_a_picture_over_the_byte_limit_is_made_smaller(monkeypatch: pytest.MonkeyPatch) -> None:
    data = noisy_png(400, 300)
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", len(data) - 1)
    block = image_block(data, "image/png")
    assert block["source"]["media_type"] == "image/jpeg"
    assert len(base64.b64decode(block["source"]["data"])) < len(data)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (10_000, 6_000),  # past our limit, below Pillow's own
        (100_000, 100_000),  # past Pillow's too
    ],
)
def test_a_decompression_bomb_is_refused_before_decoding(width: int, height: int) -> None:
    with pytest.raises(ImageRefused, match="too many pixels to decode safely"):
        image_block(bomb_png(width, height), "image/png")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"),  # the signature, then nothing sane
        (picture(64, 64)[:-30], "image/png"),  # truncated
        (JPEG_HEAD, "image/jpeg"),
        (picture(64, 64), "image/gif"),  # a PNG that claims to be a GIF
    ],
)
def test_an_unreadable_picture_is_refused_with_a_reason(data: bytes, kind: str) -> None:
    with pytest.raises(ImageRefused, match="unreadable picture"):
        image_block(data, kind)


def test_image_blocks_skip_what_cannot_be_shown_and_cap_the_count(tmp_path: Path) -> None:
    paths = [tmp_path / "gone.jpg"]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
    paths.append(tmp_path / "broken.png")
    for index in range(MAX_IMAGES + 3):
        path = tmp_path / f"p{index}.png"
        path.write_bytes(picture(8, 8))
        paths.append(path)
    assert len(image_blocks(paths)) == MAX_IMAGES


def test_pictures_and_documents_leave_the_conversation_once_answered() -> None:
    image: dict[str, Any] = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    document: dict[str, Any] = {
        "type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AAAA"}
    }  # fmt: skip
    text: dict[str, Any] = {"type": "text", "text": "what is this?"}
    conversation: list[dict[str, Any]] = [
        {"role": "user", "content": [image, document, text]},
        {"role": "assistant", "content": [text]},
    ]
    cleaned = without_images(conversation)
    assert [block["type"] for block in cleaned[0]["content"]] == ["text", "text", "text"]
    assert "picture" in cleaned[0]["content"][0]["text"] and "document" in cleaned[0]["content"][1]["text"]
    assert cleaned[1] is conversation[1]
    assert conversation[0]["content"][0] is image  # the original is not changed
