"""Where things live inside one session's folder. Both sides derive every path from here.

    <session>/              the host's: the agent reads it (read-only in a container)
      inbound.db, inbox/, proxy.sock
      sent/<message id>/    the host's copies of the files the agent sent
      out/                  the one place the agent writes
        outbound.db, .heartbeat, outbox/<message id>/

The agent can create, delete or rename entries only in `out/` (and there, not the host's
`outbound.db`), so nothing it does can put a link or a file of its making where the host
writes (docs/ARCHITECTURE.md, "The session folder"). The host never follows a link in `out/`
and checks every file it opens there."""

from __future__ import annotations

import errno
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
SENT_DIR = "sent"
PROXY_SOCKET = "proxy.sock"

# The largest file an agent may send: what the channels people use accept (Telegram's bots
# send up to 50 MB); anything bigger is refused, not read.
MAX_OUTBOX_FILE_BYTES = 50 * 1024 * 1024
# And the files of one message together: each is copied before it is sent (and removed once
# the message is settled), so this bounds what one row costs the host's disk.
MAX_OUTBOX_MESSAGE_BYTES = MAX_OUTBOX_FILE_BYTES
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

    def sent(self, message_id: str) -> Path:
        return self.root / SENT_DIR / check_message_id(message_id)

    @property
    def folders(self) -> tuple[Path, ...]:
        """The folders below the root, each after the one it lies in."""
        return (self.root / INBOX_DIR, self.root / SENT_DIR, self.out, self.out / OUTBOX_DIR)

    def create(self) -> None:
        """Make the folders, following what is there (the host's own set-up does not:
        actors/session/folder.py)."""
        for folder in (self.root, *self.folders):
            folder.mkdir(parents=True, exist_ok=True)

    def take_outbox_file(self, message_id: str, name: str, max_bytes: int = MAX_OUTBOX_FILE_BYTES) -> Path:
        """Copy the file the agent put in `outbox/<message_id>/<name>` into the host's
        `sent/<message_id>/` and return the copy, the only path a channel is given.

        Everything below `out/` is the agent's and could be swapped for a link at any moment,
        so the file is reached one folder at a time without following a link, checked
        through that descriptor (`check_agent_fd`) and copied through it: what is sent is
        what was checked, whatever the agent does afterwards."""
        check_basename(name)
        root = os.open(self.root, _DIR_FLAGS)
        try:
            device = os.fstat(root).st_dev
            fd = _open_below(root, (OUT_DIR, OUTBOX_DIR, check_message_id(message_id), name))
        finally:
            os.close(root)
        try:
            st = check_agent_fd(fd, name, device, min(max_bytes, MAX_OUTBOX_FILE_BYTES))
            return _copy_out(fd, st.st_size, self.sent(message_id), name)
        finally:
            os.close(fd)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_COPY_CHUNK = 1024 * 1024


def check_basename(name: str) -> str:
    if not name or name in {".", ".."} or os.path.basename(name) != name or "\x00" in name:
        raise UnsafePathError(f"file name {name!r} is not a plain basename")
    return name


def _open_below(top: int, parts: tuple[str, ...]) -> int:
    """The last of `parts` below the open folder `top`, each step without following a link."""
    fd = top
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = _NOFOLLOW_FILE if last else _DIR_FLAGS | os.O_NOFOLLOW
            try:
                opened = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                # O_DIRECTORY on a link says ENOTDIR, not ELOOP: ask what is there.
                if exc.errno == errno.ENOTDIR and _is_link(part, fd):
                    exc = OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                raise _refused(f"file {part!r}" if last else f"folder {part!r}", exc) from None
            if fd != top:
                os.close(fd)
            fd = opened
        return fd
    except BaseException:
        if fd != top:
            os.close(fd)
        raise


def _copy_out(source: int, size: int, folder: Path, name: str) -> Path:
    """`size` bytes of `source` into `folder/name`, written beside it first so a reader
    never sees half a file. The agent may still be writing: bytes past the checked size are
    not taken."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    partial = folder / f".{name}.partial"
    with open(partial, "wb") as out:
        left = size
        while left > 0:
            chunk = os.read(source, min(_COPY_CHUNK, left))
            if not chunk:
                break  # the agent shortened it meanwhile: what is left is what it holds
            out.write(chunk)
            left -= len(chunk)
    os.replace(partial, target)
    return target


def check_agent_file(path: Path, device: int, max_bytes: int) -> os.stat_result:
    """What the host will read of a file an agent made (`out/outbound.db`): as
    `open_agent_file` opens it."""
    fd, st = open_agent_file(path, device, max_bytes)
    os.close(fd)
    return st


def open_agent_file(path: Path, device: int, max_bytes: int) -> tuple[int, os.stat_result]:
    """A file an agent made, opened read-only for the host: its folder a real folder on the
    session's device, not a link in its place (O_NOFOLLOW guards only the last step), the
    file opened without following a link (and without blocking on a FIFO), then as
    `check_agent_fd` says. The caller closes the descriptor."""
    try:
        folder = os.lstat(path.parent)
    except OSError as exc:
        raise _refused(f"folder {path.parent.name!r}", exc) from None
    if stat.S_ISLNK(folder.st_mode):
        raise UnsafePathError(f"folder {path.parent.name!r} is a symlink; links are never followed")
    if not stat.S_ISDIR(folder.st_mode) or folder.st_dev != device:
        raise UnsafePathError(f"folder {path.parent.name!r} is not a folder of the session's")
    try:
        fd = os.open(path, _NOFOLLOW_FILE)
    except OSError as exc:
        raise _refused(f"file {path.name!r}", exc) from None
    try:
        return fd, check_agent_fd(fd, path.name, device, max_bytes)
    except BaseException:
        os.close(fd)
        raise


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refused(what: str, exc: OSError) -> UnsafePathError:
    if exc.errno == errno.ELOOP:  # what O_NOFOLLOW says of a link
        return UnsafePathError(f"{what} is a symlink; links are never followed")
    return UnsafePathError(f"{what} cannot be opened safely: {exc.strerror}")


def check_agent_fd(fd: int, name: str, device: int, max_bytes: int) -> os.stat_result:
    """An open file the agent made must be a regular file with one link (a hard link to a
    host file would be that file), on the session folder's device, within `max_bytes`."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"file {name!r} is not a regular file")
    if st.st_nlink != 1:
        raise UnsafePathError(f"file {name!r} has {st.st_nlink} links; only a file of its own is taken")
    if st.st_dev != device:
        raise UnsafePathError(f"file {name!r} is on another file system than its session")
    if st.st_size > max_bytes:
        raise UnsafePathError(f"file {name!r} is {st.st_size} bytes, more than {max_bytes}")
    return st


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
