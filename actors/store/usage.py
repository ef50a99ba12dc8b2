"""Token usage per agent group, session, model and UTC day (`token_usage`): what the
credential proxy adds after each model response, and the sums that `hutch usage`, the
control page and budgets read. Cost is worked out here from a price table, never stored."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Final

import msgspec

from actors.pricing import PriceTable, Tokens, default_prices
from actors.store.db import Store

TABLE = "token_usage"

# The model of a response whose body could not be read: it has no price, so whatever it
# cost shows as unknown instead of being left out of a total silently.
UNKNOWN_MODEL: Final = "unknown"

_UPSERT: Final = f"""
INSERT INTO {TABLE} (day, agent_group_id, session_id, model, requests, input_tokens, output_tokens,
                     cache_read_tokens, cache_write_tokens, cache_write_1h_tokens)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (day, agent_group_id, session_id, model) DO UPDATE SET
    requests = requests + excluded.requests,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
    cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
    cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens
"""

# One row per day, group and model: a price is per model, so models are summed only after
# each has been priced.
_BY_MODEL: Final = f"""
SELECT u.day, u.agent_group_id, g.name AS group_name, u.model,
       SUM(u.requests), SUM(u.input_tokens), SUM(u.output_tokens), SUM(u.cache_read_tokens),
       SUM(u.cache_write_tokens), SUM(u.cache_write_1h_tokens)
FROM {TABLE} u JOIN agent_groups g ON g.id = u.agent_group_id
WHERE u.day >= ? AND (? IS NULL OR u.day <= ?) AND (? IS NULL OR u.agent_group_id = ?)
GROUP BY u.day, u.agent_group_id, u.model
ORDER BY u.day, g.name, u.agent_group_id
"""


class DailyUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One agent group's use on one UTC day, all its sessions and models together."""

    day: str  # YYYY-MM-DD, UTC
    agent_group_id: str
    group_name: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None  # None: a model used that day has no price


class UsageTotals(msgspec.Struct, frozen=True, kw_only=True):
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = 0.0  # None: some of it was used by a model with no price


def utc_day(moment: datetime | None = None) -> str:
    """The UTC day of `moment` (now by default), as stored."""
    return (moment or datetime.now(UTC)).astimezone(UTC).date().isoformat()


def record(
    store: Store,
    *,
    agent_group_id: str,
    session_id: str,
    model: str,
    tokens: Tokens,
    requests: int = 1,
    day: str | None = None,
) -> None:
    """Add one response's use (or several) to its day's row, in one short transaction.
    Raises MissingReferenceError when the agent group no longer exists."""
    with store.transaction() as conn:
        conn.execute(
            _UPSERT,
            (
                day or utc_day(),
                agent_group_id,
                session_id,
                model,
                requests,
                tokens.input,
                tokens.output,
                tokens.cache_read,
                tokens.cache_write,
                tokens.cache_write_1h,
            ),
        )


def daily_by_group(
    store: Store,
    since_day: str,
    until_day: str | None = None,
    *,
    agent_group_id: str | None = None,
    prices: PriceTable | None = None,
) -> list[DailyUsage]:
    """Each agent group's use per day from `since_day` to `until_day` (both included, UTC,
    YYYY-MM-DD), by day and then group name. Cost from `prices` (the default table if None)."""
    table = prices or default_prices()
    _check_day(since_day)
    if until_day is not None:
        _check_day(until_day)
    with store.read() as conn:
        rows = conn.execute(_BY_MODEL, (since_day, until_day, until_day, agent_group_id, agent_group_id)).fetchall()
    days: dict[tuple[str, str], DailyUsage] = {}
    for row in rows:
        day, group_id, group_name, model = str(row[0]), str(row[1]), str(row[2]), str(row[3])
        tokens = Tokens(
            input=int(row[5]),
            output=int(row[6]),
            cache_read=int(row[7]),
            cache_write=int(row[8]),
            cache_write_1h=int(row[9]),
        )
        cost = table.cost(model, tokens)
        seen = days.get((day, group_id))
        if seen is not None:
            cost = None if cost is None or seen.cost_usd is None else seen.cost_usd + cost
        days[(day, group_id)] = DailyUsage(
            day=day,
            agent_group_id=group_id,
            group_name=group_name,
            requests=int(row[4]) + (seen.requests if seen else 0),
            input_tokens=tokens.input + (seen.input_tokens if seen else 0),
            output_tokens=tokens.output + (seen.output_tokens if seen else 0),
            cache_read_tokens=tokens.cache_read + (seen.cache_read_tokens if seen else 0),
            cache_write_tokens=tokens.cache_write + (seen.cache_write_tokens if seen else 0),
            cost_usd=cost,
        )
    # Insertion order is the query's: by day, then group name.
    return list(days.values())


def totals(days: Iterable[DailyUsage]) -> UsageTotals:
    """The sum of some days (cost unknown when any day's is)."""
    total = UsageTotals()
    for day in days:
        cost = None if total.cost_usd is None or day.cost_usd is None else total.cost_usd + day.cost_usd
        total = UsageTotals(
            requests=total.requests + day.requests,
            input_tokens=total.input_tokens + day.input_tokens,
            output_tokens=total.output_tokens + day.output_tokens,
            cache_read_tokens=total.cache_read_tokens + day.cache_read_tokens,
            cache_write_tokens=total.cache_write_tokens + day.cache_write_tokens,
            cost_usd=cost,
        )
    return total


def totals_for(
    store: Store,
    agent_group_id: str,
    since_day: str,
    until_day: str | None = None,
    *,
    prices: PriceTable | None = None,
) -> UsageTotals:
    """One agent group's use from `since_day` on (a budget's period, `/cost`)."""
    return totals(daily_by_group(store, since_day, until_day, agent_group_id=agent_group_id, prices=prices))


def session_totals(store: Store, session_id: str, since_day: str, *, prices: PriceTable | None = None) -> UsageTotals:
    """One session's use from `since_day` on (`/cost`)."""
    table = prices or default_prices()
    _check_day(since_day)
    query = f"""
        SELECT model, SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens),
               SUM(cache_write_tokens), SUM(cache_write_1h_tokens)
        FROM {TABLE} WHERE session_id = ? AND day >= ? GROUP BY model"""
    with store.read() as conn:
        rows = conn.execute(query, (session_id, since_day)).fetchall()
    total = UsageTotals()
    for row in rows:
        tokens = Tokens(
            input=int(row[2]), output=int(row[3]), cache_read=int(row[4]), cache_write=int(row[5]),
            cache_write_1h=int(row[6]),
        )  # fmt: skip
        cost = table.cost(str(row[0]), tokens)
        total = UsageTotals(
            requests=total.requests + int(row[1]),
            input_tokens=total.input_tokens + tokens.input,
            output_tokens=total.output_tokens + tokens.output,
            cache_read_tokens=total.cache_read_tokens + tokens.cache_read,
            cache_write_tokens=total.cache_write_tokens + tokens.cache_write,
            cost_usd=None if cost is None or total.cost_usd is None else total.cost_usd + cost,
        )
    return total


def any_recorded(store: Store) -> bool:
    """Whether any use was ever recorded (what an empty window is told apart by)."""
    with store.read() as conn:
        return conn.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchone() is not None


def _check_day(day: str) -> None:
    # Days are compared as text in SQL, which is right only for this exact form.
    try:
        if date.fromisoformat(day).isoformat() == day:
            return
    except ValueError:
        pass
    raise ValueError(f"not a day in the form YYYY-MM-DD: {day!r}")
