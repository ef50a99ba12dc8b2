"""DeliveryQueue on its own: no actors, no files, a fixed clock. The outcomes it returns are
the rows the SessionActor writes; `record` is what it is told once they are written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pykka
import pytest

from actors.session.delivery_queue import DeliveryQueue
from actors.session.info import SessionSettings
from actors.session.outbound_reader import ReadRow
from protocol.content import ChatOut
from protocol.rows import Delivery, MessageOut
from protocol.timeutil import format_ts, parse_ts

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def item(seq: int, *, deliver_after: datetime | None = None, key: str | None = None) -> ReadRow:
    row = MessageOut(
        id=key or f"out-{seq}",
        seq=seq,
        timestamp=format_ts(NOW),
        kind="chat",
        deliver_after=format_ts(deliver_after) if deliver_after else None,
        platform_id="chat-1",
        channel_type="cli",
    )
    return ReadRow(row, ChatOut(text=f"reply {seq}"))


def ids(items: list[ReadRow]) -> list[str]:
    return [entry.row.id for entry in items]


def fresh(retry_base_s: float = 5, max_attempts: int = 3) -> DeliveryQueue:
    return DeliveryQueue(retry_base_s, max_attempts)


def fail(queue: DeliveryQueue, key: str, *, retryable: bool = True, now: datetime = NOW) -> Delivery:
    outcome = queue.failed(key, "the channel is down", retryable, now)
    queue.record(outcome)
    queue.finished(key)
    return outcome


def test_rows_are_ready_in_seq_order_whatever_order_they_came_in() -> None:
    queue = fresh()
    for seq in (5, 1, 3):
        queue.enqueue(item(seq))

    assert ids(queue.ready(NOW)) == ["out-1", "out-3", "out-5"]
    assert len(queue) == 3


def test_nothing_is_ready_while_a_row_is_out() -> None:
    queue = fresh()
    queue.enqueue(item(1))
    queue.enqueue(item(3))
    queue.sending("out-1")

    assert queue.ready(NOW) == []
    assert queue.in_flight == "out-1"

    queue.record(queue.delivered("out-1", "p-1", format_ts(NOW)))
    queue.finished("out-1")

    assert queue.in_flight is None
    assert ids(queue.ready(NOW)) == ["out-3"]


def test_an_answer_about_another_row_does_not_free_the_one_out() -> None:
    queue = fresh()
    queue.enqueue(item(1))
    queue.sending("out-1")

    queue.finished("out-7")

    assert queue.in_flight == "out-1"


def test_a_delayed_row_waits_without_holding_back_the_rows_behind_it() -> None:
    queue = fresh()
    later = NOW + timedelta(minutes=10)
    queue.enqueue(item(1, deliver_after=later))
    queue.enqueue(item(3))

    assert ids(queue.ready(NOW)) == ["out-3"]
    assert queue.wake_times() == [later]
    assert ids(queue.ready(later)) == ["out-1", "out-3"]


def test_an_unreadable_deliver_after_does_not_hold_the_row_back() -> None:
    queue = fresh()
    entry = item(1)
    queue.enqueue(ReadRow(msgspec.structs.replace(entry.row, deliver_after="tomorrow"), entry.content))

    assert ids(queue.ready(NOW)) == ["out-1"]


def test_a_retryable_failure_backs_off_doubling_and_skips_the_row_until_then() -> None:
    queue = fresh(retry_base_s=5, max_attempts=4)
    queue.enqueue(item(1))
    queue.enqueue(item(3))

    first = fail(queue, "out-1")
    assert (first.status, first.attempts, first.last_error) == ("retrying", 1, "the channel is down")
    assert parse_ts(first.retry_after or "") == NOW + timedelta(seconds=5)
    assert ids(queue.ready(NOW)) == ["out-3"]
    assert queue.wake_times() == [NOW + timedelta(seconds=5)]

    second = fail(queue, "out-1", now=NOW + timedelta(seconds=5))
    assert second.attempts == 2
    assert parse_ts(second.retry_after or "") == NOW + timedelta(seconds=15)  # 5 s later + 10 s
    assert queue.backoff_s(3) == 20

    assert ids(queue.ready(NOW + timedelta(seconds=15))) == ["out-1", "out-3"]


def test_the_backoff_stops_growing_at_its_cap() -> None:
    queue = DeliveryQueue(retry_base_s=2, max_attempts=10_000, max_backoff_s=60)
    assert [queue.backoff_s(n) for n in (1, 2, 5, 6, 7, 5000)] == [2, 4, 32, 60, 60, 60]


def test_the_defaults_keep_trying_a_platform_that_is_down_for_hours() -> None:
    """A reviewer lost a reply to a 45 s outage: five tries, 30 s in all. The defaults keep
    a row for about a day, tried at least once a minute."""
    settings = SessionSettings()
    queue = DeliveryQueue(
        settings.delivery_retry_base_s, settings.delivery_max_attempts, settings.delivery_max_backoff_s
    )
    queue.enqueue(item(1))
    now = NOW
    while now < NOW + timedelta(hours=23):
        outcome = fail(queue, "out-1", now=now)
        assert outcome.status == "retrying", outcome
        retry_at = parse_ts(outcome.retry_after or "")
        assert retry_at - now <= timedelta(seconds=60)
        now = retry_at


def test_the_last_attempt_fails_the_row_for_good() -> None:
    queue = fresh(max_attempts=2)
    queue.enqueue(item(1))
    fail(queue, "out-1")

    last = fail(queue, "out-1", now=NOW + timedelta(minutes=1))

    assert (last.status, last.attempts, last.retry_after) == ("failed", 2, None)
    assert last.last_error == "delivery failed after 2 attempt(s): the channel is down"
    assert queue.knows("out-1")
    assert len(queue) == 0
    assert queue.ready(NOW + timedelta(hours=1)) == []
    assert queue.wake_times() == []


def test_a_failure_that_cannot_be_retried_fails_at_once() -> None:
    queue = fresh(max_attempts=5)
    queue.enqueue(item(1))

    outcome = fail(queue, "out-1", retryable=False)

    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert len(queue) == 0


def test_errors_are_kept_to_a_bounded_size() -> None:
    queue = fresh()
    huge = "x" * 10_000

    assert len(queue.failed("a", huge, True, NOW).last_error or "") == 2000
    assert len(queue.failed("a", huge, False, NOW).last_error or "") == 2000
    assert len(queue.rejected("a", huge).last_error or "") == 2000


def test_delivered_counts_the_attempts_before_it() -> None:
    queue = fresh(max_attempts=5)
    queue.enqueue(item(1))
    fail(queue, "out-1")
    fail(queue, "out-1")

    outcome = queue.delivered("out-1", "p-9", "2030-01-01T09:05:00.000000Z")

    assert outcome == Delivery(
        message_out_id="out-1",
        status="delivered",
        attempts=3,
        platform_message_id="p-9",
        delivered_at="2030-01-01T09:05:00.000000Z",
    )


def test_a_rejected_row_keeps_its_attempt_count_and_leaves_the_queue() -> None:
    queue = fresh()
    queue.enqueue(item(1))
    fail(queue, "out-1")

    outcome = queue.rejected("out-1", "addressed to a chat this session has never talked to")
    queue.record(outcome)

    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert queue.knows("out-1")
    assert len(queue) == 0


def test_memory_follows_only_what_was_recorded() -> None:
    queue = fresh()
    queue.enqueue(item(1))

    queue.delivered("out-1", None, format_ts(NOW))  # computed, never written

    assert ids(queue.ready(NOW)) == ["out-1"]


def test_an_applied_system_row_is_settled() -> None:
    queue = fresh()
    outcome = DeliveryQueue.applied("sys-1", format_ts(NOW))

    assert (outcome.status, outcome.attempts, outcome.delivered_at) == ("delivered", 1, format_ts(NOW))
    assert not queue.knows("sys-1")
    queue.record(outcome)
    assert queue.knows("sys-1")


def test_load_settles_finished_rows_and_remembers_pending_retries() -> None:
    queue = fresh(max_attempts=5)
    retry_at = NOW + timedelta(seconds=30)
    queue.load(
        [
            Delivery(message_out_id="out-1", status="delivered", attempts=1),
            Delivery(message_out_id="out-3", status="failed", attempts=5),
            Delivery(message_out_id="out-5", status="retrying", attempts=2, retry_after=format_ts(retry_at)),
        ]
    )

    assert queue.knows("out-1")
    assert queue.knows("out-3")
    assert not queue.knows("out-5")  # read again after a restart, and sent again

    queue.enqueue(item(5))
    assert queue.ready(NOW) == []
    assert queue.wake_times() == [retry_at]
    assert queue.failed("out-5", "again", True, NOW).attempts == 3


def test_a_retry_time_of_a_row_not_waiting_wakes_nobody() -> None:
    queue = fresh()
    queue.load([Delivery(message_out_id="gone", status="retrying", attempts=1, retry_after=format_ts(NOW))])

    assert queue.wake_times() == []


def test_drain_resolves_at_once_when_nothing_is_out() -> None:
    queue = fresh()
    queue.enqueue(item(1))

    drained = queue.drain()

    assert drained.get(timeout=1) is True
    assert queue.ready(NOW) == []  # draining: nothing new goes out


def test_drain_waits_for_the_row_that_is_out() -> None:
    queue = fresh()
    queue.enqueue(item(1))
    queue.enqueue(item(3))
    queue.sending("out-1")

    drained = queue.drain()
    with pytest.raises(pykka.Timeout):
        drained.get(timeout=0)

    queue.record(queue.delivered("out-1", None, format_ts(NOW)))
    queue.finished("out-1")

    assert drained.get(timeout=1) is True
    assert queue.ready(NOW) == []


def test_a_wait_the_platform_asked_for_is_honoured_when_longer_than_the_backoff() -> None:
    queue = fresh(retry_base_s=2)
    queue.enqueue(item(1))
    long_flood = queue.failed("out-1", "flood control", True, NOW, retry_after_s=90)
    assert long_flood.retry_after == format_ts(NOW + timedelta(seconds=90))
    short_flood = queue.failed("out-1", "flood control", True, NOW, retry_after_s=0.5)
    assert short_flood.retry_after == format_ts(NOW + timedelta(seconds=2))  # the backoff is longer
