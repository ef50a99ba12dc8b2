"""The control operations' session part while the host runs: its own actors do it, so every
session DB keeps its one writer (the session's `SessionActor`) and a stop or removal happens
in the Supervisor's turn, where no message can open a session meanwhile."""

from __future__ import annotations

from typing import Any

import pykka

from actors.control.operations import OperationError
from actors.messages import (
    ChangeSeries,
    Notify,
    OpenSession,
    RecheckBudget,
    RemoveAgentGroup,
    RestartGroupAgents,
    StopSession,
    Tellable,
    WriteInbound,
)
from actors.store.agent_groups import AgentGroup
from actors.store.sessions import Session
from protocol.content import ChatIn, SeriesChange
from protocol.layout import SessionLayout
from protocol.rows import Routing


class HostSessions:
    """`SessionControl` backed by the running host's Supervisor and DeliveryActor, which
    serves `channels`. Every wait is bounded: `timeout_s` for an answer, `stop_timeout_s`
    for an agent to stop."""

    host_runs = True

    def __init__(
        self,
        supervisor: pykka.ActorRef[Any],
        delivery: Tellable,
        channels: frozenset[str],
        *,
        timeout_s: float = 10.0,
        stop_timeout_s: float = 80.0,
    ) -> None:
        self._supervisor = supervisor
        self._delivery = delivery
        self._channels = channels
        self._timeout_s = timeout_s
        self._stop_timeout_s = stop_timeout_s

    def change_series(self, session: Session, layout: SessionLayout, action: SeriesChange) -> str:
        done: str = self._ask(self._session(session), ChangeSeries(action), self._timeout_s)
        return done

    def write_chat(self, session: Session, layout: SessionLayout, content: ChatIn, routing: Routing) -> None:
        stored: pykka.Future[Any] = pykka.ThreadingFuture()
        self._session(session).tell(WriteInbound(content=content, routing=routing, stored=stored))
        try:
            stored.get(timeout=self._timeout_s)
        except pykka.Timeout:
            raise OperationError(f"session {session.id[:8]} did not store the request in time") from None

    def stop(self, session: Session) -> bool:
        running: bool = self._ask(self._supervisor, StopSession(session.id), self._stop_timeout_s)
        return running

    def remove_group(self, group: AgentGroup) -> list[str]:
        stopped: list[str] = self._ask(self._supervisor, RemoveAgentGroup(group.id), self._stop_timeout_s)
        return stopped

    def restart_group(self, group: AgentGroup) -> list[str]:
        stopped: list[str] = self._ask(self._supervisor, RestartGroupAgents(group.id), self._stop_timeout_s)
        return stopped

    def recheck_budget(self, group: AgentGroup) -> int:
        told: int = self._ask(self._supervisor, RecheckBudget(group.id), self._timeout_s)
        return told

    def tell(self, routing: Routing, text: str) -> bool:
        if routing.channel_type not in self._channels:
            return False  # that channel is not configured on this host
        self._delivery.tell(Notify(routing=routing, text=text))
        return True

    def _session(self, session: Session) -> pykka.ActorRef[Any]:
        ref: pykka.ActorRef[Any] | None = self._ask(self._supervisor, OpenSession(session.id), self._timeout_s)
        if ref is None:
            raise OperationError(f"session {session.id[:8]} cannot be opened now: the host is stopping")
        return ref

    @staticmethod
    def _ask(ref: pykka.ActorRef[Any], message: object, timeout_s: float) -> Any:
        try:
            return ref.ask(message, timeout=timeout_s)
        except pykka.ActorDeadError:
            raise OperationError("the host is stopping; try again once it runs") from None
        except pykka.Timeout:
            raise OperationError(f"the host did not answer within {timeout_s:g} s") from None
