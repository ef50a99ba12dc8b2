"""AgentActor: runs one batch at a time through the provider.

It never dies on a bad turn: whatever goes wrong becomes an error reply to the user and the
batch is marked done, so nothing is left `processing` for the host to kill us over.

A stop is the exception (container_runner.lifecycle): once the runner drains, a batch not
begun is not started, and a turn still running past the grace period writes nothing, so
its rows stay claimed for the next start instead of ending in an error the stop caused.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import pykka

from container_runner.context import ContextControl
from container_runner.formatting import Formatter
from container_runner.lifecycle import Lifecycle, RunnerActor, tell_quietly
from container_runner.messages import (
    AgentIdle,
    Beat,
    ConnectInbox,
    Finish,
    HandBack,
    TakeFollowUps,
    Work,
    WriteMessage,
)
from container_runner.providers.base import Provider, ProviderDeferredError, ProviderError
from container_runner.tools.base import ToolBox, ToolCall, ToolOutcome
from container_runner.turn import TurnContext
from protocol.content import ChatIn, ChatOut, ContentError
from protocol.rows import AckStatus, MessageIn
from protocol.timeutil import format_ts, utc_now

if TYPE_CHECKING:
    from container_runner.heartbeat import HeartbeatActor
    from container_runner.inbox import InboxActor
    from container_runner.outbox import OutboxActor

log = logging.getLogger(__name__)

# Platform commands that mean nothing to the agent; dropped without a reply.
DROPPED_COMMANDS = frozenset({"/help", "/start", "/settings", "/stop", "/menu"})


class _BeatingToolBox(ToolBox):
    """Every tool call is agent activity: touch the heartbeat before and after it."""

    def __init__(self, inner: ToolBox, heartbeat: pykka.ActorRef[HeartbeatActor]) -> None:
        super().__init__([])
        self._inner = inner
        self._heartbeat = heartbeat

    def definitions(self) -> list[dict[str, Any]]:
        return self._inner.definitions()

    def names(self) -> list[str]:
        return self._inner.names()

    def run(self, call: ToolCall) -> ToolOutcome:
        # Quietly: a heartbeat already stopped must not fail a tool the turn still needs.
        tell_quietly(self._heartbeat, Beat())
        try:
            return self._inner.run(call)
        finally:
            tell_quietly(self._heartbeat, Beat())


class AgentActor(RunnerActor):
    # A turn can outlive a stop request; it must not keep the process from exiting.
    use_daemon_thread = True

    def __init__(
        self,
        provider: Provider,
        tools: ToolBox,
        formatter: Formatter,
        context: TurnContext,
        outbox: pykka.ActorRef[OutboxActor],
        heartbeat: pykka.ActorRef[HeartbeatActor],
        *,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        super().__init__(lifecycle)
        self._provider = provider
        self._tools = _BeatingToolBox(tools, heartbeat)
        self._formatter = formatter
        self._context = context
        self._outbox = outbox
        self._heartbeat = heartbeat
        self._inbox: pykka.ActorRef[InboxActor] | None = None
        self._taken: list[MessageIn] = []

    def on_receive(self, message: Any) -> Any:
        match message:
            case Work(batch=batch):
                self._work(batch)
            case ConnectInbox(inbox=inbox):
                self._inbox = inbox
            case _:
                return super().on_receive(message)
        return None

    def _work(self, batch: tuple[MessageIn, ...]) -> None:
        if self.draining:
            # Handed out just before the stop began: no new turn now. Its rows stay claimed
            # (`processing`), and the next start clears the claim and runs them.
            log.info("agent: stopping; a batch of %d message(s) is left for the next start", len(batch))
            return
        tell_quietly(self._heartbeat, Beat())
        self._context.begin(batch)
        self._taken = list(batch)
        status: AckStatus = "completed"
        reply: str | None = None
        deferred: ProviderDeferredError | None = None
        left = False
        try:
            reply = self._handle(batch)
        except ProviderDeferredError as exc:
            # Not this turn's failure: the batch goes back to the host, to run again later.
            status, deferred = "deferred", exc
        except ProviderError as exc:
            if self.draining:
                # A stop is under way, and the host going is the likeliest cause: a person is
                # never told of a shutdown. The rows stay claimed; the next start runs them.
                log.warning(
                    "agent: the model call failed while stopping (%s); the batch is left for the next start", exc
                )
                left = True
            else:
                status, reply = "failed", f"Sorry, I could not answer: {exc}"
        except Exception as exc:
            log.exception("agent: turn failed")
            status = "failed"
            reply = f"Sorry, something went wrong on my side ({type(exc).__name__}). Please try again."
        finally:
            if not left:
                self._finish(status, reply, deferred)

    def _handle(self, batch: tuple[MessageIn, ...]) -> str | None:
        """The batch's final reply, if it has one."""
        command = _command(batch)
        if command is not None:
            name, role = command
            if name in DROPPED_COMMANDS:
                return None
            if name == "/clear":
                return self._clear(role)
            if name in CONTEXT_COMMANDS:
                return self._context_command(name, role)
        result = self._provider.run(
            self._formatter.batch(batch), self._tools, self._follow_ups, self._formatter.attachments(batch)
        )
        return result.text if result.text.strip() else None

    def _context_command(self, name: str, role: str | None) -> str:
        """`/compact` and `/context`: for the same people as `/clear` (they cost a model call,
        and show what the conversation holds)."""
        if role not in ADMIN_ROLES:
            return f"Only the chat's owner or an admin can use {name}."
        provider = self._provider
        if not isinstance(provider, ContextControl):
            return f"{name} is not available with this model provider."
        if name == "/compact":
            return provider.compact_now(self._tools)
        return provider.context_report(self._tools)

    def _clear(self, role: str | None) -> str:
        # The role is the host's word, written where the agent cannot write (inbound.db).
        if role not in ADMIN_ROLES:
            return "Only the chat's owner or an admin can clear this conversation."
        self._provider.clear()
        return "Conversation cleared. Starting afresh."

    def _follow_ups(self) -> str | None:
        """Between model turns: messages that arrived meanwhile join the running query."""
        if self._inbox is None:
            return None
        try:
            rows: tuple[MessageIn, ...] = self._inbox.ask(TakeFollowUps(), block=True)
        except pykka.ActorDeadError:
            # The inbox stops after us, so it is gone only if it died or we outlived the
            # grace period: either way the runner is exiting, and no follow-up is no error.
            return None
        if not rows:
            return None
        self._taken.extend(rows)
        self._context.begin(tuple(self._taken))
        return self._formatter.batch(rows)

    def _finish(self, status: AckStatus, reply: str | None, deferred: ProviderDeferredError | None = None) -> None:
        """The final reply and the acks of every row taken, written together."""
        taken = self._taken
        ids = tuple(row.id for row in taken)
        self._taken = []
        retry_at: str | None = None
        if deferred is not None:
            delay_s = _deferral_delay_s(deferred, taken)
            retry_at = format_ts(utc_now() + timedelta(seconds=delay_s))
            reply = _deferral_notice(deferred, delay_s)
            log.warning("agent: %s; %d message(s) handed back for %.0f s", deferred, len(ids), delay_s)
        write = (
            None
            if reply is None
            else WriteMessage(ChatOut(text=reply), routing=self._context.routing, in_reply_to=self._context.reply_to)
        )
        try:
            if self.abandoned:
                # Past the grace period the runner stops the other actors under us, so what
                # this turn met may be the stop's doing; its rows stay claimed for a retry.
                log.warning("agent: turn outlived the stop's grace period; %d message(s) left claimed", len(ids))
                return
            try:
                reason = None if deferred is None else deferred.reason
                self._outbox.ask(Finish(ids, status, write, retry_after=retry_at, reason=reason))
                if deferred is not None and self._inbox is not None:
                    tell_quietly(self._inbox, HandBack(tuple((row.id, row.process_after) for row in taken)))
            except pykka.ActorDeadError:
                if not self.abandoned:
                    raise  # the outbox died under a running runner: ours to report, by dying
                log.warning("agent: outbox stopped before the turn ended; %d message(s) left claimed", len(ids))
        finally:
            tell_quietly(self._heartbeat, Beat())
            if self._inbox is not None:
                tell_quietly(self._inbox, AgentIdle())


