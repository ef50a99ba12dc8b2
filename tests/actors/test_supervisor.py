"""Supervisor: routes inbound messages to sessions (created on demand, exactly once), answers
to the session that asked, restarts a failed session from disk, and stops everything."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pykka
import pytest

from actors.channels.base import InboundAnswer, InboundChat
from actors.config import HostConfig
from actors.delivery import DeliveryActor
from actors.host import ensure_first_start
from actors.inbound_router import RoutingError
from actors.messages import (
    ChangeSeries,
    EnsureSession,
    FlushBookkeeping,
    OpenSession,
    OutboundChanged,
    RemoveAgentGroup,
    SessionFailed,
    StopSession,
    TellOwner,
)
from actors.registry import SessionRegistry
from actors.runtime.base import AgentSpec
from actors.session import SessionActor, SessionSettings
from actors.session.system_actions import ActionRejected, apply_action
from actors.store import agent_groups, messaging_group_agents, messaging_groups, pending_questions, sessions
from actors.store.db import Store, open_store
from actors.store.messaging_group_agents import SessionMode
from actors.store.sessions import Session
from actors.supervisor import Supervisor, SupervisorSetup, submitter
from actors.watch import FolderWatcher
from protocol import inbound, outbound
from protocol.content import AskQuestionOut, CancelTask, ChatIn, PauseTask, QuestionAnswer, ScheduleTask
from protocol.db import read_transaction, write_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, Routing, from_row
from protocol.timeutil import now_ts
from tests.fakes.channel import FakeChannel
from tests.fakes.runtime import FakeRuntime

pytestmark = pytest.mark.timeout(30)


@dataclass
class Running:
    supervisor: pykka.ActorRef[Any]
    setup: SupervisorSetup
    store: Store
    runtime: FakeRuntime
    channel: FakeChannel

    def sync(self) -> None:
        """Returns once the supervisor, and every session, has handled everything told to it before."""
        self.supervisor.ask(EnsureSession("no-such-session"), timeout=10)
        for ref in live_session_actors():
            ref.ask(OutboundChanged(), timeout=10)
            ref.ask(FlushBookkeeping(), timeout=10)

    def sessions(self) -> list[Session]:
        return sessions.list_all(self.store)

    def layout(self, session: Session) -> SessionLayout:
        group = agent_groups.get(self.store, session.agent_group_id)
        assert group is not None
        return SessionLayout(self.setup.sessions_dir / group.folder / session.id)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[Store]:
    with open_store(data_dir / "hutch.db") as opened:
        yield opened


StartHost = Callable[..., Running]


@pytest.fixture
def start_host(data_dir: Path, store: Store) -> Iterator[StartHost]:
    """The Supervisor with what the host would hand it: a DeliveryActor over fake channels,
    a file watcher and a registry; the channels are started with its submitter. Everything
    is stopped again, in reverse, before the store closes."""
    stops: list[Callable[[], object]] = []

    def start(channels: Sequence[FakeChannel] | None = None, runtime: FakeRuntime | None = None) -> Running:
        channel_list = list(channels) if channels is not None else [FakeChannel("cli")]
        setup = SupervisorSetup(
            data_dir=data_dir,
            session_settings=SessionSettings(idle_timeout_s=60),
            max_containers=2,
        )
        runtime = runtime or FakeRuntime()
        delivery = DeliveryActor.start(channel_list)
        stops.append(delivery.stop)
        watcher = FolderWatcher(setup.sessions_dir)
        watcher.start()
        stops.append(watcher.stop)
        supervisor = Supervisor.start(setup, store, runtime, delivery, watcher, SessionRegistry())
        stops.append(lambda: supervisor.stop(block=True, timeout=20))
        for channel in channel_list:
            channel.start(submitter(supervisor))
            stops.append(channel.stop)
        return Running(supervisor, setup, store, runtime, channel_list[0])

    yield start
    for stop in reversed(stops):
        with contextlib.suppress(pykka.ActorDeadError):
            stop()


@pytest.fixture
def first_start(store: Store, data_dir: Path) -> None:
    """What a fresh host has: agent group `main` wired shared/always to the local chat cli/local."""
    ensure_first_start(store, HostConfig(data_dir=data_dir))


def wire(store: Store, mode: SessionMode, *platform_ids: str, rule: str = "always") -> None:
    group = agent_groups.get_by_folder(store, "main") or agent_groups.create(store, name="main", folder="main")
    for platform_id in platform_ids:
        chat = messaging_groups.get_by_platform(store, "cli", platform_id) or messaging_groups.create(
            store, channel_type="cli", platform_id=platform_id
        )
        messaging_group_agents.create(
            store, messaging_group_id=chat.id, agent_group_id=group.id, session_mode=mode, trigger_rule=rule
        )


def chat(text: str, platform_id: str = "local", thread_id: str | None = None, **extra: Any) -> InboundChat:
    return InboundChat(
        channel_type="cli", platform_id=platform_id, text=text, sender="ann", thread_id=thread_id, **extra
    )


def rows_in(layout: SessionLayout) -> list[MessageIn]:
    with read_transaction(layout.inbound_db) as conn:
        return [from_row(MessageIn, row) for row in conn.execute("SELECT * FROM messages_in ORDER BY seq")]


def live_session_actors() -> list[pykka.ActorRef[Any]]:
    return [ref for ref in pykka.ActorRegistry.get_by_class(SessionActor) if ref.is_alive()]


def started_sessions(runtime: FakeRuntime) -> list[str]:
    return [spec.session_id for spec in runtime.specs]


# --- routing a chat ------------------------------------------------------------------------


@pytest.mark.usefixtures("first_start")
def test_a_chat_creates_a_session_its_folder_and_one_agent(start_host: StartHost) -> None:
    host = start_host()

    host.channel.emit(chat("hello there", platform_message_id="m-1"))

    (session,) = host.sessions()
    assert session.status == "active"
    layout = host.layout(session)
    assert layout.root == host.setup.sessions_dir / "main" / session.id
    assert layout.outbound_db.exists()
    (row,) = rows_in(layout)
    assert row.kind == "chat"
    assert row.seq % 2 == 0
    assert row.trigger == 1
    assert row.routing == Routing("local", "cli", None)
    assert row.decoded() == ChatIn(text="hello there", sender="ann", platform_message_id="m-1", sender_role="owner")
    host.runtime.wait_for_starts(1)  # after the row was stored: the start is the session's own business
    (spec,) = host.runtime.specs
    assert isinstance(spec, AgentSpec)
    assert spec.session_id == session.id
    assert spec.agent_group == "main"
    assert spec.session_dir == layout.root
    assert spec.agent_dir == host.setup.groups_dir / "main"
    # Nothing later (the watcher's event on the new outbound.db, say) starts a second agent.
    (session_ref,) = live_session_actors()
    session_ref.ask(OutboundChanged(), timeout=10)
    assert len(host.runtime.specs) == 1


@pytest.mark.usefixtures("first_start")
def test_a_second_message_goes_to_the_same_session_with_the_next_even_seq(start_host: StartHost) -> None:
    host = start_host()

    host.channel.emit(chat("one"))
    host.channel.emit(chat("two"))

    (session,) = host.sessions()
    rows = rows_in(host.layout(session))
    assert [row.seq for row in rows] == [2, 4]
    assert [row.decoded().text for row in rows] == ["one", "two"]
    host.runtime.wait_for_starts(1)
    host.sync()
    assert len(host.runtime.specs) == 1


@pytest.mark.usefixtures("first_start")
def test_a_burst_from_many_threads_makes_one_session_and_one_agent(start_host: StartHost) -> None:
    host = start_host()
    errors: list[BaseException] = []
    go = threading.Barrier(4)

    def sender(thread_number: int) -> None:
        try:
            go.wait(timeout=10)
            for index in range(5):
                host.channel.emit(chat(f"{thread_number}-{index}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert errors == []
    (session,) = host.sessions()
    rows = rows_in(host.layout(session))
    assert sorted(row.seq for row in rows) == list(range(2, 42, 2))
    assert {row.decoded().text for row in rows} == {f"{t}-{i}" for t in range(4) for i in range(5)}
    host.runtime.wait_for_starts(1)
    host.sync()
    assert started_sessions(host.runtime) == [session.id]
    assert len(live_session_actors()) == 1


@pytest.mark.usefixtures("first_start")
def test_an_unwired_group_chat_is_refused(start_host: StartHost) -> None:
    """A direct chat of the owner's is wired to `main` on its first message; a group chat is
    wired by the owner, on purpose, never by a message."""
    host = start_host()

    with pytest.raises(RoutingError, match="no agent is wired"):
        host.channel.emit(chat("hello?", platform_id="stranger", is_group=True))

    assert host.sessions() == []
    assert host.runtime.specs == []
    assert host.supervisor.is_alive()
    # The chat itself is now known, so an operator can wire it.
    assert messaging_groups.get_by_platform(host.store, "cli", "stranger") is not None
    host.channel.emit(chat("the wired one still works"))
    assert len(host.sessions()) == 1


def test_a_message_that_triggers_nothing_is_kept_as_context(store: Store, start_host: StartHost) -> None:
    wire(store, "shared", "team", rule="prefix:!bot")
    host = start_host()

    host.channel.emit(chat("chatting among ourselves", platform_id="team"))

    (session,) = host.sessions()
    (row,) = rows_in(host.layout(session))
    assert row.trigger == 0
    host.sync()
    assert host.runtime.specs == []

    host.channel.emit(chat("!bot summarise", platform_id="team"))
    host.runtime.wait_for_starts(1)
    assert started_sessions(host.runtime) == [session.id]


def test_per_thread_mode_makes_a_session_per_thread(store: Store, start_host: StartHost) -> None:
    wire(store, "per-thread", "team")
    host = start_host()

    host.channel.emit(chat("in thread one", platform_id="team", thread_id="t1"))
    host.channel.emit(chat("in thread two", platform_id="team", thread_id="t2"))
    host.channel.emit(chat("thread one again", platform_id="team", thread_id="t1"))

    by_thread = {session.thread_id: session for session in host.sessions()}
    assert set(by_thread) == {"t1", "t2"}
    assert [row.decoded().text for row in rows_in(host.layout(by_thread["t1"]))] == [
        "in thread one",
        "thread one again",
    ]
    assert [row.decoded().text for row in rows_in(host.layout(by_thread["t2"]))] == ["in thread two"]
    host.runtime.wait_for_starts(2)
    assert sorted(started_sessions(host.runtime)) == sorted([by_thread["t1"].id, by_thread["t2"].id])


def test_agent_shared_mode_makes_one_session_for_several_chats(store: Store, start_host: StartHost) -> None:
    wire(store, "agent-shared", "kitchen", "garden")
    host = start_host()

    host.channel.emit(chat("from the kitchen", platform_id="kitchen"))
    host.channel.emit(chat("from the garden", platform_id="garden"))

    (session,) = host.sessions()
    rows = rows_in(host.layout(session))
    assert [(row.platform_id, row.decoded().text) for row in rows] == [
        ("kitchen", "from the kitchen"),
        ("garden", "from the garden"),
    ]
    host.runtime.wait_for_starts(1)
    host.sync()
    assert started_sessions(host.runtime) == [session.id]


def test_at_most_max_containers_agents_run_and_the_next_waits_its_turn(store: Store, start_host: StartHost) -> None:
    wire(store, "per-thread", "team")
    host = start_host()

    for thread_id in ("t1", "t2", "t3"):
        host.channel.emit(chat("hi", platform_id="team", thread_id=thread_id))

    assert len(host.sessions()) == 3
    host.runtime.wait_for_starts(2)
    host.sync()
    assert len(host.runtime.specs) == 2  # max_containers=2
    first = host.runtime.handles[0]
    first.stop()  # one agent ends; its slot goes to the session that waited
    handles = host.runtime.wait_for_starts(3)
    waited = next(s for s in host.sessions() if s.id not in {h.spec.session_id for h in handles[:2]})
    assert handles[2].spec.session_id == waited.id


# --- answers -------------------------------------------------------------------------------


def test_an_answer_goes_to_the_session_that_asked_and_only_once(store: Store, start_host: StartHost) -> None:
    wire(store, "shared", "local", "other")
    host = start_host()
    host.channel.emit(chat("hello", platform_id="local"))
    host.channel.emit(chat("tea or coffee?", platform_id="other"))
    asking = next(s for s in host.sessions() if s.messaging_group_id == _chat_id(store, "other"))
    bystander = next(s for s in host.sessions() if s.id != asking.id)
    asking_layout = host.layout(asking)
    # The agent asks, as the container would: a row in its outbound.db.
    with write_transaction(asking_layout.outbound_db) as conn:
        outbound.insert_message(
            conn,
            message_id="ask-1",
            content=AskQuestionOut(question_id="q-1", question="Which one?", options=["Tea", "Coffee"]),
            timestamp=now_ts(),
            highest_inbound_seq=rows_in(asking_layout)[-1].seq,
            routing=Routing("other", "cli"),
        )
    # The watcher says so too; telling every session as well keeps the test off inotify's
    # timing, and a spurious OutboundChanged is harmless by design.
    for ref in live_session_actors():
        ref.tell(OutboundChanged())
    (asked,) = host.channel.wait_for_calls("ask_question")
    assert asked.args[1:] == ("q-1", "Which one?", ("Tea", "Coffee"))

    host.channel.emit(
        InboundAnswer(channel_type="cli", platform_id="other", question_id="q-1", answer="Tea", sender="ann")
    )

    answer_row = rows_in(asking_layout)[-1]
    assert answer_row.kind == "system"
    assert answer_row.seq % 2 == 0
    assert answer_row.routing == Routing("other", "cli", None)
    assert answer_row.decoded() == QuestionAnswer(question_id="q-1", answer="Tea", answered_by="ann")
    assert [row.kind for row in rows_in(host.layout(bystander))] == ["chat"]
    question = pending_questions.get(store, "q-1")
    assert question is not None
    assert (question.status, question.answer) == ("answered", "Tea")

    with pytest.raises(RoutingError, match="already answered"):
        host.channel.emit(InboundAnswer(channel_type="cli", platform_id="other", question_id="q-1", answer="Coffee"))
    assert len(rows_in(asking_layout)) == 2


@pytest.mark.usefixtures("first_start")
def test_an_answer_to_an_unknown_question_is_refused(start_host: StartHost) -> None:
    host = start_host()

    with pytest.raises(RoutingError, match="no question"):
        host.channel.emit(InboundAnswer(channel_type="cli", platform_id="local", question_id="nope", answer="x"))


@pytest.mark.usefixtures("first_start")
def test_an_answer_from_another_channel_type_is_refused(store: Store, start_host: StartHost) -> None:
    host = start_host()
    host.channel.emit(chat("hello"))
    (session,) = host.sessions()
    pending_questions.create(
        store, id="q-9", session_id=session.id, message_out_id="m", question="?", options=["a"],
        platform_id="local", channel_type="telegram",
    )  # fmt: skip

    with pytest.raises(RoutingError, match="no question"):
        host.channel.emit(InboundAnswer(channel_type="cli", platform_id="local", question_id="q-9", answer="a"))
    question = pending_questions.get(store, "q-9")
    assert question is not None
    assert question.status == "open"


# --- failures and stopping -----------------------------------------------------------------


@pytest.mark.usefixtures("first_start")
def test_a_failed_session_is_restarted_from_disk(start_host: StartHost) -> None:
    host = start_host()
    host.channel.emit(chat("first"))
    host.channel.emit(chat("second"))
    (session,) = host.sessions()
    layout = host.layout(session)
    (old_ref,) = live_session_actors()
    (first_agent,) = host.runtime.handles
    first_row, second_row = rows_in(layout)
    # The agent took the first message (as the container's OutboxActor would record it)...
    with write_transaction(layout.outbound_db) as conn:
        outbound.set_ack(conn, first_row.id, "processing", now_ts())

    def explode_once(_spec: AgentSpec) -> None:
        host.runtime.on_start = None
        raise RuntimeError("the runtime has a bug")  # not a RuntimeStartError: the session fails

    host.runtime.on_start = explode_once
    # ...and dies. The second message is due, so the session starts another agent at once;
    # that blows up the SessionActor, which tells the supervisor SessionFailed, and the
    # supervisor starts a fresh actor, which finds the work on disk and starts an agent.
    first_agent.crash(1)

    handles = host.runtime.wait_for_starts(2)
    host.sync()
    assert not old_ref.is_alive()
    (new_ref,) = live_session_actors()
    assert new_ref != old_ref
    assert handles[1].spec.session_id == session.id
    assert [row.id for row in rows_in(layout)] == [first_row.id, second_row.id]


@pytest.mark.usefixtures("first_start")
def test_session_failed_starts_a_fresh_actor_for_that_session(start_host: StartHost) -> None:
    host = start_host()
    host.channel.emit(chat("hello"))
    (session,) = host.sessions()
    (old_ref,) = live_session_actors()
    old_ref.stop()

    host.supervisor.tell(SessionFailed(session.id, "boom"))
    host.sync()

    (new_ref,) = live_session_actors()
    assert new_ref != old_ref
    # The pending message is still on disk, so the fresh actor starts an agent for it.
    host.runtime.wait_for_starts(2)
    assert started_sessions(host.runtime) == [session.id, session.id]


def _chat_id(store: Store, platform_id: str) -> str:
    group = messaging_groups.get_by_platform(store, "cli", platform_id)
    assert group is not None
    return group.id


# --- nothing waits on a container ----------------------------------------------------------


def test_a_slow_agent_start_delays_no_other_chat(store: Store, start_host: StartHost) -> None:
    """The first chat's runtime hangs in start (a slow Docker start); while it does, its own
    message is acked, and another chat's message is stored and its agent started."""
    wire(store, "shared", "slow", "fast")
    host = start_host()
    gate = threading.Event()
    slow_started = threading.Event()

    def hang_for_the_slow_chat(spec: AgentSpec) -> None:
        if spec.session_id == _session_of(store, "slow"):
            slow_started.set()
            assert gate.wait(timeout=20), "the test never opened the gate"

    host.runtime.on_start = hang_for_the_slow_chat
    try:
        host.channel.emit(chat("first", platform_id="slow"))  # stored, though its agent is not up
        assert slow_started.wait(timeout=10)
        host.channel.emit(chat("second", platform_id="fast"))
        (fast,) = host.runtime.wait_for_starts(1)
        assert fast.spec.session_id == _session_of(store, "fast")
        assert not gate.is_set()  # all of the above happened while the slow start hung
    finally:
        gate.set()
    host.runtime.wait_for_starts(2)


