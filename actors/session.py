"""SessionActor: one live session. The only writer of its inbound.db (DESIGN invariant 1).

It writes inbound rows, keeps an agent running while there is work, reads what the agent
wrote, applies system actions, hands replies to the DeliveryActor in seq order, records what
comes back, mirrors acks into `messages_in.status`, schedules the next occurrence of a
recurring task, and notices a dead or stuck agent. Every handler re-reads the files, so a
duplicate or a missed event does no harm; all its state can be rebuilt from disk.

The decisions live beside it, free of actors: `delivery_queue` (what to send next and what
an outcome means), `liveness` (dead or stuck), `retries` (trying an inbound row again),
`recurrence` (a series' next occurrence), `system_actions` (the agent's requests).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pykka

from actors.agent_spec import agent_spec
from actors.channels.base import Target
from actors.delivery_plan import DeliveryRejected, plan_action, target_of
from actors.delivery_queue import DeliveryQueue, gave_up_reason
from actors.inbox_files import take_files
from actors.liveness import agent_problem, claims_since, heartbeat_mtime
from actors.messages import (
    ContainerExited,
    Deliver,
    Delivered,
    DeliveryFailed,
    Drain,
    IdleCheck,
    Notify,
    OutboundChanged,
    SessionFailed,
    SessionIdle,
    SlotGranted,
    StopIfIdle,
    SweepCheck,
    Wake,
    WriteInbound,
)
from actors.outbound_reader import ReadRow, RejectedRow, read_outbound_after
from actors.recurrence import SeriesStep, continue_series, recurs
from actors.retries import retry_later
from actors.runtime.base import AgentHandle, AgentRuntime, RuntimeStartError
from actors.session_info import ProxySockets, SessionInfo, SessionSettings
from actors.slots import ContainerSlots
from actors.system_actions import ActionRejected, apply_action
from protocol import inbound, outbound
from protocol.content import ChatIn, Notice, SystemAction
from protocol.db import create_session_db, read_transaction, write_transaction
from protocol.rows import Delivery, MessageIn, ProcessingAck
from protocol.schema import INBOUND, OUTBOUND
from protocol.timers import ActorTimer
from protocol.timeutil import now_ts, utc_now

__all__ = ["SLOW_HANDLER_S", "ProxySockets", "SessionActor", "SessionInfo", "SessionSettings"]

log = logging.getLogger("hutch.session")

# A handler slower than this holds up every other event of the session; worth a log line.
SLOW_HANDLER_S = 1.0

# read_outbound_after's page size: a full page means there may be more behind it.
_OUTBOUND_PAGE = 200


class SessionActor(pykka.ThreadingActor):
    def __init__(
        self,
        info: SessionInfo,
        runtime: AgentRuntime,
        delivery: pykka.ActorRef[Any],
        settings: SessionSettings | None = None,
        *,
        slots: ContainerSlots | None = None,
        supervisor: pykka.ActorRef[Any] | None = None,
        proxy: ProxySockets | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__()
        self._info = info
        self._layout = info.layout
        self._runtime = runtime
        self._delivery = delivery
        self._settings = settings or SessionSettings()
        self._slots = slots or ContainerSlots(1_000_000)
        self._supervisor = supervisor
        self._proxy = proxy
        self._clock = clock
        # Outbound rows: how far we have read, and what happened to each row read.
        self._cursor = 0
        self._deliveries = DeliveryQueue(self._settings.delivery_retry_base_s, self._settings.delivery_max_attempts)
        # The chats this session has heard from: the only ones the agent may write to.
        self._routes: set[tuple[str, str]] = set()
        # The agent.
        self._handle: AgentHandle | None = None
        self._generation = 0
        self._started_at: datetime | None = None
        self._stopping = False
        self._waiting_for_slot = False
        self._counted_claims: set[tuple[str, str]] = set()
        self._last_activity = clock()
        self._refreshed_at = -math.inf
        self._wake_timer = ActorTimer(self.actor_ref, Wake(), name=f"wake-{info.session_id[:8]}")
        self._idle_timer = ActorTimer(self.actor_ref, IdleCheck(), name=f"idle-{info.session_id[:8]}")

    # --- lifecycle ------------------------------------------------------------------------

    def on_start(self) -> None:
        self._layout.create()
        create_session_db(self._layout.inbound_db, INBOUND)
        if not self._layout.outbound_db.exists():
            # Created before any agent runs, so readers never meet a file without tables;
            # from then on the agent is its only writer.
            create_session_db(self._layout.outbound_db, OUTBOUND)
        with read_transaction(self._layout.inbound_db) as conn:
            self._load(conn)
        log.info("%s session started", self._info.tag)
        self._refresh()

    def on_stop(self) -> None:
        self._wake_timer.cancel()
        self._idle_timer.cancel()
        self._stop_agent("the session is stopping")
        self._close_proxy()  # the agent's exit is not handled any more: the actor is stopped
        self._slots.release(self._info.session_id)
        log.info("%s session stopped", self._info.tag)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error("%s session failed: %s", self._info.tag, exception_value)
        self._wake_timer.cancel()
        self._idle_timer.cancel()
        if self._handle is not None:
            self._handle.kill()
        self._close_proxy()
        self._slots.release(self._info.session_id)
        if self._supervisor is not None:
            self._supervisor.tell(SessionFailed(self._info.session_id, str(exception_value)))

    def on_receive(self, message: Any) -> Any:
        started = time.monotonic()
        try:
            return self._dispatch(message)
        finally:
            took = time.monotonic() - started
            if took > SLOW_HANDLER_S:
                log.warning("%s handling %s took %.1f s", self._info.tag, type(message).__name__, took)

    def _dispatch(self, message: Any) -> Any:
        match message:
            case WriteInbound():
                return self._write_inbound(message)
            case OutboundChanged(at=at):
                if at > self._refreshed_at:
                    self._refresh()
            case Wake():
                self._refresh()
            case SweepCheck():
                self._refresh()
                self._check_liveness()
            case ContainerExited():
                self._on_exit(message)
            case SlotGranted():
                self._waiting_for_slot = False
                self._start_agent()
            case Delivered():
                self._on_delivered(message)
            case DeliveryFailed():
                self._on_delivery_failed(message)
            case IdleCheck():
                self._on_idle_check()
            case StopIfIdle():
                return self._stop_if_idle()
            case Drain():
                return self._deliveries.drain()
            case _:
                log.warning("%s ignoring unexpected message %r", self._info.tag, message)
        return None

    def _load(self, conn: sqlite3.Connection) -> None:
        self._deliveries.load(inbound.deliveries(conn).values())
        for channel_type, platform_id in conn.execute(
            "SELECT DISTINCT channel_type, platform_id FROM messages_in WHERE channel_type IS NOT NULL"
            " AND platform_id IS NOT NULL"
        ):
            self._routes.add((channel_type, platform_id))

    def _refresh(self) -> None:
        self._refreshed_at = time.monotonic()
        self._read_outbound()
        self._mirror_acks()
        if self._has_due_work():
            self._ensure_agent()
        self._pump()
        self._schedule_wake()

    def _activity(self) -> None:
        self._last_activity = self._clock()
        self._idle_timer.schedule(self._settings.idle_timeout_s)

    # --- inbound --------------------------------------------------------------------------

    def _write_inbound(self, request: WriteInbound) -> MessageIn:
        message_id = request.message_id or uuid.uuid4().hex
        content = request.content
        if request.files and isinstance(content, ChatIn):
            names = take_files(self._layout, message_id, request.files)
            content = msgspec.structs.replace(content, files=names)
        with write_transaction(self._layout.inbound_db) as conn:
            row = inbound.insert_message(
                conn,
                message_id=message_id,
                content=content,
                timestamp=now_ts(),
                routing=request.routing,
                trigger=request.trigger,
            )
        if row.channel_type and row.platform_id:
            self._routes.add((row.channel_type, row.platform_id))
        self._activity()
        log.info("%s inbound %s seq=%d", self._info.tag, row.kind, row.seq)
        if row.trigger:
            try:
                self._ensure_agent()
            except Exception:
                # The message is safely on disk and the sender must not resend it; the next
                # wake or the sweep starts the agent.
                log.exception("%s could not start the agent for seq=%d", self._info.tag, row.seq)
        return row

    # --- outbound -------------------------------------------------------------------------

    def _read_outbound(self) -> None:
        while True:
            try:
                rows = read_outbound_after(self._layout.outbound_db, self._cursor, _OUTBOUND_PAGE)
            except sqlite3.DatabaseError as exc:
                # The agent owns this file; whatever it did to it must not stop the session.
                log.warning("%s cannot read outbound.db: %s", self._info.tag, exc)
                return
            for item in rows:
                self._take_outbound(item)
                self._cursor = max(self._cursor, item.seq if isinstance(item, RejectedRow) else item.row.seq)
            if len(rows) < _OUTBOUND_PAGE:
                return

    def _take_outbound(self, item: ReadRow | RejectedRow) -> None:
        key = item.key if isinstance(item, RejectedRow) else item.row.id
        if self._deliveries.knows(key):
            return
        self._activity()
        if isinstance(item, RejectedRow):
            self._settle_failed(key, item.reason)
        elif item.row.kind == "system":
            self._apply_system(item)
        else:
            self._deliveries.enqueue(item)

    def _apply_system(self, item: ReadRow) -> None:
        action: SystemAction = item.content  # type: ignore[assignment]
        routing = item.row.routing
        if (routing.channel_type, routing.platform_id) not in self._routes:
            routing = msgspec.structs.replace(routing, channel_type=None, platform_id=None, thread_id=None)
        applied = self._deliveries.applied(item.row.id, now_ts())
        try:
            with write_transaction(self._layout.inbound_db) as conn:
                done = apply_action(conn, action, routing, item.row.seq)
                inbound.record_delivery(conn, applied)
        except ActionRejected as exc:
            self._settle_failed(item.row.id, str(exc))
            self._tell_agent(f"Your request {item.row.seq} was not applied: {exc}")
            return
        self._deliveries.record(applied)
        log.info("%s applied system row seq=%d: %s", self._info.tag, item.row.seq, done)

    def _settle_failed(self, key: str, reason: str) -> None:
        log.warning("%s rejected outbound row %s: %s", self._info.tag, key, reason)
        self._record(self._deliveries.rejected(key, reason))

    def _record(self, delivery: Delivery) -> None:
        with write_transaction(self._layout.inbound_db) as conn:
            inbound.record_delivery(conn, delivery)
        self._deliveries.record(delivery)

    def _tell_agent(self, text: str) -> None:
        """A note for the agent's next turn; it does not start a turn of its own."""
        with write_transaction(self._layout.inbound_db) as conn:
            inbound.insert_message(
                conn, message_id=uuid.uuid4().hex, content=Notice(text=text[:4000]), timestamp=now_ts(), trigger=False
            )

    # --- acks and recurrence --------------------------------------------------------------

    def _acks(self) -> dict[str, ProcessingAck]:
        if not self._layout.outbound_db.exists():
            return {}
        try:
            with read_transaction(self._layout.outbound_db) as conn:
                return outbound.acks(conn)
        except sqlite3.DatabaseError as exc:
            log.warning("%s cannot read acks: %s", self._info.tag, exc)
            return {}

    def _mirror_acks(self) -> None:
        acks = self._acks()
        finished = {key: ack.status for key, ack in acks.items() if ack.status in {"completed", "failed"}}
        if not finished:
            return
        with read_transaction(self._layout.inbound_db) as conn:
            pending = [row for row in inbound.messages_with_status(conn, "pending") if row.id in finished]
        if not pending:
            return
        steps: list[SeriesStep] = []
        with write_transaction(self._layout.inbound_db) as conn:
            for row in pending:
                inbound.set_status(conn, [row.id], finished[row.id])
                if recurs(row):
                    steps.append(continue_series(conn, row, self._clock(), self._settings.timezone))
        for step in steps:
            self._log_series(step)
        self._activity()

    def _log_series(self, step: SeriesStep) -> None:
        if step.following is not None:
            log.info("%s task series %s: next occurrence %s", self._info.tag, step.series,
                     step.following.process_after)  # fmt: skip
        else:
            log.warning("%s task %s: %s; the series ends", self._info.tag, step.finished.id, step.error)

    # --- the agent ------------------------------------------------------------------------

    def _has_due_work(self) -> bool:
        return bool(self._due_trigger_ids())

    def _ensure_agent(self) -> None:
        if self._handle is not None or self._waiting_for_slot:
            return
        granted = self._slots.acquire(self._info.session_id, self._slot_granted)
        if not granted:
            self._waiting_for_slot = True
            log.info("%s waiting for a container slot", self._info.tag)
            return
        self._start_agent()

    def _slot_granted(self) -> None:
        """Called from the thread of the session that freed the slot."""
        try:
            self.actor_ref.tell(SlotGranted())
        except pykka.ActorDeadError:
            # This session stopped while it waited: pass the slot on rather than raise into
            # the session that released it.
            self._slots.release(self._info.session_id)

    def _start_agent(self) -> None:
        if self._handle is not None:
            return
        self._layout.heartbeat.unlink(missing_ok=True)  # a stale beat would make a new agent look alive
        proxy_socket = None
        if self._proxy is not None:
            self._proxy.open_socket(self._info.session_id, self._info.agent_group, self._layout.proxy_socket)
            proxy_socket = self._layout.proxy_socket
        spec = agent_spec(self._info, self._settings, proxy_socket)
        self._generation += 1
        generation = self._generation
        try:
            self._handle = self._runtime.start(spec, lambda code: self._exited(generation, code))
        except RuntimeStartError as exc:
            log.error("%s agent failed to start: %s", self._info.tag, exc)
            self._close_proxy()
            self._slots.release(self._info.session_id)
            self._retry_rows(self._due_trigger_ids(), f"the agent could not start ({exc})")
            return
        self._started_at = self._clock()
        self._stopping = False
        self._activity()
        log.info("%s agent started (%s %s)", self._info.tag, self._runtime.name, self._handle.ident)

    def _exited(self, generation: int, code: int) -> None:
        try:
            self.actor_ref.tell(ContainerExited(generation, code))
        except pykka.ActorDeadError:
            return  # the session stopped first and already cleaned up

    def _on_exit(self, message: ContainerExited) -> None:
        if message.generation != self._generation:
            return
        deliberate = self._stopping
        self._handle = None
        self._stopping = False
        self._slots.release(self._info.session_id)
        self._close_proxy()
        log.info("%s agent exited with code %d%s", self._info.tag, message.exit_code,
                 "" if deliberate else " unexpectedly")  # fmt: skip
        if not deliberate:
            reason = f"the agent exited with code {message.exit_code}"
            if not self._retry_claims(reason):
                # It died before claiming anything (e.g. a setting the runner refuses): count a
                # try against what it should have run, or it is restarted at once, forever.
                self._retry_rows(self._due_trigger_ids(), reason)
        self._started_at = None  # its leftover claims are nobody's work now
        self._refresh()

    def _stop_agent(self, reason: str) -> None:
        handle = self._handle
        if handle is None:
            return
        self._stopping = True
        log.info("%s stopping agent: %s", self._info.tag, reason)
        handle.stop(self._settings.stop_timeout_s)

    def _current_claims(self) -> dict[str, ProcessingAck]:
        if self._started_at is None:
            return {}
        return claims_since(self._acks(), self._started_at)

    def _check_liveness(self) -> None:
        if self._handle is None or self._started_at is None:
            return
        problem = agent_problem(
            self._clock(),
            self._started_at,
            heartbeat_mtime(self._layout.heartbeat),
            self._current_claims(),
            self._settings,
        )
        if problem is None:
            return
        log.warning("%s agent is dead or stuck (%s); stopping it", self._info.tag, problem)
        self._stopping = False  # its exit must retry the claimed messages
        self._handle.kill()

    def _retry_claims(self, reason: str) -> bool:
        """Retry what the agent had claimed; False when it had claimed nothing."""
        claims = self._current_claims()
        # A claim is counted once, however many times its agent's end is reported.
        fresh = [key for key, ack in claims.items() if (key, ack.status_changed) not in self._counted_claims]
        self._counted_claims.update((key, claims[key].status_changed) for key in fresh)
        self._retry_rows(fresh, reason)
        return bool(claims)

    def _due_trigger_ids(self) -> list[str]:
        with read_transaction(self._layout.inbound_db) as conn:
            return [row.id for row in inbound.pending_due(conn, self._clock()) if row.trigger]

    def _retry_rows(self, message_ids: list[str], reason: str) -> None:
        """Count a try against each row; whoever sent a row that was given up is told."""
        if not message_ids:
            return
        with write_transaction(self._layout.inbound_db) as conn:
            outcome = retry_later(conn, message_ids, self._clock(), self._settings)
        for retry in outcome.retrying:
            log.info("%s message seq=%d will be retried in %.0f s (try %d of %d): %s", self._info.tag,
                     retry.row.seq, retry.delay_s, retry.tries + 1, self._settings.max_tries, reason)  # fmt: skip
        for step in outcome.continued:
            self._log_series(step)
        for row in outcome.given_up:
            log.error("%s message seq=%d failed after %d tries: %s", self._info.tag, row.seq, row.tries + 1, reason)
            self._notify(row, "Sorry, I could not process your message after several attempts. Please try again.")

    def _close_proxy(self) -> None:
        if self._proxy is not None:
            self._proxy.close_socket(self._info.session_id)

    def _notify(self, row: MessageIn, text: str) -> None:
        if row.channel_type and row.platform_id:
            self._delivery.tell(Notify(row.channel_type, Target(row.platform_id, row.thread_id), text))

    # --- deliveries -----------------------------------------------------------------------

    def _pump(self) -> None:
        """Hand the DeliveryActor the oldest row that may go now, skipping any it must refuse."""
        for item in self._deliveries.ready(self._clock()):
            try:
                channel_type, target = target_of(item.row, frozenset(self._routes))
                action = plan_action(self._layout, item.row, item.content, self._platform_id_of)
            except DeliveryRejected as exc:
                self._settle_failed(item.row.id, str(exc))
                continue
            self._deliveries.sending(item.row.id)
            self._delivery.tell(
                Deliver(
                    session_id=self._info.session_id,
                    message_out_id=item.row.id,
                    channel_type=channel_type,
                    target=target,
                    action=action,
                    reply_to=self.actor_ref,
                )
            )
            return

    def _platform_id_of(self, message_out_id: str) -> str | None:
        with read_transaction(self._layout.inbound_db) as conn:
            delivery = inbound.get_delivery(conn, message_out_id)
        return delivery.platform_message_id if delivery and delivery.status == "delivered" else None

    def _on_delivered(self, message: Delivered) -> None:
        key = message.message_out_id
        self._record(self._deliveries.delivered(key, message.platform_message_id, now_ts()))
        self._sent(key)

    def _on_delivery_failed(self, message: DeliveryFailed) -> None:
        key = message.message_out_id
        outcome = self._deliveries.failed(key, message.error, message.retryable, self._clock())
        if outcome.status == "failed":
            log.warning("%s rejected outbound row %s: %s", self._info.tag, key,
                        gave_up_reason(outcome.attempts, message.error))  # fmt: skip
        else:
            log.warning("%s delivery of %s failed (attempt %d), retrying in %.0f s: %s", self._info.tag, key,
                        outcome.attempts, self._deliveries.backoff_s(outcome.attempts), message.error)  # fmt: skip
        self._record(outcome)
        self._sent(key)

    def _sent(self, key: str) -> None:
        self._deliveries.finished(key)
        self._pump()
        self._schedule_wake()

    # --- timers and idling ----------------------------------------------------------------

    def _schedule_wake(self) -> None:
        """One timer for the earliest thing that becomes due: a task, a retry, a delayed send."""
        moments: list[datetime] = []
        with read_transaction(self._layout.inbound_db) as conn:
            upcoming = inbound.next_due_time(conn)
        if upcoming is not None:
            moments.append(upcoming)
        moments += self._deliveries.wake_times()
        now = self._clock()
        future = [moment for moment in moments if moment > now]
        if future:
            self._wake_timer.schedule((min(future) - now).total_seconds() + 0.01)

    def _busy(self) -> bool:
        return bool(self._current_claims()) or self._has_due_work() or self._deliveries.in_flight is not None

    def _on_idle_check(self) -> None:
        idle_for = (self._clock() - self._last_activity).total_seconds()
        if self._busy() or idle_for < self._settings.idle_timeout_s:
            self._idle_timer.schedule(max(1.0, self._settings.idle_timeout_s - idle_for))
            return
        self._stop_agent(f"idle for {idle_for:.0f} s")
        if self._supervisor is not None and self._nothing_left():
            self._supervisor.tell(SessionIdle(self._info.session_id))

    def _nothing_left(self) -> bool:
        with read_transaction(self._layout.inbound_db) as conn:
            upcoming = inbound.next_due_time(conn)
        return not self._deliveries and self._deliveries.in_flight is None and upcoming is None and not self._busy()

    def _stop_if_idle(self) -> bool:
        if not self._nothing_left():
            return False
        self._stop_agent("the session is idle")
        return True
