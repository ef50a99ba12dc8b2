"""SessionActor: one live session, and the only writer of its inbound.db (docs/ARCHITECTURE.md).

It writes inbound rows, keeps an agent running while there is work, reads what the agent
wrote, applies system actions, hands replies to the DeliveryActor in seq order, records what
comes back, mirrors acks into `messages_in.status`, schedules the next occurrence of a
recurring task, and notices a dead or stuck agent. All its state can be rebuilt from disk.

Each wake costs at most one read of outbound.db (rows after the cursor and the acks of the
pending rows, in one transaction) and one write of inbound.db; the pending rows are known in
memory, because nobody else writes them. A heartbeat reads nothing. Inbound writes answer
their futures as soon as they are committed: a burst shares one transaction, and the agent
starts from a message the actor sends itself, so nobody waits on a container.

The decisions live beside it, free of actors: `agent` (the agent's lifecycle), `plan` (what
a row asks of a channel), `delivery_queue` (what to send next, what an outcome means),
`retries`, `recurrence`, `system_actions`, `liveness`.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pykka

from actors.messages import (
    AskQuestion,
    BudgetRaised,
    ChangeSeries,
    CommitInbound,
    ContainerExited,
    Deliver,
    Delivered,
    DeliveryFailed,
    Drain,
    EnsureAgent,
    FlushBookkeeping,
    HeartbeatSeen,
    IdleAnswer,
    IdleCheck,
    InboundBatch,
    Notify,
    OpenQuestion,
    OutboundChanged,
    SessionFailed,
    SessionIdle,
    ShowTyping,
    SlotGranted,
    StopIfIdle,
    SweepCheck,
    Tellable,
    TellOwner,
    TypingTick,
    Wake,
    WriteInbound,
    YieldSlot,
)
from actors.runtime.base import AgentRuntime, RuntimeStartError
from actors.session.agent import AgentController
from actors.session.delivery_queue import DeliveryQueue, gave_up_reason
from actors.session.folder import prepare_session_folder
from actors.session.inbox_files import take_files
from actors.session.info import ProxySockets, SessionInfo, SessionSettings
from actors.session.liveness import claims_since
from actors.session.outbound_reader import ReadRow, RejectedRow, Snapshot, read_snapshot
from actors.session.pending import PendingRows
from actors.session.plan import (
    DeliveryRejected,
    References,
    attach_files,
    plan_action,
    referenced_seq,
    release_files,
    target_of,
)
from actors.session.recurrence import SeriesStep, continue_series, recurs
from actors.session.retries import defer, retry_later
from actors.session.send_rate import SendRate
from actors.session.system_actions import ActionRejected, apply_action
from actors.session.typing import TypingHints
from actors.slots import ContainerSlots
from actors.watch import FolderWatcher, Subscriptions
from protocol import inbound
from protocol.agent_db import AgentDbBusy
from protocol.content import ChatIn, ContentError, Notice, SeriesChange, SystemAction, check_inbound
from protocol.db import read_transaction, write_transaction
from protocol.filewatch import commit_may_have_finished
from protocol.layout import HEARTBEAT, OUTBOUND_DB, UnsafePathError
from protocol.logs import tag_thread
from protocol.rows import Delivery, MessageIn, ProcessingAck, Routing
from protocol.timers import ActorTimer
from protocol.timeutil import format_ts, now_ts, utc_now

log = logging.getLogger("hutch.session")

# A handler slower than this holds up every other event of the session; worth a log line.
SLOW_HANDLER_S = 1.0

# The longest a finished ack's mirror or a delivery's outcome waits for the session's next
# write before it is written on its own.
BOOKKEEPING_DELAY_S = 0.05

# Outbound rows read per transaction: a full page means there may be more behind it.
_OUTBOUND_PAGE = 200


class SessionActor(pykka.ThreadingActor):
    """`delivery` receives `Deliver` and `Notify` (the DeliveryActor, or any actor of an
    embedding program's own); `supervisor`, when there is one, is told `OpenQuestion`,
    `SessionIdle` and `SessionFailed`. `watcher` is the host's shared file watcher; without
    one the session watches its own folder."""

    def __init__(
        self,
        info: SessionInfo,
        runtime: AgentRuntime,
        delivery: Tellable,
        settings: SessionSettings | None = None,
        *,
        slots: ContainerSlots | None = None,
        supervisor: Tellable | None = None,
        proxy: ProxySockets | None = None,
        watcher: Subscriptions | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__()
        self._info = info
        self._layout = info.layout
        self._delivery = delivery
        self._settings = settings or SessionSettings()
        self._supervisor = supervisor
        self._clock = clock
        self._agent = AgentController(
            info,
            self._settings,
            runtime,
            slots or ContainerSlots(1_000_000),
            proxy,
            clock,
            self.actor_ref.tell,
        )
        self._watcher = watcher
        self._device = 0  # the session folder's, once it exists: the agent's files must be on it
        self._broken: SessionSetupError | None = None  # why the folder could not be set up
        self._own_watcher: FolderWatcher | None = None
        # Inbound rows: the pending ones, and the writes received but not yet committed.
        self._pending = PendingRows()
        self._incoming: list[WriteInbound] = []
        # Bookkeeping decided but not yet written (see `_defer_finished`).
        self._unwritten_records: list[Delivery] = []
        self._unwritten_finished: dict[str, tuple[str, MessageIn]] = {}
        # Outbound rows: how far we have read, what happened to each, and each one's seq.
        self._cursor = 0
        self._deliveries = DeliveryQueue(
            self._settings.delivery_retry_base_s,
            self._settings.delivery_max_attempts,
            self._settings.delivery_max_backoff_s,
        )
        self._out_ids: dict[int, str] = {}
        self._send_rate = SendRate(self._settings.send_per_minute, self._settings.send_burst)
        self._told_held = False  # the chat heard that sends are held, this time round
        # The agent's claims (processing acks) as last read, and those already retried once.
        self._claims: dict[str, ProcessingAck] = {}
        self._counted_claims: set[tuple[str, str]] = set()
        # Deferred acks already mirrored, and the rows that wait for the group's budget.
        self._mirrored_deferrals: set[tuple[str, str]] = set()
        self._budget_waits: set[str] = set()
        # The chats this session has heard from: the only ones the agent may write to.
        self._routes: set[tuple[str, str]] = set()
        self._last_activity = clock()
        self._refreshed_at = float("-inf")
        self._wake_timer = ActorTimer(self.actor_ref, Wake(), name=f"wake-{info.session_id[:8]}")
        self._idle_timer = ActorTimer(self.actor_ref, IdleCheck(), name=f"idle-{info.session_id[:8]}")
        self._bookkeeping_timer = ActorTimer(
            self.actor_ref, FlushBookkeeping(), name=f"bookkeeping-{info.session_id[:8]}"
        )
        self._typing = TypingHints()
        self._typing_timer = ActorTimer(self.actor_ref, TypingTick(), name=f"typing-{info.session_id[:8]}")

    # --- lifecycle ------------------------------------------------------------------------

    def on_start(self) -> None:
        # pykka runs this actor's start, messages and stop in this one thread: every line it
        # logs, whoever's code logs it, is about this session.
        tag_thread(self._info.tag)
        try:
            self._device = prepare_session_folder(self._layout, self._info.agent_dir, self._info.user)
            with read_transaction(self._layout.inbound_db) as conn:
                self._load(conn)
        except (OSError, sqlite3.Error, ValueError) as exc:
            # Not a crash to restart from at once (it would fail the same way): say so, fail
            # whatever is handed over, and wait for the Supervisor to stop this actor.
            self._broken = SessionSetupError(f"the session's folder cannot be set up: {exc}")
            log.error("%s %s", self._info.tag, self._broken)
            if self._supervisor is not None:
                self._supervisor.tell(SessionFailed(self._info.session_id, str(self._broken), restart=False))
            return
        self._watch()
        log.info("%s session started", self._info.tag)
        self._refresh()

    def on_stop(self) -> None:
        if self._broken is not None:
            return  # nothing was started
        self._commit_incoming()  # a write told just before the stop is still kept
        self._bookkeeping_timer.cancel()
        self._flush_bookkeeping()
        self._unwatch()
        self._wake_timer.cancel()
        self._idle_timer.cancel()
        self._typing_timer.cancel()
        self._agent.close()
        log.info("%s session stopped", self._info.tag)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error("%s session failed: %s", self._info.tag, exception_value)
        for request in self._incoming:
            _fail(request, exception_value)
        self._incoming.clear()
        self._unwatch()
        self._wake_timer.cancel()
        self._idle_timer.cancel()
        self._typing_timer.cancel()
        self._bookkeeping_timer.cancel()
        self._agent.abandon()
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
        if self._broken is not None:
            return self._refuse(message, self._broken)
        match message:
            case WriteInbound():
                self._receive_inbound(message)
            case InboundBatch(requests=requests):
                for request in requests:
                    self._receive_inbound(request)
            case CommitInbound():
                self._commit_incoming()
            case FlushBookkeeping():
                self._flush_bookkeeping()
            case EnsureAgent():
                self._ensure_agent()
            case OutboundChanged(at=at):
                if at > self._refreshed_at:
                    self._refresh()
            case HeartbeatSeen(at=at):
                self._agent.beat(at)
            case Wake():
                self._refresh()
            case SweepCheck():
                self._refresh()
                self._check_liveness()
            case ContainerExited():
                self._on_exit(message)
            case SlotGranted():
                self._start_agent(self._agent.slot_granted)
            case YieldSlot():
                if not self._busy():
                    self._agent.stop("another session needs the container slot")
            case Delivered():
                self._on_delivered(message)
            case DeliveryFailed():
                self._on_delivery_failed(message)
            case IdleCheck():
                self._on_idle_check()
            case TypingTick():
                self._show_typing()
            case StopIfIdle(reply_to=reply_to, token=token):
                idle = self._stop_if_idle()
                if reply_to is None:
                    return idle
                reply_to.tell(IdleAnswer(self._info.session_id, token, idle))
            case Drain():
                return self._deliveries.drain()
            case ChangeSeries(action=action):
                return self._change_series(action)
            case BudgetRaised():
                self._budget_raised()
            case _:
                return super().on_receive(message)
        return None

    def _refuse(self, message: Any, error: SessionSetupError) -> Any:
        """A session whose folder could not be set up: every row handed over fails with the
        reason (its sender hears it), and it holds no agent, so it is idle."""
        match message:
            case WriteInbound():
                _fail(message, error)
            case InboundBatch(requests=requests):
                for request in requests:
                    _fail(request, error)
            case StopIfIdle(reply_to=reply_to, token=token):
                if reply_to is None:
                    return True
                reply_to.tell(IdleAnswer(self._info.session_id, token, True))
            case ChangeSeries():
                raise error  # to the asker, whose change was not made
        return None

    def _change_series(self, action: SeriesChange) -> str:
        """A task change asked through the host's control socket, applied as the agent's own
        would be; a resumed task that is due starts the agent."""
        with self._writing() as conn:
            done = apply_action(conn, action, Routing(), requested_by=0)
            self._pending.replace(inbound.messages_with_status(conn, "pending"))
        log.info("%s %s (asked through the control socket)", self._info.tag, done)
        self._refresh()
        return done

    def _show_typing(self) -> None:
        """The chats whose messages the agent is working on are told so, and again while it
        works (a timer, since a long turn writes nothing the host would notice)."""
        working = [row.routing for key in self._claims if (row := self._pending.get(key)) is not None]
        for routing in self._typing.due(working):
            if routing.channel_type:
                self._delivery.tell(ShowTyping(routing))
        if working:
            self._typing_timer.schedule(self._typing.interval_s)
        else:
            self._typing_timer.cancel()

    def _load(self, conn: sqlite3.Connection) -> None:
        self._deliveries.load(inbound.deliveries(conn).values())
        self._pending.replace(inbound.messages_with_status(conn, "pending"))
        for channel_type, platform_id in conn.execute(
            "SELECT DISTINCT channel_type, platform_id FROM messages_in WHERE channel_type IS NOT NULL"
            " AND platform_id IS NOT NULL"
        ):
            self._routes.add((channel_type, platform_id))

    def _refresh(self) -> None:
        self._refreshed_at = time.monotonic()
        self._read_outbound()
        self._ensure_agent()  # it looks for due work itself
        self._pump()
        self._schedule_wake()
        self._agent.note_idle(not self._busy())

    def _activity(self) -> None:
        self._last_activity = self._clock()
        # The check re-arms itself from `_last_activity`; a new timer (a thread) per
        # message would be the busiest thing the session does under load.
        if not self._idle_timer.pending:
            self._idle_timer.schedule(self._settings.idle_timeout_s)

    # --- watching the folder --------------------------------------------------------------

    def _watch(self) -> None:
        if self._watcher is None:
            self._own_watcher = FolderWatcher(self._layout.out, recursive=False)
            self._own_watcher.start()
            self._watcher = self._own_watcher
        self._watcher.subscribe(self._layout.out, self._on_file_event)

    def _unwatch(self) -> None:
        if self._watcher is not None:
            self._watcher.unsubscribe(self._layout.out)
        if self._own_watcher is not None:
            self._own_watcher.stop()
            self._own_watcher = None

    def _on_file_event(self, path: Path) -> None:
        """Called on the watcher's thread: only tells."""
        try:
            if path.name == HEARTBEAT:
                self.actor_ref.tell(HeartbeatSeen(time.time()))
            elif commit_may_have_finished(path, OUTBOUND_DB):
                self.actor_ref.tell(OutboundChanged(time.monotonic()))
        except pykka.ActorDeadError:
            return  # stopping: the next start reads everything again

    # --- inbound --------------------------------------------------------------------------

    def _receive_inbound(self, request: WriteInbound) -> None:
        if not self._incoming:
            self.actor_ref.tell(CommitInbound())  # behind whatever else of the burst is queued
        self._incoming.append(request)

    def _commit_incoming(self) -> None:
        """Write every inbound row received since the last commit in one transaction; each
        sender's future is answered once it is on disk."""
        batch, self._incoming = self._incoming, []
        prepared = self._prepare_each(batch)
        if not prepared:
            return
        try:
            with self._writing() as conn:
                rows = inbound.insert_messages(conn, [self._new(request, *ready) for request, ready in prepared])
        except Exception as exc:
            for request, _ in prepared:
                _fail(request, exc)
            raise
        if any(row.trigger for row in rows):
            # Queued before anyone hears the rows are stored, so whatever they do next
            # (a stop, say) comes after it.
            with contextlib.suppress(pykka.ActorDeadError):  # committed while stopping: the next start runs it
                self.actor_ref.tell(EnsureAgent())
        self._activity()
        # One line per commit: a line per row costs more than the row under a burst.
        kinds = ",".join(sorted({row.kind for row in rows}))
        log.info("%s inbound %s seq=%s", self._info.tag, kinds,
                 rows[0].seq if len(rows) == 1 else f"{rows[0].seq}..{rows[-1].seq} ({len(rows)} rows)")  # fmt: skip
        for (request, _), row in zip(prepared, rows, strict=True):
            self._pending.add(row)
            if row.channel_type and row.platform_id:
                self._routes.add((row.channel_type, row.platform_id))
            if request.stored is not None:
                request.stored.set(row)

    def _prepare_each(self, batch: list[WriteInbound]) -> list[tuple[WriteInbound, tuple[str, Any]]]:
        """Each request's id and content; one whose files cannot be taken is refused alone."""
        prepared = []
        for request in batch:
            try:
                prepared.append((request, self._prepare(request)))
            except Exception as exc:
                log.warning("%s refused an inbound message: %s", self._info.tag, exc)
                _fail(request, exc)
        return prepared

    def _prepare(self, request: WriteInbound) -> tuple[str, Any]:
        """The row's id and content, its files moved into the inbox. Content past the
        protocol's caps is refused here, before anything is stored, whichever channel sent it."""
        message_id = request.message_id or uuid.uuid4().hex
        content = request.content
        check_inbound(content)
        if request.files and isinstance(content, ChatIn):
            names = take_files(self._layout, message_id, request.files)
            content = msgspec.structs.replace(content, files=names)
        return message_id, content

    @staticmethod
    def _new(request: WriteInbound, message_id: str, content: Any) -> inbound.NewMessage:
        return inbound.NewMessage(
            message_id=message_id,
            content=content,
            timestamp=now_ts(),
            routing=request.routing,
            trigger=request.trigger,
        )

    # --- outbound -------------------------------------------------------------------------

    def _read_outbound(self) -> None:
        while True:
            try:
                snapshot = read_snapshot(
                    self._layout.outbound_db, self._cursor, self._pending.ids(), _OUTBOUND_PAGE, self._device
                )
            except AgentDbBusy as exc:
                # Its commit's end (the journal's deletion) wakes this actor again.
                log.debug("%s outbound.db not read yet: %s", self._info.tag, exc)
                return
            except (sqlite3.DatabaseError, UnsafePathError) as exc:
                # The agent owns this file; whatever it did to it must not stop the session.
                log.warning("%s cannot read outbound.db: %s", self._info.tag, exc)
                return
            self._take(snapshot)
            if not snapshot.full:
                return

    def _take(self, snapshot: Snapshot) -> None:
        """Act on one snapshot: at most one write transaction for all it asks of inbound.db."""
        started_at = self._agent.started_at
        self._claims = claims_since(snapshot.acks, started_at) if started_at is not None else {}
        self._show_typing()
        finished = {
            key: ack.status
            for key, ack in snapshot.acks.items()
            if ack.status in {"completed", "failed"} and key in self._pending
        }
        chats: list[ReadRow] = []
        settled: list[ReadRow | RejectedRow] = []  # settled here and now, never sent
        for item in snapshot.rows:
            if isinstance(item, RejectedRow):
                self._cursor = max(self._cursor, item.seq)
                if not self._deliveries.knows(item.key):
                    settled.append(item)
                continue
            self._cursor = max(self._cursor, item.row.seq)
            self._out_ids[item.row.seq] = item.row.id
            if not self._deliveries.knows(item.row.id):
                (settled if item.row.kind == "system" else chats).append(item)
        self._defer_finished(finished)
        deferrals = {
            key: ack
            for key, ack in snapshot.acks.items()
            if ack.status == "deferred" and key in self._pending
            and (key, ack.status_changed) not in self._mirrored_deferrals
        }  # fmt: skip
        if deferrals:
            self._mirror_deferrals(deferrals)
        if settled:
            self._write_settlements(settled)
        for chat in chats:
            self._deliveries.enqueue(chat)
        if chats or settled or finished:
            self._activity()

    def _write_settlements(self, items: list[ReadRow | RejectedRow]) -> None:
        """Rejected rows and system actions, in one transaction (with what was deferred)."""
        records: list[Delivery] = []
        notes: list[str] = []
        with self._writing() as conn:
            for item in items:
                if isinstance(item, RejectedRow):
                    log.warning("%s rejected outbound row %s: %s", self._info.tag, item.key, item.reason)
                    records.append(self._deliveries.rejected(item.key, item.reason))
                else:
                    records.append(self._apply_system(conn, item, notes))
            for record in records:
                inbound.record_delivery(conn, record)
            for note in notes:
                self._tell_agent(conn, note)
            self._pending.replace(inbound.messages_with_status(conn, "pending"))
        for record in records:
            self._deliveries.record(record)

    def _apply_system(self, conn: sqlite3.Connection, item: ReadRow, notes: list[str]) -> Delivery:
        """One action, in a savepoint of its own: a refused one undoes only itself."""
        action: SystemAction = item.content  # type: ignore[assignment]
        routing = item.row.routing
        if (routing.channel_type, routing.platform_id) not in self._routes:
            routing = msgspec.structs.replace(routing, channel_type=None, platform_id=None, thread_id=None)
        conn.execute("SAVEPOINT system_action")
        try:
            done = apply_action(conn, action, routing, item.row.seq)
        except ActionRejected as exc:
            conn.execute("ROLLBACK TO system_action")
            conn.execute("RELEASE system_action")
            log.warning("%s rejected outbound row %s: %s", self._info.tag, item.row.id, exc)
            notes.append(f"Your request {item.row.seq} was not applied: {exc}")
            return self._deliveries.rejected(item.row.id, str(exc))
        conn.execute("RELEASE system_action")
        log.info("%s applied system row seq=%d: %s", self._info.tag, item.row.seq, done)
        return self._deliveries.applied(item.row.id, now_ts())

    # --- bookkeeping, written with the session's next write ----------------------------------
    #
    # A finished ack's mirror and a delivery's outcome change nothing anyone waits for, and
    # each commit wakes the agent (and this host) once more. So they ride with the session's
    # next write, or go at the latest `BOOKKEEPING_DELAY_S` later; memory moves on at once.
    # A crash in between loses nothing: the acks are read again and mirrored, and an outcome
    # not recorded means the row is sent again (delivery is at least once).

    def _defer_finished(self, finished: dict[str, str]) -> None:
        for key, status in finished.items():
            row = self._pending.pop(key)
            if row is not None:
                self._unwritten_finished[key] = (status, row)
        if finished:
            self._bookkeeping_due()

    def _defer_record(self, delivery: Delivery) -> None:
        self._deliveries.record(delivery)
        self._unwritten_records.append(delivery)
        self._bookkeeping_due()

    def _bookkeeping_due(self) -> None:
        if not self._bookkeeping_timer.pending:
            self._bookkeeping_timer.schedule(BOOKKEEPING_DELAY_S)

    def _flush_bookkeeping(self) -> None:
        if self._unwritten_records or self._unwritten_finished:
            with self._writing():
                pass
            self._schedule_wake()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on inbound.db that carries the deferred bookkeeping first."""
        records, finished = self._unwritten_records, self._unwritten_finished
        self._unwritten_records, self._unwritten_finished = [], {}
        steps: list[SeriesStep] = []
        try:
            with write_transaction(self._layout.inbound_db) as conn:
                for record in records:
                    inbound.record_delivery(conn, record)
                steps = self._mirror(conn, finished)
                yield conn
                if steps:
                    self._pending.replace(inbound.messages_with_status(conn, "pending"))
        except BaseException:
            self._unwritten_records = records + self._unwritten_records
            self._unwritten_finished = finished | self._unwritten_finished
            raise
        for step in steps:
            self._log_series(step)

    def _mirror(self, conn: sqlite3.Connection, finished: dict[str, tuple[str, MessageIn]]) -> list[SeriesStep]:
        """Acks into `messages_in.status`; a finished recurring task gets its next occurrence."""
        steps: list[SeriesStep] = []
        for key, (status, row) in finished.items():
            inbound.set_status(conn, [key], status)
            if recurs(row):
                steps.append(continue_series(conn, row, self._clock(), self._settings.timezone))
        return steps

    def _mirror_deferrals(self, acks: dict[str, ProcessingAck]) -> None:
        """The agent handed rows back (docs/ARCHITECTURE.md, "Deferral"): they stay pending,
        due at its retry time; a busy model's counts a try, a spent budget's does not."""
        with self._writing() as conn:
            outcome = defer(conn, acks, self._clock(), self._settings)
            self._pending.replace(inbound.messages_with_status(conn, "pending"))
        self._mirrored_deferrals.update((key, ack.status_changed) for key, ack in acks.items())
        for item in outcome.deferred:
            if item.reason == "budget":
                self._budget_waits.add(item.row.id)
            else:
                self._budget_waits.discard(item.row.id)
            log.info("%s message seq=%d deferred (%s) until %s", self._info.tag, item.row.seq, item.reason, item.until)
        for step in outcome.continued:
            self._log_series(step)
        for row in outcome.given_up:
            log.error("%s message seq=%d failed: the model stayed busy for %d tries", self._info.tag, row.seq,
                      row.tries + 1)  # fmt: skip
            self._notify(row, "Sorry, the model stayed too busy to answer your message. Please try again later.")
        self._schedule_wake()

    def _budget_raised(self) -> None:
        """Rows waiting for the budget are due now; the proxy decides again when they run."""
        waiting = [key for key in self._budget_waits if key in self._pending]
        self._budget_waits.clear()
        if not waiting:
            return
        with self._writing() as conn:
            for key in waiting:
                inbound.hold_until(conn, key, format_ts(self._clock()))
            self._pending.replace(inbound.messages_with_status(conn, "pending"))
        log.info("%s budget changed: %d waiting message(s) are due now", self._info.tag, len(waiting))
        self._refresh()

    def _settle_failed(self, key: str, reason: str) -> None:
        log.warning("%s rejected outbound row %s: %s", self._info.tag, key, reason)
        self._record(self._deliveries.rejected(key, reason))
        release_files(self._layout, key)

    def _record(self, delivery: Delivery) -> None:
        with self._writing() as conn:
            inbound.record_delivery(conn, delivery)
        self._deliveries.record(delivery)

    def _tell_agent(self, conn: sqlite3.Connection, text: str) -> None:
        """A note for the agent's next turn; it does not start a turn of its own."""
        inbound.insert_message(
            conn, message_id=uuid.uuid4().hex, content=Notice(text=text[:4000]), timestamp=now_ts(), trigger=False
        )

    def _log_series(self, step: SeriesStep) -> None:
        if step.following is not None:
            log.info("%s task series %s: next occurrence %s", self._info.tag, step.series,
                     step.following.process_after)  # fmt: skip
        else:
            log.warning("%s task %s: %s; the series ends", self._info.tag, step.finished.id, step.error)

    # --- the agent ------------------------------------------------------------------------

    def _ensure_agent(self) -> None:
        if self._pending.due_triggers(self._clock()):
            self._start_agent(self._agent.ensure_running)

    def _start_agent(self, start: Callable[[], bool]) -> None:
        try:
            started = start()
        except RuntimeStartError as exc:
            log.error("%s agent failed to start: %s", self._info.tag, exc)
            self._retry_rows(self._pending.due_triggers(self._clock()), f"the agent could not start ({exc})")
            self._schedule_wake()
            return
        if started:
            self._claims = {}
            self._activity()

    def _on_exit(self, message: ContainerExited) -> None:
        deliberate = self._agent.exited(message)
        if deliberate is None:
            return
        if not deliberate:
            reason = f"the agent exited with code {message.exit_code}"
            if not self._retry_claims(reason):
                # It died before claiming anything (e.g. a setting the runner refuses): count a
                # try against what it should have run, or it is restarted at once, forever.
                self._retry_rows(self._pending.due_triggers(self._clock()), reason)
        self._claims = {}
        self._refresh()

    def _check_liveness(self) -> None:
        problem = self._agent.problem(self._claims, self._pending.due_since(self._clock()))
        if problem is not None:
            self._agent.kill(problem)

    def _retry_claims(self, reason: str) -> bool:
        """Retry what the agent had claimed; False when it had claimed nothing."""
        claims = self._claims
        # A claim is counted once, however many times its agent's end is reported.
        fresh = [key for key, ack in claims.items() if (key, ack.status_changed) not in self._counted_claims]
        self._counted_claims.update((key, claims[key].status_changed) for key in fresh)
        self._retry_rows(fresh, reason)
        return bool(claims)

    def _retry_rows(self, message_ids: list[str], reason: str) -> None:
        """Count a try against each row; whoever sent a row that was given up is told."""
        if not message_ids:
            return
        with self._writing() as conn:
            outcome = retry_later(conn, message_ids, self._clock(), self._settings)
            self._pending.replace(inbound.messages_with_status(conn, "pending"))
        for retry in outcome.retrying:
            log.info("%s message seq=%d will be retried in %.0f s (try %d of %d): %s", self._info.tag,
                     retry.row.seq, retry.delay_s, retry.tries + 1, self._settings.max_tries, reason)  # fmt: skip
        for step in outcome.continued:
            self._log_series(step)
        for row in outcome.given_up:
            log.error("%s message seq=%d failed after %d tries: %s", self._info.tag, row.seq, row.tries + 1, reason)
            self._notify(row, "Sorry, I could not process your message after several attempts. Please try again.")

    def _notify(self, row: MessageIn, text: str) -> None:
        if row.channel_type and row.platform_id:
            self._delivery.tell(Notify(row.routing, text))

    # --- deliveries -----------------------------------------------------------------------

    def _pump(self) -> None:
        """Hand over the oldest row that may go now, skipping any it must refuse."""
        now = self._clock()
        for item in self._deliveries.ready(now):
            if not self._send_rate.allows(now):
                self._hold(item)
                return
            try:
                routing = target_of(item.row, frozenset(self._routes))
                action = plan_action(item.row, item.content, self._references(item.content))
                action = attach_files(self._layout, item.row.id, action)
            except DeliveryRejected as exc:
                self._settle_failed(item.row.id, str(exc))
                continue
            self._send_rate.take(now)
            self._deliveries.sending(item.row.id)
            deliver = Deliver(
                session_id=self._info.session_id,
                message_out_id=item.row.id,
                routing=routing,
                action=action,
                reply_to=self.actor_ref,
            )
            if isinstance(action, AskQuestion) and self._supervisor is not None:
                self._supervisor.tell(OpenQuestion(deliver))  # recorded before it is shown
            else:
                self._delivery.tell(deliver)
            return

    def _hold(self, item: ReadRow) -> None:
        """Faster than its pace: the rows wait in order; the chat hears it once per spell."""
        if self._told_held:
            return
        self._told_held = True
        pace = self._settings.send_per_minute
        log.warning("%s the agent sends faster than %.0f a minute; %d message(s) held", self._info.tag, pace,
                    len(self._deliveries))  # fmt: skip
        if item.row.channel_type and item.row.platform_id:
            text = f"(The assistant is sending more than {pace:.0f} messages a minute; the rest follow at that pace.)"
            self._delivery.tell(Notify(item.row.routing, text))
            if self._supervisor is not None:
                where = f"{item.row.channel_type}:{item.row.platform_id}"
                self._supervisor.tell(
                    TellOwner(
                        f"The agent of {self._info.agent_group} is sending more than {pace:.0f} messages a minute "
                        f"to {where}; {len(self._deliveries)} wait and follow at that pace, none is dropped. "
                        f"`hutch sessions stop {self._info.session_id[:8]}` stops it.",
                        about=item.row.routing,
                    )
                )

    def _references(self, content: object) -> References:
        """Look up the one message an edit or a reaction points at."""
        seq = referenced_seq(content)
        if seq is None:
            return References()
        if seq % 2:
            out_id = self._out_ids.get(seq)
            platform_id = self._deliveries.platform_id(out_id) if out_id is not None else None
            return References(sent={seq: platform_id} if platform_id else {})
        with read_transaction(self._layout.inbound_db) as conn:
            target = inbound.get_by_seq(conn, seq)
        try:
            person = target.decoded() if target is not None else None
        except ContentError:
            person = None
        if isinstance(person, ChatIn) and person.platform_message_id:
            return References(received={seq: person.platform_message_id})
        return References()

    def _on_delivered(self, message: Delivered) -> None:
        key = message.message_out_id
        self._defer_record(self._deliveries.delivered(key, message.platform_message_id, now_ts()))
        release_files(self._layout, key)
        self._sent(key)

    def _on_delivery_failed(self, message: DeliveryFailed) -> None:
        key = message.message_out_id
        outcome = self._deliveries.failed(key, message.error, message.retryable, self._clock(), message.retry_after_s)
        if outcome.status == "failed":
            log.warning("%s rejected outbound row %s: %s", self._info.tag, key,
                        gave_up_reason(outcome.attempts, message.error))  # fmt: skip
            release_files(self._layout, key)
        else:
            wait = max(self._deliveries.backoff_s(outcome.attempts), message.retry_after_s or 0.0)
            # A platform down for hours is tried every minute: the first tries are logged, then
            # one in thirty (about every half hour), not a line a minute.
            level = logging.WARNING if outcome.attempts <= 3 or outcome.attempts % 30 == 0 else logging.DEBUG
            log.log(level, "%s delivery of %s failed (attempt %d), retrying in %.0f s: %s", self._info.tag, key,
                    outcome.attempts, wait, message.error)  # fmt: skip
        self._defer_record(outcome)
        self._sent(key)

    def _sent(self, key: str) -> None:
        self._deliveries.finished(key)
        self._agent.note_idle(not self._busy())
        if not self._deliveries:
            self._told_held = False
        self._pump()
        self._schedule_wake()

    # --- timers and idling ----------------------------------------------------------------

    def _schedule_wake(self) -> None:
        """One timer for the earliest thing that becomes due: a task, a retry, a delayed send."""
        moments = [moment for moment in (self._pending.next_due(),) if moment is not None]
        moments += self._deliveries.wake_times()
        if self._deliveries and not self._send_rate.allows(self._clock()):
            moments.append(self._send_rate.next_at(self._clock()))
        now = self._clock()
        future = [moment for moment in moments if moment > now]
        if future:
            self._wake_timer.schedule((min(future) - now).total_seconds() + 0.01)

    def _busy(self) -> bool:
        return (
            bool(self._claims)
            or bool(self._incoming)
            or bool(self._pending.due_triggers(self._clock()))
            or self._deliveries.in_flight is not None
        )

    def _on_idle_check(self) -> None:
        idle_for = (self._clock() - self._last_activity).total_seconds()
        if self._busy() or idle_for < self._settings.idle_timeout_s:
            self._idle_timer.schedule(max(1.0, self._settings.idle_timeout_s - idle_for))
            return
        self._agent.stop(f"idle for {idle_for:.0f} s")
        if self._supervisor is not None and self._nothing_left():
            self._supervisor.tell(SessionIdle(self._info.session_id))

    def _nothing_left(self) -> bool:
        return (
            not self._deliveries
            and self._deliveries.in_flight is None
            and self._pending.next_due() is None
            and not self._busy()
        )

    def _stop_if_idle(self) -> bool:
        if not self._nothing_left():
            return False
        self._agent.stop("the session is idle")
        return True


class SessionSetupError(RuntimeError):
    """The session's folder could not be made ready; what it was handed is refused."""


def _fail(request: WriteInbound, exc: BaseException) -> None:
    if request.stored is not None:
        request.stored.set_exception((type(exc), exc, exc.__traceback__))
