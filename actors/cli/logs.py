"""`hutch logs`: the host's log file (`<data folder>/logs/hutch.log`, `protocol.logs`): its
last lines, or one session's, and with `-f` what the host writes next, across rotation.

A record is its first line (which starts with the time) and the lines after it that do not
(a traceback): it is kept or left out, and counted, whole. The file is followed by looking at
it a few times a second, which is all a person reading along needs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Annotated, Final

import typer

from actors.cli.common import CliError, DataDirOption, HostFlags, load, open_central
from actors.cli.sessions import find
from actors.config import HostConfig
from actors.store import agent_groups
from protocol.logs import RECORD_START, rotated_files, session_pattern

DEFAULT_LINES: Final = 50
# How often a followed file is looked at: new lines show within this.
POLL_S: Final = 0.25

Write = Callable[[str], None]
# A file's device and inode: the same file under whatever name rotation gave it.
FileId = tuple[int, int]
Keep = Callable[[str], bool]


def logs(
    data_dir: DataDirOption = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Then print each line as the host writes it, across rotation, until Ctrl-C."
        ),
    ] = False,
    session: Annotated[
        str | None,
        typer.Option(
            "--session", metavar="ID", help="Only the lines about this session: an id, or a prefix only it has."
        ),
    ] = None,
    lines: Annotated[
        int,
        typer.Option(
            "--lines", "-n", min=0, help="How many of the last lines to print (a traceback counts with its line)."
        ),
    ] = DEFAULT_LINES,
) -> None:
    """The host's log: its last lines, or one session's; with -f, what comes next too."""
    config = load(HostFlags(data_dir=data_dir))
    keep = _everything if session is None else _about(config, session)
    path = config.log_file
    if not follow:
        if not path.exists():
            raise CliError(_missing(path))
        _stdout("".join(last_records(path, lines, keep)))
        return
    follower = Follower(path, keep, _stdout)
    if not path.exists():
        typer.echo(f"hutch: {_missing(path)}; waiting for it (Ctrl-C to stop)", err=True)
    try:
        follower.run(lines, threading.Event())
    except KeyboardInterrupt:
        pass  # how following ends: not a failure
    finally:
        follower.close()


def _missing(path: Path) -> str:
    return f"no log file at {path.absolute()}: the host writes it while it runs (`hutch run`)"


def _stdout(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def _everything(_line: str) -> bool:
    return True


def _about(config: HostConfig, wanted: str) -> Keep:
    """Whether a record's first line is about the session `wanted` names (by its tag)."""
    with open_central(config) as store:
        session = find(store, wanted)
        group = agent_groups.get(store, session.agent_group_id)
    pattern = session_pattern(session.id, None if group is None else group.folder)
    return lambda line: pattern.search(line) is not None


# -- records ----------------------------------------------------------------------------------


class LineFilter:
    """Which lines of a log to print: a record's first line is kept or not by `keep`, and the
    lines after it (a traceback) go with it."""

    def __init__(self, keep: Keep) -> None:
        self._keep = keep
        self._keeping: bool | None = None

    def __call__(self, line: str) -> bool:
        if self._keeping is None or RECORD_START.match(line) is not None:
            self._keeping = self._keep(line)
        return self._keeping


def _kept(text: str, keep: Keep) -> list[str]:
    """The records of `text` that `keep` keeps, each whole."""
    records: list[list[str]] = []
    for line in text.splitlines(keepends=True):
        if not records or RECORD_START.match(line) is not None:
            records.append([line])
        else:
            records[-1].append(line)
    return ["".join(record) for record in records if keep(record[0])]


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def last_records(path: Path, count: int, keep: Keep, current: tuple[str, FileId] | None = None) -> list[str]:
    """The last `count` kept records of the log at `path`, older ones from the rotated files
    beside it when the current one holds too few. `current`: the current file's text and
    identity, when the caller has read it already."""
    if count <= 0:
        return []
    if current is None:
        with path.open("rb") as file:
            current = _decode(file.read()), _file_id(file)
    text, seen = current
    found = _kept(text, keep)
    for older in rotated_files(path)[1:]:
        if len(found) >= count:
            break
        try:
            if _identity(older) == seen:
                continue  # rotated since it was read: the same file under its new name
            text = _decode(older.read_bytes())
        except FileNotFoundError:
            break  # the rotated files are numbered without gaps
        found = _kept(text, keep) + found
    return found[-count:]


def _identity(path: Path) -> FileId | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _file_id(file: IO[bytes]) -> FileId:
    found = os.fstat(file.fileno())
    return found.st_dev, found.st_ino


# -- following --------------------------------------------------------------------------------


class Follower:
    """Prints the kept records of a growing log file as they are written. When the host
    rotates it (renames it aside and starts a new one), what was left in the old file is
    printed, then the new file from its start; a file cut short is read again from its start."""

    def __init__(self, path: Path, keep: Keep, write: Write) -> None:
        self._path = path
        self._write = write
        self._keep = keep
        self._lines = LineFilter(keep)
        self._file: IO[bytes] | None = None
        self._identity: FileId | None = None
        self._partial = b""  # a line the host is still writing

    def run(self, count: int, stop: threading.Event, interval_s: float = POLL_S) -> None:
        """Print the last `count` records, then what comes, until `stop` is set."""
        self.start(count)
        while not stop.wait(interval_s):
            self.poll()

    def start(self, count: int) -> None:
        """Open the file, if it is there yet, and print its last `count` records."""
        if not self._open():
            return
        current = self._read_new()
        for line in current.splitlines():  # so the rest of a record cut by a poll goes with it
            self._lines(line)
        assert self._identity is not None
        tail = "".join(last_records(self._path, count, self._keep, current=(current, self._identity)))
        if tail:
            self._write(tail)

    def poll(self) -> None:
        """One look at the file: print whatever records it completed since the last."""
        if self._file is None:
            if not self._open():
                return
            self._emit(self._read_new())  # a file that appeared: all of it is new
            return
        self._emit(self._read_new())
        now = _identity(self._path)
        if now is not None and now != self._identity:  # rotated: the old file is done with
            self._emit(self._read_new())
            self._emit(self._take_partial())
            self.close()
            if self._open():
                self._emit(self._read_new())
        elif os.fstat(self._file.fileno()).st_size < self._file.tell():  # cut short
            self._file.seek(0)
            self._partial = b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> bool:
        with contextlib.suppress(FileNotFoundError):
            self._file = open(self._path, "rb")  # noqa: SIM115 - held across polls, closed by close()
            self._identity = _file_id(self._file)
            self._partial = b""
            return True
        return False

    def _read_new(self) -> str:
        """The complete lines written since the last read."""
        assert self._file is not None
        data = self._partial + self._file.read()
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        return _decode(data[:end])

    def _take_partial(self) -> str:
        partial, self._partial = self._partial, b""
        return _decode(partial) + "\n" if partial else ""

    def _emit(self, text: str) -> None:
        kept = "".join(line for line in text.splitlines(keepends=True) if self._lines(line))
        if kept:
            self._write(kept)
