"""Files that came with an inbound message, moved into the session's `inbox/<message_id>/`.
The container can write in the session folder, so what it may have planted there (a
symlinked folder or file) is refused or replaced, never followed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from protocol.layout import SessionLayout, UnsafePathError


def take_files(layout: SessionLayout, message_id: str, files: tuple[tuple[str, str], ...]) -> list[str]:
    """Move `(name, temporary path)` pairs into the message's inbox folder; returns the names
    the files have there."""
    folder = layout.inbox(message_id)
    if folder.is_symlink() or folder.parent.is_symlink():
        raise UnsafePathError(f"{folder} is a symlink")
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for raw_name, temporary in files:
        name = Path(raw_name).name or "file"
        destination = folder / name
        if destination.is_symlink():
            destination.unlink()
        shutil.move(temporary, destination)
        # Readable by the agent whatever mode the channel gave its temporary copy (a file made
        # with mkstemp is 0600); the session folder above decides which agents get this far.
        os.chmod(destination, 0o644, follow_symlinks=False)
        names.append(name)
    return names
