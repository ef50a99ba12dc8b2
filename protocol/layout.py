"""Where things live inside one session's folder. Both sides derive every path from here.

    <session>/              the host's: the agent reads it (read-only in a container)
      inbound.db, inbox/, proxy.sock
      out/                  the agent's: the one place it writes
        outbound.db, .heartbeat, outbox/<message id>/

The agent can create, delete or rename entries only in `out/`, so nothing it does can put a
link or a file of its making where the host writes (docs/ARCHITECTURE.md, "The session
folder"). The host never follows a link in `out/` and checks every file it opens there."""

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
OUT_DIR = "out"
PROXY_SOCKET = "proxy.sock"

# The largest file an agent may send: what the channels people use accept (Telegram's bots
# send up to 50 MB); anything bigger is refused, not read.
MAX_OUTBOX_FILE_BYTES = 50 * 1024 * 1024
# outbound.db past this is not read: an agent filling its disk must not fill the host's memory.
MAX_OUTBOUND_DB_BYTES = 1024 * 1024 * 1024

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
    def out(self) -> Path:
        """The one folder the agent writes in."""
        return self.root / OUT_DIR

    @property
    def outbound_db(self) -> Path:
        return self.out / OUTBOUND_DB

    @property
    def heartbeat(self) -> Path:
        return self.out / HEARTBEAT

    @property
    def proxy_socket(self) -> Path:
        return self.root / PROXY_SOCKET

    def inbox(self, message_id: str) -> Path:
        return self.root / INBOX_DIR / check_message_id(message_id)

    def outbox(self, message_id: str) -> Path:
        return self.out / OUTBOX_DIR / check_message_id(message_id)

    def create(self) -> None:
        for folder in (self.root, self.root / INBOX_DIR, self.out, self.out / OUTBOX_DIR):
            folder.mkdir(parents=True, exist_ok=True)

    def outbox_file(self, message_id: str, name: str) -> Path:
        """The real path of a file the container put in `outbox/<message_id>/`.

        Only a plain basename is accepted; the result must be a regular file (not a symlink)
        whose real path stays inside the message's outbox folder.
        """
        path = contained_file(self.outbox(message_id), name)
        # The container owns everything below `out/`, `outbox/` and `outbox/<id>/` too:
        # either could be a symlink to anywhere on the host. Only the root itself is ours.
        if path != self.root.resolve() / OUT_DIR / OUTBOX_DIR / message_id / name:
            raise UnsafePathError(f"file {name!r} of message {message_id!r} is not inside {self.out / OUTBOX_DIR}")
        check_sendable(path, os.stat(self.root).st_dev)
        return path


def check_sendable(path: Path, device: int) -> None:
    """A file an agent wants sent: see `check_agent_file`, within the size channels take."""
    check_agent_file(path, device, MAX_OUTBOX_FILE_BYTES)


def check_agent_file(path: Path, device: int, max_bytes: int) -> os.stat_result:
    """What the host will read of a file an agent made: opened without following a link (and
    without blocking on a FIFO), it must be a regular file with one link (a hard link to a
    host file would be that file), on the session folder's device, within `max_bytes`."""
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
        raise UnsafePathError(f"file {path.name!r} has {st.st_nlink} links; only a file of its own is taken")
    if st.st_dev != device:
        raise UnsafePathError(f"file {path.name!r} is on another file system than its session")
    if st.st_size > max_bytes:
        raise UnsafePathError(f"file {path.name!r} is {st.st_size} bytes, more than {max_bytes}")
    return st


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


def move_into_out(layout: SessionLayout) -> list[str]:
    """Bring a session folder of the earlier layout (the agent's files beside the host's) to
    this one: its outbound.db, journal, heartbeat and outbox move into `out/`. Entries are
    renamed as they are (a link stays a link, never followed); returns what moved."""
    moved: list[str] = []
    if not os.path.lexists(layout.root / OUTBOUND_DB) or os.path.lexists(layout.out):
        return moved
    layout.out.mkdir()
    for name in (OUTBOUND_DB, f"{OUTBOUND_DB}-journal", HEARTBEAT, OUTBOX_DIR):
        if os.path.lexists(layout.root / name):
            os.rename(layout.root / name, layout.out / name)
            moved.append(name)
    return moved
