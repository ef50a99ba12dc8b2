"""SweepActor: live sessions get a SweepCheck; sessions with work on disk but no actor are
handed to the supervisor; everything else is left alone."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pykka
import pytest

from actors.messages import EnsureSession, SweepCheck
from actors.registry import SessionRegistry
from actors.store import agent_groups, messaging_groups, sessions
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store, open_store
from actors.store.sessions import Session
from actors.sweep import Sweep, SweepActor
from protocol import inbound, outbound
from protocol.content import ChatIn, ChatOut, TaskIn
from protocol.db import write_transaction
from protocol.layout import SessionLayout
from protocol.rows import Delivery, DeliveryStatus
from protocol.timeutil import now_ts
from tests.fakes.actors import RecorderActor, received, wait_for
from tests.fakes.session import ROUTING, make_session, write_in

pytestmark = pytest.mark.timeout(30)

FOLDER = "family"


class World(msgspec.Struct):
    store: Store
    group: AgentGroup
    sessions_root: Path
    registry: SessionRegistry
    supervisor: pykka.ActorRef[Any]
    new_session: Callable[[], tuple[Session, SessionLayout]]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_store(tmp_path / "hutch.db") as store:
        group = agent_groups.create(store, name="family", folder=FOLDER)
        sessions_root = tmp_path / "sessions"

        def new_session() -> tuple[Session, SessionLayout]:
            chat = messaging_groups.create(store, channel_type="cli", platform_id=uuid.uuid4().hex)
            key = sessions.session_key("shared", agent_group_id=group.id, messaging_group_id=chat.id)
            session = sessions.create(store, agent_group_id=group.id, messaging_group_id=chat.id, session_key=key)
            return session, make_session(sessions_root / FOLDER / session.id)

        supervisor = RecorderActor.start()
        try:
            yield World(store, group, sessions_root, SessionRegistry(), supervisor, new_session)
        finally:
            pykka.ActorRegistry.stop_all(block=True, timeout=10)


def sweep_once(world: World) -> int:
    """Start the actor and run one sweep. The actor also sweeps once by itself on start; the
    second ask returns only after both have finished, so `received` sees all they told."""
    sweep = SweepActor.start(world.store, world.registry, world.supervisor, world.sessions_root, 3600)
    found: int = sweep.ask(Sweep(), block=True, timeout=10)
    again: int = sweep.ask(Sweep(), block=True, timeout=10)
    assert found == again
    return found


def ensured(world: World) -> list[str]:
    return [m.session_id for m in received(world.supervisor) if isinstance(m, EnsureSession)]


def write_out(layout: SessionLayout, text: str = "hi") -> str:
    """An outbound chat row, as the container writes it."""
    message_id = uuid.uuid4().hex
    with write_transaction(layout.outbound_db) as conn:
        outbound.insert_message(
            conn, message_id=message_id, content=ChatOut(text=text), timestamp=now_ts(), highest_inbound_seq=0,
            routing=ROUTING,
        )  # fmt: skip
    return message_id


def record(layout: SessionLayout, message_out_id: str, status: DeliveryStatus) -> None:
    with write_transaction(layout.inbound_db) as conn:
        inbound.record_delivery(conn, Delivery(message_out_id=message_out_id, status=status, attempts=1))


def complete_all(layout: SessionLayout) -> None:
    with write_transaction(layout.inbound_db) as conn:
        ids = [row.id for row in inbound.messages_with_status(conn, "pending")]
        inbound.set_status(conn, ids, "completed")


def test_a_live_session_gets_a_sweep_check(world: World) -> None:
    session, layout = world.new_session()
    write_in(layout, ChatIn(text="hello", sender="ann"))  # work, but its actor runs: not the supervisor's business
    live = RecorderActor.start()
    world.registry.add(session.id, live)

    assert sweep_once(world) == 0

    wait_for(live, SweepCheck)
    assert ensured(world) == []


def test_a_session_with_a_pending_row_and_no_actor_is_ensured(world: World) -> None:
    session, layout = world.new_session()
    write_in(layout, ChatIn(text="hello", sender="ann"))

    assert sweep_once(world) == 1

    wait_for(world.supervisor, lambda m: m == EnsureSession(session.id))
    assert set(ensured(world)) == {session.id}


def test_a_dead_actor_counts_as_no_actor(world: World) -> None:
    session, layout = world.new_session()
    write_in(layout, ChatIn(text="hello", sender="ann"))
    dead = RecorderActor.start()
    dead.stop()
    world.registry.add(session.id, dead)

    assert sweep_once(world) == 1
    assert set(ensured(world)) == {session.id}


def test_a_future_task_is_work_even_without_a_trigger(world: World) -> None:
    session, layout = world.new_session()
    write_in(layout, TaskIn(prompt="water the plants"), process_after="2099-01-01T09:00:00.000000Z", trigger=False)

    assert sweep_once(world) == 1
    assert set(ensured(world)) == {session.id}


def test_settled_outbound_rows_and_nothing_pending_mean_nothing_to_do(world: World) -> None:
    _session, layout = world.new_session()
    write_in(layout, ChatIn(text="hello", sender="ann"))
    complete_all(layout)
    record(layout, write_out(layout, "one"), "delivered")
    record(layout, write_out(layout, "two"), "failed")  # failed for good is settled too

    assert sweep_once(world) == 0
    assert ensured(world) == []


def test_an_unsettled_outbound_row_is_work(world: World) -> None:
    session, layout = world.new_session()
    record(layout, write_out(layout, "sent"), "delivered")
    write_out(layout, "never sent")

    assert sweep_once(world) == 1
    assert set(ensured(world)) == {session.id}


def test_a_delivery_still_being_retried_is_work(world: World) -> None:
    session, layout = world.new_session()
    record(layout, write_out(layout), "retrying")

    assert sweep_once(world) == 1
    assert set(ensured(world)) == {session.id}


def test_context_only_pending_rows_are_no_reason_to_start(world: World) -> None:
    _session, layout = world.new_session()
    write_in(layout, ChatIn(text="just chatting", sender="ann"), trigger=False)
    write_in(layout, ChatIn(text="among ourselves", sender="bob"), trigger=False)

    assert sweep_once(world) == 0
    assert ensured(world) == []


def test_sessions_without_files_and_closed_sessions_are_skipped(world: World) -> None:
    never_started, _ = world.new_session()
    (world.sessions_root / FOLDER / never_started.id / "inbound.db").unlink()
    closed, closed_layout = world.new_session()
    write_in(closed_layout, ChatIn(text="hello", sender="ann"))
    sessions.close(world.store, closed.id)

    assert sweep_once(world) == 0
    assert ensured(world) == []


def test_one_broken_session_does_not_stop_the_sweep(world: World) -> None:
    """outbound.db is the container's to write; garbage in it must not take the safety net down."""
    _broken, broken_layout = world.new_session()
    broken_layout.outbound_db.write_bytes(b"this is not a database" * 100)
    healthy, healthy_layout = world.new_session()
    write_in(healthy_layout, ChatIn(text="hello", sender="ann"))
    sweep = SweepActor.start(world.store, world.registry, world.supervisor, world.sessions_root, 3600)

    sweep.tell(Sweep())  # as the ticker does: a failure here would stop the actor
    assert sweep.ask(Sweep(), block=True, timeout=10) == 1

    assert sweep.is_alive()
    assert set(ensured(world)) == {healthy.id}


def test_the_mixed_picture_in_one_sweep(world: World) -> None:
    live, live_layout = world.new_session()
    write_in(live_layout, ChatIn(text="hello", sender="ann"))
    live_ref = RecorderActor.start()
    world.registry.add(live.id, live_ref)
    pending, pending_layout = world.new_session()
    write_in(pending_layout, ChatIn(text="hello", sender="ann"))
    _settled, settled_layout = world.new_session()
    record(settled_layout, write_out(settled_layout), "delivered")
    unsettled, unsettled_layout = world.new_session()
    write_out(unsettled_layout)
    _context, context_layout = world.new_session()
    write_in(context_layout, ChatIn(text="fyi", sender="ann"), trigger=False)

    assert sweep_once(world) == 2

    wait_for(live_ref, SweepCheck)
    assert set(ensured(world)) == {pending.id, unsettled.id}
