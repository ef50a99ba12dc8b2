"""Supervisor: starts and stops everything, routes inbound messages, owns the session registry.

Session creation happens only in this actor's thread, so a burst of messages for a new chat
can never create two sessions or two agents.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka

from actors.channels.base import ChannelAdapter, InboundAnswer, InboundChat, InboundEvent
from actors.data_folder import DataFolder
from actors.delivery import DeliveryActor
from actors.messages import (
    Drain,
    EnsureSession,
    InboundReceived,
    Ready,
    SessionFailed,
    SessionIdle,
    StopIfIdle,
    WriteInbound,
)
from actors.registry import SessionRegistry
from actors.routing import choose_wiring
from actors.runtime.base import AgentRuntime
from actors.session import ProxySockets, SessionActor, SessionInfo, SessionSettings
from actors.slots import ContainerSlots
from actors.store import agent_groups, messaging_group_agents, messaging_groups, pending_questions, sessions
from actors.store.db import Store
from actors.store.sessions import Session
from actors.sweep import SweepActor
from actors.watch import SessionWatcher
from protocol.content import ChatIn, QuestionAnswer
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, Routing

log = logging.getLogger("hutch.supervisor")

GLOBAL_GROUP = "global"


class RoutingError(ValueError):
    """An inbound message with nowhere to go; the channel tells the sender."""


@dataclass(frozen=True)
class SupervisorSetup(DataFolder):
    data_dir: Path
    session_settings: SessionSettings
    max_containers: int = 5
    sweep_interval_s: float = 30.0
    drain_timeout_s: float = 15.0


class Supervisor(pykka.ThreadingActor):
    def __init__(
        self,
        setup: SupervisorSetup,
        store: Store,
        runtime: AgentRuntime,
        channels: Sequence[ChannelAdapter],
        proxy: ProxySockets | None = None,
    ) -> None:
        super().__init__()
        self._setup = setup
        self._store = store
        self._runtime = runtime
        self._channels = list(channels)
        self._proxy = proxy
        self._registry = SessionRegistry()
        self._slots = ContainerSlots(setup.max_containers)
        self._watcher = SessionWatcher(setup.sessions_dir, self._registry)
        self._delivery: pykka.ActorRef[Any] | None = None
        self._sweep: pykka.ActorRef[Any] | None = None
        self._closing = False

    # --- lifecycle: start in order, stop in reverse ---------------------------------------

    def on_start(self) -> None:
        self._delivery = DeliveryActor.start(self._channels, self._store)
        self._watcher.start()
        self._sweep = SweepActor.start(
            self._store, self._registry, self.actor_ref, self._setup.sessions_dir, self._setup.sweep_interval_s
        )
        for channel in self._channels:
            channel.start(self._on_channel_event)
            log.info("channel %s is listening", channel.channel_type)

    def on_stop(self) -> None:
        self._closing = True
        if self._sweep is not None:
            self._sweep.stop()
        self._watcher.stop()
        self._drain_sessions()
        for session_id, ref in self._registry.items():
            self._stop_session(session_id, ref)
        if self._delivery is not None:
            self._delivery.stop()
        for channel in self._channels:
            channel.stop()
        log.info("supervisor stopped")

    def _drain_sessions(self) -> None:
        """Let deliveries already handed to a channel finish and be recorded."""
        futures = []
        for _session_id, ref in self._registry.items():
            try:
                futures.append(ref.ask(Drain(), block=True, timeout=self._setup.drain_timeout_s))
            except (pykka.ActorDeadError, pykka.Timeout):
                continue
        for future in futures:
            try:
                future.get(timeout=self._setup.drain_timeout_s)
            except pykka.Timeout:
                log.warning("a delivery did not finish in time; it will be sent again after the restart")

    def _stop_session(self, session_id: str, ref: pykka.ActorRef[Any]) -> None:
        self._registry.remove(session_id)
        try:
            # The agent gets stop_timeout_s to finish, then a kill and a few seconds to confirm it.
            ref.stop(block=True, timeout=self._setup.session_settings.stop_timeout_s * 2 + 10)
        except (pykka.ActorDeadError, pykka.Timeout) as exc:
            log.warning("session %s did not stop cleanly: %s", session_id[:8], exc)

    def _on_channel_event(self, event: InboundEvent) -> None:
        """Called from a channel's thread; returns once the message is on disk."""
        self.actor_ref.ask(InboundReceived(event), block=True, timeout=60)

    # --- messages -------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        match message:
            case InboundReceived(event=event):
                if self._closing:
                    raise RoutingError("the host is shutting down; please send that again in a moment")
                return self._route(event)
            case EnsureSession(session_id=session_id):
                session = sessions.get(self._store, session_id)
                if session is not None and not self._closing:
                    self._session_ref(session)
            case SessionIdle(session_id=session_id):
                self._on_idle(session_id)
            case SessionFailed(session_id=session_id, error=error):
                self._on_failed(session_id, error)
            case Ready():
                return True  # on_start ran before any message is handled
            case _:
                log.warning("supervisor: ignoring unexpected message %r", message)
        return None

    def _route(self, event: InboundEvent) -> MessageIn:
        if isinstance(event, InboundAnswer):
            return self._route_answer(event)
        return self._route_chat(event)

    def _route_chat(self, event: InboundChat) -> MessageIn:
        group = messaging_groups.get_by_platform(self._store, event.channel_type, event.platform_id)
        if group is None:
            group = messaging_groups.create(
                self._store,
                channel_type=event.channel_type,
                platform_id=event.platform_id,
                name=event.chat_name,
                is_group=event.is_group,
            )
            log.info("new chat %s/%s", event.channel_type, event.platform_id)
        choice = choose_wiring(messaging_group_agents.wirings_for(self._store, group.id), event)
        if choice is None:
            raise RoutingError(f"no agent is wired to chat {event.platform_id!r} on {event.channel_type}")
        wiring, trigger = choice
        key = sessions.session_key(
            wiring.session_mode,
            agent_group_id=wiring.agent_group_id,
            messaging_group_id=group.id,
            thread_id=event.thread_id,
        )
        session = sessions.get_by_key(self._store, key)
        if session is None:
            thread = event.thread_id if wiring.session_mode == "per-thread" else None
            session = sessions.create(
                self._store, agent_group_id=wiring.agent_group_id, session_key=key,
                messaging_group_id=group.id, thread_id=thread,
            )  # fmt: skip
            log.info("new session %s for agent group %s", session.id[:8], wiring.agent_group_id[:8])
        sessions.touch(self._store, session.id)
        content = ChatIn(
            text=event.text,
            sender=event.sender,
            sender_id=event.sender_id,
            platform_message_id=event.platform_message_id,
        )
        request = WriteInbound(
            content=content,
            routing=Routing(event.platform_id, event.channel_type, event.thread_id),
            trigger=trigger,
            files=tuple((file.name, file.path) for file in event.files),
        )
        written: MessageIn = self._session_ref(session).ask(request, block=True, timeout=30)
        return written

    def _route_answer(self, event: InboundAnswer) -> MessageIn:
        question = pending_questions.get(self._store, event.question_id)
        if question is None or question.channel_type != event.channel_type:
            raise RoutingError(f"there is no question {event.question_id!r}")
        if pending_questions.answer(self._store, event.question_id, event.answer) is None:
            raise RoutingError("that question was already answered")
        session = sessions.get(self._store, question.session_id)
        if session is None:
            raise RoutingError("the conversation that asked this question is gone")
        request = WriteInbound(
            content=QuestionAnswer(question_id=question.id, answer=event.answer, answered_by=event.sender),
            routing=Routing(question.platform_id, question.channel_type, question.thread_id),
        )
        written: MessageIn = self._session_ref(session).ask(request, block=True, timeout=30)
        return written

    # --- sessions -------------------------------------------------------------------------

    def _session_ref(self, session: Session) -> pykka.ActorRef[Any]:
        ref = self._registry.get(session.id)
        if ref is not None:
            return ref
        if session.status != "active":
            sessions.update(self._store, session.id, status="active")
        ref = SessionActor.start(
            self._session_info(session),
            self._runtime,
            self._delivery,
            self._setup.session_settings,
            slots=self._slots,
            supervisor=self.actor_ref,
            proxy=self._proxy,
        )
        self._registry.add(session.id, ref)
        return ref

    def _session_info(self, session: Session) -> SessionInfo:
        group = agent_groups.get(self._store, session.agent_group_id)
        if group is None:
            raise RoutingError(f"session {session.id} belongs to an agent group that no longer exists")
        chat = messaging_groups.get(self._store, session.messaging_group_id) if session.messaging_group_id else None
        agent_dir = self._setup.groups_dir / group.folder
        agent_dir.mkdir(parents=True, exist_ok=True)
        return SessionInfo(
            session_id=session.id,
            agent_group=group.folder,
            layout=SessionLayout(self._setup.sessions_dir / group.folder / session.id),
            agent_dir=agent_dir,
            global_dir=self._setup.groups_dir / GLOBAL_GROUP,
            admin_user_id=chat.admin_user_id if chat else None,
        )

    def _on_idle(self, session_id: str) -> None:
        ref = self._registry.get(session_id)
        if ref is None:
            return
        try:
            idle = ref.ask(StopIfIdle(), block=True, timeout=30)
        except (pykka.ActorDeadError, pykka.Timeout):
            return
        if idle:
            self._stop_session(session_id, ref)

    def _on_failed(self, session_id: str, error: str) -> None:
        self._registry.remove(session_id)
        session = sessions.get(self._store, session_id)
        if session is None or self._closing:
            return
        log.warning("session %s failed (%s); restarting it from disk", session_id[:8], error)
        self._session_ref(session)
