"""The bookkeeping behind a session's outbound deliveries (docs/ARCHITECTURE.md, invariant 8), without the
actor: which outbound rows are settled, which wait to be sent, how often each was tried,
which one is with the DeliveryActor now.

It never writes: each outcome comes back as the `Delivery` row to record in inbound.db. A
delivery's outcome is told to `record` when the SessionActor notes it, and written with the
session's next write, so memory may run ahead of the file for a moment; a crash in that
moment sends the row again, which at-least-once delivery allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import pykka

from actors.session.outbound_reader import ReadRow, parse_container_ts
from protocol.rows import Delivery
from protocol.timeutil import format_ts

# `last_error` is shown to people and kept in inbound.db; an adapter's error can be any size.
MAX_ERROR_CHARS = 2000


def gave_up_reason(attempts: int, error: str) -> str:
    return f"delivery failed after {attempts} attempt(s): {error}"


class DeliveryQueue:
    def __init__(self, retry_base_s: float, max_attempts: int, max_backoff_s: float = float("inf")) -> None:
        self._retry_base_s = retry_base_s
        self._max_attempts = max_attempts
        self._max_backoff_s = max_backoff_s
        self._settled: set[str] = set()
        # Delivered rows -> the platform's id of what was sent, for edits and reactions.
        self._platform_ids: dict[str, str] = {}
        self._attempts: dict[str, Delivery] = {}  # rows that failed and wait for a retry
        self._queue: dict[str, ReadRow] = {}
        self._in_flight: str | None = None
        self._drained: pykka.ThreadingFuture[bool] | None = None

    def load(self, deliveries: Iterable[Delivery]) -> None:
        """Take up where the `delivered` table says the session was."""
        for delivery in deliveries:
            if delivery.status == "retrying":
                self._attempts[delivery.message_out_id] = delivery
            else:
                self._settle(delivery)

    @property
    def in_flight(self) -> str | None:
        return self._in_flight

    def __len__(self) -> int:
        """Rows waiting to be sent, the one out included."""
        return len(self._queue)

    def knows(self, key: str) -> bool:
        """Settled or waiting: reading the row again must not send it twice."""
        return key in self._settled or key in self._queue

    def enqueue(self, item: ReadRow) -> None:
        self._queue[item.row.id] = item

    def ready(self, now: datetime) -> list[ReadRow]:
        """Rows that may be sent now, oldest first. None while one is out or draining: one at
        a time is what keeps a session's order. A row waiting for its time is skipped, never
        waited for, so it does not hold back the rows behind it."""
        if self._in_flight is not None or self._drained is not None:
            return []
        return [item for item in sorted(self._queue.values(), key=lambda item: item.row.seq) if self._due(item, now)]

    def _due(self, item: ReadRow, now: datetime) -> bool:
        previous = self._attempts.get(item.row.id)
        if previous is not None and previous.retry_after and parse_container_ts(previous.retry_after) > now:
            return False
        return not (item.row.deliver_after and parse_container_ts(item.row.deliver_after) > now)

    def sending(self, key: str) -> None:
        self._in_flight = key

    def _attempts_before(self, key: str) -> int:
        previous = self._attempts.get(key)
        return previous.attempts if previous else 0

    def delivered(self, key: str, platform_message_id: str | None, at: str) -> Delivery:
        return Delivery(
            message_out_id=key,
            status="delivered",
            attempts=self._attempts_before(key) + 1,
            platform_message_id=platform_message_id,
            delivered_at=at,
        )

    def failed(
        self, key: str, error: str, retryable: bool, now: datetime, retry_after_s: float | None = None
    ) -> Delivery:
        """Retry later, doubling the wait, and never sooner than the platform asked
        (`retry_after_s`); a row that cannot be retried, or has had its last attempt, fails
        for good."""
        attempts = self._attempts_before(key) + 1
        if not retryable or attempts >= self._max_attempts:
            return Delivery(
                message_out_id=key,
                status="failed",
                attempts=attempts,
                last_error=gave_up_reason(attempts, error)[:MAX_ERROR_CHARS],
            )
        return Delivery(
            message_out_id=key,
            status="retrying",
            attempts=attempts,
            last_error=error[:MAX_ERROR_CHARS],
            retry_after=format_ts(now + timedelta(seconds=max(self.backoff_s(attempts), retry_after_s or 0.0))),
        )

    def backoff_s(self, attempts: int) -> float:
        """The wait after the `attempts`-th failed attempt: the base, doubling each time, up
        to the cap (so a platform back after hours is tried again within the cap)."""
        # The exponent is bounded too: 2 ** 1000 is a float overflow.
        return float(min(self._retry_base_s * 2 ** min(attempts - 1, 64), self._max_backoff_s))

    def rejected(self, key: str, reason: str) -> Delivery:
        """A row that must never be sent (bad row, unknown chat, ...)."""
        attempts = self._attempts_before(key)
        return Delivery(message_out_id=key, status="failed", attempts=attempts, last_error=reason[:MAX_ERROR_CHARS])

    @staticmethod
    def applied(key: str, at: str) -> Delivery:
        """A system row the host applied to inbound.db; nothing goes to a channel."""
        return Delivery(message_out_id=key, status="delivered", attempts=1, delivered_at=at)

    def record(self, delivery: Delivery) -> None:
        """`delivery` is now in inbound.db."""
        key = delivery.message_out_id
        if delivery.status == "retrying":
            self._attempts[key] = delivery
            return
        self._attempts.pop(key, None)
        self._queue.pop(key, None)
        self._settle(delivery)

    def _settle(self, delivery: Delivery) -> None:
        self._settled.add(delivery.message_out_id)
        if delivery.status == "delivered" and delivery.platform_message_id:
            self._platform_ids[delivery.message_out_id] = delivery.platform_message_id

    def platform_id(self, key: str) -> str | None:
        """The platform's id of a delivered row, None when it was not (or not yet) delivered."""
        return self._platform_ids.get(key)

    def finished(self, key: str) -> None:
        """The DeliveryActor answered about `key`."""
        if self._in_flight == key:
            self._in_flight = None
        if self._drained is not None and self._in_flight is None:
            self._drained.set(True)

    def drain(self) -> pykka.ThreadingFuture[bool]:
        """Send nothing more; the future resolves once the row that is out has its answer."""
        self._drained = pykka.ThreadingFuture()
        if self._in_flight is None:
            self._drained.set(True)
        return self._drained

    def wake_times(self) -> list[datetime]:
        """When a waiting row becomes sendable: its retry time or its `deliver_after`."""
        retries = [
            parse_container_ts(d.retry_after)
            for d in self._attempts.values()
            if d.retry_after and d.message_out_id in self._queue
        ]
        delayed = [parse_container_ts(i.row.deliver_after) for i in self._queue.values() if i.row.deliver_after]
        return retries + delayed
