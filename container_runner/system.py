"""Builds the container's actors and wires them in order; stops them in reverse, the agent
first, once it has finished the turn in flight or the grace period is over."""

from __future__ import annotations

import functools
import logging
from typing import Literal, Protocol, TypeVar

import pykka

from container_runner.agent import AgentActor
from container_runner.config import RunnerConfig
from container_runner.context import COMPACTIONS_DIR
from container_runner.formatting import Formatter
from container_runner.heartbeat import HeartbeatActor
from container_runner.inbox import InboxActor
from container_runner.lifecycle import Lifecycle
from container_runner.messages import ClearStaleClaims, ConnectInbox
from container_runner.outbox import OutboxActor
from container_runner.prompt import instructions, memory
from container_runner.providers.base import Provider, StateStore
from container_runner.questions import QuestionBoard
from container_runner.state import SessionState
from container_runner.tools.base import Tool, ToolBox
from container_runner.tools.messaging import messaging_tools
from container_runner.tools.scheduling import scheduling_tools
from container_runner.tools.workspace import workspace_tools
from container_runner.turn import TurnContext
from protocol.layout import SessionLayout
from protocol.models import features

log = logging.getLogger("container_runner")

A = TypeVar("A", bound=pykka.Actor)


class _Stoppable(Protocol):
    """What stopping needs of an actor ref, whatever its actor class (ActorRef is invariant)."""

    def stop(self, *, block: Literal[True], timeout: float | None = None) -> bool: ...


def build_provider(config: RunnerConfig, state: StateStore) -> Provider:
    if config.provider == "mock":
        from container_runner.providers.mock import MockProvider

        return MockProvider(state)
    from container_runner.providers.claude import ClaudeProvider, ClaudeSettings

    settings = ClaudeSettings(
        model=config.model,
        system_prompt=instructions(config.assistant_name, config.agent_dir, config.timezone),
        memory=functools.partial(memory, config.agent_dir, config.global_dir),
        base_url=config.base_url,
        proxy_socket=config.proxy_socket,
        stall_timeout=config.stall_timeout_s,
        context_window=features(config.model).context_window,
        agent_lifetime_s=config.idle_timeout_s,
        # The agent's own part of the session folder; the host never reads it.
        archive_dir=SessionLayout(config.session_dir).out / COMPACTIONS_DIR,
    )
    return ClaudeProvider(settings, state)


class RunnerSystem:
    def __init__(self, config: RunnerConfig, lifecycle: Lifecycle | None = None) -> None:
        self.config = config
        self.layout = SessionLayout(config.session_dir)
        # Without one given nobody hears of a dying actor, as when a test embeds the system.
        self.lifecycle = lifecycle if lifecycle is not None else Lifecycle()
        self._refs: list[_Stoppable] = []
        self._agent: pykka.ActorRef[AgentActor] | None = None

    def start(self) -> None:
        config, layout, lifecycle = self.config, self.layout, self.lifecycle
        outbox = self._start(OutboxActor.start(layout, lifecycle=lifecycle))
        cleared = outbox.ask(ClearStaleClaims(), block=True)
        heartbeat = self._start(
            HeartbeatActor.start(layout.heartbeat, config.heartbeat_interval_s, lifecycle=lifecycle)
        )
        board = QuestionBoard()
        context = TurnContext()
        state = SessionState(layout, outbox)
        tools: list[Tool] = [
            *messaging_tools(outbox, context, layout, config.agent_dir, board, config.question_timeout_s),
            *scheduling_tools(outbox, context, layout, config.timezone),
            *workspace_tools(config.agent_dir),
        ]
        # Not in `_refs`: `stop` ends the agent first, on its own terms.
        agent = AgentActor.start(
            build_provider(config, state),
            ToolBox(tools),
            Formatter(layout, config.timezone),
            context,
            outbox,
            heartbeat,
            lifecycle=lifecycle,
        )
        self._agent = agent
        inbox = self._start(
            InboxActor.start(layout, agent, outbox, board, config.safety_interval_s, lifecycle=lifecycle)
        )
        agent.tell(ConnectInbox(inbox))
        log.info(
            # No session id here: the host tags every line of ours with it.
            "runner started: provider=%s cleared_claims=%d",
            config.provider,
            len(cleared),
        )

    def stop(self, *, grace_s: float | None = None) -> None:
        """Let the turn in flight finish within `grace_s` (the configured grace period by
        default; 0 to leave it at once), then stop the rest in the reverse of their start.

        The inbox must outlive the turn: a turn asking a stopped inbox for follow-ups used to
        fail, and the person was told something went wrong. So the inbox only stops handing
        out work (the drain), and stops for good after the agent."""
        grace = self.config.stop_grace_s if grace_s is None else grace_s
        self.lifecycle.drain()
        if self._agent is not None and not self._agent_finished(self._agent, grace):
            # Before any other actor stops, so nothing the turn meets from here on is
            # written: its rows stay `processing` and the next start runs them again.
            self.lifecycle.abandon()
        for ref in reversed(self._refs):
            try:
                ref.stop(block=True, timeout=self.config.stop_timeout_s)
            except pykka.Timeout:
                log.warning("runner: %s did not stop in time", ref)
        log.info("runner stopped")

    def _agent_finished(self, agent: pykka.ActorRef[AgentActor], grace_s: float) -> bool:
        """Whether the agent stopped within the grace period; its stop waits behind the
        turn in flight, and a batch handed to it since the drain it leaves unstarted."""
        if grace_s <= 0:
            agent.stop(block=False)  # the turn, if any, is abandoned at once
            return False
        try:
            agent.stop(block=True, timeout=grace_s)
        except pykka.Timeout:
            # Its thread is a daemon: the process can exit while the turn still runs.
            log.warning("runner: the turn in flight did not finish within %g s; left for the next start", grace_s)
            return False
        return True

    def _start(self, ref: pykka.ActorRef[A]) -> pykka.ActorRef[A]:
        self._refs.append(ref)
        return ref
