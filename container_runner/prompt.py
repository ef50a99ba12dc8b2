"""The system prompt: a short fixed preamble, then the global and the agent group's CLAUDE.md.

It is built once per container start so it stays byte-identical across turns (the prompt
cache depends on that)."""

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


def system_prompt(name: str, workspace: Path, zone: str, global_dir: Path | None) -> str:
    parts = [PREAMBLE.format(name=name, workspace=workspace, zone=zone)]
    for folder in (global_dir, workspace):
        memory = _read_memory(folder)
        if memory:
            parts.append(memory)
    return "\n\n".join(parts)


def _read_memory(folder: Path | None) -> str:
    if folder is None:
        return ""
    path = folder / MEMORY_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return ""
