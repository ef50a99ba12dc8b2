from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from container_runner.inbox import InboxActor
from container_runner.messages import Ack, AgentIdle, TakeFollowUps, Work
from container_runner.questions import QuestionBoard
from protocol.content import ChatIn, QuestionAnswer, TaskIn
from protocol.layout import SessionLayout
from protocol.timeutil import format_ts, utc_now
from tests.fakes.actors import RecorderActor, received, wait_for
from tests.fakes.session import make_session, write_in

pytestmark = pytest.mark.timeout(30)


def _start(layout: SessionLayout, board: QuestionBoard | None = None) -> tuple[Any, Any, Any]:
    agent = RecorderActor.start()
    outbox = RecorderActor.start()
    inbox = InboxActor.start(layout, agent, outbox, board or QuestionBoard(), safety_interval_s=3600)
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
    follow_ups = inbox.ask(TakeFollowUps(), block=True)
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
