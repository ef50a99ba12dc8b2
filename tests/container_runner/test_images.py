"""Which attachments the model sees as pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from container_runner import images
from container_runner.images import MAX_IMAGES, image_blocks, media_type, without_images

pytestmark = pytest.mark.timeout(10)

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 16


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (JPEG, "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"GIF89a", "image/gif"),
        (WEBP, "image/webp"),
        (b"%PDF-1.7", None),
        (b"<svg xmlns=", None),  # not a kind the API takes
        (b"", None),
    ],
)
def test_the_kind_is_read_from_the_bytes(head: bytes, kind: str | None) -> None:
    assert media_type(head[:16]) == kind


def test_a_picture_too_big_to_send_stays_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 100)
    big = tmp_path / "big.jpg"
    big.write_bytes(JPEG + b"\x00" * 200)
    small = tmp_path / "small.jpg"
    small.write_bytes(JPEG)
    assert [block["source"]["media_type"] for block in image_blocks([big, small])] == ["image/jpeg"]


def test_many_pictures_are_capped_and_a_missing_one_skipped(tmp_path: Path) -> None:
    paths = []
    for index in range(MAX_IMAGES + 3):
        path = tmp_path / f"p{index}.jpg"
        path.write_bytes(JPEG)
        paths.append(path)
    assert len(image_blocks([tmp_path / "gone.jpg", *paths])) == MAX_IMAGES


def test_pictures_leave_the_conversation_once_answered() -> None:
    image: dict[str, Any] = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    text: dict[str, Any] = {"type": "text", "text": "what is this?"}
    conversation: list[dict[str, Any]] = [
        {"role": "user", "content": [image, text]},
        {"role": "assistant", "content": [text]},
    ]
    cleaned = without_images(conversation)
    assert cleaned[0]["content"][0]["type"] == "text" and cleaned[0]["content"][1] == text
    assert cleaned[1] is conversation[1]
    assert conversation[0]["content"][0] is image  # the original is not changed
