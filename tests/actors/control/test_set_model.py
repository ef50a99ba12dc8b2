"""`SetGroupModel` without a host: the group's model is stored (or cleared), a name that
cannot be a model is refused with nothing changed, and there are no agents to restart."""

from __future__ import annotations

import pytest

from actors.control.requests import SetGroupModel
from actors.store import agent_groups
from tests.actors.control.conftest import World

pytestmark = pytest.mark.timeout(30)


def _model(world: World) -> str | None:
    group = agent_groups.get(world.store, world.main.id)
    assert group is not None
    return group.model


def test_a_groups_model_is_set_warned_about_and_cleared(world: World) -> None:
    reply = world.operations.execute(SetGroupModel(name="main", model="claude-opus-5-5"))
    assert (reply.ok, reply.message) == (True, "agent group 'main' uses claude-opus-5-5")
    assert _model(world) == "claude-opus-5-5"

    reply = world.operations.execute(SetGroupModel(name="main", model="claude-sonnet-9"))
    assert reply.ok and "(note: claude-sonnet-9 is not a model this version of hutch knows" in reply.message
    assert _model(world) == "claude-sonnet-9"

    reply = world.operations.execute(SetGroupModel(name="main", model="default"))
    assert reply.ok and "the host's model (HUTCH_MODEL)" in reply.message
    assert _model(world) is None


def test_a_bad_name_or_group_is_refused_and_nothing_changes(world: World) -> None:
    reply = world.operations.execute(SetGroupModel(name="main", model="gpt-5"))
    assert not reply.ok and "is not a Claude model id" in reply.message
    reply = world.operations.execute(SetGroupModel(name="nobody", model="claude-opus-5-5"))
    assert not reply.ok and "no agent group 'nobody'" in reply.message
    assert _model(world) is None
