"""Where things live inside one session's folder. Both sides derive every path from here."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

INBOUND_DB = "inbound.db"
OUTBOUND_DB = "outbound.db"
HEARTBEAT = ".heartbeat"
INBOX_DIR = "inbox"
OUTBOX_DIR = "outbox"
PROXY_SOCKET = "proxy.sock"

# The largest file an agent may send: what the channels people use accept (Telegram's bots
# send up to 50 MB); anything bigger is refused, not read.
MAX_OUTBOX_FILE_BYTES = 50 * 1024 * 1024

# Message ids become folder names, so they are restricted to a safe alphabet.
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class UnsafePathError(ValueError):
    """A name or path that would escape the folder it must stay in."""


def check_message_id(message_id: str) -> str:
    if not _MESSAGE_ID.fullmatch(message_id):
        raise UnsafePathError(f"message id {message_id!r} is not 1-64 characters of [A-Za-z0-9_-]")
    return message_id


@dataclass(frozen=True, slots=True)
class SessionLayout:
    """The files of one session folder; the folder is what gets mounted into the container."""

    root: Path

    @property
    def inbound_db(self) -> Path:
        return self.root / INBOUND_DB

    @property
    def outbound_db(self) -> Path:
        return self.root / OUTBOUND_DB

    @property
    def heartbeat(self) -> Path:
        return self.root / HEARTBEAT

    @property
    def proxy_socket(self) -> Path:
        return self.root / PROXY_SOCKET

    def inbox(self, message_id: str) -> Path:
        return self.root / INBOX_DIR / check_message_id(message_id)

    def outbox(self, message_id: str) -> Path:
        return self.root / OUTBOX_DIR / check_message_id(message_id)

    def create(self) -> None:
        for folder in (self.root, self.root / INBOX_DIR, self.root / OUTBOX_DIR):
            folder.mkdir(parents=True, exist_ok=True)

    def outbox_file(self, message_id: str, name: str) -> Path:
        """The real path of a file the container put in `outbox/<message_id>/`.

        Only a plain basename is accepted; the result must be a regular file (not a symlink)
        whose real path stays inside the message's outbox folder.
        """
        path = contained_file(self.outbox(message_id), name)
        # The container owns everything below the root, `outbox/` and `outbox/<id>/` too:
        # either could be a symlink to anywhere on the host. Only the root itself is ours.
        if path != self.root.resolve() / OUTBOX_DIR / message_id / name:
            raise UnsafePathError(f"file {name!r} of message {message_id!r} is not inside {self.root / OUTBOX_DIR}")
        check_sendable(path, os.stat(self.root).st_dev)
        return path


def check_sendable(path: Path, device: int) -> None:
    """What the host will read of a file an agent made: opened without following a link (and
    without blocking on a FIFO), it must be a regular file with one link (a hard link to a
    host file would be that file), on the session folder's device, within the size cap."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafePathError(f"file {path.name!r} cannot be opened safely: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"file {path.name!r} is not a regular file")
    if st.st_nlink != 1:
        raise UnsafePathError(f"file {path.name!r} has {st.st_nlink} links; only a file of its own is sent")
    if st.st_dev != device:
        raise UnsafePathError(f"file {path.name!r} is on another file system than its session")
    if st.st_size > MAX_OUTBOX_FILE_BYTES:
        raise UnsafePathError(f"file {path.name!r} is {st.st_size} bytes, more than {MAX_OUTBOX_FILE_BYTES}")


def contained_file(folder: Path, name: str) -> Path:
    if not name or name in {".", ".."} or os.path.basename(name) != name or "\x00" in name:
        raise UnsafePathError(f"file name {name!r} is not a plain basename")
    candidate = folder / name
    if candidate.is_symlink():
        raise UnsafePathError(f"file {name!r} is a symlink")
    real_folder = folder.resolve()
    real = candidate.resolve()
    if real.parent != real_folder:
        raise UnsafePathError(f"file {name!r} resolves outside {folder}")
    if not real.is_file():
        raise UnsafePathError(f"file {name!r} does not exist in {folder}")
    return real
