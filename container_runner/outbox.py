"""OutboxActor: the only code in the container that writes outbound.db (DESIGN invariant 1).

Everything else *asks* it, so seq assignment is serialised in one thread and two writers
can never race on the next odd number.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pykka

from container_runner.messages import Ack, ClearStaleClaims, DeleteState, SaveState, WriteMessage
from protocol import outbound
from protocol.db import create_session_db, max_seq, read_transaction, write_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageOut
from protocol.schema import OUTBOUND
from protocol.timeutil import now_ts

log = logging.getLogger(__name__)


class OutboxActor(pykka.ThreadingActor):
    def __init__(self, layout: SessionLayout) -> None:
        super().__init__()
        self._layout = layout

    def on_start(self) -> None:
        create_session_db(self._layout.outbound_db, OUTBOUND)

    def on_receive(self, message: Any) -> Any:
        match message:
            case WriteMessage():
                return self._write(message)
            case Ack(message_ids=ids, status=status):
                self._ack(ids, status)
            case SaveState(key=key, value=value):
                with write_transaction(self._layout.outbound_db) as conn:
                    outbound.set_state(conn, key, value, now_ts())
            case DeleteState(key=key):
                with write_transaction(self._layout.outbound_db) as conn:
                    outbound.delete_state(conn, key)
            case ClearStaleClaims():
                return self._clear_stale_claims()
            case _:
                log.warning("outbox: ignoring unexpected message %r", message)
        return None

    def _highest_inbound_seq(self) -> int:
        try:
            with read_transaction(self._layout.inbound_db) as conn:
                return max_seq(conn, "messages_in")
        except FileNotFoundError:
            return 0

    def _write(self, request: WriteMessage) -> MessageOut:
        highest_inbound = self._highest_inbound_seq()
        with write_transaction(self._layout.outbound_db) as conn:
            return outbound.insert_message(
                conn,
                message_id=request.message_id or uuid.uuid4().hex,
                content=request.content,
                timestamp=now_ts(),
                highest_inbound_seq=highest_inbound,
                routing=request.routing,
                in_reply_to=request.in_reply_to,
            )

    def _ack(self, message_ids: tuple[str, ...], status: str) -> None:
        stamp = now_ts()
        with write_transaction(self._layout.outbound_db) as conn:
            for message_id in message_ids:
                outbound.set_ack(conn, message_id, status, stamp)

    def _clear_stale_claims(self) -> list[str]:
        with write_transaction(self._layout.outbound_db) as conn:
            cleared = outbound.clear_processing_acks(conn)
        if cleared:
            log.info("outbox: cleared %d processing claim(s) left by a previous run", len(cleared))
        return cleared
