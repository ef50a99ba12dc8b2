"""Host: every part started in order and stopped in reverse, in one place; sessions stop in
parallel; nothing is left running."""

from __future__ import annotations

import threading
from pathlib import Path

import pykka
import pytest

from actors.channels.base import InboundChat
from actors.config import HostConfig
from actors.delivery import DeliveryActor
from actors.host import Host
from actors.session import SessionActor, SessionSettings
from actors.store import agent_groups, messaging_group_agents, messaging_groups
from actors.store.db import open_store
from actors.supervisor import Supervisor
from actors.sweep import SweepActor
from tests.fakes.channel import FakeChannel, next_tick
from tests.fakes.runtime import FakeHandle, FakeRuntime

pytestmark = pytest.mark.timeout(60)

SESSIONS = 5


def _per_thread(data_dir: Path) -> None:
    """The local chat wired per-thread, so each thread is a session of its own."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open_store(data_dir / "hutch.db") as store:
        group = agent_groups.create(store, name="main", folder="main")
        chat = messaging_groups.create(store, channel_type="cli", platform_id="local")
        messaging_group_agents.create(
            store, messaging_group_id=chat.id, agent_group_id=group.id, session_mode="per-thread", trigger_rule="always"
        )


def _config(data_dir: Path) -> HostConfig:
    return HostConfig(data_dir=data_dir, runtime="process", provider="mock", sweep_interval_s=3600)


def test_parts_start_in_order_and_stop_in_reverse_with_sessions_stopping_in_parallel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    _per_thread(data_dir)
    runtime = FakeRuntime()
    channel = FakeChannel("cli")
    host = Host.start(
        _config(data_dir), runtime=runtime, settings=SessionSettings(stop_timeout_s=5), channels=[channel]
    )
    assert [len(pykka.ActorRegistry.get_by_class(kind)) for kind in (DeliveryActor, Supervisor, SweepActor)] == [
        1,
        1,
        1,
    ]
    (started,) = channel.calls_of("start")  # channels come last: a message has somewhere to go

    for number in range(SESSIONS):
        channel.emit(
            InboundChat(channel_type="cli", platform_id="local", text="hi", sender="ann", thread_id=f"t{number}")
        )
    handles = runtime.wait_for_starts(SESSIONS)
    # Every agent's stop waits for all the others to be stopping too: one at a time would
    # break the barrier instead of passing it.
    everyone_stopping = threading.Barrier(SESSIONS, timeout=20)
    stopped_at: list[int] = []

    def stop_together(handle: FakeHandle, original: object) -> object:
        def stop(timeout_s: float = 10) -> int | None:
            everyone_stopping.wait()
            stopped_at.append(next_tick())
            return original(timeout_s)  # type: ignore[operator,no-any-return]

        return stop

    for handle in handles:
        monkeypatch.setattr(handle, "stop", stop_together(handle, handle.stop))

    host.stop()

    assert len(stopped_at) == SESSIONS
    assert all(not handle.alive() for handle in handles)
    (channel_stopped,) = channel.calls_of("stop")
    assert started.tick < channel_stopped.tick < min(stopped_at)  # nothing new comes in while they stop
    assert pykka.ActorRegistry.get_by_class(SessionActor) == []
    assert pykka.ActorRegistry.get_all() == []


def test_a_part_that_fails_to_start_stops_what_was_started(tmp_path: Path) -> None:
    channel = FakeChannel("cli")

    def refuse(_on_event: object) -> None:
        raise OSError("the port is taken")

    channel.start = refuse  # type: ignore[method-assign,assignment]
    with pytest.raises(OSError, match="the port is taken"):
        Host.start(_config(tmp_path / "data"), runtime=FakeRuntime(), channels=[channel])
    assert pykka.ActorRegistry.get_all() == []