# --- questions -----------------------------------------------------------------------------


@pytest.mark.usefixtures("first_start")
def test_a_question_is_recorded_before_it_is_shown(store: Store, start_host: StartHost) -> None:
    known_when_shown: list[bool] = []

    class AnsweringChannel(FakeChannel):
        """A platform so quick that the person could answer while the question is sent."""

        def ask_question(
            self, target: Routing, question_id: str, question: str, options: tuple[str, ...]
        ) -> str | None:
            known_when_shown.append(pending_questions.get(store, question_id) is not None)
            return super().ask_question(target, question_id, question, options)

    host = start_host([AnsweringChannel("cli")])
    host.channel.emit(chat("hello"))
    (session,) = host.sessions()
    _ask(host.layout(session), "ask-1", "q-7", Routing("local", "cli"))
    host.sync()

    host.channel.wait_for_calls("ask_question")
    assert known_when_shown == [True]
    question = pending_questions.get(store, "q-7")
    assert question is not None
    assert (question.session_id, question.message_out_id, question.status) == (session.id, "ask-1", "open")
    assert (question.channel_type, question.platform_id, question.thread_id) == ("cli", "local", None)


def test_a_question_id_of_another_session_is_refused(store: Store, start_host: StartHost) -> None:
    wire(store, "shared", "mine", "theirs")
    host = start_host()
    host.channel.emit(chat("hi", platform_id="mine"))
    host.channel.emit(chat("hi", platform_id="theirs"))
    by_chat = {s.messaging_group_id: s for s in host.sessions()}
    theirs = by_chat[_chat_id(store, "theirs")]
    mine = by_chat[_chat_id(store, "mine")]
    pending_questions.create(
        store, id="q-1", session_id=theirs.id, message_out_id="m", question="?", options=["a"],
        platform_id="theirs", channel_type="cli",
    )  # fmt: skip

    _ask(host.layout(mine), "ask-1", "q-1", Routing("mine", "cli"))
    host.sync()
    host.sync()  # the Supervisor's refusal reaches the session, which records it

    assert host.channel.calls_of("ask_question") == []
    question = pending_questions.get(store, "q-1")
    assert question is not None and question.session_id == theirs.id
    with read_transaction(host.layout(mine).inbound_db) as conn:
        record = inbound.get_delivery(conn, "ask-1")
    assert record is not None and record.status == "failed"
    assert "belongs to another conversation" in (record.last_error or "")


