from __future__ import annotations

from pathlib import Path

from container_runner.messages import Ack, ClearStaleClaims, DeleteState, SaveState, WriteMessage
from container_runner.outbox import OutboxActor
from protocol import outbound
from protocol.content import ChatIn, ChatOut, ScheduleTask
from protocol.db import read_transaction
from tests.fakes.session import ROUTING, acks, make_session, replies, write_in


def test_replies_get_odd_seqs_above_both_tables(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    for _ in range(3):
        write_in(layout, ChatIn(text="hi", sender="ann"))
    outbox = OutboxActor.start(layout)
    first = outbox.ask(WriteMessage(ChatOut(text="one"), ROUTING, "m1"), block=True)
    second = outbox.ask(WriteMessage(ChatOut(text="two"), ROUTING), block=True)
    assert (first.seq, second.seq) == (7, 9)
    rows = replies(layout)
    assert [row.seq for row in rows] == [7, 9]
    assert rows[0].in_reply_to == "m1"
    assert rows[0].routing == ROUTING


def test_system_actions_are_written_as_system_rows(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    outbox = OutboxActor.start(layout)
    action = ScheduleTask("t1", "water the plants", "2030-01-01T09:00:00.000000Z", "0 9 * * *")
    outbox.ask(WriteMessage(action), block=True)
    (row,) = replies(layout)
    assert row.kind == "system"
    assert row.decoded() == action


def test_acks_and_state(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    outbox = OutboxActor.start(layout)
    outbox.ask(Ack(("a", "b"), "processing"), block=True)
    outbox.ask(Ack(("a",), "completed"), block=True)
    assert {key: ack.status for key, ack in acks(layout).items()} == {"a": "completed", "b": "processing"}
    outbox.ask(SaveState("k", "v1"), block=True)
    outbox.ask(SaveState("k", "v2"), block=True)
    with read_transaction(layout.outbound_db) as conn:
        assert outbound.get_state(conn, "k") == "v2"
    outbox.ask(DeleteState("k"), block=True)
    with read_transaction(layout.outbound_db) as conn:
        assert outbound.get_state(conn, "k") is None


def test_clear_stale_claims_drops_only_processing(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    outbox = OutboxActor.start(layout)
    outbox.ask(Ack(("dead",), "processing"), block=True)
    outbox.ask(Ack(("done",), "completed"), block=True)
    assert outbox.ask(ClearStaleClaims(), block=True) == ["dead"]
    assert set(acks(layout)) == {"done"}


def test_creates_outbound_db_when_missing(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    layout.outbound_db.unlink()
    outbox = OutboxActor.start(layout)
    outbox.ask(WriteMessage(ChatOut(text="x")), block=True)
    assert [row.seq for row in replies(layout)] == [1]
