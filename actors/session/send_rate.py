"""How fast a session's agent may have messages sent: a token bucket, on the session's clock.

A burst of `burst` goes at once, then `per_minute`; what comes faster is held in order, not
dropped (the rows stay in outbound.db and the delivery queue), and the actor says so once.
"""

from __future__ import annotations

from datetime import datetime, timedelta


class SendRate:
    def __init__(self, per_minute: float, burst: int) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a send rate needs a positive rate and a burst of at least one")
        self._per_second = per_minute / 60.0
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at: datetime | None = None

    def _refill(self, now: datetime) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(self._burst, self._tokens + (now - self._at).total_seconds() * self._per_second)
        if self._at is None or now > self._at:
            self._at = now

    def allows(self, now: datetime) -> bool:
        self._refill(now)
        return self._tokens >= 1.0

    def take(self, now: datetime) -> None:
        self._refill(now)
        self._tokens -= 1.0

    def next_at(self, now: datetime) -> datetime:
        """When the next send is allowed."""
        self._refill(now)
        missing = max(0.0, 1.0 - self._tokens)
        return now + timedelta(seconds=missing / self._per_second)
