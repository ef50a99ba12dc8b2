"""SessionActor: one live session. The only writer of its inbound.db (DESIGN invariant 1).

It writes inbound rows, keeps an agent running while there is work, reads what the agent
wrote, applies system actions, hands replies to the DeliveryActor in seq order, records what
comes back, mirrors acks into `messages_in.status`, schedules the next occurrence of a
recurring task, and notices a dead or stuck agent. Every handler re-reads the files, so a
duplicate or a missed event does no harm; all its state can be rebuilt from disk.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import msgspec
import pykka

from actors.channels.base import Target
from actors.delivery_plan import DeliveryRejected, plan_action, target_of
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
from actors.recurrence import RecurrenceError, next_occurrence
from actors.runtime.base import AgentHandle, AgentRuntime, AgentSpec, RuntimeStartError
from actors.slots import ContainerSlots
from actors.system_actions import ActionRejected, apply_action
from protocol import inbound, outbound
from protocol.content import ChatIn, Notice, SystemAction
from protocol.db import create_session_db, read_transaction, write_transaction
from protocol.layout import SessionLayout, UnsafePathError
from protocol.rows import Delivery, MessageIn, ProcessingAck
from protocol.schema import INBOUND, OUTBOUND
from protocol.timers import ActorTimer
from protocol.timeutil import format_ts, now_ts, parse_ts, utc_now

log = logging.getLogger("hutch.session")

# A handler slower than this holds up every other event of the session; worth a log line.
SLOW_HANDLER_S = 1.0


@dataclass(frozen=True)
class SessionSettings:
    timezone: str = "UTC"
    idle_timeout_s: float = 1800.0
    stale_heartbeat_s: float = 30.0
    claim_ceiling_s: float = 1800.0
    retry_base_s: float = 5.0
    max_tries: int = 5
    delivery_retry_base_s: float = 2.0
    delivery_max_attempts: int = 5
    stop_timeout_s: float = 15.0
    # Settings handed to the runner as they are (provider, model, assistant name, ...).
    agent_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    agent_group: str
    layout: SessionLayout
    agent_dir: Path
    global_dir: Path | None = None
    admin_user_id: str | None = None

    @property
    def tag(self) -> str:
        return f"[{self.agent_group}/{self.session_id[:8]}]"


class ProxySockets(Protocol):
    """What the session needs of the credential proxy (see actors/credentials.py)."""

    def open_socket(self, session_id: str, agent_group: str, socket_path: Path) -> None: ...

    def close_socket(self, session_id: str) -> None: ...


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
        # Outbound rows: how far we have read, which rows are settled, which wait to be sent.
        self._cursor = 0
        self._settled: set[str] = set()
        self._attempts: dict[str, Delivery] = {}
        self._queue: dict[str, ReadRow] = {}
        self._in_flight: str | None = None
        self._drained: pykka.ThreadingFuture[bool] | None = None
        self._routes: set[tuple[str, str]] = set()
        # The agent.
        self._handle: AgentHandle | None = None
        self._generation = 0
        self._started_at: datetime | None = None
        self._stopping = False
        self._waiting_for_slot = False
        self._counted_claims: set[tuple[str, str]] = set()
        self._last_activity = clock()
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
            case OutboundChanged() | Wake():
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
                return self._drain()
            case _:
                log.warning("%s ignoring unexpected message %r", self._info.tag, message)
        return None

    def _load(self, conn: sqlite3.Connection) -> None:
        for delivery in inbound.deliveries(conn).values():
            if delivery.status == "retrying":
                self._attempts[delivery.message_out_id] = delivery
            else:
                self._settled.add(delivery.message_out_id)
        for channel_type, platform_id in conn.execute(
            "SELECT DISTINCT channel_type, platform_id FROM messages_in WHERE channel_type IS NOT NULL"
            " AND platform_id IS NOT NULL"
        ):
            self._routes.add((channel_type, platform_id))

    def _refresh(self) -> None:
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
            names = self._take_files(message_id, request.files)
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

    def _take_files(self, message_id: str, files: tuple[tuple[str, str], ...]) -> list[str]:
        """Move a message's files into `inbox/<id>/`, refusing a folder the container made a symlink."""
        folder = self._layout.inbox(message_id)
        if folder.is_symlink() or folder.parent.is_symlink():
            raise UnsafePathError(f"{folder} is a symlink")
        folder.mkdir(parents=True, exist_ok=True)
        names: list[str] = []
        for raw_name, temporary in files:
            name = Path(raw_name).name or "file"
            destination = folder / name
            if destination.is_symlink():
                destination.unlink()
            shutil.move(temporary, destination)
            names.append(name)
        return names

    # --- outbound -------------------------------------------------------------------------

    def _read_outbound(self) -> None:
        while True:
            try:
                rows = read_outbound_after(self._layout.outbound_db, self._cursor)
            except sqlite3.DatabaseError as exc:
                # The agent owns this file; whatever it did to it must not stop the session.
                log.warning("%s cannot read outbound.db: %s", self._info.tag, exc)
                return
            for item in rows:
                self._take_outbound(item)
                self._cursor = max(self._cursor, item.seq if isinstance(item, RejectedRow) else item.row.seq)
            if len(rows) < 200:
                return

    def _take_outbound(self, item: ReadRow | RejectedRow) -> None:
        key = item.key if isinstance(item, RejectedRow) else item.row.id
        if key in self._settled or key in self._queue:
            return
        self._activity()
        if isinstance(item, RejectedRow):
            self._settle_failed(key, item.reason)
        elif item.row.kind == "system":
            self._apply_system(item)
        else:
            self._queue[key] = item

    def _apply_system(self, item: ReadRow) -> None:
        action: SystemAction = item.content  # type: ignore[assignment]
        routing = item.row.routing
        if (routing.channel_type, routing.platform_id) not in self._routes:
            routing = msgspec.structs.replace(routing, channel_type=None, platform_id=None, thread_id=None)
        try:
            with write_transaction(self._layout.inbound_db) as conn:
                done = apply_action(conn, action, routing, item.row.seq)
                inbound.record_delivery(conn, Delivery(message_out_id=item.row.id, status="delivered",
                                                       attempts=1, delivered_at=now_ts()))  # fmt: skip
        except ActionRejected as exc:
            self._settle_failed(item.row.id, str(exc))
            self._tell_agent(f"Your request {item.row.seq} was not applied: {exc}")
            return
        self._settled.add(item.row.id)
        log.info("%s applied system row seq=%d: %s", self._info.tag, item.row.seq, done)

    def _settle_failed(self, key: str, reason: str) -> None:
        log.warning("%s rejected outbound row %s: %s", self._info.tag, key, reason)
        previous = self._attempts.pop(key, None)
        with write_transaction(self._layout.inbound_db) as conn:
            inbound.record_delivery(
                conn,
                Delivery(message_out_id=key, status="failed", attempts=previous.attempts if previous else 0,
                         last_error=reason[:2000]),
            )  # fmt: skip
        self._settled.add(key)
        self._queue.pop(key, None)

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
        with write_transaction(self._layout.inbound_db) as conn:
            for row in pending:
                inbound.set_status(conn, [row.id], finished[row.id])
                if row.kind == "task" and row.recurrence:
                    self._schedule_next(conn, row)
        self._activity()

    def _schedule_next(self, conn: sqlite3.Connection, row: MessageIn) -> None:
        scheduled = row.due_at() or parse_ts(row.timestamp)
        try:
            following = next_occurrence(row.recurrence or "", scheduled, self._clock(), self._settings.timezone)
        except RecurrenceError as exc:
            log.warning("%s task %s: %s; the series ends", self._info.tag, row.id, exc)
            return
        series = row.series_id or row.id
        # Derived from the series and the time, so applying the same ack twice adds nothing.
        next_id = f"{series[:40]}-{following.astimezone(parse_ts(row.timestamp).tzinfo):%Y%m%d%H%M%S}"
        created = inbound.insert_message(
            conn,
            message_id=next_id,
            content=row.decoded(),
            timestamp=now_ts(),
            routing=row.routing,
            process_after=format_ts(following),
            recurrence=row.recurrence,
            series_id=series,
        )
        log.info("%s task series %s: next occurrence %s", self._info.tag, series, created.process_after)

    # --- the agent ------------------------------------------------------------------------

    def _has_due_work(self) -> bool:
        now = self._clock()
        with read_transaction(self._layout.inbound_db) as conn:
            return any(row.trigger for row in inbound.pending_due(conn, now))

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
        env = {
            **self._settings.agent_env,
            "HUTCH_SESSION_DIR": str(self._layout.root),
            "HUTCH_AGENT_DIR": str(self._info.agent_dir),
            "TZ": self._settings.timezone,
        }
        if self._info.global_dir is not None:
            env["HUTCH_GLOBAL_DIR"] = str(self._info.global_dir)
        if self._info.admin_user_id:
            env["HUTCH_ADMIN_USER_ID"] = self._info.admin_user_id
        if self._proxy is not None:
            self._proxy.open_socket(self._info.session_id, self._info.agent_group, self._layout.proxy_socket)
            env["HUTCH_PROXY_SOCKET"] = str(self._layout.proxy_socket)
        spec = AgentSpec(
            session_id=self._info.session_id,
            agent_group=self._info.agent_group,
            session_dir=self._layout.root,
            agent_dir=self._info.agent_dir,
            global_dir=self._info.global_dir,
            env=env,
        )
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
        """`processing` acks made by the running agent; older ones are a predecessor's leftovers,
        which the agent clears when it starts, and must not count against it."""
        started = self._started_at
        if started is None:
            return {}
        return {
            key: ack
            for key, ack in self._acks().items()
            if ack.status == "processing" and _parse(ack.status_changed) >= started - timedelta(seconds=1)
        }

    def _check_liveness(self) -> None:
        if self._handle is None or self._started_at is None:
            return
        claims = self._current_claims()
        if not claims:
            return
        problem = self._liveness_problem(claims)
        if problem is None:
            return
        log.warning("%s agent is dead or stuck (%s); stopping it", self._info.tag, problem)
        self._stopping = False  # its exit must retry the claimed messages
        self._handle.kill()

    def _liveness_problem(self, claims: dict[str, ProcessingAck]) -> str | None:
        now = self._clock()
        stale = timedelta(seconds=self._settings.stale_heartbeat_s)
        try:
            beat: datetime | None = datetime.fromtimestamp(self._layout.heartbeat.stat().st_mtime, now.tzinfo)
        except FileNotFoundError:
            beat = None
        if beat is None and self._started_at is not None and now - self._started_at > stale:
            return f"no heartbeat in {stale.total_seconds():.0f} s since it started"
        if beat is not None and now - beat > stale:
            return f"last heartbeat {(now - beat).total_seconds():.0f} s ago"
        oldest = min(_parse(ack.status_changed) for ack in claims.values())
        if now - oldest > timedelta(seconds=self._settings.claim_ceiling_s):
            return f"a message has been processing for {(now - oldest).total_seconds():.0f} s"
        return None

    def _retry_claims(self, reason: str) -> bool:
        """Retry what the agent had claimed; False when it had claimed nothing."""
        claims = self._current_claims()
        fresh = [key for key, ack in claims.items() if (key, ack.status_changed) not in self._counted_claims]
        self._counted_claims.update((key, claims[key].status_changed) for key in fresh)
        self._retry_rows(fresh, reason)
        return bool(claims)

    def _due_trigger_ids(self) -> list[str]:
        with read_transaction(self._layout.inbound_db) as conn:
            return [row.id for row in inbound.pending_due(conn, self._clock()) if row.trigger]

    def _retry_rows(self, message_ids: list[str], reason: str) -> None:
        """Try again later, 5 s doubling; after the last try the row fails and the user is told."""
        if not message_ids:
            return
        now = self._clock()
        given_up: list[MessageIn] = []
        with write_transaction(self._layout.inbound_db) as conn:
            for message_id in message_ids:
                row = inbound.get_message(conn, message_id)
                if row is None or row.status != "pending":
                    continue
                delay = self._settings.retry_base_s * 2**row.tries
                tries = inbound.schedule_retry(conn, message_id, format_ts(now + timedelta(seconds=delay)))
                if tries >= self._settings.max_tries:
                    inbound.set_status(conn, [message_id], "failed")
                    given_up.append(row)
                    if row.kind == "task" and row.recurrence:
                        self._schedule_next(conn, row)  # one failed run does not end the series
                else:
                    log.info("%s message seq=%d will be retried in %.0f s (try %d of %d): %s",
                             self._info.tag, row.seq, delay, tries + 1, self._settings.max_tries, reason)  # fmt: skip
        for row in given_up:
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
        """Send the oldest row that may go now; one at a time keeps a session's order."""
        if self._in_flight is not None or self._drained is not None:
            return
        now = self._clock()
        for key in sorted(self._queue, key=lambda key: self._queue[key].row.seq):
            item = self._queue[key]
            if not self._may_send(item, now):
                continue  # waiting for its retry time; the rows behind it go on
            try:
                channel_type, target = target_of(item.row, frozenset(self._routes))
                action = plan_action(self._layout, item.row, item.content, self._platform_id_of)
            except DeliveryRejected as exc:
                self._settle_failed(key, str(exc))
                continue
            self._in_flight = key
            self._delivery.tell(
                Deliver(
                    session_id=self._info.session_id,
                    message_out_id=key,
                    channel_type=channel_type,
                    target=target,
                    action=action,
                    reply_to=self.actor_ref,
                )
            )
            return

    def _may_send(self, item: ReadRow, now: datetime) -> bool:
        previous = self._attempts.get(item.row.id)
        if previous is not None and previous.retry_after and _parse(previous.retry_after) > now:
            return False
        return not (item.row.deliver_after and _parse(item.row.deliver_after) > now)

    def _platform_id_of(self, message_out_id: str) -> str | None:
        with read_transaction(self._layout.inbound_db) as conn:
            delivery = inbound.get_delivery(conn, message_out_id)
        return delivery.platform_message_id if delivery and delivery.status == "delivered" else None

    def _on_delivered(self, message: Delivered) -> None:
        previous = self._attempts.pop(message.message_out_id, None)
        delivery = Delivery(
            message_out_id=message.message_out_id,
            status="delivered",
            attempts=(previous.attempts if previous else 0) + 1,
            platform_message_id=message.platform_message_id,
            delivered_at=now_ts(),
        )
        with write_transaction(self._layout.inbound_db) as conn:
            inbound.record_delivery(conn, delivery)
        self._settled.add(message.message_out_id)
        self._queue.pop(message.message_out_id, None)
        self._sent(message.message_out_id)

    def _on_delivery_failed(self, message: DeliveryFailed) -> None:
        key = message.message_out_id
        previous = self._attempts.get(key)
        attempts = (previous.attempts if previous else 0) + 1
        if not message.retryable or attempts >= self._settings.delivery_max_attempts:
            self._attempts[key] = Delivery(message_out_id=key, status="retrying", attempts=attempts)
            self._settle_failed(key, f"delivery failed after {attempts} attempt(s): {message.error}")
        else:
            delay = self._settings.delivery_retry_base_s * 2 ** (attempts - 1)
            retry = Delivery(
                message_out_id=key,
                status="retrying",
                attempts=attempts,
                last_error=message.error[:2000],
                retry_after=format_ts(self._clock() + timedelta(seconds=delay)),
            )
            with write_transaction(self._layout.inbound_db) as conn:
                inbound.record_delivery(conn, retry)
            self._attempts[key] = retry
            log.warning("%s delivery of %s failed (attempt %d), retrying in %.0f s: %s",
                        self._info.tag, key, attempts, delay, message.error)  # fmt: skip
        self._sent(key)

    def _sent(self, key: str) -> None:
        if self._in_flight == key:
            self._in_flight = None
        if self._drained is not None and self._in_flight is None:
            self._drained.set(True)
        self._pump()
        self._schedule_wake()

    def _drain(self) -> pykka.ThreadingFuture[bool]:
        self._drained = pykka.ThreadingFuture()
        if self._in_flight is None:
            self._drained.set(True)
        return self._drained

    # --- timers and idling ----------------------------------------------------------------

    def _schedule_wake(self) -> None:
        """One timer for the earliest thing that becomes due: a task, a retry, a delayed send."""
        moments: list[datetime] = []
        with read_transaction(self._layout.inbound_db) as conn:
            upcoming = inbound.next_due_time(conn)
        if upcoming is not None:
            moments.append(upcoming)
        moments += [
            _parse(d.retry_after) for d in self._attempts.values() if d.retry_after and d.message_out_id in self._queue
        ]
        moments += [_parse(i.row.deliver_after) for i in self._queue.values() if i.row.deliver_after]
        now = self._clock()
        future = [moment for moment in moments if moment > now]
        if future:
            self._wake_timer.schedule((min(future) - now).total_seconds() + 0.01)

    def _busy(self) -> bool:
        return bool(self._current_claims()) or self._has_due_work() or self._in_flight is not None

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
        return not self._queue and self._in_flight is None and upcoming is None and not self._busy()

    def _stop_if_idle(self) -> bool:
        if not self._nothing_left():
            return False
        self._stop_agent("the session is idle")
        return True


def _parse(stamp: str) -> datetime:
    try:
        return parse_ts(stamp)
    except ValueError:
        # Written by the container: an unreadable stamp must not stop the session.
        return datetime.min.replace(tzinfo=utc_now().tzinfo)
