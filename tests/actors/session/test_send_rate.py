"""SendRate: a burst at once, then a steady pace, on the session's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from actors.session.send_rate import SendRate

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def test_a_burst_then_one_per_interval() -> None:
    rate = SendRate(per_minute=60, burst=3)
    for _ in range(3):
        assert rate.allows(T0)
        rate.take(T0)
    assert not rate.allows(T0)
    assert rate.next_at(T0) == T0 + timedelta(seconds=1)
    assert rate.allows(T0 + timedelta(seconds=1))
    rate.take(T0 + timedelta(seconds=1))
    assert not rate.allows(T0 + timedelta(seconds=1.5))


def test_a_quiet_spell_refills_only_up_to_the_burst() -> None:
    rate = SendRate(per_minute=60, burst=2)
    rate.take(T0)
    rate.take(T0)
    later = T0 + timedelta(hours=1)
    for _ in range(2):
        assert rate.allows(later)
        rate.take(later)
    assert not rate.allows(later)


@pytest.mark.parametrize(("per_minute", "burst"), [(0, 1), (-1, 5), (60, 0)])
def test_a_rate_that_sends_nothing_is_refused(per_minute: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        SendRate(per_minute, burst)
