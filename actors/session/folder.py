"""Setting up one session's folder before its agent may run: the layout, the two DBs, and
who owns what (docs/ARCHITECTURE.md, "The session folder" and "Who an agent runs as").

The root and `inbox/` are the host's and shared read-only with the agent's group; `out/` is
the host's, writable by the group and sticky; the outbox and the group's workspace are the
agent's. The host makes `outbound.db` so that readers never meet a file without tables and
keeps it: the agent is its only writer, through its group, but cannot remove, rename or
replace it, so the file the host checks is the file SQLite opens.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

from actors.ownership import SHARED_PASS, SHARED_STICKY, give_entries, give_folder, share_file, share_with
from actors.runtime.base import AgentUser
from protocol.db import create_session_db
from protocol.layout import INBOX_DIR, OUTBOUND_DB, OUTBOX_DIR, SENT_DIR, SessionLayout, UnsafePathError, move_into_out
from protocol.schema import INBOUND, OUTBOUND

log = logging.getLogger("hutch.session")

# Built in the host's part of the folder, then renamed into `out/`: nothing of the agent's
# can be in its way while it is made.
_NEW_OUTBOUND = ".outbound.db.new"


def prepare_session_folder(layout: SessionLayout, agent_dir: Path, user: AgentUser | None) -> int:
    """Make the session's folders and DBs, owned as the layout says; returns the folder's
    device (every file the host reads of the agent's must be on it)."""
    move_into_out(layout)  # a session folder of the earlier layout
    # Above the root the path is the host's own (it may go through a link: a data folder
    # moved to another disk); below it, every folder is made one level at a time.
    layout.root.mkdir(parents=True, exist_ok=True)
    for folder in layout.folders:
        _ensure_folder(folder)
    share_with(layout.root.parent, user, SHARED_PASS)
    share_with(layout.root, user)
    share_with(layout.root / INBOX_DIR, user)
    share_with(layout.root / SENT_DIR, user)
    share_with(layout.out, user, SHARED_STICKY)
    give_folder(layout.out / OUTBOX_DIR, user)
    give_entries(layout.out, user, keep=frozenset({OUTBOUND_DB}))
    agent_dir.mkdir(parents=True, exist_ok=True)
    give_folder(agent_dir, user)
    _check_host_file(layout.inbound_db)
    create_session_db(layout.inbound_db, INBOUND)
    _keep_outbound(layout, user)
    return os.stat(layout.root).st_dev


def _ensure_folder(folder: Path) -> None:
    """`folder` as a real folder: made if missing; a link or a file in its place (an agent's
    doing) is moved aside, never followed."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        folder.mkdir()
        return
    if stat.S_ISDIR(st.st_mode):
        return
    _move_aside(folder, "it is not a folder")
    folder.mkdir()


def move_aside_heartbeat(layout: SessionLayout) -> None:
    """No heartbeat before an agent starts (a stale one would make it look alive): a file or
    link is removed, anything else (a folder an agent made) moved aside."""
    try:
        os.unlink(layout.heartbeat)
    except FileNotFoundError:
        return
    except (IsADirectoryError, PermissionError):  # unlink() of a folder: EISDIR, or EPERM
        _move_aside(layout.heartbeat, "it is a folder")


def _move_aside(path: Path, why: str) -> None:
    aside = path.with_name(f"{path.name}.refused-{time.time_ns()}")
    os.rename(path, aside)
    log.warning("%s: %s; moved it to %s", path, why, aside.name)


def _keep_outbound(layout: SessionLayout, user: AgentUser | None) -> None:
    """`outbound.db` in place, the host's, the group's to write. What is in its place and is
    not a plain file of one link was put there by an agent (of an earlier layout, or run as
    another uid): it is moved aside, not followed, and a new file made."""
    if os.path.lexists(layout.outbound_db):
        try:
            share_file(layout.outbound_db, user)
            return
        except OSError as exc:
            aside = layout.out / f"{OUTBOUND_DB}.refused-{time.time_ns()}"
            os.rename(layout.outbound_db, aside)
            log.warning(
                "%s: %s; moved it to %s and made a new one", layout.outbound_db, exc.strerror or exc, aside.name
            )
    new = layout.root / _NEW_OUTBOUND
    new.unlink(missing_ok=True)  # a host killed while making it
    create_session_db(new, OUTBOUND)
    share_file(new, user)
    os.rename(new, layout.outbound_db)


def _check_host_file(path: Path) -> None:
    """The host's own DB must be a plain file: a link there (left by an agent of the earlier
    layout, which could write the whole folder) would be followed by SQLite."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{path} is not a regular file; move it away to let the session start")
