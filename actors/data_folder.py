"""Where the host keeps everything, below one data folder (HUTCH_DATA_DIR)."""

from __future__ import annotations

from pathlib import Path


class DataFolder:
    """Mixed into the settings that carry a `data_dir`, so every path below it is named once."""

    data_dir: Path

    @property
    def sessions_dir(self) -> Path:
        """`sessions/<agent group folder>/<session id>/`: one folder per session, mounted whole."""
        return self.data_dir / "sessions"

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
        return self.data_dir / "control.sock"
