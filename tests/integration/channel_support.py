"""Shared by the end-to-end tests of the whole host with a real channel adapter (Telegram,
Discord) against its fake server: starting the host, reading what it stored, waiting for
log lines and for the state on disk."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from actors.config import HostConfig
from actors.host import Host, session_settings, start_host
from actors.store import agent_groups, messaging_groups, sessions
from actors.store.sessions import Session
from protocol import inbound, outbound
from protocol.content import ChatOut
from protocol.db import read_transaction
from protocol.layout import SessionLayout
from protocol.rows import Delivery, MessageIn, MessageOut
from tests.fakes.session import FolderEvents

T = TypeVar("T")

# Long enough for an agent's cold start on a busy two-core machine; waits end at once when met.
WAIT_S = 20.0


def free_port() -> int:
    """A loopback port nobody listens on now (for a server started later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def host_config(data_dir: Path, **channel: Any) -> HostConfig:
    """The process runtime and the mock provider; no sweep (events only), a long idle time."""
    return HostConfig(
        data_dir=data_dir,
        runtime="process",
        provider="mock",
        idle_timeout_s=60,
        sweep_interval_s=3600,
        **channel,
    )


@contextmanager
def running_host(
    config: HostConfig, *, delivery_retry_base_s: float = 0.05, delivery_max_backoff_s: float = 60.0
) -> Iterator[Host]:
    """The whole host as `actors.main` starts it (its channels built from `config`), with
    quick retries, stopped however the test ends."""
    settings = dataclasses.replace(
        session_settings(config, "mock"),
        retry_base_s=0.2,
        stop_timeout_s=5,
        delivery_retry_base_s=delivery_retry_base_s,
        delivery_max_backoff_s=delivery_max_backoff_s,
    )
    host = start_host(config, settings=settings)
    try:
        yield host
    finally:
        host.stop()


# -- what the host stored ------------------------------------------------------------------------


def session_of_chat(host: Host, channel_type: str, platform_id: str) -> Session | None:
    chat = messaging_groups.get_by_platform(host.store, channel_type, platform_id)
    if chat is None:
        return None
    found = [s for s in sessions.list_all(host.store) if s.messaging_group_id == chat.id]
    assert len(found) <= 1, found
    return found[0] if found else None


def layout_of(host: Host, session: Session) -> SessionLayout:
    group = agent_groups.get(host.store, session.agent_group_id)
    assert group is not None
    return SessionLayout(host.config.sessions_dir / group.folder / session.id)


def chat_layout(host: Host, channel_type: str, platform_id: str) -> SessionLayout:
    session = session_of_chat(host, channel_type, platform_id)
    assert session is not None, f"no session for {channel_type}/{platform_id}"
    return layout_of(host, session)


def inbound_rows(layout: SessionLayout) -> list[MessageIn]:
    with read_transaction(layout.inbound_db) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM messages_in ORDER BY seq")]
        return [row for row in (inbound.get_message(conn, i) for i in ids) if row is not None]


def every_inbound_row(host: Host) -> list[MessageIn]:
    """The rows of every inbound.db on disk, whichever session (known or not) it belongs to."""
    return [
        row
        for db in sorted(host.config.sessions_dir.glob("*/*/inbound.db"))
        for row in inbound_rows(SessionLayout(db.parent))
    ]


def outbound_rows(layout: SessionLayout) -> list[MessageOut]:
    with read_transaction(layout.outbound_db) as conn:
        return outbound.messages_after(conn, 0)


def reply_texts(layout: SessionLayout) -> list[str]:
    """The agent's chat replies, oldest first."""
    return [row.decoded().text for row in outbound_rows(layout) if row.kind == "chat"]


def deliveries(layout: SessionLayout) -> dict[str, Delivery]:
    with read_transaction(layout.inbound_db) as conn:
        return inbound.deliveries(conn)


def delivered(layout: SessionLayout, message_out_id: str) -> Delivery | None:
    """The row's delivery once it is recorded as delivered."""
    found = deliveries(layout).get(message_out_id)
    return found if found is not None and found.status == "delivered" else None


def reply_rows(layout: SessionLayout, starting: str) -> list[MessageOut]:
    return [
        row
        for row in outbound_rows(layout)
        if row.kind == "chat" and isinstance(row.decoded(), ChatOut) and row.decoded().text.startswith(starting)
    ]


def wait_on_folder(folder: Path, check: Callable[[], T | None], timeout: float = WAIT_S) -> T:
    """`check()` once it holds, re-checked on every file event in `folder` (and each second)."""
    events = FolderEvents(folder)
    try:
        return events.wait_until(check, timeout)
    finally:
        events.close()


def poll_until(check: Callable[[], T | None], timeout: float = WAIT_S, every: float = 0.02) -> T:
    """For state with no event to wait on: bounded, short polls."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        threading.Event().wait(every)


# -- log lines -----------------------------------------------------------------------------------


class LogLines(logging.Handler):
    """Every line of a logger (at INFO and above), and a wait for the one containing a text."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._changed = threading.Condition()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.lines.append(record.getMessage())
            self._changed.notify_all()

    def matching(self, needle: str) -> list[str]:
        with self._changed:
            return [line for line in self.lines if needle in line]

    def wait_for(self, needle: str, count: int = 1, timeout: float = WAIT_S) -> list[str]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.matching(needle)) >= count, timeout):
                raise AssertionError(f"expected {count} line(s) with {needle!r}; got: {self.lines}")
            return self.matching(needle)


@contextmanager
def log_lines(name: str = "hutch") -> Iterator[LogLines]:
    """Collect the lines of logger `name` (and those below it) at INFO and above."""
    logger = logging.getLogger(name)
    handler = LogLines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
