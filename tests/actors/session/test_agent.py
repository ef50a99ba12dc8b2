"""AgentController: the agent's lifecycle as a plain object, driven without an actor. What
it would tell its actor is recorded; the runtime and the proxy are fakes."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors.messages import ContainerExited, SlotGranted
from actors.runtime.base import AgentUser, RuntimeStartError
from actors.session.agent import AgentController
from actors.session.info import SessionInfo, SessionSettings
from actors.slots import ContainerSlots
from protocol.layout import SessionLayout
from protocol.rows import ProcessingAck
from protocol.timeutil import format_ts
from tests.fakes.runtime import FakeRuntime

pytestmark = pytest.mark.timeout(30)

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
SETTINGS = SessionSettings(stale_heartbeat_s=30, stop_timeout_s=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Proxy:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def open_socket(self, session_id: str, agent_group: str, socket_path: Path, owner: AgentUser | None = None) -> None:
        self.events.append(("open", session_id))

    def close_socket(self, session_id: str) -> None:
        self.events.append(("close", session_id))


class World:
    def __init__(self, root: Path, slots: ContainerSlots | None = None) -> None:
        layout = SessionLayout(root / "s1")
        layout.create()
        self.info = SessionInfo(session_id="s1-0123456789", agent_group="g", layout=layout, agent_dir=root)
        self.runtime = FakeRuntime()
        self.slots = slots or ContainerSlots(1)
        self.proxy = Proxy()
        self.clock = Clock()
        self.told: list[Any] = []
        self._lock = threading.Lock()
        self.agent = AgentController(self.info, SETTINGS, self.runtime, self.slots, self.proxy, self.clock, self.tell)

    def tell(self, message: Any) -> None:
        with self._lock:
            self.told.append(message)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def claim(at: datetime) -> dict[str, ProcessingAck]:
    return {"m1": ProcessingAck("m1", "processing", format_ts(at))}


def test_it_starts_once_with_a_proxy_socket_and_no_stale_heartbeat(world: World) -> None:
    world.info.layout.heartbeat.write_text("a dead agent's")

    assert world.agent.ensure_running() is True
    assert world.agent.ensure_running() is False

    (spec,) = world.runtime.specs
    assert spec.env["HUTCH_PROXY_SOCKET"] == str(world.info.layout.proxy_socket)
    assert not world.info.layout.heartbeat.exists()
    assert world.proxy.events == [("open", world.info.session_id)]
    assert (world.agent.running, world.agent.started_at) == (True, T0)
    assert world.slots.holders() == {world.info.session_id}


def test_without_a_slot_it_waits_and_starts_when_told(tmp_path: Path) -> None:
    slots = ContainerSlots(1)
    assert slots.acquire("someone-else", lambda: None)
    world = World(tmp_path, slots)

    assert world.agent.ensure_running() is False
    assert world.agent.ensure_running() is False  # asks for a slot once
    assert slots.waiting() == (world.info.session_id,)
    slots.release("someone-else")

    assert world.told == [SlotGranted()]  # the actor is told; it calls back in its own thread
    assert world.agent.slot_granted() is True
    assert len(world.runtime.specs) == 1


def test_a_failed_start_gives_back_the_slot_and_the_socket(world: World) -> None:
    world.runtime.fail_next_start = True

    with pytest.raises(RuntimeStartError):
        world.agent.ensure_running()

    assert world.slots.holders() == frozenset()
    assert world.proxy.events == [("open", world.info.session_id), ("close", world.info.session_id)]
    assert world.agent.running is False
    assert world.agent.ensure_running() is True  # the next try starts afresh


def test_an_exit_is_told_to_the_actor_and_only_the_current_agents_counts(world: World) -> None:
    world.agent.ensure_running()
    (first,) = world.runtime.handles
    first.crash(3)
    assert world.told == [ContainerExited(1, 3)]

    assert world.agent.exited(ContainerExited(1, 3)) is False  # not asked for: a crash
    assert (world.agent.running, world.agent.started_at) == (False, None)
    assert world.slots.holders() == frozenset()
    assert world.agent.exited(ContainerExited(1, 3)) is None  # reported twice: once is enough

    world.agent.ensure_running()
    assert world.agent.exited(ContainerExited(1, 0)) is None  # the earlier agent's, late
    assert world.agent.running is True


def test_a_stop_is_deliberate_and_a_kill_is_not(world: World) -> None:
    world.agent.ensure_running()
    world.agent.stop("idle")
    (stopped,) = [message for message in world.told if isinstance(message, ContainerExited)]
    assert world.agent.exited(stopped) is True

    world.agent.ensure_running()
    world.agent.kill("stuck")
    killed = [message for message in world.told if isinstance(message, ContainerExited)][-1]
    assert world.agent.exited(killed) is False


def test_a_heartbeat_seen_in_memory_keeps_a_busy_agent_alive(world: World) -> None:
    world.agent.ensure_running()
    world.clock.now = T0 + timedelta(seconds=100)
    busy = claim(T0 + timedelta(seconds=1))

    assert world.agent.problem(busy, None) == "no heartbeat in 30 s since it started"
    world.agent.beat((T0 + timedelta(seconds=90)).timestamp())
    assert world.agent.problem(busy, None) is None
    assert world.agent.problem({}, None) is None  # nothing to do is idle, not stuck


def test_the_heartbeat_file_backs_up_events_that_never_came(world: World) -> None:
    world.agent.ensure_running()
    world.clock.now = T0 + timedelta(seconds=100)
    beat_at = (T0 + timedelta(seconds=95)).timestamp()
    world.info.layout.heartbeat.touch()
    os.utime(world.info.layout.heartbeat, (beat_at, beat_at))

    assert world.agent.problem(claim(T0 + timedelta(seconds=1)), None) is None


def test_close_stops_the_agent_and_gives_everything_back(world: World) -> None:
    world.agent.ensure_running()
    (handle,) = world.runtime.handles

    world.agent.close()

    assert (handle.stop_calls, handle.alive()) == (1, False)
    assert world.slots.holders() == frozenset()
    assert world.proxy.events[-1] == ("close", world.info.session_id)


def test_abandon_kills_without_waiting(world: World) -> None:
    world.agent.ensure_running()
    (handle,) = world.runtime.handles

    world.agent.abandon()

    assert (handle.kill_calls, handle.stop_calls) == (1, 0)
    assert world.slots.holders() == frozenset()


def test_an_agent_that_takes_no_due_work_is_half_dead_and_a_busy_one_is_not(world: World) -> None:
    world.agent.ensure_running()
    due_since = T0 - timedelta(minutes=5)  # waiting since before the start: counted from the start
    world.clock.now = T0 + timedelta(seconds=SETTINGS.unclaimed_deadline_s - 1)
    assert world.agent.problem({}, due_since) is None
    world.clock.now = T0 + timedelta(seconds=SETTINGS.unclaimed_deadline_s + 1)
    problem = world.agent.problem({}, due_since)
    assert problem is not None and "took none of it" in problem
    world.agent.beat(world.clock.now.timestamp())
    # Busy with a turn: what waits behind it is its queue, not a sign of death.
    assert world.agent.problem(claim(world.clock.now), due_since) is None
