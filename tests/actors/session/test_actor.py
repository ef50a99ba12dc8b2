"""SessionActor on its own: a real session folder, a fake runtime, a recorder as the DeliveryActor.

The test plays the container: it writes `outbound.db` rows and acks with the protocol helpers,
then tells the actor `OutboundChanged()`. `sync()` asks the actor something harmless, which
returns only after every message told before it has been handled (pykka keeps the order).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors.messages import (
    Deliver,
    Delivered,
    DeliveryFailed,
    Drain,
    FlushBookkeeping,
    HeartbeatSeen,
    Notify,
    OutboundChanged,
    SendText,
    SessionFailed,
    SessionIdle,
    ShowTyping,
    StopIfIdle,
    SweepCheck,
    Wake,
    WriteInbound,
)
from actors.runtime.base import AgentUser
from actors.session import SessionActor, SessionInfo, SessionSettings, write_inbound
from actors.slots import ContainerSlots
from protocol import inbound, outbound
from protocol.agent_db import read_agent_db
from protocol.content import (
    MAX_CONTENT_BYTES,
    MAX_TEXT_CHARS,
    CancelTask,
    ChatIn,
    ChatOut,
    ContentError,
    Notice,
    OutboundContent,
    PauseTask,
    ResumeTask,
    ScheduleTask,
    TaskIn,
)
from protocol.db import create_session_db, max_seq, next_odd_seq, read_transaction, write_transaction
from protocol.layout import SessionLayout
from protocol.rows import Delivery, MessageIn, MessageOut, Routing, from_row
from protocol.schema import OUTBOUND
from protocol.timeutil import format_ts, now_ts, parse_ts, utc_now
from tests.fakes.actors import RecorderActor, received, wait_for
from tests.fakes.runtime import FakeRuntime
from tests.fakes.session import ROUTING, make_session, write_in

pytestmark = pytest.mark.timeout(30)

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
SETTINGS = SessionSettings(
    retry_base_s=5,
    stale_heartbeat_s=30,
    max_tries=3,
    delivery_retry_base_s=5,
    delivery_max_attempts=3,
    stop_timeout_s=1,
    agent_env={"HUTCH_PROVIDER": "mock"},
)


class FakeClock:
    """The session's notion of "now"; only the test moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class Deaf:
    """A watcher that hears nothing: the test alone decides when the session looks."""

    def subscribe(self, folder: Path, on_change: Callable[[Path], None]) -> None:
        pass

    def unsubscribe(self, folder: Path) -> None:
        pass


class FakeProxy:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def open_socket(self, session_id: str, agent_group: str, socket_path: Path, owner: AgentUser | None = None) -> None:
        with self._lock:
            self.events.append(("open", session_id))

    def close_socket(self, session_id: str) -> None:
        with self._lock:
            self.events.append(("close", session_id))


@dataclass
class Host:
    root: Path
    runtime: FakeRuntime
    delivery: pykka.ActorRef[Any]
    supervisor: pykka.ActorRef[Any]
    clock: FakeClock

    def info(self, name: str = "one") -> SessionInfo:
        agent_dir = self.root / "groups" / "family"
        agent_dir.mkdir(parents=True, exist_ok=True)
        return SessionInfo(
            session_id=f"{name}-0123456789abcdef",
            agent_group="family",
            layout=SessionLayout(self.root / "sessions" / name),
            agent_dir=agent_dir,
        )

    def layout(self, name: str = "one") -> SessionLayout:
        return self.info(name).layout

    def start(
        self,
        name: str = "one",
        settings: SessionSettings = SETTINGS,
        *,
        real_clock: bool = False,
        slots: ContainerSlots | None = None,
        proxy: FakeProxy | None = None,
        watcher: Deaf | None = None,
    ) -> pykka.ActorRef[Any]:
        clock: Callable[[], datetime] = utc_now if real_clock else self.clock
        return SessionActor.start(
            self.info(name),
            self.runtime,
            self.delivery,
            settings,
            slots=slots,
            supervisor=self.supervisor,
            proxy=proxy,
            watcher=watcher,
            clock=clock,
        )


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path, FakeRuntime(), RecorderActor.start(), RecorderActor.start(), FakeClock(T0))


# --- helpers: the container's side and a look at the files ----------------------------------


def sync(session: pykka.ActorRef[Any]) -> None:
    """Returns once `session` has handled everything told to it before, re-read its files and
    written the bookkeeping it defers (delivery outcomes, mirrored acks)."""
    session.ask(OutboundChanged(), timeout=10)
    session.ask(FlushBookkeeping(), timeout=10)


def put(session: pykka.ActorRef[Any], request: WriteInbound) -> MessageIn:
    """Hand the session an inbound row and wait until it is committed; returns the row."""
    row: MessageIn = write_inbound(session, request).get(timeout=10)
    return row


def chat(text: str = "hello", *, trigger: bool = True, message_id: str | None = None) -> WriteInbound:
    content = ChatIn(text=text, sender="ann", platform_message_id=f"pm-{text}")
    return WriteInbound(content=content, routing=ROUTING, trigger=trigger, message_id=message_id)


def highest_inbound(layout: SessionLayout) -> int:
    with read_transaction(layout.inbound_db) as conn:
        return max_seq(conn, "messages_in")


def write_out(
    layout: SessionLayout, content: OutboundContent, *, message_id: str | None = None, routing: Routing = ROUTING
) -> MessageOut:
    highest = highest_inbound(layout)
    with write_transaction(layout.outbound_db) as conn:
        return outbound.insert_message(
            conn,
            message_id=message_id or uuid.uuid4().hex,
            content=content,
            timestamp=now_ts(),
            highest_inbound_seq=highest,
            routing=routing,
        )


