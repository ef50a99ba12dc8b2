"""Who owns what under the data folder, so that agents of one group can reach their own
folders and nothing else (docs/ARCHITECTURE.md, "Who an agent runs as").

Four kinds of folder:

- the host's alone (the data folder's top, `hutch.db`): nobody else reads them;
- shared read-only with one group (a session folder's root, `inbox/`): the host's uid, the
  group's gid, `0750`; the host writes, that group's agents read;
- shared writable with one group, sticky (a session's `out/`): the host's uid, the group's
  gid, `1770`; the agent makes its files there, and can remove or rename only its own, so a
  file the host keeps there (`outbound.db`) is never replaced behind the host's back;
- the group's own (the outbox, the group's workspace): its uid and gid, `0700`.

Ownership changes only when the host runs as root, since only root can give a file away.
Every change works on file descriptors opened without following links: the folders given
to an agent are its to fill with links, hard links and mount-looking traps, and none of them
may make the host change a file outside them."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Final

from actors.runtime.base import AgentUser

log = logging.getLogger("hutch.ownership")

HOST_ONLY: Final = 0o700
# Agents (other uids) may pass through to the folders below that are theirs, not list it.
PASS_THROUGH: Final = 0o711
SHARED_READ: Final = 0o750
# A group's sessions folder: its agents may pass, not list the other sessions' ids.
SHARED_PASS: Final = 0o710
# The group writes; the sticky bit keeps each uid's entries its own to remove or rename.
SHARED_STICKY: Final = 0o1770
AGENT_OWN: Final = 0o700
EVERYONE_READS: Final = 0o755

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotAFolderError(OSError):
    """What should be a folder is a link or a file: someone put it there."""


def can_give_away() -> bool:
    return os.geteuid() == 0


def set_mode(folder: Path, mode: int) -> None:
    """`folder`'s mode, never through a link."""
    fd = _open_dir(folder)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def share_with(folder: Path, user: AgentUser | None, mode: int = SHARED_READ) -> None:
    """A folder the host writes and `user`'s group reads: the host's uid, the group's gid."""
    fd = _open_dir(folder)
    try:
        if user is not None and can_give_away():
            os.fchown(fd, os.geteuid(), user.gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def give_folder(folder: Path, user: AgentUser | None, mode: int = AGENT_OWN) -> None:
    """`folder` and what is in it become `user`'s. Walked only when the folder itself is not
    `user`'s yet (a new uid range, a folder made by the host or by an agent run as root),
    and then the folder itself is changed last, so a walk cut short is done again."""
    fd = _open_dir(folder)
    try:
        if user is not None and can_give_away():
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != (user.uid, user.gid):
                skipped = _give_below(fd, st.st_dev, user)
                if skipped:
                    log.warning("%s: left %d entries as they were: %s", folder, len(skipped), ", ".join(skipped[:5]))
                os.fchown(fd, user.uid, user.gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def share_file(path: Path, user: AgentUser | None, mode: int = 0o660) -> None:
    """A file the host keeps and `user`'s group writes (`outbound.db` in the sticky `out/`).
    Only a plain file of one link, never through a link: a hard link to a host file would
    hand that file to the group."""
    fd = os.open(path, _FILE_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise NotAFolderError(0, f"{path} is not a plain file of one link")
        if user is not None and can_give_away():
            os.fchown(fd, os.geteuid(), user.gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def give_entries(folder: Path, user: AgentUser | None, keep: frozenset[str]) -> None:
    """Every entry of `folder` but those named in `keep` becomes `user`'s (what an agent run
    as another uid left there): folders with what is in them, links as links, files of one
    link only."""
    if user is None or not can_give_away():
        return
    fd = _open_dir(folder)
    try:
        device = os.fstat(fd).st_dev
        for name in os.listdir(fd):
            if name in keep:
                continue
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if (st.st_uid, st.st_gid) == (user.uid, user.gid) or st.st_dev != device:
                continue
            if stat.S_ISDIR(st.st_mode):
                give_folder(folder / name, user)
            elif st.st_nlink == 1 or stat.S_ISLNK(st.st_mode):
                os.chown(name, user.uid, user.gid, dir_fd=fd, follow_symlinks=False)
            else:
                log.warning("%s: left %s as it was: it has %d links", folder, name, st.st_nlink)
    finally:
        os.close(fd)


def _give_below(top: int, device: int, user: AgentUser) -> list[str]:
    """Chown everything below the open folder `top`; what must not be changed is skipped and
    named: a file with more than one link (a hard link to a host file would give that file
    away) and anything on another file system. fwalk neither follows links nor descends into
    a folder swapped for a link while it walks."""
    skipped: list[str] = []
    for dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
        for name in dirnames + filenames:
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if st.st_dev != device or (not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1):
                    skipped.append(os.path.join(dirpath, name))
                    continue
                os.chown(name, user.uid, user.gid, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # a running agent of the group removed it meanwhile
        # Not into another file system: its folders are not the group's to own.
        dirnames[:] = [d for d in dirnames if _same_device(d, dirfd, device)]
    return skipped


def _same_device(name: str, dirfd: int, device: int) -> bool:
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_dev == device
    except FileNotFoundError:
        return False


def _open_dir(folder: Path) -> int:
    try:
        return os.open(folder, _DIR_FLAGS)
    except OSError as exc:
        if os.path.islink(folder) or (os.path.lexists(folder) and not os.path.isdir(folder)):
            raise NotAFolderError(exc.errno, f"{folder} is not a folder (a link or a file is in its place)") from None
        raise


def secure_data_folder(data_dir: Path, central_db: Path, subfolders: tuple[Path, ...], shared: bool) -> None:
    """The data folder's own modes: agents of other uids (`shared`) may pass through it to
    their folders but list nothing; otherwise nobody but the host enters. The central DB and
    its WAL files are the host's alone either way."""
    mode = PASS_THROUGH if shared else HOST_ONLY
    for folder in (data_dir, *subfolders):
        folder.mkdir(parents=True, exist_ok=True)
        set_mode(folder, mode)
    for path in (central_db, Path(f"{central_db}-wal"), Path(f"{central_db}-shm"), Path(f"{central_db}-journal")):
        if os.path.lexists(path) and not os.path.islink(path):
            os.chmod(path, 0o600)
