"""Logging, set up the same way by the host and by every agent: one line per record, on
stderr, and for the host also in a rotating file in its data folder.

An agent's lines are read by the host, which logs each one again under its own time, at the
level the agent gave it, with the session's tag (`AgentOutput`): so an agent's own format
carries no time of its own, and its lines do not show two.

Every host line about a session carries the session's tag, `[<agent group>/<first 8 of the
session id>]`, right after the logger's name. Code that knows its session writes the tag
itself (`session_tag`); a thread that works for one session only (a SessionActor's: pykka
runs each actor's start, messages and stop in one thread of its own) declares it once
(`tag_thread`), and the host's formatter adds the tag to every line that thread logs, even
from code that knows nothing of sessions. `hutch logs --session` finds a session's lines by
it (`session_pattern`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import stat
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Final

HOST_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(session_tag)s%(message)s"
AGENT_FORMAT: Final = "%(levelname)s %(name)s: %(message)s"
# How the first line of each of the host's records starts (asctime's default format); the
# lines in between belong to the record above them (a traceback, a message on many lines).
RECORD_START: Final = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")

# The host's log file: at most this many bytes before it is rotated, and this many old ones
# kept beside it (hutch.log.1 the newest).
LOG_FILE_BYTES: Final = 10 * 1024 * 1024
LOG_FILE_BACKUPS: Final = 5
# Logs hold what people wrote: the host's user alone reads them.
_FILE_MODE: Final = 0o600
_FOLDER_MODE: Final = 0o700

# As much of a session id as the host's lines show.
SHORT_ID: Final = 8
# Tags named so far, so a line that knows only the session id names the session as its own
# lines do; bounded, and a forgotten session is still named by its id.
_KNOWN_TAGS_MAX: Final = 4096
_known_tags: OrderedDict[str, str] = OrderedDict()
_known_lock = threading.Lock()
_thread = threading.local()

_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# An agent's line as AGENT_FORMAT writes it: its level, then the logger's name.
_AGENT_LINE: Final = re.compile(rf"({'|'.join(_LEVELS)}) (?=\S+: )")


def level_name(level: str) -> str:
    """The standard level that `level` names, in any case (`debug` -> `DEBUG`); ValueError
    for anything else."""
    name = level.strip().upper()
    if not isinstance(logging.getLevelNamesMapping().get(name), int):
        raise ValueError(f"{level!r} is not a log level: expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return name


# -- the session's tag -------------------------------------------------------------------------


def session_tag(session_id: str, agent_group: str | None = None) -> str:
    """`[main/1a2b3c4d]`: how every host line about a session names it. Without
    `agent_group`, the tag this process last made for the session, else `[1a2b3c4d]`."""
    short = session_id[:SHORT_ID]
    if agent_group is None:
        with _known_lock:
            return _known_tags.get(session_id) or f"[{short}]"
    tag = f"[{agent_group}/{short}]"
    with _known_lock:
        _known_tags[session_id] = tag
        _known_tags.move_to_end(session_id)
        while len(_known_tags) > _KNOWN_TAGS_MAX:
            _known_tags.popitem(last=False)
    return tag


def session_pattern(session_id: str, agent_group: str | None = None) -> re.Pattern[str]:
    """What finds the session's tag in a line, with or without its agent group."""
    group = r"[^\]\s/]+" if agent_group is None else re.escape(agent_group)
    short = re.escape(session_id[:SHORT_ID])
    return re.compile(rf"\[(?:{group}/)?{short}\]")


def tag_thread(tag: str | None) -> None:
    """Every line this thread logs from now on is about the session tagged `tag` (None: about
    none). For a thread that serves one session for its whole life."""
    _thread.tag = tag


def thread_tag() -> str | None:
    """The tag of the session this thread works for now, if any."""
    tag: str | None = getattr(_thread, "tag", None)
    return tag


@contextlib.contextmanager
def session_context(tag: str) -> Iterator[None]:
    """Every line this thread logs inside the block is about the session tagged `tag`: for a
    thread that serves many sessions, one piece of work at a time."""
    before = thread_tag()
    tag_thread(tag)
    try:
        yield
    finally:
        tag_thread(before)


