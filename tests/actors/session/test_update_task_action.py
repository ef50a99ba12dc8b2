"""UpdateTask as the host applies it to inbound.db: validated, only what has not run changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.session.system_actions import ActionRejected, apply_action
from protocol import inbound
from protocol.content import ChatIn, TaskIn, UpdateTask
from protocol.db import read_transaction, write_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, Routing
from tests.fakes.session import make_session, write_in

pytestmark = pytest.mark.timeout(30)

MONDAY = "2030-12-02T08:00:00.000000Z"
LATER = "2030-12-05T17:30:00.000000Z"


@pytest.fixture
def layout(tmp_path: Path) -> SessionLayout:
    return make_session(tmp_path / "session")


def task(layout: SessionLayout, status: str = "pending", series: str = "daily") -> MessageIn:
    row = write_in(
        layout,
        TaskIn(prompt="water the plants", scheduled_for=MONDAY),
        process_after=MONDAY,
        recurrence="0 9 * * *",
        series_id=series,
    )
    if status != "pending":
        with write_transaction(layout.inbound_db) as conn:
            inbound.set_status(conn, [row.id], status)
    return reread(layout, row)


def apply(layout: SessionLayout, action: UpdateTask) -> str:
    with write_transaction(layout.inbound_db) as conn:
        return apply_action(conn, action, Routing(), requested_by=1)


def reread(layout: SessionLayout, row: MessageIn) -> MessageIn:
    with read_transaction(layout.inbound_db) as conn:
        found = inbound.get_message(conn, row.id)
    assert found is not None
    return found


def test_prompt_time_and_recurrence_of_what_has_not_run_change(layout: SessionLayout) -> None:
    done = task(layout, "completed")
    pending = task(layout)
    paused = task(layout, "paused")
    other = task(layout, series="other")
    action = UpdateTask("daily", prompt="water the roses", process_after=LATER, recurrence="30 18 * * 1-5")

    said = apply(layout, action)
    assert apply(layout, action) == said  # applied twice, the same state: a repeat is harmless

    assert said == "task series daily: 2 occurrence(s) updated"
    for row in (pending, paused):
        now = reread(layout, row)
        assert (now.process_after, now.recurrence, now.status) == (LATER, "30 18 * * 1-5", row.status)
        # The series goes on from the new time: the next occurrence is computed from it.
        assert now.decoded() == TaskIn(prompt="water the roses", scheduled_for=LATER)
    assert reread(layout, done) == done
    assert reread(layout, other) == other


def test_only_what_is_given_changes(layout: SessionLayout) -> None:
    pending = task(layout)
    apply(layout, UpdateTask(pending.id, prompt="water the roses"))  # any occurrence names its series
    now = reread(layout, pending)
    assert (now.process_after, now.recurrence) == (MONDAY, "0 9 * * *")
    assert now.decoded() == TaskIn(prompt="water the roses", scheduled_for=MONDAY)

    apply(layout, UpdateTask("daily", clear_recurrence=True))
    now = reread(layout, pending)
    assert now.recurrence is None and now.decoded().prompt == "water the roses"


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        (UpdateTask("nope", prompt="x"), "there is no task 'nope'"),
        (UpdateTask("daily"), "nothing to change"),
        (UpdateTask("daily", process_after="tomorrow at nine"), "process_after"),
        (UpdateTask("daily", recurrence="every morning"), "recurrence"),
        (UpdateTask("daily", recurrence="0 9 * * *", clear_recurrence=True), "clear_recurrence together"),
    ],
)
def test_a_bad_update_is_rejected_and_changes_nothing(layout: SessionLayout, action: UpdateTask, reason: str) -> None:
    pending = task(layout)
    with pytest.raises(ActionRejected, match=reason):
        apply(layout, action)
    assert reread(layout, pending) == pending


def test_a_task_with_nothing_left_to_run_is_rejected(layout: SessionLayout) -> None:
    done = task(layout, "completed")
    with pytest.raises(ActionRejected, match="no pending or paused occurrence"):
        apply(layout, UpdateTask("daily", prompt="x"))
    assert reread(layout, done) == done


def test_a_chat_message_is_no_task(layout: SessionLayout) -> None:
    chat = write_in(layout, ChatIn(text="hi", sender="Ann"))
    with pytest.raises(ActionRejected, match="there is no task"):
        apply(layout, UpdateTask(chat.id, prompt="x"))
