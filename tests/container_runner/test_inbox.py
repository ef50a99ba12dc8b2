from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers import Observer

import container_runner.inbox
from container_runner.inbox import InboxActor
from container_runner.lifecycle import Lifecycle
from container_runner.messages import Ack, AgentIdle, InboundChanged, TakeFollowUps, Work
from container_runner.questions import QuestionBoard
from protocol import inbound, outbound
from protocol.content import ChatIn, QuestionAnswer, TaskIn
from protocol.db import read_transaction, write_transaction
from protocol.filewatch import commit_may_have_finished
from protocol.layout import SessionLayout
from protocol.timeutil import format_ts, now_ts, utc_now
from tests.fakes.actors import RecorderActor, received, wait_for
from tests.fakes.session import make_session, write_in

pytestmark = pytest.mark.timeout(30)


def _start(
    layout: SessionLayout,
    board: QuestionBoard | None = None,
    lifecycle: Lifecycle | None = None,
    poll_interval_s: float = 1.0,
) -> tuple[Any, Any, Any]:
    agent = RecorderActor.start()
    outbox = RecorderActor.start()
    inbox = InboxActor.start(
        layout,
        agent,
        outbox,
        board or QuestionBoard(),
        safety_interval_s=3600,
        poll_interval_s=poll_interval_s,
        lifecycle=lifecycle,
    )
    return inbox, agent, outbox


def _ids(work: Work) -> list[str]:
    return [row.id for row in work.batch]