def _ask(layout: SessionLayout, message_id: str, question_id: str, routing: Routing) -> None:
    """The agent asks, as the container would: a row in its outbound.db."""
    with write_transaction(layout.outbound_db) as conn:
        outbound.insert_message(
            conn,
            message_id=message_id,
            content=AskQuestionOut(question_id=question_id, question="Which one?", options=["Tea", "Coffee"]),
            timestamp=now_ts(),
            highest_inbound_seq=rows_in(layout)[-1].seq,
            routing=routing,
        )


def _session_of(store: Store, platform_id: str) -> str | None:
    chat_id = _chat_id(store, platform_id)
    found = [session.id for session in sessions.list_all(store) if session.messaging_group_id == chat_id]
    return found[0] if found else None


def test_an_idle_agent_gives_its_slot_to_a_chat_that_waits(store: Store, start_host: StartHost) -> None:
    """No session waits for an idle timeout while another agent has nothing to do."""
    wire(store, "per-thread", "team")
    host = start_host()
    for thread_id in ("t1", "t2"):
        host.channel.emit(chat("hi", platform_id="team", thread_id=thread_id))
    first, second = host.runtime.wait_for_starts(2)
    # Both agents answer and finish their turns, as the container records it: now idle.
    for session in host.sessions():
        layout = host.layout(session)
        (row,) = rows_in(layout)
        with write_transaction(layout.outbound_db) as conn:
            outbound.set_ack(conn, row.id, "completed", now_ts())
    host.sync()

    host.channel.emit(chat("me too", platform_id="team", thread_id="t3"))

    handles = host.runtime.wait_for_starts(3)
    assert handles[2].spec.session_id == _session_of_thread(store, "t3")
    stopped = [handle for handle in (first, second) if handle.stop_calls]
    assert len(stopped) == 1  # one slot was needed, one agent gave it up
    assert first.stop_calls + second.stop_calls == 1


