"""InboxActor: turns changes to inbound.db into work for the agent.

Woken by the watchdog event that ends a host commit (its journal's deletion), by a timer for
the next `process_after`, and by a slow safety tick for events that never came. A wake reads
the DB again when a commit or a timer came since the last read, so a duplicate or a burst of
events is harmless and costs one read. Where inotify cannot be had (a host running many
agents can use up the per-user instances), the safety tick runs every second instead.

Once the runner drains for a stop, the inbox hands out nothing: no new batch, and a running
turn asking for follow-ups gets none. It still reads, so a question's answer reaches the
tool waiting for it and the turn can finish.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pykka
from watchdog.observers.api import BaseObserver

from container_runner.lifecycle import Lifecycle, RunnerActor
from container_runner.messages import Ack, AgentIdle, HandBack, InboundChanged, TakeFollowUps, Work
from container_runner.questions import QuestionBoard
from protocol import outbound
from protocol.content import ContentError, QuestionAnswer
from protocol.db import read_transaction
from protocol.filewatch import commit_may_have_finished, watch_folder
from protocol.layout import INBOUND_DB, SessionLayout
from protocol.rows import MessageIn, from_row
from protocol.timers import ActorTicker, ActorTimer
from protocol.timeutil import utc_now

if TYPE_CHECKING:
    from container_runner.agent import AgentActor
    from container_runner.outbox import OutboxActor

log = logging.getLogger(__name__)

_IDS_PER_QUERY = 500

# How often the inbox reads inbound.db when it cannot watch the folder: slow next to an
# event, quick enough for a chat, and one small read a second costs little.
POLL_INTERVAL_S = 1.0


@dataclass(frozen=True)
class _Unhandled:
    """What one read of inbound.db found that this inbox has not handled yet."""

    due: list[MessageIn]
    next_due: datetime | None


class InboxActor(RunnerActor):
    def __init__(
        self,
        layout: SessionLayout,
        agent: pykka.ActorRef[AgentActor],
        outbox: pykka.ActorRef[OutboxActor],
        questions: QuestionBoard,
        safety_interval_s: float = 30.0,
        clock: Callable[[], datetime] = utc_now,
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        super().__init__(lifecycle)
        self._layout = layout
        self._agent = agent
        self._outbox = outbox
        self._questions = questions
        self._safety_interval_s = safety_interval_s
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        # Rows acked by an earlier run, and every row this inbox handed out or answered.
        # Acks are written only at the request of this inbox or of the agent, for rows this
        # inbox handed out, so after one read of processing_ack at start this set knows every
        # acked row without reading outbound.db again.
        self._handled: set[str] = set()
        # Rows the agent deferred, with the `process_after` they were claimed with: until the
        # host mirrors the deferral (a new `process_after`) they are not offered again.
        self._deferred: dict[str, str | None] = {}
        self._agent_busy = False
        # A read is needed only when inbound.db may have changed since the last one began:
        # a commit seen by the watcher (stamped on its thread) or a timer that fired.
        self._read_at = -math.inf
        self._event_at = time.monotonic()
        self._timer_at = time.monotonic()
        self._found = _Unhandled([], None)
        self._observer: BaseObserver | None = None
        self._ticker: ActorTicker | None = None
        self._due_timer: ActorTimer | None = None

    def start_up(self) -> None:
        # The RunnerSystem starts the inbox only after the outbox cleared the stale
        # `processing` claims, so what is acked here is finished for good.
        self._handled.update(self._acked_earlier())
        tick_s = self._safety_interval_s
        try:
            self._observer = watch_folder(self._layout.root, self._on_file_event, recursive=False, entries_only=True)
        except OSError as exc:
            # inotify instances are limited per user (EMFILE/ENOSPC, "inotify instance limit
            # reached"). Dying here would leave messages pending; polling only makes them slower.
            tick_s = min(self._safety_interval_s, self._poll_interval_s)
            log.warning("inbox: cannot watch %s (%s); polling every %g s instead", self._layout.root, exc, tick_s)
        self._ticker = ActorTicker(self.actor_ref, InboundChanged(), tick_s, name="inbox-safety")
        self._ticker.start()
        self._due_timer = ActorTimer(self.actor_ref, InboundChanged(), name="inbox-due")
        self.actor_ref.tell(InboundChanged())

    def shut_down(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._ticker is not None:
            self._ticker.cancel()
        if self._due_timer is not None:
            self._due_timer.cancel()

    def on_receive(self, message: Any) -> Any:
        match message:
            case InboundChanged(at=at):
                if math.isinf(at):  # a timer: rows may have come due, or an event was lost
                    self._timer_at = time.monotonic()
                self._check()
            case AgentIdle():
                self._agent_busy = False
                self._check()
            case HandBack(claimed=claimed):
                for message_id, process_after in claimed:
                    self._handled.discard(message_id)
                    self._deferred[message_id] = process_after
            case TakeFollowUps():
                return self._take_follow_ups()
            case _:
                return super().on_receive(message)
        return None

    def _on_file_event(self, path: Path) -> None:
        if commit_may_have_finished(path, INBOUND_DB):
            at = time.monotonic()
            self._event_at = at  # before the tell, so an ask handled first sees it too
            self.actor_ref.tell(InboundChanged(at))

    def _acked_earlier(self) -> set[str]:
        try:
            with read_transaction(self._layout.outbound_db) as conn:
                # A deferred row is the host's again to schedule: it is not finished.
                return {key for key, ack in outbound.acks(conn).items() if ack.status != "deferred"}
        except FileNotFoundError:
            return set()

    def _check(self) -> None:
        # Read even while the agent is busy: it may be waiting inside a tool for an answer.
        work = self._new_work(self._unhandled_due())
        if work and not self._agent_busy and not self.draining:
            self._dispatch(work)

    def _take_follow_ups(self) -> tuple[MessageIn, ...]:
        work = self._new_work(self._unhandled_due())
        if self.draining:
            # A stop is under way: the turn in flight ends with what it has, so it can finish
            # within the grace period; rows left unclaimed wait for the next start.
            return ()
        if work:
            self._claim(work)
        return tuple(work)

    def _unhandled_due(self) -> list[MessageIn]:
        """Due rows not handled yet; inbound.db is read again only if it may have changed.

        A burst of events costs one read, and the agent's asks between model turns and at
        the end of a batch cost none when nothing was written meanwhile."""
        if max(self._event_at, self._timer_at) > self._read_at:
            self._read_at = time.monotonic()
            self._found = self._read()
            self._schedule(self._found.next_due)
        return [row for row in self._found.due if row.id not in self._handled and not self._waits_for_host(row)]

    def _waits_for_host(self, row: MessageIn) -> bool:
        if row.id not in self._deferred:
            return False
        if self._deferred[row.id] == row.process_after:
            return True  # the host has not mirrored the deferral yet
        del self._deferred[row.id]
        return False

    def _new_work(self, due: list[MessageIn]) -> list[MessageIn]:
        """Due rows, once one of them triggers a turn; context-only rows wait for one."""
        fresh = [row for row in due if not self._answered_question(row)]
        return fresh if any(row.trigger for row in fresh) else []

    def _dispatch(self, rows: list[MessageIn]) -> None:
        self._claim(rows)
        self._agent_busy = True
        self._agent.tell(Work(tuple(rows)))

    def _claim(self, rows: list[MessageIn]) -> None:
        ids = tuple(row.id for row in rows)
        self._outbox.ask(Ack(ids, "processing"))
        self._handled.update(ids)

    def _read(self) -> _Unhandled:
        """Pending rows not handled yet, due or not, from one snapshot of inbound.db."""
        if not self._layout.inbound_db.exists():
            return _Unhandled([], None)
        with read_transaction(self._layout.inbound_db) as conn:
            rows = _unhandled_pending(conn, self._handled)
        now = self._clock()
        due = [row for row in rows if row.is_due(now)]
        later = (row.due_at() for row in rows if not row.is_due(now))
        return _Unhandled(due, min((moment for moment in later if moment is not None), default=None))

    def _answered_question(self, row: MessageIn) -> bool:
        """A question's answer goes to the tool waiting for it, not into a new batch."""
        if row.kind != "system":
            return False
        try:
            content = row.decoded()
        except ContentError as exc:
            log.warning("inbox: %s", exc)
            return False
        if not isinstance(content, QuestionAnswer):
            return False
        if not self._questions.answer(content.question_id, content.answer):
            return False  # nobody waits any more: the agent sees the answer as a message
        self._outbox.ask(Ack((row.id,), "completed"))
        self._handled.add(row.id)
        return True

    def _schedule(self, upcoming: datetime | None) -> None:
        if self._due_timer is None or upcoming is None:
            return
        delay = (upcoming - self._clock()).total_seconds()
        if delay > 0:
            self._due_timer.schedule(delay + 0.01)


def _unhandled_pending(conn: sqlite3.Connection, handled: set[str]) -> list[MessageIn]:
    """Pending rows whose id is not in `handled`, in seq order.

    Ids first, whole rows only for the new ones: rows stay `pending` until the host mirrors
    our acks, and decoding all of them on every wake is what made a wake slow."""
    ids = [row[0] for row in conn.execute("SELECT id FROM messages_in WHERE status = 'pending'")]
    new = [message_id for message_id in ids if message_id not in handled]
    rows: list[MessageIn] = []
    # Chunks keep each statement under SQLite's limit on bound parameters.
    for start in range(0, len(new), _IDS_PER_QUERY):
        chunk = new[start : start + _IDS_PER_QUERY]
        marks = ", ".join("?" for _ in chunk)
        found = conn.execute(f"SELECT * FROM messages_in WHERE status = 'pending' AND id IN ({marks})", chunk)
        rows += [from_row(MessageIn, row) for row in found]
    return sorted(rows, key=lambda row: row.seq)
