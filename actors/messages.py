"""Messages between the host's actors: facts (`OutboundChanged`, `ContainerExited`) and
commands (`Wake`, `Deliver`). Collaborators travel as actor refs so tests can hand in fakes."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from actors.channels.base import Card, InboundEvent, Target
from protocol.content import InboundContent
from protocol.rows import Routing

# --- to the SessionActor -------------------------------------------------------------------


class WriteInbound(msgspec.Struct, frozen=True, kw_only=True):
    """Ask: write one `messages_in` row (even seq) and make sure the agent will see it.
    `files` are (name, temporary path) pairs moved into `inbox/<id>/`."""

    content: InboundContent
    routing: Routing
    trigger: bool = True
    files: tuple[tuple[str, str], ...] = ()
    message_id: str | None = None


class OutboundChanged(msgspec.Struct, frozen=True):
    """Something in the session folder changed (outbound.db, its journal or .heartbeat).

    `at` is when the change was seen (time.monotonic()); a read that began after it has
    already seen the change, so one commit's burst of file events costs one read."""

    at: float = math.inf


class Wake(msgspec.Struct, frozen=True):
    """Re-read the session's files and act: a timer fired or the sweep thinks there is work."""


class SweepCheck(msgspec.Struct, frozen=True):
    """The slow safety net: check the agent's liveness and everything an event may have missed."""


class ContainerExited(msgspec.Struct, frozen=True):
    generation: int
    exit_code: int


class SlotGranted(msgspec.Struct, frozen=True):
    """A container slot freed up for a session that was waiting for one."""


class Delivered(msgspec.Struct, frozen=True):
    message_out_id: str
    platform_message_id: str | None = None


class DeliveryFailed(msgspec.Struct, frozen=True):
    message_out_id: str
    error: str
    retryable: bool = True


class StopIfIdle(msgspec.Struct, frozen=True):
    """Ask: stop the agent and answer True when the session has nothing left to do."""


class Drain(msgspec.Struct, frozen=True):
    """Ask: start no new deliveries; answers a future that resolves when none is in flight."""


class IdleCheck(msgspec.Struct, frozen=True):
    pass


# --- to the DeliveryActor ------------------------------------------------------------------


class SendText(msgspec.Struct, frozen=True):
    text: str
    files: tuple[str, ...] = ()


class EditText(msgspec.Struct, frozen=True):
    platform_message_id: str
    text: str


class React(msgspec.Struct, frozen=True):
    platform_message_id: str
    emoji: str


class AskQuestion(msgspec.Struct, frozen=True):
    question_id: str
    question: str
    options: tuple[str, ...]


class SendCard(msgspec.Struct, frozen=True):
    card: Card


DeliveryAction = SendText | EditText | React | AskQuestion | SendCard


class Deliver(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt at one outbound row; the answer (`Delivered`/`DeliveryFailed`) is told to `reply_to`."""

    session_id: str
    message_out_id: str
    channel_type: str
    target: Target
    action: DeliveryAction
    reply_to: Any


class Notify(msgspec.Struct, frozen=True):
    """A message from the host itself (e.g. "your message failed"); best effort, no retry."""

    channel_type: str
    target: Target
    text: str


# --- to the Supervisor ---------------------------------------------------------------------


class InboundReceived(msgspec.Struct, frozen=True):
    """Ask: a channel received something. Answers once it is safely on disk."""

    event: InboundEvent


class EnsureSession(msgspec.Struct, frozen=True):
    """A session has work on disk (found by the sweep): make sure its actor runs."""

    session_id: str


class SessionIdle(msgspec.Struct, frozen=True):
    session_id: str


class SessionFailed(msgspec.Struct, frozen=True):
    session_id: str
    error: str


class Ready(msgspec.Struct, frozen=True):
    """Ask: answers once the Supervisor has started its actors and channels."""
