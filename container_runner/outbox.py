"""OutboxActor: the only code in the container that writes outbound.db (docs/ARCHITECTURE.md, invariant 1).

Everything else *asks* it, so seq assignment is serialised in one thread and two writers
can never race on the next odd number.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from container_runner.lifecycle import Lifecycle, RunnerActor
from container_runner.messages import (
    Ack,
    ClearStaleClaims,
    DeleteState,
    Finish,
    SaveState,
    StageState,
    WriteMessage,
)
from protocol import outbound
from protocol.db import create_session_db, max_seq, read_transaction, write_transaction
from protocol.layout import SessionLayout
from protocol.rows import AckStatus, MessageOut
from protocol.schema import OUTBOUND
from protocol.timeutil import now_ts

log = logging.getLogger(__name__)


class OutboxActor(RunnerActor):
    def __init__(self, layout: SessionLayout, *, lifecycle: Lifecycle | None = None) -> None:
        super().__init__(lifecycle)
        self._layout = layout
        # State told to ride with the next commit (StageState), newest value per key.
        self._staged: dict[str, str] = {}

    def start_up(self) -> None:
        create_session_db(self._layout.outbound_db, OUTBOUND)

    def shut_down(self) -> None:
        if self._staged:  # no further write will carry it: commit it on its own
            with self._transaction():
                pass

    def on_receive(self, message: Any) -> Any:
        match message:
            case WriteMessage():
                highest_inbound = self._highest_inbound_seq()
                with self._transaction() as conn:
                    return self._insert(conn, message, highest_inbound)
            case Ack(message_ids=ids, status=status):
                with self._transaction() as conn:
                    _set_acks(conn, ids, status)
            case Finish():
                return self._finish(message)
            case StageState(key=key, value=value):
                self._staged[key] = value
            case SaveState(key=key, value=value):
                with self._transaction() as conn:
                    outbound.set_state(conn, key, value, now_ts())
            case DeleteState(key=key):
                with self._transaction() as conn:
                    outbound.delete_state(conn, key)
            case ClearStaleClaims():
                return self._clear_stale_claims()
            case _:
                return super().on_receive(message)
        return None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that also carries the staged state, written first so that
        whatever the caller writes for the same key wins."""
        with write_transaction(self._layout.outbound_db) as conn:
            stamp = now_ts()
            for key, value in self._staged.items():
                outbound.set_state(conn, key, value, stamp)
            yield conn
        self._staged.clear()  # only once committed: a failed commit keeps them for the next

    def _highest_inbound_seq(self) -> int:
        """Read for every row we write, before our write transaction begins (to keep that
        one short): a new seq is the next odd number above the max of both tables.

        Not cached by inbound.db's change counter: that saved nothing measurable, and reading
        the header through a descriptor of our own is a trap, as closing it drops every
        POSIX lock this process holds on the file, SQLite's included."""
        try:
            with read_transaction(self._layout.inbound_db) as conn:
                return max_seq(conn, "messages_in")
        except FileNotFoundError:
            return 0

    def _insert(self, conn: sqlite3.Connection, request: WriteMessage, highest_inbound: int) -> MessageOut:
        return outbound.insert_message(
            conn,
            message_id=request.message_id or uuid.uuid4().hex,
            content=request.content,
            timestamp=now_ts(),
            highest_inbound_seq=highest_inbound,
            routing=request.routing,
            in_reply_to=request.in_reply_to,
        )

    def _finish(self, request: Finish) -> MessageOut | None:
        # One commit for the reply, the acks and the staged state: the host sees the answer
        # and the batch done together, and a crash cannot leave one without the other.
        reply = request.reply
        highest_inbound = self._highest_inbound_seq() if reply is not None else 0
        with self._transaction() as conn:
            if request.status == "deferred":
                stamp = now_ts()
                told = [
                    outbound.defer_ack(conn, message_id, request.retry_after or stamp, request.reason or "busy", stamp)
                    for message_id in request.message_ids
                ]
                if told and all(told):
                    reply = None  # each row's person heard why it waits already
            else:
                _set_acks(conn, request.message_ids, request.status)
            written = None if reply is None else self._insert(conn, reply, highest_inbound)
        return written

    def _clear_stale_claims(self) -> list[str]:
        with self._transaction() as conn:
            cleared = outbound.clear_processing_acks(conn)
        if cleared:
            log.info("outbox: cleared %d processing claim(s) left by a previous run", len(cleared))
        return cleared


def _set_acks(conn: sqlite3.Connection, message_ids: tuple[str, ...], status: AckStatus) -> None:
    stamp = now_ts()
    for message_id in message_ids:
        outbound.set_ack(conn, message_id, status, stamp)
