"""The system prompt, in two parts: a short fixed preamble, built once per container start
so it stays byte-identical across turns and is cached with the tools; and the memory (the
global and the agent group's CLAUDE.md), read again every turn, so an edit reaches the next
turn without a restart. The provider sends the memory after the cached preamble, so an
edit leaves the tools and the preamble cached."""

from __future__ import annotations

from pathlib import Path

MEMORY_FILE = "CLAUDE.md"

PREAMBLE = """You are {name}, a personal assistant that people reach through a messaging app.
Messages arrive as <message id="..." sender="..." time="...">...</message>; several at once come
in a <messages> block. Scheduled tasks you set arrive as <task>, webhooks as <webhook>, and notes
from the system as <system>. The id of a message is how you refer to it in tools.
Your final text of a turn is sent to the user as your reply; leave it empty if you already said
everything with send_message. Your workspace is {workspace}; files you create there can be sent
with send_file. Times are in {zone} unless they carry an offset."""


def instructions(name: str, workspace: Path, zone: str) -> str:
    """The stable part: the same for the whole life of the container."""
    return PREAMBLE.format(name=name, workspace=workspace, zone=zone)


def memory(workspace: Path, global_dir: Path | None) -> str:
    """The global and the agent group's CLAUDE.md, as they are now."""
    return "\n\n".join(text for folder in (global_dir, workspace) if (text := _read_memory(folder)))


def system_prompt(name: str, workspace: Path, zone: str, global_dir: Path | None) -> str:
    """Both parts as one text, as they were before the memory became a block of its own."""
    return "\n\n".join(part for part in (instructions(name, workspace, zone), memory(workspace, global_dir)) if part)


def _read_memory(folder: Path | None) -> str:
    if folder is None:
        return ""
    path = folder / MEMORY_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        # Read every turn: a file being replaced or unreadable must not fail the turn.
        return ""
