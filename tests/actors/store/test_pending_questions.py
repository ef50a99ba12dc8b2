from __future__ import annotations

from typing import Any

import pytest

from actors.store import pending_questions, sessions
from actors.store.db import AlreadyExistsError, InvalidValueError, MissingReferenceError, Store
from actors.store.pending_questions import PendingQuestion
from actors.store.sessions import Session


def ask(store: Store, session: Session, **overrides: Any) -> PendingQuestion:
    fields: dict[str, Any] = {
        "session_id": session.id,
        "message_out_id": "out-1",
        "question": "Lunch?",
        "options": ["pizza", "salad"],
        "channel_type": "telegram",
        "platform_id": "tg:100",
    }
    fields.update(overrides)
    return pending_questions.create(store, **fields)


def test_create_then_get(store: Store, session: Session) -> None:
    question = ask(store, session, id="q1", thread_id="t1")
    assert question.id == "q1"
    assert question.options == ("pizza", "salad")
    assert (question.status, question.answer, question.answered_at) == ("open", None, None)
    assert pending_questions.get(store, "q1") == question


def test_options_keep_order_and_unicode(store: Store, session: Session) -> None:
    question = ask(store, session, options=["ja; klar", "nö", '"quoted"'])
    fetched = pending_questions.get(store, question.id)
    assert fetched is not None
    assert fetched.options == ("ja; klar", "nö", '"quoted"')


def test_options_must_be_a_list_of_strings(store: Store, session: Session) -> None:
    with pytest.raises(InvalidValueError):
        ask(store, session, options="pizza")
    with pytest.raises(InvalidValueError):
        ask(store, session, options=["pizza", 3])


def test_get_absent_is_none(store: Store) -> None:
    assert pending_questions.get(store, "nope") is None


def test_duplicate_id_is_refused(store: Store, session: Session) -> None:
    ask(store, session, id="q1")
    with pytest.raises(AlreadyExistsError, match="pending_questions"):
        ask(store, session, id="q1")


def test_unknown_session_is_refused(store: Store) -> None:
    with pytest.raises(MissingReferenceError):
        pending_questions.create(store, session_id="nope", message_out_id="m", question="?", options=[])


def test_open_for_session(store: Store, session: Session) -> None:
    first = ask(store, session)
    second = ask(store, session)
    answered = ask(store, session)
    pending_questions.answer(store, answered.id, "pizza")
    other_session = sessions.create(store, agent_group_id=session.agent_group_id, session_key="other")
    ask(store, other_session)

    assert [q.id for q in pending_questions.open_for_session(store, session.id)] == [first.id, second.id]


def test_get_open_by_platform_prefers_the_newest(store: Store, session: Session) -> None:
    ask(store, session, thread_id="t1")
    newest = ask(store, session, thread_id="t2")
    ask(store, session, platform_id="elsewhere")

    assert pending_questions.get_open_by_platform(store, "telegram", "tg:100") == newest
    in_t1 = pending_questions.get_open_by_platform(store, "telegram", "tg:100", thread_id="t1")
    assert in_t1 is not None
    assert in_t1.thread_id == "t1"
    assert pending_questions.get_open_by_platform(store, "slack", "tg:100") is None

    pending_questions.expire(store, newest.id)
    remaining = pending_questions.get_open_by_platform(store, "telegram", "tg:100")
    assert remaining == in_t1


def test_answer_once(store: Store, session: Session) -> None:
    question = ask(store, session)
    answered = pending_questions.answer(store, question.id, "salad")
    assert answered is not None
    assert (answered.status, answered.answer) == ("answered", "salad")
    assert answered.answered_at is not None
    assert pending_questions.get(store, question.id) == answered

    assert pending_questions.answer(store, question.id, "pizza") is None
    assert pending_questions.get(store, question.id) == answered
    assert pending_questions.answer(store, "nope", "pizza") is None


def test_expire(store: Store, session: Session) -> None:
    question = ask(store, session)
    assert pending_questions.expire(store, question.id) is True
    expired = pending_questions.get(store, question.id)
    assert expired is not None
    assert (expired.status, expired.answer) == ("expired", None)
    assert pending_questions.expire(store, question.id) is False
    assert pending_questions.answer(store, question.id, "pizza") is None


def test_expire_for_session(store: Store, session: Session) -> None:
    ask(store, session)
    ask(store, session)
    done = ask(store, session)
    pending_questions.answer(store, done.id, "pizza")

    assert pending_questions.expire_for_session(store, session.id) == 2
    assert pending_questions.open_for_session(store, session.id) == []
    statuses = sorted(q.status for q in pending_questions.list_all(store, session_id=session.id))
    assert statuses == ["answered", "expired", "expired"]
    assert [q.id for q in pending_questions.list_all(store, status="answered")] == [done.id]


def test_delete(store: Store, session: Session) -> None:
    question = ask(store, session)
    assert pending_questions.delete(store, question.id) is True
    assert pending_questions.get(store, question.id) is None
    assert pending_questions.delete(store, question.id) is False
