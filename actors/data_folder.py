"""Where the host keeps everything, below one data folder (HUTCH_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path


class DataFolder:
    """Mixed into the settings that carry a `data_dir`, so every path below it is named once."""

    data_dir: Path

    @property
    def sessions_dir(self) -> Path:
        """`sessions/<agent group folder>/<session id>/`: one folder per session, mounted whole."""
        return self.data_dir / "sessions"

    def session_folder(self, group_folder: str, session_id: str) -> Path:
        """One session's folder: `sessions/<agent group folder>/<session id>/`."""
        return self.sessions_dir / group_folder / session_id

    @property
    def groups_dir(self) -> Path:
        """`groups/<folder>/CLAUDE.md`: each agent group's workspace and memory (`global` is shared)."""
        return self.data_dir / "groups"

    @property
    def downloads_dir(self) -> Path:
        """`downloads/<channel>/`: files people sent, fetched by a channel, until their
        session moves them into its inbox (same file system: a rename)."""
        return self.data_dir / "downloads"

    @property
    def central_db(self) -> Path:
        return self.data_dir / "hutch.db"

    @property
    def chat_socket(self) -> Path:
        return self.data_dir / "cli.sock"

    @property
    def control_socket(self) -> Path:
        """Where the running host takes control requests (`actors/control/server.py`)."""
        return self.data_dir / "control.sock"

    @property
    def log_file(self) -> Path:
        """`logs/hutch.log`: the host's log, rotated beside itself (`protocol.logs`)."""
        return self.data_dir / "logs" / "hutch.log"


class DataFolderUnusable(RuntimeError):  # noqa: N818 - reads as the fact it reports
    """The data folder cannot be made or written; the message is one line naming it."""

    def __init__(self, folder: Path, reason: str) -> None:
        super().__init__(f"cannot use the data folder {folder.absolute()} (HUTCH_DATA_DIR or --data-dir): {reason}")
        self.folder = folder
        self.reason = reason

    @classmethod
    def from_os_error(cls, folder: Path, exc: OSError) -> DataFolderUnusable:
        return cls(folder, _why(folder, exc))


def make_data_folder(folder: Path) -> None:
    """Create `folder` (and its parents) and check the host may create files in it, or raise
    `DataFolderUnusable`. Before anything else is done with it, so the person reads one line
    about the folder rather than a traceback from whatever first wrote there."""
    try:
        # Not mkdir alone: on a folder that exists, it may answer "permission denied" for
        # the parent, where the check below says what is wrong with the folder itself.
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFolderUnusable.from_os_error(folder, exc) from None
    # Root passes this whatever the modes; a read-only file system refuses even root.
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = os.statvfs(folder).f_flag & os.ST_RDONLY
        reason = "it is on a read-only file system" if read_only else f"uid {os.geteuid()} may not write in it"
        raise DataFolderUnusable(folder, reason)


def _why(folder: Path, exc: OSError) -> str:
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        # mkdir names the folder it could not make, not what stands in its way: find that.
        for path in (folder, *folder.parents):
            if os.path.lexists(path) and not path.is_dir():
                return f"{path.absolute()} is {'a file, ' if path.is_file() else ''}not a folder"
    if isinstance(exc, PermissionError):
        where = f" on {exc.filename}" if exc.filename else ""
        return f"permission denied{where} (the host runs as uid {os.geteuid()})"
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"
