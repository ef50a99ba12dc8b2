from __future__ import annotations

from typing import Any

import pytest

from actors.store import agent_groups, pending_questions, sessions
from actors.store.agent_groups import AgentGroup
from actors.store.db import AlreadyExistsError, InvalidValueError, MissingReferenceError, Store
from actors.store.messaging_groups import MessagingGroup
from actors.store.sessions import Session
from protocol.timeutil import parse_ts


def test_session_keys() -> None:
    assert sessions.session_key("shared", agent_group_id="a", messaging_group_id="m") == "ag:a:mg:m"
    assert sessions.session_key("shared", agent_group_id="b", messaging_group_id="m") == "ag:b:mg:m"
    assert (
        sessions.session_key("per-thread", agent_group_id="a", messaging_group_id="m", thread_id="t") == "ag:a:mg:m:t:t"
    )
    assert sessions.session_key("per-thread", agent_group_id="a", messaging_group_id="m") == "ag:a:mg:m"
    assert sessions.session_key("agent-shared", agent_group_id="a", messaging_group_id="m", thread_id="t") == "ag:a"
    with pytest.raises(InvalidValueError):
        sessions.session_key("shared", agent_group_id="a")


def test_create_then_get(store: Store, agent: AgentGroup, chat: MessagingGroup) -> None:
    session = sessions.create(
        store, agent_group_id=agent.id, messaging_group_id=chat.id, thread_id="t1", session_key=f"mg:{chat.id}:t:t1"
    )
    assert session.status == "active"
    assert session.created_at == session.last_active_at
    parse_ts(session.created_at)
    assert sessions.get(store, session.id) == session
    assert sessions.get_by_key(store, f"mg:{chat.id}:t:t1") == session


def test_get_absent_is_none(store: Store) -> None:
    assert sessions.get(store, "nope") is None
    assert sessions.get_by_key(store, "mg:nope") is None


def test_duplicate_key_is_refused(store: Store, session: Session) -> None:
    with pytest.raises(AlreadyExistsError, match=r"sessions\.session_key"):
        sessions.create(store, agent_group_id=session.agent_group_id, session_key=session.session_key)


def test_unknown_agent_is_refused(store: Store) -> None:
    with pytest.raises(MissingReferenceError):
        sessions.create(store, agent_group_id="nope", session_key="ag:nope")


def test_list_all_and_list_active(store: Store, agent: AgentGroup, session: Session) -> None:
    other_agent = agent_groups.create(store, name="other", folder="other")
    other = sessions.create(store, agent_group_id=other_agent.id, session_key=f"ag:{other_agent.id}")
    closed = sessions.create(store, agent_group_id=agent.id, session_key=f"ag:{agent.id}")
    sessions.close(store, closed.id)

    assert [s.id for s in sessions.list_all(store)] == [session.id, other.id, closed.id]
    assert [s.id for s in sessions.list_active(store)] == [session.id, other.id]
    assert [s.id for s in sessions.list_all(store, agent_group_id=agent.id)] == [session.id, closed.id]
    assert [s.id for s in sessions.list_all(store, agent_group_id=agent.id, status="closed")] == [closed.id]


def test_update_status_closes_and_reopens(store: Store, session: Session) -> None:
    closed = sessions.close(store, session.id)
    assert closed is not None
    assert closed.status == "closed"
    assert sessions.get(store, session.id) == closed
    reopened = sessions.update(store, session.id, status="active")
    assert reopened is not None
    assert reopened.status == "active"
    assert sessions.update(store, "nope", status="closed") is None


def test_update_refuses_an_unknown_status(store: Store, session: Session) -> None:
    status: Any = "paused"
    with pytest.raises(InvalidValueError):
        sessions.update(store, session.id, status=status)


def test_touch(store: Store, session: Session) -> None:
    assert sessions.touch(store, session.id, at="2099-01-01T00:00:00.000000Z") is True
    touched = sessions.get(store, session.id)
    assert touched is not None
    assert touched.last_active_at == "2099-01-01T00:00:00.000000Z"
    assert touched.created_at == session.created_at

    assert sessions.touch(store, session.id) is True
    again = sessions.get(store, session.id)
    assert again is not None
    assert parse_ts(again.last_active_at) >= parse_ts(session.last_active_at)
    assert sessions.touch(store, "nope") is False


def test_delete_cascades_to_questions(store: Store, session: Session) -> None:
    question = pending_questions.create(
        store, session_id=session.id, message_out_id="m1", question="Which?", options=["a", "b"]
    )
    assert sessions.delete(store, session.id) is True
    assert sessions.get(store, session.id) is None
    assert pending_questions.get(store, question.id) is None
    assert sessions.delete(store, session.id) is False
