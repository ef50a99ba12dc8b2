"""Messages between the host's actors: facts (`OutboundChanged`, `ContainerExited`) and
commands (`Wake`, `Deliver`). Collaborators travel as actor refs so tests can hand in fakes.

Asks answer at once; where an answer must wait for durable work (a row committed), the
message carries the future to resolve, so no actor blocks on another (docs/ARCHITECTURE.md,
"Asks answer fast").
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import msgspec
import pykka

from actors.channels.base import Card, InboundEvent
from protocol.content import InboundContent, SeriesChange
from protocol.rows import MessageIn, Routing


class Tellable(Protocol):
    """A collaborator that is only ever told things: an actor ref, or a test's recorder."""

    def tell(self, message: Any) -> None: ...


# --- to the SessionActor -------------------------------------------------------------------


class WriteInbound(msgspec.Struct, frozen=True, kw_only=True):
    """Write one `messages_in` row (even seq) and make sure the agent will see it.

    `stored` is resolved with the row once it is committed (or with the error); a burst of
    these is committed in one transaction. `files` are (name, temporary path) pairs moved
    into `inbox/<id>/`."""

    content: InboundContent
    routing: Routing
    trigger: bool = True
    files: tuple[tuple[str, str], ...] = ()
    message_id: str | None = None
    stored: pykka.Future[MessageIn] | None = None


class InboundBatch(msgspec.Struct, frozen=True):
    """Several `WriteInbound`s at once, in order: what the Supervisor routed to one session
    from a burst. Handled as if each had been told alone."""

    requests: tuple[WriteInbound, ...]


class CommitInbound(msgspec.Struct, frozen=True):
    """Commit the `WriteInbound`s received so far: the SessionActor tells itself this after
    the first of a burst, so everything that arrived meanwhile shares one fsync."""


class FlushBookkeeping(msgspec.Struct, frozen=True):
    """Write the deferred acks' mirrors and delivery outcomes now (a timer's message; an ask
    of it returns once they are on disk)."""


class EnsureAgent(msgspec.Struct, frozen=True):
    """Start the agent if there is due work and none runs; told to itself after a commit, so
    the sender's answer never waits for a container to start."""


class OutboundChanged(msgspec.Struct, frozen=True):
    """outbound.db or its journal changed.

    `at` is when the change was seen (time.monotonic()); a read that began after it has
    already seen the change, so one commit's burst of file events costs one read."""

    at: float = math.inf


class HeartbeatSeen(msgspec.Struct, frozen=True):
    """`.heartbeat` was touched at `at` (time.time()): liveness, in memory, nothing read."""

    at: float


class Wake(msgspec.Struct, frozen=True):
    """Re-read the session's files and act: a timer fired or the sweep thinks there is work."""


class SweepCheck(msgspec.Struct, frozen=True):
    """The slow safety net: check the agent's liveness and everything an event may have missed."""


class ContainerExited(msgspec.Struct, frozen=True):
    generation: int
    exit_code: int


class YieldSlot(msgspec.Struct, frozen=True):
    """Another session waits for a container slot and this one's agent is idle: stop it if
    it still is (the slots ask the holder idle longest)."""


class SlotGranted(msgspec.Struct, frozen=True):
    """A container slot freed up for a session that was waiting for one."""


class Delivered(msgspec.Struct, frozen=True):
    message_out_id: str
    platform_message_id: str | None = None


class DeliveryFailed(msgspec.Struct, frozen=True):
    message_out_id: str
    error: str
    retryable: bool = True
    # The platform's own "try again in": the next try waits at least this long.
    retry_after_s: float | None = None


class StopIfIdle(msgspec.Struct, frozen=True):
    """Stop the agent and answer True when the session has nothing left to do: told back to
    `reply_to` as `IdleAnswer(token=token)`, or as the answer of an ask without one."""

    reply_to: Any = None
    token: int = 0


class Drain(msgspec.Struct, frozen=True):
    """Ask: start no new deliveries; answers a future that resolves when none is in flight."""