# A deferred batch waits at least this long (the SDK has just retried), and a busy model's
# backoff, without a `retry-after`, starts here and doubles per try the host counted.
DEFER_MIN_S: Final = 1.0
BUSY_BACKOFF_S: Final = 30.0
BUSY_MAX_S: Final = 15 * 60.0
# A spent budget with no end given is looked at again this often (the host bounds it too).
BUDGET_RECHECK_S: Final = 3600.0


def _deferral_delay_s(deferred: ProviderDeferredError, taken: list[MessageIn]) -> float:
    if deferred.retry_after_s is not None:
        return max(DEFER_MIN_S, float(deferred.retry_after_s))
    if deferred.reason == "budget":
        return BUDGET_RECHECK_S
    tries = max((row.tries for row in taken), default=0)
    return min(BUSY_MAX_S, BUSY_BACKOFF_S * 2.0 ** min(tries, 16))


def _deferral_notice(deferred: ProviderDeferredError, delay_s: float) -> str:
    """What the person is told, once per batch, instead of an answer."""
    if deferred.reason == "budget":
        return (
            f"I can't answer yet: {str(deferred).rstrip('.')}. Your message will be answered then, "
            "or sooner if the owner raises the limit."
        )
    when = "in a minute or so" if delay_s < 90 else f"in about {math.ceil(delay_s / 60)} minutes"
    return f"The model is busy right now; I'll answer {when}."


# Who may run session commands; the host says who is who in each message.
ADMIN_ROLES = frozenset({"owner", "admin"})
# Session commands about the model's context, run by the provider (container_runner.context).
CONTEXT_COMMANDS = frozenset({"/compact", "/context"})


def _command(batch: tuple[MessageIn, ...]) -> tuple[str, str | None] | None:
    """A batch that is exactly one chat message starting with `/` is a command: its name and
    the sender's role."""
    if len(batch) != 1 or batch[0].kind != "chat":
        return None
    try:
        content = batch[0].decoded()
    except ContentError:
        return None
    if not isinstance(content, ChatIn) or not content.text.startswith("/"):
        return None
    return content.text.split(maxsplit=1)[0].lower(), content.sender_role
