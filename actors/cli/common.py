"""What the `hutch` subcommands share: the host's own configuration, the central DB as the
host left it, whether the host runs, and what waits in a session's `inbound.db`.

The configuration is `actors.config.load_config`'s, fed the flags the person gave, so a
subcommand sees exactly what `hutch run` with the same flags would (environment, `.env`,
flags, and the same checks). Nothing here creates a file: a command pointed at the wrong
folder says so instead of leaving an empty data folder behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from actors.config import ConfigError, HostConfig, load_config
from actors.data_lock import LOCK_FILE
from actors.store.agent_groups import AgentGroup
from actors.store.db import MIGRATIONS, Store, current_version, open_store
from actors.store.sessions import Session
from protocol.db import read_transaction
from protocol.layout import SessionLayout
from protocol.timeutil import parse_ts

_DEFAULTS = HostConfig()


class CliError(Exception):
    """A failure the person can act on: printed as one line, never as a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def one_line(exc: BaseException) -> str:
    """The first line of an exception's text (an engine's or SQLite's may run on)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the host's flags ------------------------------------------------------------------------


class Runtime(StrEnum):
    """`actors.config.RUNTIMES` (a test keeps the two equal): click needs the choices up
    front, or argparse would answer a wrong one with a usage screen instead of one line."""

    PROCESS = "process"
    DOCKER = "docker"
    AUTO = "auto"


class Provider(StrEnum):
    """`actors.config.PROVIDERS`, for the same reason."""

    CLAUDE = "claude"
    MOCK = "mock"


def _env_default(variable: str, value: object) -> str:
    return f"${variable}, else {value}"


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        metavar="PATH",
        help="The data folder: hutch.db, sessions/, groups/, cli.sock.",
        show_default=_env_default("HUTCH_DATA_DIR", _DEFAULTS.data_dir),
    ),
]
RuntimeOption = Annotated[
    Runtime | None,
    typer.Option(help="How agents run.", show_default=_env_default("HUTCH_RUNTIME", _DEFAULTS.runtime)),
]
ProviderOption = Annotated[
    Provider | None,
    typer.Option(help="The model provider.", show_default=_env_default("HUTCH_PROVIDER", _DEFAULTS.provider)),
]
ModelOption = Annotated[
    str | None,
    typer.Option(help="The model the agents use.", show_default=_env_default("HUTCH_MODEL", _DEFAULTS.model)),
]
IdleTimeoutOption = Annotated[
    float | None,
    typer.Option(
        metavar="SECONDS",
        help="Seconds without work before an agent is stopped.",
        show_default=_env_default("HUTCH_IDLE_TIMEOUT", f"{_DEFAULTS.idle_timeout_s:g}"),
    ),
]
MaxContainersOption = Annotated[
    int | None,
    typer.Option(
        help="Agents running at once.",
        show_default=_env_default("HUTCH_MAX_CONTAINERS", _DEFAULTS.max_containers),
    ),
]
TimezoneOption = Annotated[
    str | None,
    typer.Option(help="The users' time zone.", show_default=_env_default("TZ", _DEFAULTS.timezone)),
]
LogLevelOption = Annotated[
    str | None,
    typer.Option(
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL.",
        show_default=_env_default("HUTCH_LOG_LEVEL", _DEFAULTS.log_level),
    ),
]


@dataclass(frozen=True)
class HostFlags:
    """The flags of `python -m actors.main`, as the person gave them (None: not given)."""

    data_dir: Path | None = None
    runtime: Runtime | None = None
    provider: Provider | None = None
    model: str | None = None
    idle_timeout: float | None = None
    max_containers: int | None = None
    timezone: str | None = None
    log_level: str | None = None

    def argv(self) -> list[str]:
        """The command line `actors.config.load_config` (and so `actors.main.main`) parses."""
        given: dict[str, object] = {
            "--data-dir": self.data_dir,
            "--runtime": None if self.runtime is None else self.runtime.value,
            "--provider": None if self.provider is None else self.provider.value,
            "--model": self.model,
            "--idle-timeout": self.idle_timeout,
            "--max-containers": self.max_containers,
            "--timezone": self.timezone,
            "--log-level": self.log_level,
        }
        # `--flag=value`: a value that starts with a dash is not taken for a flag of its own.
        return [f"{flag}={value}" for flag, value in given.items() if value is not None]


def load(flags: HostFlags) -> HostConfig:
    try:
        return load_config(flags.argv())
    except ConfigError as exc:
        raise CliError(str(exc), exit_code=2) from None  # 2, as the host exits on a bad setting


# -- the data folder and the central DB --------------------------------------------------------


def require_data_folder(config: HostConfig) -> None:
    if not config.data_dir.is_dir():
        raise CliError(
            f"no data folder at {config.data_dir.absolute()} (HUTCH_DATA_DIR or --data-dir names it; "
            "`hutch run` makes it)"
        )


def schema_gap(config: HostConfig) -> str | None:
    """Why this code should not use the central DB as it is, or None when it can. The host
    migrates at start; a command never does, so it cannot change a schema under a running
    host of another version."""
    path = config.central_db
    if not path.is_file():
        return f"no central DB at {path.absolute()}: the host has not run with this data folder yet (`hutch run`)"
    try:
        with read_transaction(path) as conn:
            version = current_version(conn)
    except sqlite3.Error as exc:
        return f"{path.absolute()} cannot be read as a hutch central DB ({one_line(exc)})"
    known = MIGRATIONS[-1].version
    if version < known:
        return (
            f"{path.absolute()} is at schema version {version}, this hutch's is {known}: "
            "start the host once to update it"
        )
    if version > known:
        return f"{path.absolute()} is at schema version {version}, newer than this hutch's {known}: upgrade hutch"
    return None


def open_central(config: HostConfig) -> Store:
    """The host's central DB, as it is; CliError when there is none or it is not at this
    code's schema version. Close it (it is a context manager)."""
    require_data_folder(config)
    gap = schema_gap(config)
    if gap is not None:
        raise CliError(gap)
    # At this code's version, open_store changes nothing: no migration, WAL already on.
    return open_store(config.central_db)


