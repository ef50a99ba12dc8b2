"""One live session: the `SessionActor` and the plain pieces only it uses.

The actor can run on its own, without the host's Supervisor: give it a `SessionInfo` (the
session folder and the agent's workspace), a runtime, and an actor that receives `Deliver`
and `Notify`; hand it messages with `write_inbound`. `scripts/embed_session.py` shows it, and
docs/ARCHITECTURE.md says what it promises.
"""

from __future__ import annotations

import msgspec
import pykka

from actors.messages import Deliver, Delivered, DeliveryFailed, Notify, WriteInbound
from actors.session.actor import SessionActor
from actors.session.info import ProxySockets, SessionInfo, SessionSettings
from protocol.rows import MessageIn

__all__ = [
    "Deliver",
    "Delivered",
    "DeliveryFailed",
    "Notify",
    "ProxySockets",
    "SessionActor",
    "SessionInfo",
    "SessionSettings",
    "WriteInbound",
    "write_inbound",
]


def write_inbound(session: pykka.ActorRef[SessionActor], request: WriteInbound) -> pykka.Future[MessageIn]:
    """Hand a message to a session; the future resolves with its row once it is committed."""
    stored: pykka.Future[MessageIn] = pykka.ThreadingFuture()
    session.tell(msgspec.structs.replace(request, stored=stored))
    return stored
