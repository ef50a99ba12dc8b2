"""The files people sent, as content blocks the model sees with the message: pictures as
image blocks (container_runner.images), PDFs as document blocks, both bounded so one message
can never make a request the API refuses. Every other file, and one past a bound, is named
by path in the message (container_runner.formatting) with its size and type, for the model
to open with its tools; here it gets a short note saying why it was not shown."""

from __future__ import annotations

import base64
import logging
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from container_runner.images import MAX_IMAGES, ImageRefused, image_block, media_type, read_picture

log = logging.getLogger("hutch.agent.attachments")

PDF_TYPE: Final = "application/pdf"
# The API takes 32 MB requests and 100 pages per PDF; a few PDFs of this size stay well inside.
MAX_PDF_BYTES: Final = 10_000_000
MAX_PDFS: Final = 3
MAX_PDF_PAGES: Final = 100
# What all of one message's attachment blocks may hold (before base64): room is left for the
# conversation in a 32 MB request.
MAX_TURN_BYTES: Final = 20_000_000

_HEAD_BYTES: Final = 1024
# A PDF's header may follow a little junk; readers look within the first kilobyte.
_PDF_MAGIC: Final = b"%PDF-"
# Page objects written out in the open; inside compressed object streams they are not seen,
# so this only ever undercounts: a PDF it finds too long surely is.
_PAGE_OBJECT: Final = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


def file_type(path: Path) -> str:
    """A file's type as the model is told it: from its bytes for what it can be shown as,
    else guessed from its name."""
    kind = _sniffed(path)
    if kind is not None:
        return kind
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed or "application/octet-stream"


def _sniffed(path: Path) -> str | None:
    """A picture's or PDF's type, from the bytes alone (a name is only a hint)."""
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
    except OSError:
        return None
    kind = media_type(head[:16])
    if kind is None and _PDF_MAGIC in head:
        return PDF_TYPE
    return kind


def human_size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@dataclass
class _Budget:
    images: int = 0
    pdfs: int = 0
    bytes: int = 0
    blocks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fits(self, size: int) -> bool:
        return self.bytes + size <= MAX_TURN_BYTES


def attachment_blocks(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The blocks to send before the message's text: pictures and PDFs in order, then one
    text block of notes on those that could not be shown (none when all were)."""
    budget = _Budget()
    for path in paths:
        try:
            _add(path, budget)
        except OSError as exc:
            log.warning("attachment %s cannot be read: %s", path.name, exc)
            budget.notes.append(f"{path.name}: could not be read ({exc.strerror or type(exc).__name__})")
    blocks = budget.blocks
    if budget.notes:
        lines = "\n".join(f"- {note}" for note in budget.notes)
        blocks = [*blocks, {"type": "text", "text": f"[attachments not shown; open them by path:\n{lines}]"}]
    return blocks


def _add(path: Path, budget: _Budget) -> None:
    try:
        picture = read_picture(path)
    except ImageRefused as exc:
        budget.notes.append(f"{path.name}: {exc}")
        return
    if picture is not None:
        _add_picture(path, *picture, budget)
    elif _sniffed(path) == PDF_TYPE:
        _add_pdf(path, budget)


def _add_picture(path: Path, data: bytes, kind: str, budget: _Budget) -> None:
    if budget.images == MAX_IMAGES:
        budget.notes.append(f"{path.name}: more than {MAX_IMAGES} pictures in one message")
        return
    try:
        block = image_block(data, kind)
    except ImageRefused as exc:
        log.info("picture %s not shown: %s", path.name, exc)
        budget.notes.append(f"{path.name}: {exc}")
        return
    size = len(block["source"]["data"]) * 3 // 4
    if not budget.fits(size):
        budget.notes.append(f"{path.name}: this message's attachments are too large to show together")
        return
    budget.images += 1
    budget.bytes += size
    budget.blocks.append(block)


def _add_pdf(path: Path, budget: _Budget) -> None:
    size = path.stat().st_size
    if size > MAX_PDF_BYTES:
        budget.notes.append(f"{path.name}: a PDF of {human_size(size)}, more than {human_size(MAX_PDF_BYTES)}")
        return
    if budget.pdfs == MAX_PDFS:
        budget.notes.append(f"{path.name}: more than {MAX_PDFS} PDFs in one message")
        return
    with path.open("rb") as file:
        data = file.read(MAX_PDF_BYTES + 1)
    if len(data) > MAX_PDF_BYTES:  # it grew since the stat
        budget.notes.append(f"{path.name}: a PDF of more than {human_size(MAX_PDF_BYTES)}")
        return
    pages = len(_PAGE_OBJECT.findall(data))
    if pages > MAX_PDF_PAGES:
        budget.notes.append(f"{path.name}: a PDF of about {pages} pages, more than {MAX_PDF_PAGES}")
        return
    if not budget.fits(len(data)):
        budget.notes.append(f"{path.name}: this message's attachments are too large to show together")
        return
    budget.pdfs += 1
    budget.bytes += len(data)
    source = {"type": "base64", "media_type": PDF_TYPE, "data": base64.b64encode(data).decode()}
    budget.blocks.append({"type": "document", "source": source})