def _session_of_thread(store: Store, thread_id: str) -> str:
    (session,) = [s for s in sessions.list_all(store) if s.thread_id == thread_id]
    return session.id


@pytest.mark.usefixtures("first_start")
def test_a_message_for_two_agents_is_acked_once_both_sessions_have_it(start_host: StartHost) -> None:
    host = start_host()
    chat_row = messaging_groups.create(host.store, channel_type="cli", platform_id="team", is_group=True)
    for name in ("helper", "logger"):
        group = agent_groups.create(host.store, name=name, folder=name)
        messaging_group_agents.create(
            host.store, messaging_group_id=chat_row.id, agent_group_id=group.id, session_mode="shared"
        )

    row = host.channel.emit(chat("for both of you", platform_id="team", is_group=True))

    assert row is not None
    both = host.sessions()
    assert len(both) == 2
    assert all([r.decoded().text for r in rows_in(host.layout(session))] == ["for both of you"] for session in both)


# --- asked through the control socket --------------------------------------------------------


def _live_session(host: Running) -> Session:
    host.channel.emit(chat("hello"))
    host.runtime.wait_for_starts(1)
    (session,) = host.sessions()
    return session


@pytest.mark.usefixtures("first_start")
def test_open_session_gives_the_live_actor_and_none_for_an_unknown_session(start_host: StartHost) -> None:
    host = start_host()
    session = _live_session(host)
    ref = host.supervisor.ask(OpenSession(session.id), timeout=10)
    assert ref in live_session_actors()
    assert host.supervisor.ask(OpenSession("no-such-session"), timeout=10) is None


