"""InboxActor: turns changes to inbound.db into work for the agent.

Woken by watchdog events on inbound.db (and its journal), by a timer for the next
`process_after`, and by a slow safety tick for events that never came. Every wake re-reads
the DB, so a duplicate or a burst of events is harmless.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pykka
from watchdog.observers.api import BaseObserver

from container_runner.messages import Ack, AgentIdle, InboundChanged, TakeFollowUps, Work
from container_runner.questions import QuestionBoard
from protocol import inbound, outbound
from protocol.content import ContentError, QuestionAnswer
from protocol.db import read_transaction
from protocol.filewatch import watch_folder
from protocol.layout import INBOUND_DB, SessionLayout
from protocol.rows import MessageIn
from protocol.timers import ActorTicker, ActorTimer
from protocol.timeutil import utc_now

log = logging.getLogger(__name__)

_WATCHED = {INBOUND_DB, f"{INBOUND_DB}-journal"}


class InboxActor(pykka.ThreadingActor):
    def __init__(
        self,
        layout: SessionLayout,
        agent: pykka.ActorRef[Any],
        outbox: pykka.ActorRef[Any],
        questions: QuestionBoard,
        safety_interval_s: float = 30.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__()
        self._layout = layout
        self._agent = agent
        self._outbox = outbox
        self._questions = questions
        self._safety_interval_s = safety_interval_s
        self._clock = clock
        self._dispatched: set[str] = set()
        self._agent_busy = False
        self._checked_at = -math.inf
        self._observer: BaseObserver | None = None
        self._ticker: ActorTicker | None = None
        self._due_timer: ActorTimer | None = None

    def on_start(self) -> None:
        self._observer = watch_folder(self._layout.root, self._on_file_event, recursive=False)
        self._ticker = ActorTicker(self.actor_ref, InboundChanged(), self._safety_interval_s, name="inbox-safety")
        self._ticker.start()
        self._due_timer = ActorTimer(self.actor_ref, InboundChanged(), name="inbox-due")
        self.actor_ref.tell(InboundChanged())

    def on_stop(self) -> None:
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
                if at > self._checked_at:
                    self._check()
            case AgentIdle():
                self._agent_busy = False
                self._check()
            case TakeFollowUps():
                return self._take_follow_ups()
            case _:
                log.warning("inbox: ignoring unexpected message %r", message)
        return None

    def _on_file_event(self, path: Path) -> None:
        if path.name in _WATCHED:
            self.actor_ref.tell(InboundChanged(time.monotonic()))

    def _check(self) -> None:
        self._checked_at = time.monotonic()
        # Read even while the agent is busy: it may be waiting inside a tool for an answer.
        work = self._new_work()
        if work and not self._agent_busy:
            self._dispatch(work)
        self._schedule_next_due()

    def _take_follow_ups(self) -> tuple[MessageIn, ...]:
        work = self._new_work()
        if work:
            self._claim(work)
        return tuple(work)

    def _new_work(self) -> list[MessageIn]:
        """Fresh rows, once one of them triggers a turn; context-only rows wait for one."""
        fresh = [row for row in self._fresh_rows() if not self._answered_question(row)]
        return fresh if any(row.trigger for row in fresh) else []

    def _dispatch(self, rows: list[MessageIn]) -> None:
        self._claim(rows)
        self._agent_busy = True
        self._agent.tell(Work(tuple(rows)))

    def _claim(self, rows: list[MessageIn]) -> None:
        ids = tuple(row.id for row in rows)
        self._outbox.ask(Ack(ids, "processing"))
        self._dispatched.update(ids)

    def _fresh_rows(self) -> list[MessageIn]:
        """Pending, due, not acked by this or an earlier run, and not yet handed out."""
        if not self._layout.inbound_db.exists():
            return []
        with read_transaction(self._layout.inbound_db) as conn:
            due = inbound.pending_due(conn, self._clock())
        if not due:
            return []
        with read_transaction(self._layout.outbound_db) as conn:
            acked = outbound.acks(conn)
        return [row for row in due if row.id not in acked and row.id not in self._dispatched]

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
        self._dispatched.add(row.id)
        return True

    def _schedule_next_due(self) -> None:
        if self._due_timer is None or not self._layout.inbound_db.exists():
            return
        with read_transaction(self._layout.inbound_db) as conn:
            upcoming = inbound.next_due_time(conn)
        if upcoming is None:
            return
        delay = (upcoming - self._clock()).total_seconds()
        if delay > 0:
            self._due_timer.schedule(delay + 0.01)
