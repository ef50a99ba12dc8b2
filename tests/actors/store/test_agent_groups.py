from __future__ import annotations

import pytest

from actors.store import agent_groups, messaging_group_agents, sessions
from actors.store.db import AlreadyExistsError, Store
from actors.store.messaging_groups import MessagingGroup
from protocol.timeutil import parse_ts


def test_create_then_get(store: Store) -> None:
    group = agent_groups.create(store, name="main", folder="main", model="claude-sonnet")
    assert len(group.id) == 32
    parse_ts(group.created_at)
    assert agent_groups.get(store, group.id) == group
    assert agent_groups.get_by_name(store, "main") == group
    assert agent_groups.get_by_folder(store, "main") == group


def test_given_id_is_kept(store: Store) -> None:
    group = agent_groups.create(store, name="main", folder="main", id="ag-1")
    assert group.id == "ag-1"
    assert agent_groups.get(store, "ag-1") == group


def test_get_absent_is_none(store: Store) -> None:
    assert agent_groups.get(store, "nope") is None
    assert agent_groups.get_by_name(store, "nope") is None


def test_list_all_sorted_by_name(store: Store) -> None:
    agent_groups.create(store, name="zed", folder="z")
    agent_groups.create(store, name="amy", folder="a")
    assert [g.name for g in agent_groups.list_all(store)] == ["amy", "zed"]


@pytest.mark.parametrize(
    ("name", "folder", "given_id"),
    [("main", "other", None), ("other", "main", None), ("other", "other", "ag-1")],
)
def test_duplicate_name_folder_or_id_is_refused(store: Store, name: str, folder: str, given_id: str | None) -> None:
    agent_groups.create(store, name="main", folder="main", id="ag-1")
    with pytest.raises(AlreadyExistsError, match="agent_groups"):
        agent_groups.create(store, name=name, folder=folder, id=given_id)
    assert len(agent_groups.list_all(store)) == 1


def test_update_changes_only_given_fields(store: Store) -> None:
    group = agent_groups.create(store, name="main", folder="main", model="m1")
    renamed = agent_groups.update(store, group.id, name="primary")
    assert renamed is not None
    assert (renamed.name, renamed.model, renamed.folder) == ("primary", "m1", "main")
    cleared = agent_groups.update(store, group.id, model=None)
    assert cleared is not None
    assert (cleared.name, cleared.model) == ("primary", None)
    assert agent_groups.get(store, group.id) == cleared


def test_update_without_changes_returns_the_row(store: Store) -> None:
    group = agent_groups.create(store, name="main", folder="main")
    assert agent_groups.update(store, group.id) == group


def test_update_absent_is_none(store: Store) -> None:
    assert agent_groups.update(store, "nope", name="x") is None


def test_update_to_a_taken_name_is_refused(store: Store) -> None:
    agent_groups.create(store, name="main", folder="main")
    other = agent_groups.create(store, name="other", folder="other")
    with pytest.raises(AlreadyExistsError):
        agent_groups.update(store, other.id, name="main")
    assert agent_groups.get(store, other.id) == other


def test_delete(store: Store) -> None:
    group = agent_groups.create(store, name="main", folder="main")
    assert agent_groups.delete(store, group.id) is True
    assert agent_groups.get(store, group.id) is None
    assert agent_groups.delete(store, group.id) is False


def test_delete_cascades_to_wirings_and_sessions(store: Store, chat: MessagingGroup) -> None:
    group = agent_groups.create(store, name="main", folder="main")
    wiring = messaging_group_agents.create(
        store, messaging_group_id=chat.id, agent_group_id=group.id, session_mode="agent-shared"
    )
    session = sessions.create(store, agent_group_id=group.id, session_key=f"ag:{group.id}")

    agent_groups.delete(store, group.id)

    assert messaging_group_agents.get(store, wiring.id) is None
    assert sessions.get(store, session.id) is None
