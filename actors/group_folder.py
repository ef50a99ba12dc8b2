"""An agent group's own folder, `groups/<folder>/`, with the memory file its agents read at
the start of every session (docs/ARCHITECTURE.md, "The layout")."""

from __future__ import annotations

import contextlib
from pathlib import Path

MEMORY_FILE = "CLAUDE.md"

DEFAULT_MEMORY = """# {name}

Notes for this agent group live here: who the people are, what they like, what to remember.
The agent reads this file at the start of every session.
"""


def seed_group_folder(groups_dir: Path, folder: str) -> None:
    """Make the folder with a starting memory, only if it is new: afterwards it is the
    agents' own, and what they removed from it stays removed."""
    with contextlib.suppress(FileExistsError):
        (groups_dir / folder).mkdir(parents=True)
        (groups_dir / folder / MEMORY_FILE).write_text(DEFAULT_MEMORY.format(name=folder))
