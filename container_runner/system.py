"""Builds the container's actors and wires them in order; stops them in reverse."""

from __future__ import annotations

import logging
from typing import Literal, Protocol, TypeVar

import pykka

from container_runner.agent import AgentActor
from container_runner.config import RunnerConfig
from container_runner.formatting import Formatter
from container_runner.heartbeat import HeartbeatActor
from container_runner.inbox import InboxActor
from container_runner.messages import ClearStaleClaims, ConnectInbox
from container_runner.outbox import OutboxActor
from container_runner.prompt import system_prompt
from container_runner.providers.base import Provider, StateStore
from container_runner.questions import QuestionBoard
from container_runner.state import SessionState
from container_runner.tools.base import Tool, ToolBox
from container_runner.tools.messaging import messaging_tools
from container_runner.tools.scheduling import scheduling_tools
from container_runner.tools.workspace import workspace_tools
from container_runner.turn import TurnContext
from protocol.layout import SessionLayout

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
        system_prompt=system_prompt(config.assistant_name, config.agent_dir, config.timezone, config.global_dir),
        base_url=config.base_url,
        proxy_socket=config.proxy_socket,
        stall_timeout=config.stall_timeout_s,
    )
    return ClaudeProvider(settings, state)


class RunnerSystem:
    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.layout = SessionLayout(config.session_dir)
        self._refs: list[_Stoppable] = []

    def start(self) -> None:
        config, layout = self.config, self.layout
        outbox = self._start(OutboxActor.start(layout))
        cleared = outbox.ask(ClearStaleClaims(), block=True)
        heartbeat = self._start(HeartbeatActor.start(layout.heartbeat, config.heartbeat_interval_s))
        board = QuestionBoard()
        context = TurnContext()
        state = SessionState(layout, outbox)
        tools: list[Tool] = [
            *messaging_tools(outbox, context, layout, config.agent_dir, board, config.question_timeout_s),
            *scheduling_tools(outbox, context, layout, config.timezone),
            *workspace_tools(config.agent_dir),
        ]
        agent = self._start(
            AgentActor.start(
                build_provider(config, state),
                ToolBox(tools),
                Formatter(layout, config.timezone),
                context,
                outbox,
                heartbeat,
                config.admin_user_id,
            )
        )
        inbox = self._start(InboxActor.start(layout, agent, outbox, board, config.safety_interval_s))
        agent.tell(ConnectInbox(inbox))
        log.info(
            # No session id here: the host tags every line of ours with it.
            "runner started: provider=%s cleared_claims=%d",
            config.provider,
            len(cleared),
        )

    def stop(self) -> None:
        # Inbox first, so no new work starts; the agent finishes the message it is on.
        for ref in reversed(self._refs):
            try:
                ref.stop(block=True, timeout=self.config.stop_timeout_s)
            except pykka.Timeout:
                # A turn still running is left `processing`; the next start clears the claim
                # and runs the message again.
                log.warning("runner: %s did not stop in time", ref)
        log.info("runner stopped")

    def _start(self, ref: pykka.ActorRef[A]) -> pykka.ActorRef[A]:
        self._refs.append(ref)
        return ref
