"""Seq parity (docs/ARCHITECTURE.md, invariant 3): the host's even seqs and the container's odd seqs never
collide, and a container message is always numbered after everything it could have seen."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import inbound, outbound
from protocol.content import ChatIn, ChatOut
from protocol.db import create_session_db, max_seq, next_even_seq, next_odd_seq, read_transaction, write_transaction
from protocol.schema import INBOUND, OUTBOUND
from protocol.timeutil import now_ts

Writer = Literal["host", "container"]


def _all_seqs(inbound_path: Path, outbound_path: Path) -> list[int]:
    with read_transaction(inbound_path) as conn:
        seqs = [int(row[0]) for row in conn.execute("SELECT seq FROM messages_in")]
    with read_transaction(outbound_path) as conn:
        seqs += [int(row[0]) for row in conn.execute("SELECT seq FROM messages_out")]
    return seqs


def _host_writes(inbound_path: Path, step: int) -> int:
    with write_transaction(inbound_path) as conn:
        row = inbound.insert_message(
            conn, message_id=f"in-{step}", content=ChatIn(text=f"hello {step}", sender="ana"), timestamp=now_ts()
        )
    return row.seq


def _container_writes(inbound_path: Path, outbound_path: Path, step: int) -> int:
    # The container's view of inbound.db is a read, just as it is across the mount.
    with read_transaction(inbound_path) as conn:
        highest_inbound = max_seq(conn, "messages_in")
    with write_transaction(outbound_path) as conn:
        row = outbound.insert_message(
            conn,
            message_id=f"out-{step}",
            content=ChatOut(text=f"reply {step}"),
            timestamp=now_ts(),
            highest_inbound_seq=highest_inbound,
        )
    return row.seq


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["host", "container"]), min_size=1, max_size=30))
def test_interleaved_writers_never_collide(order: list[Writer]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        inbound_path = Path(folder) / "inbound.db"
        outbound_path = Path(folder) / "outbound.db"
        create_session_db(inbound_path, INBOUND)
        create_session_db(outbound_path, OUTBOUND)
        host_seqs: list[int] = []
        container_seqs: list[int] = []

        for step, writer in enumerate(order):
            existing = _all_seqs(inbound_path, outbound_path)
            if writer == "host":
                host_seqs.append(_host_writes(inbound_path, step))
            else:
                seq = _container_writes(inbound_path, outbound_path, step)
                assert seq > max(existing, default=0), (seq, existing)
                container_seqs.append(seq)

        stored = _all_seqs(inbound_path, outbound_path)
        assert sorted(stored) == sorted(host_seqs + container_seqs)
        assert len(set(stored)) == len(stored)
        assert all(seq % 2 == 0 for seq in host_seqs)
        assert all(seq % 2 == 1 for seq in container_seqs)
        assert all(seq > 0 for seq in stored)
        assert host_seqs == sorted(set(host_seqs))
        assert container_seqs == sorted(set(container_seqs))


def test_host_insert_with_a_known_id_keeps_its_seq(tmp_path: Path) -> None:
    # A retried request must not use up a second seq.
    path = tmp_path / "inbound.db"
    create_session_db(path, INBOUND)
    first = _host_writes(path, 1)
    again = _host_writes(path, 1)
    assert again == first
    with read_transaction(path) as conn:
        assert max_seq(conn, "messages_in") == first


@pytest.mark.parametrize(
    ("highest", "even", "odd"),
    [(0, 2, 1), (1, 2, 3), (2, 4, 3), (3, 4, 5), (10, 12, 11), (11, 12, 13), (999, 1000, 1001)],
)
def test_next_seq_examples(highest: int, even: int, odd: int) -> None:
    assert next_even_seq(highest) == even
    assert next_odd_seq(highest) == odd


@given(st.integers(min_value=0, max_value=2**62))
def test_next_seq_is_the_smallest_number_of_its_parity_above(highest: int) -> None:
    even = next_even_seq(highest)
    odd = next_odd_seq(highest)
    assert even % 2 == 0
    assert odd % 2 == 1
    assert highest < even <= highest + 2
    assert highest < odd <= highest + 2
    assert abs(even - odd) == 1


def test_max_seq_of_an_empty_table_is_zero(tmp_path: Path) -> None:
    path = tmp_path / "outbound.db"
    create_session_db(path, OUTBOUND)
    with read_transaction(path) as conn:
        assert max_seq(conn, "messages_out") == 0


def test_a_batch_takes_consecutive_even_seqs_and_each_id_once(tmp_path: Path) -> None:
    path = tmp_path / "inbound.db"
    create_session_db(path, INBOUND)
    with write_transaction(path) as conn:
        first = inbound.insert_message(conn, message_id="a", content=ChatIn(text="a", sender="s"), timestamp=now_ts())

    def new(message_id: str) -> inbound.NewMessage:
        return inbound.NewMessage(
            message_id=message_id, content=ChatIn(text=message_id, sender="s"), timestamp=now_ts()
        )

    with write_transaction(path) as conn:
        rows = inbound.insert_messages(conn, [new("b"), new("a"), new("c"), new("b")])

    assert [(row.id, row.seq) for row in rows] == [("b", 4), ("a", first.seq), ("c", 6), ("b", 4)]
    with read_transaction(path) as conn:
        assert [tuple(r) for r in conn.execute("SELECT id, seq FROM messages_in ORDER BY seq")] == [
            ("a", 2),
            ("b", 4),
            ("c", 6),
        ]


def test_an_outbound_id_written_again_is_the_row_already_there(tmp_path: Path) -> None:
    path = tmp_path / "outbound.db"
    create_session_db(path, OUTBOUND)
    with write_transaction(path) as conn:
        first = outbound.insert_message(
            conn, message_id="t1-e1", content=ChatOut(text="hi"), timestamp=now_ts(), highest_inbound_seq=2
        )
        again = outbound.insert_message(
            conn, message_id="t1-e1", content=ChatOut(text="hi"), timestamp=now_ts(), highest_inbound_seq=2
        )
    assert again == first
    with read_transaction(path) as conn:
        assert max_seq(conn, "messages_out") == first.seq