class SessionFormatter(logging.Formatter):
    """`log_format`, with `%(session_tag)s` the tag of the session the line is about (and a
    space) or nothing: the record's own `session` (`extra={"session": tag}`), else the tag of
    the thread that logs it. A message that starts with its tag already is not tagged twice.

    The thread's tag is read while formatting: the handlers this module installs format in
    the thread that logs."""

    def __init__(self, log_format: str) -> None:
        super().__init__(log_format, defaults={"session_tag": ""})

    def format(self, record: logging.LogRecord) -> str:
        tag = record.__dict__.get("session") or thread_tag()
        record.session_tag = f"{tag} " if tag and not record.getMessage().startswith(tag) else ""
        return super().format(record)


# -- an agent's lines, on the host ---------------------------------------------------------------

agent_log = logging.getLogger("hutch.agent")


class AgentOutput:
    """One output stream of one agent, logged line by line under `hutch.agent` with the
    session's tag: a line in AGENT_FORMAT at the level it names (without repeating it), any
    other line (a traceback, a program's own output) at the level of the line before it, so
    an agent's error and its traceback are shown, or left out, together."""

    def __init__(self, tag: str) -> None:
        """`tag`: the session's tag, brackets included (`session_tag`)."""
        self._tag = tag
        self._level = logging.INFO

    def line(self, text: str) -> None:
        matched = _AGENT_LINE.match(text)
        if matched is not None:
            self._level = logging.getLevelNamesMapping()[matched.group(1)]
            text = text[matched.end() :]
        agent_log.log(self._level, "%s %s", self._tag, text)


# -- the host's log file ---------------------------------------------------------------------------


class LogFile(RotatingFileHandler):
    """The host's log file, rotated at LOG_FILE_BYTES with LOG_FILE_BACKUPS kept beside it.

    The file is the host's alone (0600, in a folder of its own, 0700) and never reached
    through a link: one planted at its place or the folder's (or a FIFO, a device) is
    refused, not written through. It is opened at the first line logged, not before: a
    second host, which stops at the data folder's lock before it logs anything, leaves the
    first host's folder as it found it. A file that cannot be opened is said once, and the
    host goes on logging to stderr only."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            path,
            maxBytes=LOG_FILE_BYTES,
            backupCount=LOG_FILE_BACKUPS,
            encoding="utf-8",
            errors="backslashreplace",
            delay=True,
        )
        self._refused = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:
            if self._refused:
                return
            try:
                self.stream = self._open()
            except OSError as exc:
                self._refused = True  # first: the line below comes back through this handler
                logging.getLogger("hutch").warning("cannot write the log file %s (%s): logging to stderr only",
                                                   self.baseFilename, exc.strerror or exc)  # fmt: skip
                return
        super().emit(record)

    def _open(self) -> io.TextIOWrapper:
        folder = os.path.dirname(self.baseFilename)
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, _FOLDER_MODE)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(dir_fd, _FOLDER_MODE)  # a folder an older host or a person made looser
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(os.path.basename(self.baseFilename), flags, _FILE_MODE, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
        try:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode) or found.st_nlink != 1:
                raise OSError(f"{self.baseFilename} is not a plain file of its own: not writing the log there")
            os.fchmod(fd, _FILE_MODE)
            os.set_blocking(fd, True)
            return open(fd, "a", encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise


def rotated_files(path: Path) -> list[Path]:
    """The log file and the rotated ones beside it, newest first (whether they exist or not)."""
    return [path, *(path.with_name(f"{path.name}.{n}") for n in range(1, LOG_FILE_BACKUPS + 1))]


# -- setting it up -----------------------------------------------------------------------------------


def setup_logging(level: str, log_format: str, log_file: Path | None = None) -> None:
    """Log records of `level` and above to stderr in `log_format` (HOST_FORMAT or AGENT_FORMAT)
    and, given `log_file` (the host only), to that file too (`LogFile`). Nothing is done when
    the root logger has handlers already (as `logging.basicConfig`)."""
    name = level_name(level)
    root = logging.getLogger()
    if root.handlers:
        return
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(LogFile(log_file))
    formatter = SessionFormatter(log_format)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(name)
    # A library's warnings become records: timed once, and in the file too.
    logging.captureWarnings(True)
    # The channel libraries' HTTP client logs a line per request at INFO (a long poll every
    # 30 s): worth seeing only when something is wrong.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The file watcher's library logs every inotify event at DEBUG: a flood that would bury
    # the host's own lines.
    logging.getLogger("watchdog").setLevel(logging.INFO)
