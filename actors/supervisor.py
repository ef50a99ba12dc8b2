"""Supervisor: routes inbound messages to sessions and owns the session registry and the
pending questions. It never waits on a session: a message is handed on with the future its
channel waits on, and the SessionActor answers that future once the row is committed.

Session creation happens only in this actor's thread, so a burst of messages for a new chat
can never create two sessions or two agents. `actors/host.py` builds everything it is given.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pykka

from actors.budget_gate import tell_owner
from actors.channels.base import InboundAnswer, InboundEvent, InboundWebhook, OnEvent, Stored
from actors.data_folder import DataFolder
from actors.inbound_router import InboundRouter, RoutingError
from actors.messages import AskQuestion as AskQuestionAction
from actors.messages import (
    BudgetRaised,
    DeliveryFailed,
    Drain,
    EnsureSession,
    HandOver,
    IdleAnswer,
    InboundBatch,
    InboundReceived,
    Notify,
    OpenQuestion,
    OpenSession,
    RecheckBudget,
    RemoveAgentGroup,
    RestartGroupAgents,
    SessionFailed,
    SessionIdle,
    StopIfIdle,
    StopSession,
    Tellable,
    TellOwner,
    WriteInbound,
)
from actors.pricing import PricesError, PriceTable, default_prices, load_prices
from actors.registry import SessionRegistry
from actors.runtime.base import AgentLimits, AgentRuntime, AgentUser
from actors.session import ProxySockets, SessionActor, SessionInfo, SessionSettings
from actors.session_commands import Answerer
from actors.slots import ContainerSlots
from actors.store import agent_groups, agent_uids, pending_questions, sessions
from actors.store.agent_uids import UidRange
from actors.store.db import Store, StoreError
from actors.store.messaging_groups import UnknownSenders
from actors.store.sessions import Session
from actors.stored import split
from actors.watch import Subscriptions
from protocol.layout import SessionLayout
from protocol.logs import session_tag
from protocol.models import DEFAULT_MODEL
from protocol.rows import Routing

log = logging.getLogger("hutch.supervisor")

GLOBAL_GROUP = "global"

# `last_active_at` is for people and clean-up, not for routing: once a minute is plenty,
# and a burst of messages must not cost a central-DB write each.
_TOUCH_INTERVAL_S = 60.0


@dataclass(frozen=True)
class SupervisorSetup(DataFolder):
    data_dir: Path
    session_settings: SessionSettings
    max_containers: int = 5
    drain_timeout_s: float = 15.0
    # Where agent groups' uids come from; None: agents run as the host's uid (a host not run
    # as root cannot give them another).
    agent_uids: UidRange | None = None
    agent_limits: AgentLimits = field(default_factory=AgentLimits)
    # Each channel's owner by platform user id, and the policy a new chat gets for strangers.
    owners: dict[str, str] = field(default_factory=dict)
    unknown_senders: UnknownSenders = "drop"


def submitter(supervisor: pykka.ActorRef[Supervisor]) -> OnEvent:
    """What a channel calls with each event: returns at once with the future of its row."""

    def on_event(event: InboundEvent) -> Stored:
        stored: Stored = pykka.ThreadingFuture()
        try:
            supervisor.tell(InboundReceived(event, stored))
        except pykka.ActorDeadError:
            error = RoutingError("the host is shutting down; please send that again in a moment")
            stored.set_exception((RoutingError, error, None))
        return stored

    return on_event


class Supervisor(pykka.ThreadingActor):
    def __init__(
        self,
        setup: SupervisorSetup,
        store: Store,
        runtime: AgentRuntime,
        delivery: Tellable,
        watcher: Subscriptions,
        registry: SessionRegistry,
        proxy: ProxySockets | None = None,
    ) -> None:
        super().__init__()
        self._setup = setup
        self._store = store
        self._runtime = runtime
        self._delivery = delivery
        self._watcher = watcher
        self._registry = registry
        self._proxy = proxy
        self._slots = ContainerSlots(setup.max_containers)
        # Messages handed to each session, so an idle answer that crossed one is not acted on.
        self._routed: Counter[str] = Counter()
        self._touched: dict[str, float] = {}
        # Routed but not yet handed to their sessions: session id -> (its actor, requests).
        self._routed_since: dict[str, tuple[pykka.ActorRef[SessionActor], list[WriteInbound]]] = {}
        self._closing = False
        commands = Answerer(
            store,
            setup.session_settings.agent_env.get("HUTCH_MODEL", DEFAULT_MODEL),
            restart_group=lambda agent_group_id: self.actor_ref.tell(RestartGroupAgents(agent_group_id)),
            prices=lambda: _prices(setup.data_dir),
        )
        self._router = InboundRouter(
            store, setup.owners, self._notify, unknown_senders=setup.unknown_senders, touch=self._touch,
            commands=commands,
        )  # fmt: skip

    def on_stop(self) -> None:
        self._closing = True
        self._hand_over()  # routed messages were promised to their sessions
        self._drain_sessions()
        self._stop_sessions([session_id for session_id, _ in self._registry.items()])
        log.info("supervisor stopped")

    def _drain_sessions(self) -> None:
        """Let deliveries already handed to a channel finish and be recorded."""
        asked: list[tuple[str, pykka.Future[Any]]] = []
        for session_id, ref in self._registry.items():
            try:
                asked.append((session_id, ref.ask(Drain(), block=False)))
            except pykka.ActorDeadError:
                continue
        deadline = time.monotonic() + self._setup.drain_timeout_s
        for session_id, future in asked:
            try:
                drained: pykka.Future[bool] = future.get(timeout=max(0.0, deadline - time.monotonic()))
                drained.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.ActorDeadError:
                continue
            except pykka.Timeout:
                log.warning("%s a delivery did not finish in time; it will be sent again after the restart",
                            session_tag(session_id))  # fmt: skip

    def _stop_sessions(self, session_ids: list[str]) -> None:
        """Every session at once: each stops its own agent, so they end in parallel."""
        # The agent gets stop_timeout_s to finish, then a kill and a few seconds to confirm it.
        timeout = self._setup.session_settings.stop_timeout_s * 2 + 10
        stopping: list[tuple[str, pykka.Future[Any]]] = []
        for session_id in session_ids:
            ref = self._registry.remove(session_id)
            if ref is None:
                continue
            try:
                stopping.append((session_id, ref.stop(block=False)))
            except pykka.ActorDeadError:
                continue
        deadline = time.monotonic() + timeout
        for session_id, future in stopping:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except (pykka.ActorDeadError, pykka.Timeout) as exc:
                log.warning("%s session did not stop cleanly: %s", session_tag(session_id), exc or type(exc).__name__)

    # --- messages -------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        match message:
            case InboundReceived(event=event, stored=stored):
                self._receive(event, stored)
            case HandOver():
                self._hand_over()
            case OpenQuestion(deliver=deliver):
                self._open_question(deliver)
            case EnsureSession(session_id=session_id):
                session = sessions.get(self._store, session_id)
                if session is not None and not self._closing:
                    self._session_ref(session)
            case SessionIdle(session_id=session_id):
                self._on_idle(session_id)
            case IdleAnswer():
                self._on_idle_answer(message)
            case SessionFailed(session_id=session_id, error=error, restart=restart):
                self._on_failed(session_id, error, restart)
            case OpenSession(session_id=session_id):
                return self._open(session_id)
            case StopSession(session_id=session_id):
                return self._stop_now(session_id)
            case RemoveAgentGroup(agent_group_id=agent_group_id):
                return self._remove_group(agent_group_id)
            case RecheckBudget(agent_group_id=agent_group_id):
                return self._recheck_budget(agent_group_id)
            case RestartGroupAgents(agent_group_id=agent_group_id):
                return self._restart_group(agent_group_id)
            case TellOwner(text=text, about=about):
                self._tell_owner(text, about)
            case _:
                return super().on_receive(message)
        return None

    def _tell_owner(self, text: str, about: Routing) -> None:
        tell_owner(self._delivery, self._store, self._setup.owners, text, besides=about)

    def _receive(self, event: InboundEvent, stored: Stored) -> None:
        try:
            if self._closing:
                raise RoutingError("the host is shutting down; please send that again in a moment")
            if isinstance(event, InboundAnswer):
                routed = self._router.route_answer(event)
            elif isinstance(event, InboundWebhook):
                routed = self._router.route_webhook(event)
            else:
                routed = self._router.route_chat(event)
            refs = [self._session_ref(one.session) for one in routed]
        except (RoutingError, StoreError, pykka.ActorDeadError) as exc:
            stored.set_exception((type(exc), exc, exc.__traceback__))
            return
        if not routed:  # dropped or answered here: nothing to store, nothing to tell the sender
            stored.set(None)
            return
        for one, ref, part in zip(routed, refs, split(stored, len(routed)), strict=True):
            self._routed[one.session.id] += 1
            if not self._routed_since:
                self.actor_ref.tell(HandOver())  # behind the rest of the burst already queued
            queued = self._routed_since.setdefault(one.session.id, (ref, []))[1]
            queued.append(msgspec.structs.replace(one.request, stored=part))

    def _notify(self, routing: Routing, text: str) -> None:
        self._delivery.tell(Notify(routing=routing, text=text))

    def _hand_over(self) -> None:
        """Each session gets what was routed to it since the last hand-over, in one message,
        so a burst into a session is one message for it and one commit."""
        routed, self._routed_since = self._routed_since, {}
        for session_id, (ref, requests) in routed.items():
            try:
                ref.tell(InboundBatch(tuple(requests)))
            except pykka.ActorDeadError as exc:
                log.warning("%s session stopped before taking %d message(s)", session_tag(session_id), len(requests))
                for request in requests:
                    if request.stored is not None:
                        request.stored.set_exception((type(exc), exc, exc.__traceback__))

    def _touch(self, session_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(session_id, -_TOUCH_INTERVAL_S) >= _TOUCH_INTERVAL_S:
            self._touched[session_id] = now
            sessions.touch(self._store, session_id)

    # --- questions ------------------------------------------------------------------------

    def _open_question(self, deliver: Any) -> None:
        """Record a question before it is shown: an answer can come back the moment the
        platform has it. The id comes from an untrusted container, so it must not take over
        another session's question."""
        action: AskQuestionAction = deliver.action
        existing = pending_questions.get(self._store, action.question_id)
        if existing is not None and existing.session_id != deliver.session_id:
            reason = f"question id {action.question_id!r} belongs to another conversation"
            deliver.reply_to.tell(DeliveryFailed(deliver.message_out_id, reason, retryable=False))
            return
        if existing is None:
            pending_questions.create(
                self._store,
                id=action.question_id,
                session_id=deliver.session_id,
                message_out_id=deliver.message_out_id,
                question=action.question,
                options=action.options,
                platform_id=deliver.routing.platform_id,
                channel_type=deliver.routing.channel_type,
                thread_id=deliver.routing.thread_id,
            )
        self._delivery.tell(deliver)

    # --- sessions -------------------------------------------------------------------------

    def _session_ref(self, session: Session) -> pykka.ActorRef[SessionActor]:
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
            watcher=self._watcher,
        )
        self._registry.add(session.id, ref)
        return ref

    def _session_info(self, session: Session) -> SessionInfo:
        group = agent_groups.get(self._store, session.agent_group_id)
        if group is None:
            raise RoutingError(f"session {session.id} belongs to an agent group that no longer exists")
        return SessionInfo(
            session_id=session.id,
            agent_group=group.folder,
            layout=SessionLayout(self._setup.session_folder(group.folder, session.id)),
            agent_dir=self._setup.groups_dir / group.folder,
            global_dir=self._setup.groups_dir / GLOBAL_GROUP,
            user=self._agent_user(group.folder),
            limits=group.limits(self._setup.agent_limits),
            model=group.model,
        )

    def _agent_user(self, folder: str) -> AgentUser | None:
        """The group's own uid, with a group of the same number, when there is a range."""
        if self._setup.agent_uids is None:
            return None
        uid = agent_uids.uid_for_folder(self._store, folder, self._setup.agent_uids)
        return AgentUser(uid, uid)

    def _on_idle(self, session_id: str) -> None:
        """Ask, without waiting, whether the session is still idle once everything routed to
        it so far has been handled; the answer comes back as an `IdleAnswer`."""
        ref = self._registry.get(session_id)
        if ref is None:
            return
        self._hand_over()  # the question must come after whatever was routed to it
        try:
            ref.tell(StopIfIdle(reply_to=self.actor_ref, token=self._routed[session_id]))
        except pykka.ActorDeadError:
            return

    def _on_idle_answer(self, answer: IdleAnswer) -> None:
        # A message routed after the question was asked is the session's work now.
        if not answer.idle or self._routed[answer.session_id] != answer.token or self._closing:
            return
        self._stop_sessions([answer.session_id])
        self._touched.pop(answer.session_id, None)

    # --- asked through the control socket (actors/control) --------------------------------

    def _open(self, session_id: str) -> pykka.ActorRef[SessionActor] | None:
        session = sessions.get(self._store, session_id)
        if session is None or self._closing:
            return None
        return self._session_ref(session)

    def _stop_now(self, session_id: str) -> bool:
        return bool(self._stop_live([session_id]))

    def _recheck_budget(self, agent_group_id: str) -> int:
        """The group's live sessions run what waits for its budget now (`hutch budget set`)."""
        told = 0
        for session in sessions.list_all(self._store, agent_group_id=agent_group_id):
            ref = self._registry.get(session.id)
            if ref is not None:
                ref.tell(BudgetRaised())
                told += 1
        return told

    def _remove_group(self, agent_group_id: str) -> list[str]:
        ids = self._group_session_ids(agent_group_id)
        running = self._stop_live(ids)
        agent_groups.delete(self._store, agent_group_id)
        for session_id in ids:
            self._touched.pop(session_id, None)
        log.info("agent group %s removed; %d session(s) stopped", agent_group_id[:8], len(running))
        return running

    def _restart_group(self, agent_group_id: str) -> list[str]:
        """An agent reads its settings (HUTCH_MODEL) only when it starts, so a changed group
        takes effect on the next message."""
        running = self._stop_live(self._group_session_ids(agent_group_id))
        if running:
            log.info("agent group %s changed; %d session(s) stopped", agent_group_id[:8], len(running))
        return running

    def _group_session_ids(self, agent_group_id: str) -> list[str]:
        return [session.id for session in sessions.list_all(self._store, agent_group_id=agent_group_id)]

    def _stop_live(self, session_ids: list[str]) -> list[str]:
        """Those of `session_ids` that run, stopped as going idle stops them, in this actor's
        turn and after what was routed to them: no message can open one again meanwhile, so
        there are never two writers of its inbound.db."""
        running = [session_id for session_id in session_ids if self._registry.get(session_id) is not None]
        self._hand_over()
        self._stop_sessions(running)
        for session_id in running:
            self._touched.pop(session_id, None)
        return running

    def _on_failed(self, session_id: str, error: str, restart: bool) -> None:
        ref = self._registry.remove(session_id)
        if not restart:
            # Stopped from here, after everything routed to it so far (it refuses those), and
            # not started again now: the next message or the sweep tries again.
            if ref is not None:
                ref.stop(block=False)
            log.warning("%s session could not start (%s); the next message or sweep tries again",
                        session_tag(session_id), error)  # fmt: skip
            return
        session = sessions.get(self._store, session_id)
        if session is None or self._closing:
            return
        log.warning("%s session failed (%s); restarting it from disk", session_tag(session_id), error)
        self._session_ref(session)


def _prices(data_dir: Path) -> PriceTable:
    """The host checked prices.toml at start; one edited badly since costs at list prices."""
    try:
        return load_prices(data_dir)
    except PricesError as exc:
        log.warning("%s; /cost uses the list prices", exc)
        return default_prices()
