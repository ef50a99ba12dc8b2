from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from container_runner.messages import (
    Ack,
    ClearStaleClaims,
    DeleteState,
    Finish,
    SaveState,
    StageState,
    WriteMessage,
)
from container_runner.outbox import OutboxActor
from protocol import outbound
from protocol.content import ChatIn, ChatOut, ScheduleTask
from protocol.db import max_seq, read_transaction
from protocol.layout import SessionLayout
from tests.fakes.session import ROUTING, acks, make_session, replies, write_in

pytestmark = pytest.mark.timeout(60)

Step = Literal["host", "write", "finish"]


def _change_counter(path: Path) -> int:
    """SQLite's file change counter: one more for every committed write transaction."""
    with path.open("rb") as file:
        file.seek(24)
        return int.from_bytes(file.read(4), "big")


def _state(layout: SessionLayout, key: str) -> str | None:
    with read_transaction(layout.outbound_db) as conn:
        return outbound.get_state(conn, key)


def _highest_inbound(layout: SessionLayout) -> int:
    with read_transaction(layout.inbound_db) as conn:
        return max_seq(conn, "messages_in")


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


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["host", "write", "finish"]), min_size=1, max_size=20))
def test_seqs_stay_unique_odd_and_above_every_inbound_row_written_before(order: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        layout = make_session(Path(folder))
        outbox = OutboxActor.start(layout)
        try:
            for step in order:
                if step == "host":
                    write_in(layout, ChatIn(text="hi", sender="ann"))
                    continue
                before = _highest_inbound(layout)
                reply = WriteMessage(ChatOut(text="answer"), ROUTING)
                request = reply if step == "write" else Finish(("m",), "completed", reply)
                row = outbox.ask(request, block=True)
                assert row.seq % 2 == 1 and row.seq > before, (row.seq, before)
            seqs = [row.seq for row in replies(layout)]
            assert seqs == sorted(set(seqs))
        finally:
            outbox.stop()


def test_seqs_stay_unique_while_the_host_writes_concurrently(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    outbox = OutboxActor.start(layout)
    host_seqs: list[int] = []
    host_errors: list[BaseException] = []

    def host() -> None:
        try:
            for _ in range(40):
                host_seqs.append(write_in(layout, ChatIn(text="hi", sender="ann")).seq)
        except BaseException as exc:  # surfaced below: a thread's exception would be lost
            host_errors.append(exc)

    writer = threading.Thread(target=host)
    writer.start()
    ours = []
    for _ in range(40):
        before = _highest_inbound(layout)
        row = outbox.ask(WriteMessage(ChatOut(text="answer"), ROUTING), block=True)
        assert row.seq > before, (row.seq, before)
        ours.append(row.seq)
    writer.join(30)
    assert host_errors == [] and len(host_seqs) == 40
    assert all(seq % 2 == 1 for seq in ours) and all(seq % 2 == 0 for seq in host_seqs)
    assert len(set(ours + host_seqs)) == len(ours) + len(host_seqs)


def test_a_missing_inbound_db_counts_as_empty(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    layout.inbound_db.unlink()
    outbox = OutboxActor.start(layout)
    assert outbox.ask(WriteMessage(ChatOut(text="x")), block=True).seq == 1


def test_finish_writes_reply_acks_and_staged_state_in_one_commit(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    row = write_in(layout, ChatIn(text="hi", sender="ann"))
    outbox = OutboxActor.start(layout)
    outbox.ask(Ack((row.id,), "processing"), block=True)
    outbox.tell(StageState("turns", "1"))
    before = _change_counter(layout.outbound_db)
    written = outbox.ask(
        Finish((row.id,), "completed", WriteMessage(ChatOut(text="hello"), ROUTING, row.id)), block=True
    )
    assert _change_counter(layout.outbound_db) == before + 1
    assert [(reply.id, reply.in_reply_to) for reply in replies(layout)] == [(written.id, row.id)]
    assert acks(layout)[row.id].status == "completed"
    assert _state(layout, "turns") == "1"


def test_finish_without_a_reply_only_acks(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    outbox = OutboxActor.start(layout)
    assert outbox.ask(Finish(("a", "b"), "failed"), block=True) is None
    assert replies(layout) == []
    assert {key: ack.status for key, ack in acks(layout).items()} == {"a": "failed", "b": "failed"}


def test_staged_state_waits_for_the_next_commit(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    outbox = OutboxActor.start(layout)
    outbox.tell(StageState("k", "staged"))
    outbox.ask(Ack(("a",), "processing"), block=True)
    assert _state(layout, "k") == "staged"
    outbox.tell(StageState("k", "later"))
    outbox.tell(StageState("gone", "x"))
    outbox.ask(DeleteState("gone"), block=True)  # written after the staged value, so it wins
    assert (_state(layout, "k"), _state(layout, "gone")) == ("later", None)


def test_staged_state_is_not_written_on_its_own_but_is_at_stop(tmp_path: Path) -> None:
    layout = make_session(tmp_path)
    outbox = OutboxActor.start(layout)
    outbox.tell(StageState("k", "v"))
    outbox.ask(ClearStaleClaims(), block=True)  # any commit carries it
    before = _change_counter(layout.outbound_db)
    outbox.ask(StageState("k", "v2"), block=True)  # asked only to know it was handled
    assert _change_counter(layout.outbound_db) == before
    assert _state(layout, "k") == "v"
    outbox.stop(block=True)
    assert _state(layout, "k") == "v2"


def test_an_unexpected_message_is_logged_by_pykka_and_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = make_session(tmp_path)
    outbox = OutboxActor.start(layout)
    before = _change_counter(layout.outbound_db)
    with caplog.at_level(logging.WARNING, logger="pykka"):
        assert outbox.ask("nonsense", block=True) is None
    assert "nonsense" in caplog.text
    assert _change_counter(layout.outbound_db) == before
    assert outbox.is_alive()
