"""Messages between the container's actors: facts (`InboundChanged`) and commands (`Work`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec
import pykka

from protocol.content import OutboundContent
from protocol.rows import AckStatus, MessageIn, Routing

if TYPE_CHECKING:
    from container_runner.inbox import InboxActor


class InboundChanged(msgspec.Struct, frozen=True):
    """Something in inbound.db may have changed (file event, timer, or safety tick).

    `at` is when a commit's file event was seen (time.monotonic()); a read that began after
    it has already seen the change, so a burst of events costs one read. Timers and ticks
    leave it infinite: they always read, as rows come due and events can be lost."""

    at: float = math.inf


class Work(msgspec.Struct, frozen=True):
    """A batch for the agent, already acked as `processing`."""

    batch: tuple[MessageIn, ...]


class AgentIdle(msgspec.Struct, frozen=True):
    """The agent finished its batch and can take the next."""


class TakeFollowUps(msgspec.Struct, frozen=True):
    """Ask: rows that arrived while the agent was busy (acked `processing` on the way out)."""


class WriteMessage(msgspec.Struct, frozen=True):
    """Ask the OutboxActor to write one `messages_out` row; answers the written MessageOut."""

    content: OutboundContent
    routing: Routing = Routing()
    in_reply_to: str | None = None
    message_id: str | None = None


class Ack(msgspec.Struct, frozen=True):
    """Ask the OutboxActor to record `processing_ack` for inbound rows."""

    message_ids: tuple[str, ...]
    status: AckStatus


class Finish(msgspec.Struct, frozen=True):
    """Ask the OutboxActor to end a batch: its final reply, if any, and the acks of its rows,
    in one transaction; answers the written MessageOut or None."""

    message_ids: tuple[str, ...]
    status: AckStatus
    reply: WriteMessage | None = None
    # A `deferred` batch: when to try again (UTC, ISO) and why (`busy` or `budget`). Its
    # reply is written only when some row was not already deferred for the same reason, so
    # the person is told once per batch, however often it is tried.
    retry_after: str | None = None
    reason: str | None = None


class HandBack(msgspec.Struct, frozen=True):
    """Tell the InboxActor: these rows were deferred; offer them again once the host has
    mirrored that (their `process_after` differs from the one they were claimed with)."""

    claimed: tuple[tuple[str, str | None], ...]  # (message id, process_after when claimed)


class SaveState(msgspec.Struct, frozen=True):
    key: str
    value: str


class StageState(msgspec.Struct, frozen=True):
    """Tell the OutboxActor a state value to write with its next commit."""

    key: str
    value: str


class DeleteState(msgspec.Struct, frozen=True):
    key: str


class ClearStaleClaims(msgspec.Struct, frozen=True):
    """Ask: drop `processing` acks a dead predecessor left; answers their message ids."""


class Beat(msgspec.Struct, frozen=True):
    """The agent did something: touch the heartbeat now."""


class ConnectInbox(msgspec.Struct, frozen=True):
    """Wire the agent to the inbox after both started (each needs the other's ref)."""

    inbox: pykka.ActorRef[InboxActor]