def write_raw_out(
    layout: SessionLayout, message_id: str, *, kind: str = "chat", content: str, even: bool = False
) -> int:
    """A row as a misbehaving container might write it, bypassing every schema."""
    highest = highest_inbound(layout)
    with write_transaction(layout.outbound_db) as conn:
        seq = next_odd_seq(max(max_seq(conn, "messages_out"), highest)) + (1 if even else 0)
        conn.execute(
            "INSERT INTO messages_out (id, seq, timestamp, kind, platform_id, channel_type, content)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (message_id, seq, now_ts(), kind, ROUTING.platform_id, ROUTING.channel_type, content),
        )
    return seq


def ack(layout: SessionLayout, message_id: str, status: str, at: datetime) -> None:
    with write_transaction(layout.outbound_db) as conn:
        outbound.set_ack(conn, message_id, status, format_ts(at))


def beat(layout: SessionLayout, at: datetime) -> None:
    layout.heartbeat.touch()
    os.utime(layout.heartbeat, (at.timestamp(), at.timestamp()))


def delivery_of(layout: SessionLayout, message_out_id: str) -> Delivery | None:
    with read_transaction(layout.inbound_db) as conn:
        return inbound.get_delivery(conn, message_out_id)


def settled(layout: SessionLayout, message_out_id: str) -> Delivery:
    record = delivery_of(layout, message_out_id)
    assert record is not None, f"{message_out_id} has no delivery record"
    return record


def rows_in(layout: SessionLayout) -> list[MessageIn]:
    with read_transaction(layout.inbound_db) as conn:
        return [from_row(MessageIn, row) for row in conn.execute("SELECT * FROM messages_in ORDER BY seq")]


def row_in(layout: SessionLayout, message_id: str) -> MessageIn:
    with read_transaction(layout.inbound_db) as conn:
        row = inbound.get_message(conn, message_id)
    assert row is not None, f"no messages_in row {message_id}"
    return row


def delivers(ref: pykka.ActorRef[Any]) -> list[Deliver]:
    return [message for message in received(ref) if isinstance(message, Deliver)]


def sent_ids(ref: pykka.ActorRef[Any]) -> list[str]:
    return [message.message_out_id for message in delivers(ref)]


def nth_deliver(ref: pykka.ActorRef[Any], n: int, timeout: float = 10) -> Deliver:
    """Wait for the n-th (1-based) Deliver the recorder receives."""
    found: Deliver = wait_for(ref, Deliver, count=n, timeout=timeout)[n - 1]
    return found


# --- 1. inbound ---------------------------------------------------------------------------


