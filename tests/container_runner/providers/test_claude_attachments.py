"""What the model is sent for the files people attach: pictures scaled to the API's limits,
PDFs as documents, and a note for what cannot be shown; checked on the requests the fake
Messages API records, through the real `anthropic` SDK."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from container_runner import attachments
from container_runner.attachments import MAX_PDFS, attachment_blocks
from container_runner.images import MAX_EDGE
from container_runner.providers.claude import ClaudeProvider, ClaudeSettings
from container_runner.tools.base import ToolBox
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply
from tests.fakes.probes import MemoryState

pytestmark = pytest.mark.timeout(30)

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Page >> endobj\n%%EOF\n"


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "green").save(out, format="PNG")
    return out.getvalue()


def bomb() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 60_000, 60_000, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def no_follow_ups() -> str | None:
    return None


@pytest.fixture
def provider(api: FakeMessagesAPI) -> Iterator[ClaudeProvider]:
    settings = ClaudeSettings(
        model="claude-test", max_tokens=256, base_url=api.base_url, api_key="test-key", max_retries=0, stall_timeout=5
    )
    made = ClaudeProvider(settings, MemoryState())
    yield made
    made.close()


def sent_blocks(api: FakeMessagesAPI, index: int = 0) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = api.requests[index].body["messages"][-1]["content"]
    return [{key: value for key, value in block.items() if key != "cache_control"} for block in content]


def test_pictures_pdfs_and_notes_are_sent(api: FakeMessagesAPI, provider: ClaudeProvider, tmp_path: Path) -> None:
    files = {
        "photo.png": png(4000, 3000),
        "report.pdf": PDF,
        "bomb.png": bomb(),
        "broken.jpg": b"\xff\xd8\xff\xe0 not really a jpeg",
        "notes.txt": b"buy milk",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    api.enqueue(FakeReply.text("Seen."))
    api.enqueue(FakeReply.text("Still here."))

    provider.run("look at these", ToolBox([]), no_follow_ups, [tmp_path / name for name in files])
    provider.run("and?", ToolBox([]), no_follow_ups)

    image, document, notes, prompt = sent_blocks(api)
    assert image["type"] == "image" and image["source"]["media_type"] == "image/jpeg"
    scaled = Image.open(io.BytesIO(base64.b64decode(image["source"]["data"])))
    assert max(scaled.size) <= MAX_EDGE and scaled.size == (MAX_EDGE, MAX_EDGE * 3 // 4)
    assert document == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(PDF).decode()},
    }
    assert notes["type"] == "text"
    assert "bomb.png: too many pixels" in notes["text"] and "broken.jpg: unreadable picture" in notes["text"]
    assert "notes.txt" not in notes["text"]  # named by the message itself, with its size and type
    assert prompt == {"type": "text", "text": "look at these"}
    # Answered, neither picture nor document is sent again.
    later = json.dumps(api.requests[1].body["messages"])
    assert '"image"' not in later and '"document"' not in later


def test_a_pdf_past_the_cap_is_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attachments, "MAX_PDF_BYTES", len(PDF) - 1)
    (tmp_path / "big.pdf").write_bytes(PDF)
    (blocks,) = attachment_blocks([tmp_path / "big.pdf"])
    assert blocks["type"] == "text" and "big.pdf: a PDF of" in blocks["text"] and "more than" in blocks["text"]


def test_a_pdf_of_too_many_pages_is_a_note(tmp_path: Path) -> None:
    pages = b"".join(b"%d 0 obj << /Type /Page >> endobj\n" % index for index in range(150))
    (tmp_path / "book.pdf").write_bytes(b"%PDF-1.7\n" + pages)
    (blocks,) = attachment_blocks([tmp_path / "book.pdf"])
    assert "about 150 pages" in blocks["text"]


def test_pdfs_per_message_are_capped(tmp_path: Path) -> None:
    paths = []
    for index in range(MAX_PDFS + 1):
        paths.append(tmp_path / f"p{index}.pdf")
        paths[-1].write_bytes(PDF)
    blocks = attachment_blocks(paths)
    assert [block["type"] for block in blocks] == ["document"] * MAX_PDFS + ["text"]
    assert f"p{MAX_PDFS}.pdf: more than {MAX_PDFS} PDFs" in blocks[-1]["text"]


def test_one_message_stays_within_its_size_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attachments, "MAX_TURN_BYTES", len(PDF) + 10)
    for name in ("a.pdf", "b.pdf"):
        (tmp_path / name).write_bytes(PDF)
    blocks = attachment_blocks([tmp_path / "a.pdf", tmp_path / "b.pdf"])
    assert [block["type"] for block in blocks] == ["document", "text"]
    assert "b.pdf: this message's attachments are too large" in blocks[1]["text"]


def test_other_files_and_missing_ones_make_no_block(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_bytes(b"buy milk")
    assert attachment_blocks([tmp_path / "notes.txt", tmp_path / "gone.pdf"]) == []


def test_the_message_names_every_file_with_its_size_and_type(tmp_path: Path) -> None:
    from container_runner.formatting import Formatter
    from protocol.content import ChatIn
    from tests.fakes.session import make_session, write_in

    layout = make_session(tmp_path / "session")
    row = write_in(layout, ChatIn(text="see", sender="Ann", files=["notes.txt", "scan.bin", "gone.docx"]))
    folder = layout.root / "inbox" / row.id
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_bytes(b"x" * 2500)
    (folder / "scan.bin").write_bytes(PDF)  # a PDF whatever its name says

    text = Formatter(layout, "UTC").row(row)

    assert f'<attachment name="notes.txt" path="{folder}/notes.txt" size="2.5 KB" type="text/plain"/>' in text
    assert f'name="scan.bin" path="{folder}/scan.bin" size="{len(PDF)} B" type="application/pdf"' in text
    assert 'name="gone.docx"' in text and 'size="missing"' in text