def test_a_written_message_reaches_the_agent_claimed(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    _inbox, agent, outbox = _start(layout)
    row = write_in(layout, ChatIn(text="hello", sender="ann"))
    (work,) = wait_for(agent, Work)
    assert _ids(work) == [row.id]
    assert Ack((row.id,), "processing") in received(outbox)


def test_rows_already_written_are_picked_up_at_start(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    row = write_in(layout, ChatIn(text="waiting", sender="ann"))
    _inbox, agent, _outbox = _start(layout)
    (work,) = wait_for(agent, Work)
    assert _ids(work) == [row.id]


def test_non_triggering_rows_wait_for_a_trigger_and_join_it(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    inbox, agent, _outbox = _start(layout)
    context = write_in(layout, ChatIn(text="chatter", sender="bob"), trigger=False)
    inbox.ask(TakeFollowUps(), block=True)  # a full pass over the inbox happened
    assert not [m for m in received(agent) if isinstance(m, Work)]
    trigger = write_in(layout, ChatIn(text="@bot hi", sender="ann"))
    (work,) = wait_for(agent, Work)
    assert _ids(work) == [context.id, trigger.id]


def test_future_rows_are_met_by_a_timer(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    soon = format_ts(utc_now() + timedelta(milliseconds=300))
    row = write_in(layout, TaskIn(prompt="later"), process_after=soon)
    _inbox, agent, _outbox = _start(layout)
    (work,) = wait_for(agent, Work)
    assert _ids(work) == [row.id]
    assert utc_now() >= row.due_at()  # type: ignore[operator]


def test_busy_agent_gets_rows_as_follow_ups_then_the_rest_when_idle(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    inbox, agent, _outbox = _start(layout)
    first = write_in(layout, ChatIn(text="one", sender="ann"))
    wait_for(agent, Work)
    second = write_in(layout, ChatIn(text="two", sender="ann"))
    # The inbox reads inbound.db again only once the commit's file event reached it, which
    # may come after the write returns: asked until then (each ask is answered at once).
    deadline = time.monotonic() + 10
    while not (follow_ups := inbox.ask(TakeFollowUps(), block=True)) and time.monotonic() < deadline:
        pass
    assert [row.id for row in follow_ups] == [second.id]
    assert inbox.ask(TakeFollowUps(), block=True) == ()
    third = write_in(layout, ChatIn(text="three", sender="ann"))
    inbox.tell(AgentIdle())
    works = wait_for(agent, Work, count=2)
    assert _ids(works[0]) == [first.id]
    assert _ids(works[1]) == [third.id]


def test_question_answers_go_to_the_waiting_tool(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    board = QuestionBoard()
    board.open("q1")
    answers: list[str | None] = []
    waiter = threading.Thread(target=lambda: answers.append(board.wait("q1", 10)))
    waiter.start()
    _inbox, agent, outbox = _start(layout, board)
    row = write_in(layout, QuestionAnswer(question_id="q1", answer="Tuesday"))
    wait_for(outbox, lambda m: m == Ack((row.id,), "completed"))
    waiter.join(10)
    assert answers == ["Tuesday"]
    assert not [m for m in received(agent) if isinstance(m, Work)]


def test_an_answer_nobody_waits_for_becomes_a_message(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    _inbox, agent, _outbox = _start(layout)
    row = write_in(layout, QuestionAnswer(question_id="gone", answer="Yes"))
    (work,) = wait_for(agent, Work)
    assert _ids(work) == [row.id]


def test_rows_acked_by_an_earlier_run_are_not_run_again(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    done = write_in(layout, ChatIn(text="answered before the restart", sender="ann"))
    with write_transaction(layout.outbound_db) as conn:
        outbound.set_ack(conn, done.id, "completed", now_ts())
    _inbox, agent, _outbox = _start(layout)
    new = write_in(layout, ChatIn(text="new", sender="ann"))
    (work,) = wait_for(agent, Work)
    assert _ids(work) == [new.id]


def test_many_new_rows_at_once_make_one_batch_in_seq_order(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    count = 1_234  # more than one query's worth of ids
    with write_transaction(layout.inbound_db) as conn:
        rows = [
            inbound.insert_message(
                conn, message_id=uuid.uuid4().hex, content=ChatIn(text=f"{i}", sender="ann"), timestamp=now_ts()
            )
            for i in range(count)
        ]
    _inbox, agent, _outbox = _start(layout)
    (work,) = wait_for(agent, Work)
    assert _ids(work) == [row.id for row in rows]


class _InboundReads:
    """Counts the inbox's read transactions on inbound.db; `next()` waits for a new one."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def __call__(self, path: Path) -> AbstractContextManager[sqlite3.Connection]:
        if path.name == "inbound.db":
            with self._changed:
                self.count += 1
                self._changed.notify_all()
        return read_transaction(path)

    def wait_beyond(self, count: int, timeout: float = 10) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.count > count, timeout), "no new read of inbound.db"


@pytest.fixture
def inbound_reads(monkeypatch: pytest.MonkeyPatch) -> _InboundReads:
    reads = _InboundReads()
    monkeypatch.setattr(container_runner.inbox, "read_transaction", reads)
    return reads


def _write_unseen(layout: SessionLayout, text: str) -> str:
    """A row written with no journal, so with no event a watcher of entries would see: as
    if its event had been lost. Returns its id."""
    message_id = uuid.uuid4().hex
    conn = sqlite3.connect(layout.inbound_db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("BEGIN IMMEDIATE")
        inbound.insert_message(conn, message_id=message_id, content=ChatIn(text=text, sender="ann"), timestamp=now_ts())
        conn.execute("COMMIT")
    finally:
        conn.close()
    return message_id


def test_asks_and_an_idle_agent_read_nothing_new_until_a_change_is_seen(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    write_in(layout, ChatIn(text="one", sender="ann"))  # before the start: no event in flight
    inbox, agent, _outbox = _start(layout)
    wait_for(agent, Work)
    hidden = _write_unseen(layout, "two")
    assert inbox.ask(TakeFollowUps(), block=True) == ()
    inbox.tell(AgentIdle())
    assert inbox.ask(TakeFollowUps(), block=True) == ()
    assert len([m for m in received(agent) if isinstance(m, Work)]) == 1
    inbox.tell(InboundChanged())  # what the safety tick and the due timer send
    works = wait_for(agent, Work, count=2)
    assert _ids(works[1]) == [hidden]


@contextmanager
def _open_write(layout: SessionLayout) -> Iterator[None]:
    """A host write transaction in progress: its journal exists until it commits."""
    conn = sqlite3.connect(layout.inbound_db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE messages_in SET tries = tries + 1")
        assert layout.inbound_db.with_name("inbound.db-journal").exists()
        yield
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_a_write_wakes_the_inbox_once_it_commits(tmp_path: Path, inbound_reads: _InboundReads) -> None:
    layout = make_session(tmp_path)
    write_in(layout, ChatIn(text="one", sender="ann"))
    inbox, agent, _outbox = _start(layout)
    wait_for(agent, Work)
    before = inbound_reads.count
    with _open_write(layout):
        # Its journal's creation is an event too; a read now could only delay the commit.
        assert inbox.ask(TakeFollowUps(), block=True) == ()
        assert inbound_reads.count == before
    inbound_reads.wait_beyond(before)  # the journal's deletion


@pytest.mark.parametrize(
    ("name", "journal_there", "wakes"),
    [
        ("inbound.db-journal", False, True),  # deleted: a commit (or rollback) finished
        ("inbound.db-journal", True, False),  # created: a write began
        ("inbound.db", True, False),  # pages written during the commit
        ("inbound.db", False, True),  # the file itself created or replaced
        ("outbound.db-journal", False, False),  # our own writes
        (".heartbeat", False, False),
    ],
)
def test_which_events_can_mean_a_finished_host_commit(
    tmp_path: Path, name: str, journal_there: bool, wakes: bool
) -> None:
    if journal_there:
        (tmp_path / "inbound.db-journal").write_bytes(b"")
    assert commit_may_have_finished(tmp_path / name, "inbound.db") is wakes


def test_a_draining_inbox_hands_out_no_batch_and_no_follow_ups(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    lifecycle = Lifecycle()
    inbox, agent, outbox = _start(layout, lifecycle=lifecycle)
    first = write_in(layout, ChatIn(text="one", sender="ann"))
    wait_for(agent, Work)  # the turn in flight
    lifecycle.drain()
    second = write_in(layout, ChatIn(text="two", sender="ann"))
    inbox.tell(InboundChanged())  # the inbox reads the new row for sure
    assert inbox.ask(TakeFollowUps(), block=True) == ()
    inbox.tell(AgentIdle())
    inbox.ask(TakeFollowUps(), block=True)  # a barrier: the idle notice was handled
    assert [_ids(m) for m in received(agent) if isinstance(m, Work)] == [[first.id]]
    assert not [m for m in received(outbox) if isinstance(m, Ack) and second.id in m.message_ids]


def test_a_draining_inbox_still_passes_answers_to_a_waiting_tool(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    board = QuestionBoard()
    board.open("q1")
    lifecycle = Lifecycle()
    lifecycle.drain()
    _inbox, _agent, outbox = _start(layout, board, lifecycle=lifecycle)
    row = write_in(layout, QuestionAnswer(question_id="q1", answer="Tuesday"))
    wait_for(outbox, lambda m: m == Ack((row.id,), "completed"))
    assert board.wait("q1", 10) == "Tuesday"


def test_without_inotify_the_inbox_polls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_inotify(self: object) -> None:
        raise OSError(errno.EMFILE, "inotify instance limit reached")

    # The class protocol.filewatch starts, so its start fails as inotify_init would.
    monkeypatch.setattr(Observer, "start", no_inotify)
    caplog.set_level(logging.WARNING, logger="container_runner.inbox")
    layout = make_session(tmp_path)
    lifecycle = Lifecycle()
    inbox, agent, _outbox = _start(layout, lifecycle=lifecycle, poll_interval_s=0.05)
    assert inbox.ask(TakeFollowUps(), block=True) == ()  # started: the warning is logged
    assert "inotify instance limit reached" in caplog.text and "polling every 0.05 s" in caplog.text
    # The safety tick is an hour and no event can come: only the poll finds this row.
    row = write_in(layout, ChatIn(text="hello", sender="ann"))
    (work,) = wait_for(agent, Work)
    assert _ids(work) == [row.id]
    assert lifecycle.lost_actor is None


def test_an_inbox_that_cannot_start_is_reported_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("watchdog broke")

    monkeypatch.setattr(container_runner.inbox, "watch_folder", broken)
    woken = threading.Event()
    lifecycle = Lifecycle(on_lost=woken.set)
    _start(make_session(tmp_path), lifecycle=lifecycle)
    assert woken.wait(10)
    assert lifecycle.lost_actor == "InboxActor"