def test_write_inbound_writes_even_seqs_and_starts_the_agent_once(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    layout = host.layout()
    layout.create()
    layout.heartbeat.write_text("left by a dead agent")
    heartbeat_at_start: list[bool] = []
    host.runtime.on_start = lambda spec: heartbeat_at_start.append((spec.session_dir / ".heartbeat").exists())
    session = host.start()

    quiet = put(session, chat("fyi", trigger=False))
    assert (quiet.seq, quiet.trigger) == (2, 0)
    assert host.runtime.specs == []  # a non-trigger row waits for the next turn
    assert layout.heartbeat.exists()

    first = put(session, chat("hello"))
    second = put(session, chat("again"))
    assert (first.seq, second.seq) == (4, 6)
    assert len(host.runtime.specs) == 1
    assert heartbeat_at_start == [False]  # deleted before the agent was started
    assert not layout.heartbeat.exists()

    info = host.info()
    (spec,) = host.runtime.specs
    assert (spec.session_id, spec.agent_group, spec.session_dir, spec.agent_dir) == (
        info.session_id,
        "family",
        layout.root,
        info.agent_dir,
    )
    assert spec.env["HUTCH_SESSION_DIR"] == str(layout.root)
    assert spec.env["HUTCH_AGENT_DIR"] == str(info.agent_dir)
    assert spec.env["TZ"] == "UTC"
    assert spec.env["HUTCH_PROVIDER"] == "mock"
    assert not [key for key, value in spec.env.items() if "ANTHROPIC" in key or "sk-ant" in value]

    rows = rows_in(layout)
    assert [(row.seq, row.kind, row.status, row.trigger) for row in rows] == [
        (2, "chat", "pending", 0),
        (4, "chat", "pending", 1),
        (6, "chat", "pending", 1),
    ]
    assert rows[1].routing == ROUTING
    assert rows[1].decoded() == ChatIn(text="hello", sender="ann", platform_message_id="pm-hello")


def test_the_same_message_id_is_written_once(host: Host) -> None:
    session = host.start()
    first = put(session, chat("hello", message_id="m1"))
    again = put(session, chat("hello", message_id="m1"))
    assert again == first
    assert len(rows_in(host.layout())) == 1


# --- 2. delivery order and restarts -------------------------------------------------------


def test_chat_rows_are_delivered_in_seq_order_one_at_a_time(host: Host) -> None:
    layout = host.layout()
    session = host.start()
    put(session, chat("hello"))
    one = write_out(layout, ChatOut(text="one"))
    two = write_out(layout, ChatOut(text="two"))
    session.tell(OutboundChanged())

    first = nth_deliver(host.delivery, 1)
    sync(session)
    assert sent_ids(host.delivery) == [one.id]  # the second waits for the first's answer
    assert first.session_id == host.info().session_id
    assert (first.routing, first.action) == (ROUTING, SendText("one"))
    assert delivery_of(layout, one.id) is None  # nothing is recorded before the channel confirms

    first.reply_to.tell(Delivered(one.id, "platform-1"))
    second = nth_deliver(host.delivery, 2)
    assert second.message_out_id == two.id
    sync(session)  # the outcome rides with the session's next write, or its own shortly after
    record = settled(layout, one.id)
    assert (record.status, record.platform_message_id, record.attempts) == ("delivered", "platform-1", 1)
    assert record.delivered_at is not None

    session.tell(OutboundChanged())
    session.tell(Wake())
    sync(session)
    assert sent_ids(host.delivery) == [one.id, two.id]  # a repeated event sends nothing twice

    second.reply_to.tell(Delivered(two.id, "platform-2"))
    three = write_out(layout, ChatOut(text="three"))
    session.tell(OutboundChanged())
    nth_deliver(host.delivery, 3)  # in flight, never confirmed: the host goes down now
    session.stop()
    assert settled(layout, two.id).status == "delivered"
    assert delivery_of(layout, three.id) is None
    four = write_out(layout, ChatOut(text="four"))  # written while no host was watching

    restarted = host.start()
    again = nth_deliver(host.delivery, 4)
    assert again.message_out_id == three.id  # at least once: the unconfirmed row goes again
    again.reply_to.tell(Delivered(three.id, "platform-3"))
    nth_deliver(host.delivery, 5).reply_to.tell(Delivered(four.id, "platform-4"))
    sync(restarted)
    assert sent_ids(host.delivery) == [one.id, two.id, three.id, three.id, four.id]
    assert [settled(layout, row.id).platform_message_id for row in (one, two, three, four)] == [
        "platform-1",
        "platform-2",
        "platform-3",
        "platform-4",
    ]


# --- 3. delivery failures -----------------------------------------------------------------


def test_a_retryable_failure_is_counted_on_disk_and_retried_by_the_timer(host: Host) -> None:
    settings = replace(SETTINGS, delivery_retry_base_s=0.5, delivery_max_attempts=3)
    layout = host.layout()
    session = host.start(settings=settings, real_clock=True)
    put(session, chat("hello"))
    flaky = write_out(layout, ChatOut(text="flaky"))
    behind = write_out(layout, ChatOut(text="behind"))
    session.tell(OutboundChanged())

    before = utc_now()
    nth_deliver(host.delivery, 1).reply_to.tell(DeliveryFailed(flaky.id, "network down"))
    meanwhile = nth_deliver(host.delivery, 2)
    assert meanwhile.message_out_id == behind.id  # a failing row never blocks the ones behind it
    sync(session)
    record = settled(layout, flaky.id)
    assert (record.status, record.attempts, record.last_error) == ("retrying", 1, "network down")
    assert record.retry_after is not None
    assert parse_ts(record.retry_after) >= before + timedelta(seconds=0.5)
    meanwhile.reply_to.tell(Delivered(behind.id, "p-behind"))

    retry = nth_deliver(host.delivery, 3)
    assert retry.message_out_id == flaky.id
    retry.reply_to.tell(DeliveryFailed(flaky.id, "still down"))
    # Nothing else happens in this session now: only the wake timer can send it again.
    last = nth_deliver(host.delivery, 4)
    assert last.message_out_id == flaky.id
    sync(session)
    assert settled(layout, flaky.id).attempts == 2
    last.reply_to.tell(DeliveryFailed(flaky.id, "gone for good"))
    sync(session)

    record = settled(layout, flaky.id)
    assert (record.status, record.attempts) == ("failed", 3)
    assert record.last_error is not None and "gone for good" in record.last_error
    assert settled(layout, behind.id).status == "delivered"
    assert sent_ids(host.delivery) == [flaky.id, behind.id, flaky.id, flaky.id]


def test_a_non_retryable_failure_fails_at_once(host: Host) -> None:
    layout = host.layout()
    session = host.start()
    put(session, chat("hello"))
    doomed = write_out(layout, ChatOut(text="doomed"))
    fine = write_out(layout, ChatOut(text="fine"))
    session.tell(OutboundChanged())
    nth_deliver(host.delivery, 1).reply_to.tell(DeliveryFailed(doomed.id, "chat was deleted", retryable=False))
    nth_deliver(host.delivery, 2).reply_to.tell(Delivered(fine.id, "p-fine"))
    sync(session)
    record = settled(layout, doomed.id)
    assert (record.status, record.attempts) == ("failed", 1)
    assert record.last_error is not None and "chat was deleted" in record.last_error
    session.tell(Wake())
    sync(session)
    assert sent_ids(host.delivery) == [doomed.id, fine.id]


def test_delivery_attempts_survive_a_restart(host: Host) -> None:
    settings = replace(SETTINGS, delivery_retry_base_s=0.2, delivery_max_attempts=2)
    layout = host.layout()
    session = host.start(settings=settings, real_clock=True)
    put(session, chat("hello"))
    flaky = write_out(layout, ChatOut(text="flaky"))
    session.tell(OutboundChanged())
    nth_deliver(host.delivery, 1).reply_to.tell(DeliveryFailed(flaky.id, "timeout"))
    sync(session)
    assert settled(layout, flaky.id).attempts == 1
    session.stop()

    restarted = host.start(settings=settings, real_clock=True)
    nth_deliver(host.delivery, 2).reply_to.tell(DeliveryFailed(flaky.id, "timeout again"))
    sync(restarted)
    record = settled(layout, flaky.id)
    assert (record.status, record.attempts) == ("failed", 2)  # counted across the restart


# --- 4. system rows -----------------------------------------------------------------------


def test_schedule_task_inserts_one_task_with_its_series_and_routing(host: Host) -> None:
    layout = host.layout()
    session = host.start()
    put(session, chat("hello"))
    when = format_ts(T0 + timedelta(hours=1))
    request = write_out(layout, ScheduleTask("water", "water the plants", when, "0 10 * * *"))
    stranger = write_out(
        layout, ScheduleTask("ping", "ping", when), routing=Routing(platform_id="chat-999", channel_type="cli")
    )
    sync(session)

    task = row_in(layout, "water")
    assert (task.kind, task.status, task.series_id, task.recurrence, task.process_after, task.trigger) == (
        "task",
        "pending",
        "water",
        "0 10 * * *",
        when,
        1,
    )
    assert task.routing == ROUTING
    assert task.decoded() == TaskIn(prompt="water the plants", scheduled_by=request.seq, scheduled_for=when)
    assert settled(layout, request.id).status == "delivered"
    # A chat the session never talked to is not a route the agent may pick.
    assert row_in(layout, "ping").routing == Routing()
    assert settled(layout, stranger.id).status == "delivered"
    assert delivers(host.delivery) == []  # system rows never go to a channel

    count = len(rows_in(layout))
    write_out(layout, ScheduleTask("water", "something else", when))  # the same task id again
    sync(session)
    session.stop()
    restarted = host.start()  # the same rows applied again by a new actor
    sync(restarted)
    assert len(rows_in(layout)) == count
    assert row_in(layout, "water") == task


def test_cancel_pause_and_resume_act_on_the_whole_series(host: Host) -> None:
    layout = make_session(host.layout().root)
    later = format_ts(T0 + timedelta(days=1))
    first = write_in(layout, TaskIn(prompt="daily"), process_after=later, recurrence="0 9 * * *", series_id="daily")
    second = write_in(layout, TaskIn(prompt="daily"), process_after=later, recurrence="0 9 * * *", series_id="daily")
    other = write_in(layout, TaskIn(prompt="other"), process_after=later, series_id="other")
    session = host.start()

    def statuses() -> tuple[str, str, str]:
        return row_in(layout, first.id).status, row_in(layout, second.id).status, row_in(layout, other.id).status

    pause = write_out(layout, PauseTask(first.id))  # any occurrence names the series
    sync(session)
    assert statuses() == ("paused", "paused", "pending")
    write_out(layout, ResumeTask("daily"))  # and so does the series id
    sync(session)
    assert statuses() == ("pending", "pending", "pending")
    cancel = write_out(layout, CancelTask(second.id))
    sync(session)
    assert statuses() == ("cancelled", "cancelled", "pending")
    assert settled(layout, pause.id).status == settled(layout, cancel.id).status == "delivered"
    assert host.runtime.specs == []


def test_rejected_system_actions_fail_and_tell_the_agent(host: Host) -> None:
    layout = host.layout()
    session = host.start()
    taken = put(session, chat("hello", trigger=False, message_id="chat-msg"))
    when = format_ts(T0)
    requests = {
        "there is no task 'nope'": write_out(layout, CancelTask("nope")),
        "not a valid cron expression": write_out(layout, ScheduleTask("t1", "x", when, "every morning")),
        "is not 1-64 characters": write_out(layout, ScheduleTask("../evil", "x", when)),
        "process_after": write_out(layout, ScheduleTask("t2", "x", "tomorrow at nine")),
        "is taken by a chat message": write_out(layout, ScheduleTask(taken.id, "x", when)),
    }
    sync(session)

    for reason, request in requests.items():
        record = settled(layout, request.id)
        assert record.status == "failed"
        assert record.last_error is not None and reason in record.last_error
    notices = [row for row in rows_in(layout) if row.kind == "system"]
    assert len(notices) == len(requests)
    assert all(row.trigger == 0 for row in notices)  # a note for the next turn, not a turn
    texts = [row.decoded().text for row in notices]
    assert all(isinstance(row.decoded(), Notice) for row in notices)
    for (reason, request), text in zip(requests.items(), texts, strict=True):
        assert f"request {request.seq} was not applied" in text and reason in text
    assert [row.kind for row in rows_in(layout)].count("task") == 0
    assert host.runtime.specs == []
    assert delivers(host.delivery) == []


# --- 5. untrusted rows --------------------------------------------------------------------


def test_bad_rows_are_rejected_and_the_session_goes_on(host: Host, tmp_path: Path) -> None:
    layout = host.layout()
    session = host.start()
    put(session, chat("hello"))
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret")
    (layout.out / "outbox" / "linked").mkdir()
    (layout.out / "outbox" / "linked" / "photo.jpg").symlink_to(secret)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.jpg").write_text("not in the outbox")
    (layout.out / "outbox" / "dirlink").symlink_to(elsewhere, target_is_directory=True)

    huge = json.dumps({"text": "x" * MAX_CONTENT_BYTES})
    write_raw_out(layout, "badjson", content="{not json")
    write_raw_out(layout, "badkind", kind="teleport", content="{}")
    write_raw_out(layout, "huge", content=huge)
    write_raw_out(layout, "badtype", content='{"text": 5}')
    write_raw_out(layout, "unknownfield", content='{"text": "hi", "shell": "rm -rf /"}')
    write_raw_out(layout, "evenseq", content='{"text": "hi"}', even=True)
    write_out(layout, ChatOut(text="look", files=["../x"]), message_id="dotdot")
    write_out(layout, ChatOut(text="look", files=["photo.jpg"]), message_id="linked")
    write_out(layout, ChatOut(text="look", files=["photo.jpg"]), message_id="dirlink")
    write_out(layout, ChatOut(text="psst"), message_id="stranger", routing=Routing("chat-999", "cli"))
    write_out(layout, ChatOut(text="  "), message_id="empty")
    good = write_out(layout, ChatOut(text="all good"), message_id="good")
    session.tell(OutboundChanged())

    sent = nth_deliver(host.delivery, 1)
    sync(session)
    assert sent_ids(host.delivery) == [good.id]
    assert sent.action == SendText("all good")
    reasons = {
        "badjson": "not valid JSON",
        "badkind": "unknown kind",
        "huge": f"more than {MAX_CONTENT_BYTES}",
        "badtype": "$.text",
        "unknownfield": "shell",
        "evenseq": "is even",
        "dotdot": "not a plain basename",
        "linked": "is a symlink",
        "dirlink": "folder 'dirlink' is a symlink",
        "stranger": "never talked to",
        "empty": "empty message",
    }
    for key, reason in reasons.items():
        record = settled(layout, key)
        assert record.status == "failed", key
        assert record.last_error is not None and reason in record.last_error, (key, record.last_error)
    assert session.is_alive()


def test_a_garbage_outbound_db_does_not_stop_the_session(host: Host) -> None:
    layout = host.layout()
    session = host.start()
    put(session, chat("hello"))
    layout.outbound_db.write_bytes(b"this is not a database, whatever the container says " * 200)
    session.tell(OutboundChanged())
    session.tell(SweepCheck())
    sync(session)
    assert session.is_alive()

    # The agent starts over with a fresh file; the session reads it as before.
    layout.outbound_db.unlink()
    create_session_db(layout.outbound_db, OUTBOUND)
    back = write_out(layout, ChatOut(text="back"))
    session.tell(OutboundChanged())
    assert nth_deliver(host.delivery, 1).message_out_id == back.id


# --- 6. acks and recurrence ---------------------------------------------------------------


def test_acks_mirror_into_inbound(host: Host) -> None:
    layout = host.layout()
    session = host.start()
    done = put(session, chat("one"))
    broken = put(session, chat("two"))
    busy = put(session, chat("three"))
    ack(layout, done.id, "completed", host.clock())
    ack(layout, broken.id, "failed", host.clock())
    ack(layout, busy.id, "processing", host.clock())
    sync(session)
    assert [row.status for row in rows_in(layout)] == ["completed", "failed", "pending"]


def test_a_completed_recurring_task_gets_its_next_occurrence_from_its_scheduled_time(host: Host) -> None:
    layout = host.layout()
    session = host.start()
    put(session, chat("hello"))
    request = write_out(layout, ScheduleTask("daily", "morning summary", format_ts(T0), "0 9 * * *"))
    sync(session)
    assert row_in(layout, "daily").status == "pending"

    host.clock.now = T0 + timedelta(minutes=47, seconds=13)  # the run finished late
    ack(layout, "daily", "completed", host.clock())
    sync(session)
    assert row_in(layout, "daily").status == "completed"
    series = [row for row in rows_in(layout) if row.series_id == "daily"]
    assert len(series) == 2
    following = series[1]
    assert following.process_after == "2030-01-02T09:00:00.000000Z"  # not 09:47:13 the next day
    assert (following.kind, following.status, following.recurrence) == ("task", "pending", "0 9 * * *")
    assert following.routing == ROUTING
    assert following.decoded() == TaskIn(
        prompt="morning summary", scheduled_by=request.seq, scheduled_for="2030-01-02T09:00:00.000000Z"
    )

    session.tell(OutboundChanged())
    sync(session)
    session.stop()
    sync(host.start())
    assert len([row for row in rows_in(layout) if row.series_id == "daily"]) == 2  # mirrored twice, added once


# --- 7. liveness --------------------------------------------------------------------------


def test_a_stuck_agent_is_killed_and_its_message_retried_until_it_fails(host: Host) -> None:
    layout = host.layout()
    clock = host.clock
    session = host.start()
    message = put(session, chat("hello"))
    for attempt in range(SETTINGS.max_tries):
        handle = host.runtime.wait_for_starts(attempt + 1)[-1]
        clock.advance(1)
        ack(layout, message.id, "processing", clock())
        beat(layout, clock())
        clock.advance(SETTINGS.stale_heartbeat_s + 1)
        session.ask(SweepCheck())
        sync(session)  # the kill's exit is handled
        assert (handle.kill_calls, handle.exit_code) == (1, -9)
        row = row_in(layout, message.id)
        assert row.tries == attempt + 1
        if attempt + 1 < SETTINGS.max_tries:
            delay = SETTINGS.retry_base_s * 2**attempt
            assert row.status == "pending"
            assert row.process_after == format_ts(clock() + timedelta(seconds=delay))
            assert len(host.runtime.handles) == attempt + 1  # not before it is due
            clock.advance(delay)
            session.ask(SweepCheck())  # due again: a new agent, the old claim does not count against it
            assert host.runtime.handles[-1].alive()
    assert row_in(layout, message.id).status == "failed"
    (notice,) = wait_for(host.delivery, Notify)
    assert notice.routing == ROUTING
    assert "could not process your message" in notice.text
    assert len(host.runtime.handles) == SETTINGS.max_tries
    # The dead agent's claim is nobody's work: the session may idle.
    assert session.ask(StopIfIdle()) is True


def test_a_healthy_agent_and_a_leftover_claim_do_not_get_it_killed(host: Host) -> None:
    layout = host.layout()
    clock = host.clock
    # The message stays unclaimed by this agent: that has a deadline of its own (tested below).
    session = host.start(settings=replace(SETTINGS, unclaimed_deadline_s=3600))
    message = put(session, chat("hello"))
    (handle,) = host.runtime.wait_for_starts(1)

    clock.advance(1)
    ack(layout, message.id, "processing", clock())
    beat(layout, clock())
    clock.advance(SETTINGS.stale_heartbeat_s - 5)
    session.ask(SweepCheck())
    assert handle.alive()  # slow but beating

    # A claim from before this agent started, e.g. a dead predecessor's, and no fresh beat.
    ack(layout, message.id, "processing", T0 - timedelta(hours=1))
    beat(layout, T0 - timedelta(minutes=10))
    clock.advance(SETTINGS.stale_heartbeat_s * 3)
    session.ask(SweepCheck())
    sync(session)
    assert handle.alive() and handle.kill_calls == 0
    assert row_in(layout, message.id).tries == 0


def test_a_crash_retries_the_claimed_message_without_waiting_for_the_sweep(host: Host) -> None:
    layout = host.layout()
    clock = host.clock
    session = host.start()
    message = put(session, chat("hello"))
    (handle,) = host.runtime.wait_for_starts(1)
    clock.advance(1)
    ack(layout, message.id, "processing", clock())
    handle.crash(-9)
    sync(session)
    row = row_in(layout, message.id)
    assert (row.tries, row.process_after) == (1, format_ts(clock() + timedelta(seconds=5)))
    assert len(host.runtime.handles) == 1
    clock.advance(5)
    session.tell(Wake())
    assert host.runtime.wait_for_starts(2)[1].alive()


def test_an_agent_that_dies_before_claiming_anything_is_not_restarted_in_a_loop(host: Host) -> None:
    layout = host.layout()
    clock = host.clock
    session = host.start()
    message = put(session, chat("hello"))
    for attempt in range(SETTINGS.max_tries):
        handle = host.runtime.wait_for_starts(attempt + 1)[-1]
        handle.crash(2)  # e.g. a setting the runner refuses
        sync(session)
        assert len(host.runtime.handles) == attempt + 1
        assert row_in(layout, message.id).tries == attempt + 1
        clock.advance(SETTINGS.retry_base_s * 2**attempt)
        session.tell(Wake())
    assert row_in(layout, message.id).status == "failed"
    wait_for(host.delivery, Notify)


def test_an_agent_that_cannot_start_is_tried_again_later(host: Host) -> None:
    layout = host.layout()
    proxy = FakeProxy()
    host.runtime.fail_next_start = True
    session = host.start(proxy=proxy)
    message = put(session, chat("hello"))
    sync(session)  # the start follows the commit, from a message the session sent itself
    assert (host.runtime.failed_starts, host.runtime.handles) == (1, [])
    row = row_in(layout, message.id)
    assert (row.tries, row.process_after) == (1, format_ts(host.clock() + timedelta(seconds=5)))
    sid = host.info().session_id
    assert proxy.events == [("open", sid), ("close", sid)]

    host.clock.advance(5)
    session.ask(Wake())
    (handle,) = host.runtime.wait_for_starts(1)
    assert handle.spec.env["HUTCH_PROXY_SOCKET"] == str(layout.proxy_socket)
    session.stop()
    assert handle.stop_calls == 1
    assert proxy.events[-1] == ("close", sid)  # the socket does not outlive the session


# --- 8. container slots -------------------------------------------------------------------


def test_only_as_many_agents_run_as_there_are_slots(host: Host) -> None:
    slots = ContainerSlots(1)
    one = host.start("one", slots=slots)
    two = host.start("two", slots=slots)
    first = put(one, chat("hello"))
    put(two, chat("hi"))
    assert [spec.session_id for spec in host.runtime.specs] == [host.info("one").session_id]
    assert slots.waiting() == (host.info("two").session_id,)

    ack(host.layout("one"), first.id, "completed", host.clock())
    sync(one)
    assert one.ask(StopIfIdle()) is True
    handles = host.runtime.wait_for_starts(2)
    assert handles[0].stop_calls == 1 and handles[0].exit_code == 0
    assert handles[1].spec.session_id == host.info("two").session_id
    assert slots.holders() == frozenset({host.info("two").session_id})


class GatedSlots(ContainerSlots):
    """Holds the first release of `gated` until the test opens the gate."""

    def __init__(self, limit: int, gated: str) -> None:
        super().__init__(limit)
        self._gated = gated
        self.entered = threading.Event()
        self.gate = threading.Event()

    def release(self, session_id: str) -> None:
        if session_id == self._gated and not self.entered.is_set():
            self.entered.set()
            self.gate.wait(10)
        super().release(session_id)


def test_a_slot_freed_for_a_session_that_is_stopping_does_not_break_the_one_freeing_it(host: Host) -> None:
    slots = GatedSlots(1, gated=host.info("two").session_id)
    one = host.start("one", slots=slots)
    two = host.start("two", slots=slots)
    first = put(one, chat("hello"))
    put(two, chat("hi"))
    stopping = two.stop(block=False)
    try:
        assert slots.entered.wait(10)  # `two` is dead but still queued for a slot
        ack(host.layout("one"), first.id, "completed", host.clock())
        sync(one)
        assert one.ask(StopIfIdle()) is True
        sync(one)  # its agent's exit hands the slot to `two`, which cannot take it
    finally:
        slots.gate.set()
    stopping.get(timeout=10)
    assert one.is_alive()
    assert slots.holders() == frozenset()
    assert len(host.runtime.handles) == 1


# --- 9. idling ----------------------------------------------------------------------------


def test_an_idle_agent_is_stopped_and_the_supervisor_told(host: Host) -> None:
    settings = replace(SETTINGS, idle_timeout_s=0.2)
    layout = host.layout()
    session = host.start(settings=settings, real_clock=True)
    message = put(session, chat("hello"))
    (handle,) = host.runtime.wait_for_starts(1)
    assert session.ask(StopIfIdle()) is False  # a message waits
    ack(layout, message.id, "processing", utc_now())
    sync(session)
    assert session.ask(StopIfIdle()) is False  # the agent is working on it
    assert handle.alive()

    ack(layout, message.id, "completed", utc_now())
    session.tell(OutboundChanged())
    wait_for(host.supervisor, SessionIdle)
    sync(session)
    assert (handle.stop_calls, handle.kill_calls, handle.exit_code) == (1, 0, 0)
    row = row_in(layout, message.id)
    assert (row.status, row.tries) == ("completed", 0)  # a deliberate stop counts no try
    assert len(host.runtime.handles) == 1
    assert received(host.supervisor) == [SessionIdle(host.info().session_id)]
    assert session.ask(StopIfIdle()) is True


# --- 10. draining -------------------------------------------------------------------------


def test_drain_waits_for_the_delivery_in_flight_and_starts_no_other(host: Host) -> None:
    layout = host.layout()
    session = host.start()
    put(session, chat("hello"))
    one = write_out(layout, ChatOut(text="one"))
    write_out(layout, ChatOut(text="two"))
    session.tell(OutboundChanged())
    in_flight = nth_deliver(host.delivery, 1)

    drained: pykka.Future[bool] = session.ask(Drain(), block=True)
    with pytest.raises(pykka.Timeout):
        drained.get(timeout=0)
    in_flight.reply_to.tell(Delivered(one.id, "p-1"))
    assert drained.get(timeout=10) is True
    sync(session)
    assert sent_ids(host.delivery) == [one.id]
    assert settled(layout, one.id).status == "delivered"


def test_drain_with_nothing_in_flight_is_done_at_once(host: Host) -> None:
    session = host.start()
    drained: pykka.Future[bool] = session.ask(Drain(), block=True)
    assert drained.get(timeout=0) is True


# --- reads and writes per event -----------------------------------------------------------


class _Counting:
    """Wraps the session's DB helpers to count the transactions it opens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import actors.session.actor as actor_module
        import actors.session.outbound_reader as reader_module

        self.reads = 0
        self.writes = 0
        real_read, real_write = read_transaction, write_transaction

        def read(path: Path) -> Any:
            self.reads += 1
            return real_read(path)

        def read_agent(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return read_agent_db(*args, **kwargs)

        def write(path: Path) -> Any:
            self.writes += 1
            return real_write(path)

        monkeypatch.setattr(actor_module, "read_transaction", read)
        monkeypatch.setattr(actor_module, "write_transaction", write)
        monkeypatch.setattr(reader_module, "read_agent_db", read_agent)


def _hold(session: pykka.ActorRef[Any], monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Keep the session inside one handler until the returned event is set, so whatever the
    test tells it meanwhile is queued, in order, behind that handler."""
    import actors.session.agent as agent_module

    holding, release = threading.Event(), threading.Event()
    real_beat = agent_module.AgentController.beat

    def held_beat(self: Any, at: float) -> None:
        holding.set()
        release.wait(timeout=10)
        real_beat(self, at)

    monkeypatch.setattr(agent_module.AgentController, "beat", held_beat)
    session.tell(HeartbeatSeen(time.time()))
    assert holding.wait(timeout=10)
    return release


def test_a_heartbeat_reads_no_database(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    session = host.start(watcher=Deaf())
    put(session, chat("hello"))
    sync(session)
    counting = _Counting(monkeypatch)

    for _ in range(5):
        session.ask(HeartbeatSeen(time.time()), timeout=10)

    assert (counting.reads, counting.writes) == (0, 0)


def test_an_outbound_event_is_one_read_and_at_most_one_write(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = host.layout()
    session = host.start(watcher=Deaf())
    first = put(session, chat("hello"))
    second = put(session, chat("again"))
    sync(session)
    when = format_ts(T0 + timedelta(days=1))
    write_out(layout, ChatOut(text="one"))
    write_out(layout, ScheduleTask(task_id="t1", prompt="ping", process_after=when), message_id="sys-1")
    ack(layout, first.id, "completed", T0)
    ack(layout, second.id, "failed", T0)
    counting = _Counting(monkeypatch)

    session.ask(OutboundChanged(), timeout=10)

    # One snapshot of outbound.db; the system action, the acks and their records in one write.
    assert (counting.reads, counting.writes) == (1, 1)
    assert [row_in(layout, first.id).status, row_in(layout, second.id).status] == ["completed", "failed"]
    assert row_in(layout, "t1").process_after == when
    nth_deliver(host.delivery, 1)


def test_a_burst_of_inbound_messages_shares_one_commit(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    session = host.start(watcher=Deaf())
    sync(session)
    counting = _Counting(monkeypatch)
    # Hold the actor in a handler, so the whole burst is queued before it handles the first.
    release = _hold(session, monkeypatch)
    futures = [write_inbound(session, chat(f"m{index}")) for index in range(20)]
    release.set()

    rows = [future.get(timeout=10) for future in futures]

    assert [row.seq for row in rows] == list(range(2, 42, 2))
    assert counting.writes == 1
    sync(session)
    assert len(host.runtime.specs) == 1


def test_without_a_watcher_the_session_watches_its_own_folder(host: Host) -> None:
    """Embedded use: nobody tells the actor about file events; it hears them itself."""
    layout = host.layout()
    session = host.start()
    put(session, chat("hello"))

    write_out(layout, ChatOut(text="heard it myself"))

    deliver = nth_deliver(host.delivery, 1)
    assert deliver.action == SendText("heard it myself")


# --- bookkeeping rides with the next write ------------------------------------------------


def test_an_outcome_and_a_mirror_ride_with_the_next_inbound_write(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = host.layout()
    session = host.start(watcher=Deaf())
    first = put(session, chat("hello"))
    sync(session)
    reply = write_out(layout, ChatOut(text="hi"))
    ack(layout, first.id, "completed", T0)
    session.ask(OutboundChanged(), timeout=10)
    nth_deliver(host.delivery, 1).reply_to.tell(Delivered(reply.id, "p-1"))
    counting = _Counting(monkeypatch)

    put(session, chat("next one"))

    assert counting.writes == 1  # the new row, the outcome and the mirror: one commit
    assert settled(layout, reply.id).status == "delivered"
    assert row_in(layout, first.id).status == "completed"


def test_deferred_bookkeeping_is_written_on_its_own_soon(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing else happens in the session: its own timer writes the outcome."""
    import actors.session.actor as actor_module

    written = threading.Event()
    real_write = write_transaction

    @contextlib.contextmanager
    def signalling(path: Path) -> Iterator[Any]:
        with real_write(path) as conn:
            yield conn
        written.set()

    layout = host.layout()
    session = host.start(watcher=Deaf(), real_clock=True)
    put(session, chat("hello"))
    reply = write_out(layout, ChatOut(text="hi"))
    session.ask(OutboundChanged(), timeout=10)
    deliver = nth_deliver(host.delivery, 1)
    monkeypatch.setattr(actor_module, "write_transaction", signalling)

    deliver.reply_to.tell(Delivered(reply.id, "p-1"))

    assert written.wait(timeout=10)
    assert settled(layout, reply.id).platform_message_id == "p-1"


def test_a_message_handed_over_just_before_a_stop_is_stored_and_answered(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = host.start(watcher=Deaf())
    sync(session)
    release = _hold(session, monkeypatch)
    stored = write_inbound(session, chat("last words"))
    stopped = session.stop(block=False)  # queued behind the message; its commit would come after
    release.set()

    row = stored.get(timeout=10)
    stopped.get(timeout=10)
    assert row_in(host.layout(), row.id).decoded().text == "last words"


def test_messages_faster_than_the_pace_are_held_in_order_and_the_chat_told_once(host: Host) -> None:
    layout = host.layout()
    session = host.start(settings=replace(SETTINGS, send_per_minute=60, send_burst=2), watcher=Deaf())
    put(session, chat("hello"))
    rows = [write_out(layout, ChatOut(text=f"n{index}")) for index in range(5)]
    session.tell(OutboundChanged())

    for number in (1, 2):  # the burst goes at once
        nth_deliver(host.delivery, number).reply_to.tell(Delivered(rows[number - 1].id, f"p-{number}"))
    sync(session)
    assert sent_ids(host.delivery) == [rows[0].id, rows[1].id]  # the third waits for its turn
    (notice,) = [message for message in received(host.delivery) if isinstance(message, Notify)]
    assert "more than 60 messages a minute" in notice.text

    for number in (3, 4, 5):  # then one a second, in order, and the chat is not told again
        host.clock.advance(1)
        session.tell(Wake())
        nth_deliver(host.delivery, number).reply_to.tell(Delivered(rows[number - 1].id, f"p-{number}"))
    sync(session)
    assert sent_ids(host.delivery) == [row.id for row in rows]
    assert len([message for message in received(host.delivery) if isinstance(message, Notify)]) == 1
    assert all(settled(layout, row.id).status == "delivered" for row in rows)


def test_an_agent_that_never_takes_its_due_work_is_restarted_and_the_sender_told_in_the_end(host: Host) -> None:
    """Its inbox died and its heartbeat beats on: only the due, unclaimed work gives it away."""
    clock = host.clock
    session = host.start()
    message = put(session, chat("anyone there?"))
    for attempt in range(SETTINGS.max_tries):
        (*_, handle) = host.runtime.wait_for_starts(attempt + 1)
        clock.advance(SETTINGS.unclaimed_deadline_s + 1)
        beat(host.layout(), clock())  # alive by its heartbeat all along
        session.ask(SweepCheck())
        assert handle.kill_calls == 1
        sync(session)
        clock.advance(SETTINGS.retry_base_s * 2**attempt + 1)  # the retry's wait
        session.ask(Wake())
    assert row_in(host.layout(), message.id).status == "failed"
    notice = wait_for(host.delivery, Notify)[0]
    assert "could not process your message" in notice.text


def test_content_past_the_protocols_caps_is_refused_before_anything_is_stored(host: Host) -> None:
    """Whatever channel built it: msgspec does not check a struct made in code."""
    session = host.start(watcher=Deaf())
    with pytest.raises(ContentError, match="Expected `str` of length <= 65536"):
        put(session, chat("x" * (MAX_TEXT_CHARS + 1)))
    fine = put(session, chat("still here"))
    assert [row.id for row in rows_in(host.layout())] == [fine.id]


# --- a hostile or broken session folder ------------------------------------------------------


def test_a_folder_in_place_of_the_heartbeat_is_moved_aside_and_the_agent_starts(host: Host) -> None:
    """An agent that made `.heartbeat` a folder would otherwise fail every start of its session."""
    layout = host.layout()
    layout.heartbeat.parent.mkdir(parents=True)
    layout.heartbeat.mkdir()
    session = host.start()
    put(session, chat("are you there?"))
    host.runtime.wait_for_starts(1)
    assert not layout.heartbeat.exists()
    assert [p.name for p in layout.out.glob(".heartbeat.refused-*")]


def test_a_folder_that_cannot_be_set_up_refuses_its_messages_and_says_so(host: Host) -> None:
    """Not a crash to restart from at once: each row handed over fails with the reason (its
    sender hears it), the Supervisor is told not to restart it now, and no agent runs."""
    layout = host.layout()
    layout.root.parent.mkdir(parents=True)
    layout.root.write_text("a file where the session's folder should be")
    session = host.start()
    with pytest.raises(Exception, match="cannot be set up"):
        write_inbound(session, chat("hello")).get(timeout=10)
    (failed,) = wait_for(host.supervisor, SessionFailed)
    assert failed.restart is False and "cannot be set up" in failed.error
    assert session.ask(StopIfIdle(), timeout=10) is True
    assert host.runtime.handles == []


def test_a_chat_whose_message_the_agent_works_on_is_shown_typing(host: Host) -> None:
    layout = host.layout()
    session = host.start()
    message = put(session, chat("hello"))
    host.runtime.wait_for_starts(1)
    host.clock.advance(1)
    ack(layout, message.id, "processing", host.clock())
    sync(session)
    (typing,) = wait_for(host.delivery, ShowTyping)
    assert typing.routing == ROUTING
    ack(layout, message.id, "completed", host.clock())
    sync(session)
    assert [m for m in received(host.delivery) if isinstance(m, ShowTyping)] == [typing]