class TypingTick(msgspec.Struct, frozen=True):
    """Time to show again that the agent is at work, if it still is."""


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
    """One attempt at one outbound row; the answer (`Delivered`/`DeliveryFailed`) is told to
    `reply_to`. `routing` has its channel and chat checked by the session's plan."""

    session_id: str
    message_out_id: str
    routing: Routing
    action: DeliveryAction
    reply_to: Any


class FlushDeliveries(msgspec.Struct, frozen=True):
    """Asked of the DeliveryActor: answered once every channel has handled what it was
    handed before."""


class ShowTyping(msgspec.Struct, frozen=True):
    """A turn is running for this chat: show it, where the channel can (a hint, no outcome)."""

    routing: Routing


class Notify(msgspec.Struct, frozen=True):
    """A message from the host itself (e.g. "your message failed", a pairing code): tried
    again a few times while the channel says a retry can help, kept in memory only."""

    routing: Routing
    text: str
    attempt: int = 1


# --- to the Supervisor ---------------------------------------------------------------------


class TellOwner(msgspec.Struct, frozen=True):
    """Something the host's owner should hear about a session (an agent sending faster than
    its pace): told in the owner's direct chats, unless `about` is one of them, which hears
    of it already."""

    text: str
    about: Routing


class InboundReceived(msgspec.Struct, frozen=True):
    """A channel received something; `stored` resolves once it is safely on disk (with the
    row), or with the reason it was refused."""

    event: InboundEvent
    stored: pykka.Future[Any]


class HandOver(msgspec.Struct, frozen=True):
    """The Supervisor tells itself this after routing the first message of a burst: every
    session gets what was routed to it since, in one `InboundBatch`."""


class OpenQuestion(msgspec.Struct, frozen=True):
    """A session is about to show a question: record who asked it (the Supervisor owns the
    pending questions), then pass `deliver` on to the DeliveryActor."""

    deliver: Deliver


class EnsureSession(msgspec.Struct, frozen=True):
    """A session has work on disk (found by the sweep): make sure its actor runs."""

    session_id: str


class SessionIdle(msgspec.Struct, frozen=True):
    session_id: str


class IdleAnswer(msgspec.Struct, frozen=True):
    session_id: str
    token: int
    idle: bool


class SessionFailed(msgspec.Struct, frozen=True):
    """A session actor died (`restart`: start it again from disk now), or could not set its
    folder up (it waits, failing what it is handed, for the Supervisor to stop it; the next
    message or sweep tries again)."""

    session_id: str
    error: str
    restart: bool = True


# --- the control operations (actors/control): asked, and answered once done ----------------


class ChangeSeries(msgspec.Struct, frozen=True):
    """SessionActor: pause, resume or cancel one of its task series, in its own write
    transaction (it is inbound.db's one writer). Answers the log line, or raises
    `ActionRejected` with why nothing changed."""

    action: SeriesChange


class OpenSession(msgspec.Struct, frozen=True):
    """Supervisor: the session's actor, started if it is not running; None when the host is
    closing or the session is gone."""

    session_id: str


class StopSession(msgspec.Struct, frozen=True):
    """Supervisor: stop the session's agent and actor now, as going idle does; answers
    whether it was running."""

    session_id: str


class RestartGroupAgents(msgspec.Struct, frozen=True):
    """Supervisor: stop every live session of the group, as `StopSession` does, so the next
    message starts each with what the group now says (its model). Answers the ids stopped."""

    agent_group_id: str


class RemoveAgentGroup(msgspec.Struct, frozen=True):
    """Supervisor: stop every session of the group, then delete it (its wirings and sessions
    with it) in the same turn of the Supervisor, so no message can open a session between
    the two. Answers the ids of the sessions that were running."""

    agent_group_id: str


class RecheckBudget(msgspec.Struct, frozen=True):
    """Supervisor: the group's budget was raised or removed; tell its live sessions
    `BudgetRaised`. Answers how many were told."""

    agent_group_id: str


class BudgetRaised(msgspec.Struct, frozen=True):
    """SessionActor: rows waiting for the budget are due now (the proxy decides again)."""
