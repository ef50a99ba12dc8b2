"""A session folder the test plays host for: it writes inbound.db as the host would and
waits for the container's writes through real watchdog events."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from protocol import inbound, outbound
from protocol.content import InboundContent
from protocol.db import create_session_db, read_transaction, write_transaction
from protocol.filewatch import watch_folder
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, MessageOut, ProcessingAck, Routing
from protocol.schema import INBOUND, OUTBOUND
from protocol.timeutil import now_ts

T = TypeVar("T")

ROUTING = Routing(platform_id="chat-1", channel_type="cli", thread_id=None)


def make_session(root: Path) -> SessionLayout:
    layout = SessionLayout(root)
    layout.create()
    create_session_db(layout.inbound_db, INBOUND)
    create_session_db(layout.outbound_db, OUTBOUND)
    return layout


def write_in(
    layout: SessionLayout,
    content: InboundContent,
    *,
    process_after: str | None = None,
    trigger: bool = True,
    recurrence: str | None = None,
    series_id: str | None = None,
) -> MessageIn:
    with write_transaction(layout.inbound_db) as conn:
        return inbound.insert_message(
            conn,
            message_id=uuid.uuid4().hex,
            content=content,
            timestamp=now_ts(),
            routing=ROUTING,
            process_after=process_after,
            trigger=trigger,
            recurrence=recurrence,
            series_id=series_id,
        )


def replies(layout: SessionLayout) -> list[MessageOut]:
    with read_transaction(layout.outbound_db) as conn:
        return outbound.messages_after(conn, 0)


def acks(layout: SessionLayout) -> dict[str, ProcessingAck]:
    with read_transaction(layout.outbound_db) as conn:
        return outbound.acks(conn)


class FolderEvents:
    """Wakes waiters on every file event in a folder; a slow fallback re-check covers the
    (rare) event that never comes, so a lost event cannot hang a test forever."""

    def __init__(self, folder: Path) -> None:
        self._changed = threading.Condition()
        self._observer = watch_folder(folder, self._notify, recursive=False)

    def _notify(self, _path: Path) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_until(self, check: Callable[[], T | None], timeout: float = 15) -> T:
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                with self._changed:
                    result = check()
                    if result:
                        return result
                    self._changed.wait(1.0)
            result = check()
            if result:
                return result
            raise TimeoutError(f"condition not met within {timeout} s")
        finally:
            timer.cancel()

    def close(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
