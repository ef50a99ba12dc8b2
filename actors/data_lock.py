"""One host per data folder: an exclusive lock taken before anything else is touched.

The lock is `flock` on `<data folder>/hutch.lock`, held for the host's life and released by
the kernel when the process ends however it ends, so a crash never leaves a stale lock. The
file holds the holder's pid, for the message a second host prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "hutch.lock"


class DataFolderBusy(RuntimeError):  # noqa: N818 - reads as the fact it reports
    def __init__(self, folder: Path, pid: str) -> None:
        super().__init__(f"{folder} is in use by another hutch host (pid {pid or 'unknown'})")
        self.folder = folder
        self.pid = pid


class DataFolderLock:
    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self._fd = fd

    @classmethod
    def acquire(cls, folder: Path) -> DataFolderLock:
        """Take the lock or raise `DataFolderBusy` at once; the holder's files are not touched."""
        folder.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a link planted at the lock's place must not make us write elsewhere.
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise DataFolderBusy(folder, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(folder, fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1