@dataclass(frozen=True)
class HostState:
    up: bool
    pid: str | None = None


def host_state(data_dir: Path) -> HostState:
    """Up while a host holds the data folder's flock (`actors.data_lock`), with the pid it
    wrote there. Looked at through an open of our own, read-only, creating nothing."""
    try:
        # O_NONBLOCK: a FIFO planted at the lock's place must not hang the command.
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return HostState(up=False)
    try:
        try:
            # Shared, not exclusive: two `hutch status` at once must not see each other as
            # the host; a host's exclusive lock still refuses it.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return HostState(up=True, pid=pid or None)
        return HostState(up=False)
    finally:
        os.close(fd)  # closing drops our shared lock at once


# -- sessions ------------------------------------------------------------------------------------


# As the host's logs name a session.
SHORT_ID = 8


def session_folder(config: HostConfig, group: AgentGroup, session: Session) -> Path:
    return config.session_folder(group.folder, session.id)


@dataclass(frozen=True)
class Queue:
    """A session's `messages_in` rows by status; of the pending ones, how many are due now
    (the others wait for their `process_after`: scheduled tasks, retries)."""

    counts: Mapping[str, int] = field(default_factory=dict)
    due: int = 0
    error: str | None = None

    @property
    def pending(self) -> int:
        return self.counts.get("pending", 0)

    @property
    def later(self) -> int:
        return self.pending - self.due

    def label(self) -> str:
        if self.error is not None:
            return "?"
        return f"{self.pending} ({self.later} later)" if self.later else str(self.pending)


def read_queue(folder: Path, now: datetime) -> Queue | None:
    """What the session's `inbound.db` holds, read in one read-only snapshot; None when the
    session has no `inbound.db` yet. An unreadable file is reported, not raised: one bad
    session must not hide the others."""
    try:
        with read_transaction(SessionLayout(folder).inbound_db) as conn:
            counts = {
                str(status): int(count)
                for status, count in conn.execute("SELECT status, COUNT(*) FROM messages_in GROUP BY status")
            }
            waits = [row[0] for row in conn.execute("SELECT process_after FROM messages_in WHERE status = 'pending'")]
    except FileNotFoundError:
        return None
    except (sqlite3.Error, OSError) as exc:
        return Queue(error=one_line(exc))
    return Queue(counts=counts, due=sum(1 for wait in waits if _is_due(wait, now)))


def _is_due(process_after: str | None, now: datetime) -> bool:
    if not process_after:
        return True
    try:
        return parse_ts(process_after) <= now
    except ValueError:  # the host writes only good stamps; an odd one is shown as due, not hidden
        return True


# -- output --------------------------------------------------------------------------------------


def console() -> Console:
    # Made per command, so it writes to the sys.stdout of the moment (a test's capture too).
    return Console(highlight=False)


def local_time(stamp: str | None, zone: str) -> str:
    """A stored UTC stamp in the users' time zone (TZ), to the second."""
    if not stamp:
        return "-"
    try:
        moment = parse_ts(stamp)
    except ValueError:
        return stamp
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


def ago(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return ""
    try:
        seconds = (now - parse_ts(stamp)).total_seconds()
    except ValueError:
        return ""
    return age(seconds)


def age(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def when(stamp: str | None, zone: str, now: datetime) -> str:
    shown = local_time(stamp, zone)
    since = ago(stamp, now)
    return f"{shown} ({since})" if since else shown


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def is_broken_pipe(exc: OSError) -> bool:
    """A reader that went away (`hutch sessions list | head`) is not an error to report."""
    return exc.errno == errno.EPIPE