@pytest.mark.usefixtures("first_start")
def test_stop_session_ends_its_agent_and_actor_and_the_next_message_opens_it_again(start_host: StartHost) -> None:
    host = start_host()
    session = _live_session(host)
    (handle,) = host.runtime.handles_of(session.id)
    assert host.supervisor.ask(StopSession(session.id), timeout=20) is True
    assert not handle.alive()
    assert live_session_actors() == []
    assert host.supervisor.ask(StopSession(session.id), timeout=20) is False
    host.channel.emit(chat("again"))
    host.runtime.wait_for_starts(2)
    assert len(live_session_actors()) == 1


@pytest.mark.usefixtures("first_start")
def test_remove_agent_group_stops_its_sessions_before_the_group_goes(store: Store, start_host: StartHost) -> None:
    host = start_host()
    session = _live_session(host)
    group = agent_groups.get_by_folder(store, "main")
    assert group is not None
    assert host.supervisor.ask(RemoveAgentGroup(group.id), timeout=20) == [session.id]
    assert live_session_actors() == []
    assert agent_groups.get(store, group.id) is None
    assert sessions.get(store, session.id) is None


@pytest.mark.usefixtures("first_start")
def test_a_task_change_is_applied_by_the_sessions_own_actor(start_host: StartHost) -> None:
    host = start_host()
    session = _live_session(host)
    layout = host.layout(session)
    host.supervisor.ask(StopSession(session.id), timeout=20)
    with write_transaction(layout.inbound_db) as conn:  # as an agent's schedule_task left it
        schedule = ScheduleTask(task_id="t1", prompt="water", process_after="2030-01-01T09:00:00.000000Z")
        apply_action(conn, schedule, Routing(), requested_by=1)
    ref = cast(pykka.ActorRef[Any], host.supervisor.ask(OpenSession(session.id), timeout=10))
    done = cast(str, ref.ask(ChangeSeries(PauseTask(task_id="t1")), timeout=10))
    assert done.endswith("1 occurrence(s) now paused")
    assert [row.status for row in rows_in(layout) if row.kind == "task"] == ["paused"]
    with pytest.raises(ActionRejected, match="there is no task 'nope'"):
        ref.ask(ChangeSeries(CancelTask(task_id="nope")), timeout=10)


def test_the_owner_hears_of_a_flooding_agent_in_their_own_chat_once(start_host: StartHost) -> None:
    """An agent sending past its pace is told to its chat by the session; the owner (here the
    local chat: no channel has a configured owner) hears of it too, and not twice when the
    flooded chat is their own."""
    host = start_host()
    host.supervisor.tell(TellOwner("the agent of main floods cli:family", about=Routing("family", "cli")))
    host.supervisor.tell(TellOwner("the agent of main floods cli:local", about=Routing("local", "cli")))
    host.sync()
    (told,) = host.channel.wait_for_calls("send_text")
    assert told.args[:2] == (Routing("local", "cli"), "the agent of main floods cli:family")
    host.sync()
    assert len(host.channel.calls_of("send_text")) == 1
