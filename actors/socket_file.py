"""The file of a listening Unix socket: made ready before bind, removed only if still ours.

Both of the host's socket servers (the local chat, and the credential proxy's socket in each
session folder) follow the same rules: the path is looked at with `lstat`, never followed; a
folder in the way is refused; a socket file a crashed process left behind is replaced. They
differ only in whose place it is. The chat socket sits in the host's data folder, where
anything else is somebody's file and a live socket another host's: both are refused. The
proxy socket sits in a session folder the agent can write, where whatever is in the way is
the agent's doing and is replaced.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from pathlib import Path

log = logging.getLogger("hutch.sockets")

Identity = tuple[int, int]


class SocketPathError(OSError):
    """Something is in the way of a socket file that may not be replaced."""


def clear_for_bind(path: Path, *, replace_foreign: bool) -> None:
    """Make `path` free for bind(). With `replace_foreign`, anything but a folder is removed;
    without, only a socket nobody listens on."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise SocketPathError(f"a folder is in the way of the socket {path}")
    if not replace_foreign:
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketPathError(f"{path} exists and is not a socket; refusing to replace it")
        if _someone_listens(path):
            raise SocketPathError(f"another process already listens on {path}")
    log.info("removing a stale file at the socket path %s", path)
    path.unlink(missing_ok=True)


def identity(path: Path) -> Identity | None:
    """What names this very file (device and inode), None when there is none."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def remove_if_ours(path: Path, ours: Identity | None) -> None:
    """Remove the socket file only if it is still the one we bound: another process (or a
    later start of ours) may have replaced it meanwhile."""
    if ours is not None and identity(path) == ours:
        path.unlink(missing_ok=True)


def _someone_listens(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True
