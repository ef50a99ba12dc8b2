"""AgentActor: runs one batch at a time through the provider.

It never dies on a bad turn: whatever goes wrong becomes an error reply to the user and the
batch is marked done, so nothing is left `processing` for the host to kill us over.

A stop is the exception (container_runner.lifecycle): once the runner drains, a batch not
begun is not started, and a turn still running past the grace period writes nothing, so
its rows stay claimed for the next start instead of ending in an error the stop caused.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pykka

from container_runner.formatting import Formatter
from container_runner.lifecycle import Lifecycle, RunnerActor, tell_quietly
from container_runner.messages import AgentIdle, Beat, ConnectInbox, Finish, TakeFollowUps, Work, WriteMessage
from container_runner.providers.base import Provider, ProviderError
from container_runner.tools.base import ToolBox, ToolCall, ToolOutcome
from container_runner.turn import TurnContext
from protocol.content import ChatIn, ChatOut, ContentError
from protocol.rows import AckStatus, MessageIn

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
        try:
            reply = self._handle(batch)
        except ProviderError as exc:
            status, reply = "failed", f"Sorry, I could not answer: {exc}"
        except Exception as exc:
            log.exception("agent: turn failed")
            status = "failed"
            reply = f"Sorry, something went wrong on my side ({type(exc).__name__}). Please try again."
        finally:
            self._finish(status, reply)

    def _handle(self, batch: tuple[MessageIn, ...]) -> str | None:
        """The batch's final reply, if it has one."""
        command = _command(batch)
        if command is not None:
            name, role = command
            if name in DROPPED_COMMANDS:
                return None
            if name == "/clear":
                return self._clear(role)
        result = self._provider.run(
            self._formatter.batch(batch), self._tools, self._follow_ups, self._formatter.attachments(batch)
        )
        return result.text if result.text.strip() else None

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

    def _finish(self, status: AckStatus, reply: str | None) -> None:
        """The final reply and the acks of every row taken, written together."""
        ids = tuple(row.id for row in self._taken)
        self._taken = []
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
                self._outbox.ask(Finish(ids, status, write))
            except pykka.ActorDeadError:
                if not self.abandoned:
                    raise  # the outbox died under a running runner: ours to report, by dying
                log.warning("agent: outbox stopped before the turn ended; %d message(s) left claimed", len(ids))
        finally:
            tell_quietly(self._heartbeat, Beat())
            if self._inbox is not None:
                tell_quietly(self._inbox, AgentIdle())


# Who may run session commands; the host says who is who in each message.
ADMIN_ROLES = frozenset({"owner", "admin"})


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
