"""Budgets per agent group (`budgets`) and the owner notices already sent about them
(`budget_notices`): a daily and a monthly limit, in USD and/or tokens, over what
`token_usage` recorded (docs/ARCHITECTURE.md, "Budgets").

What counts: money is each model's tokens priced from the one price table; a model with no
price counts toward token limits only (its cost is unknown, never guessed). Tokens are every
token the API billed: input, output, cache reads and cache writes. Periods are UTC: a day
from 00:00, a month from its first day.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal

import msgspec

from actors.pricing import PriceTable, Tokens, default_prices
from actors.store.db import Store
from protocol.timeutil import now_ts

TABLE = "budgets"
NOTICES = "budget_notices"

Period = Literal["day", "month"]
Unit = Literal["usd", "tokens"]
# The share of a limit at which the owner is told it is nearly spent.
WARN_AT: Final = 0.8

_LIMITS: Final = ("daily_usd", "monthly_usd", "daily_tokens", "monthly_tokens")
_BY_MODEL: Final = """
SELECT model, SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),
       SUM(cache_write_1h_tokens)
FROM token_usage WHERE agent_group_id = ? AND day >= ? AND day <= ? GROUP BY model
"""


class Budget(msgspec.Struct, frozen=True, kw_only=True):
    """One group's limits; None: no limit of that kind."""

    agent_group_id: str
    daily_usd: float | None = None
    monthly_usd: float | None = None
    daily_tokens: int | None = None
    monthly_tokens: int | None = None
    updated_at: str = ""

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in _LIMITS)


class Spent(msgspec.Struct, frozen=True):
    usd: float  # priced models only
    tokens: int
    unpriced_tokens: int = 0  # of `tokens`, used by models with no price


class LimitState(msgspec.Struct, frozen=True, kw_only=True):
    """One limit of a budget, now: how much of it is used and when its period ends."""

    period: Period
    unit: Unit
    limit: float
    used: float
    period_start: str  # YYYY-MM-DD
    resets_at: datetime

    @property
    def share(self) -> float:
        """Used over limit; a zero limit is spent at once."""
        return math.inf if self.limit <= 0 else self.used / self.limit

    @property
    def spent(self) -> bool:
        return self.used >= self.limit

    def describe(self) -> str:
        """`daily budget of $5.00`, `monthly budget of 2,000,000 tokens`."""
        kind = "daily" if self.period == "day" else "monthly"
        amount = f"${self.limit:,.2f}" if self.unit == "usd" else f"{int(self.limit):,} tokens"
        return f"{kind} budget of {amount}"

    def used_text(self) -> str:
        return f"${self.used:,.2f}" if self.unit == "usd" else f"{int(self.used):,} tokens"

    def resets_text(self) -> str:
        if self.period == "day":
            return "it resets at 00:00 UTC"
        return f"it resets on {self.resets_at.date().isoformat()} at 00:00 UTC"


def get(store: Store, agent_group_id: str) -> Budget | None:
    with store.read() as conn:
        row = conn.execute(
            f"SELECT agent_group_id, {', '.join(_LIMITS)}, updated_at FROM {TABLE} WHERE agent_group_id = ?",
            (agent_group_id,),
        ).fetchone()
    return None if row is None else _budget(row)


def list_all(store: Store) -> list[Budget]:
    with store.read() as conn:
        rows = conn.execute(f"SELECT agent_group_id, {', '.join(_LIMITS)}, updated_at FROM {TABLE}").fetchall()
    return [_budget(row) for row in rows]


def put(store: Store, budget: Budget) -> Budget | None:
    """Set a group's limits (all of them, as given); a budget without any limit is removed.
    Raises MissingReferenceError when the group does not exist, ValueError for a negative
    or non-finite limit. Answers what is stored now."""
    for name in _LIMITS:
        value = getattr(budget, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValueError(f"{name.replace('_', ' ')} must be a number of 0 or more, not {value}")
    with store.transaction() as conn:
        if budget.empty:
            conn.execute(f"DELETE FROM {TABLE} WHERE agent_group_id = ?", (budget.agent_group_id,))
            return None
        stored = msgspec.structs.replace(budget, updated_at=now_ts())
        conn.execute(
            f"INSERT INTO {TABLE} (agent_group_id, {', '.join(_LIMITS)}, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(agent_group_id) DO UPDATE SET daily_usd = excluded.daily_usd,"
            " monthly_usd = excluded.monthly_usd, daily_tokens = excluded.daily_tokens,"
            " monthly_tokens = excluded.monthly_tokens, updated_at = excluded.updated_at",
            (
                stored.agent_group_id,
                stored.daily_usd,
                stored.monthly_usd,
                stored.daily_tokens,
                stored.monthly_tokens,
                stored.updated_at,
            ),
        )
        return stored


def spent(store: Store, agent_group_id: str, since: date, until: date, prices: PriceTable | None = None) -> Spent:
    """What the group used from `since` to `until` (UTC days, both included)."""
    table = prices or default_prices()
    with store.read() as conn:
        rows = conn.execute(_BY_MODEL, (agent_group_id, since.isoformat(), until.isoformat())).fetchall()
    usd, tokens, unpriced = 0.0, 0, 0
    for row in rows:
        used = Tokens(
            input=int(row[1]),
            output=int(row[2]),
            cache_read=int(row[3]),
            cache_write=int(row[4]),
            cache_write_1h=int(row[5]),
        )
        count = used.input + used.output + used.cache_read + used.cache_write
        tokens += count
        cost = table.cost(str(row[0]), used)
        if cost is None:
            unpriced += count
        else:
            usd += cost
    return Spent(usd, tokens, unpriced)


def state(
    store: Store, budget: Budget, prices: PriceTable | None = None, now: datetime | None = None
) -> list[LimitState]:
    """Each limit the budget sets, against what was used in its period so far."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    today = moment.date()
    month_start = today.replace(day=1)
    day_end = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    month_end = datetime.combine(next_month, datetime.min.time(), UTC)
    wanted_day = budget.daily_usd is not None or budget.daily_tokens is not None
    wanted_month = budget.monthly_usd is not None or budget.monthly_tokens is not None
    day = spent(store, budget.agent_group_id, today, today, prices) if wanted_day else Spent(0.0, 0)
    month = spent(store, budget.agent_group_id, month_start, today, prices) if wanted_month else Spent(0.0, 0)
    limits: list[LimitState] = []
    for period, unit, limit, used, start, end in (
        ("day", "usd", budget.daily_usd, day.usd, today, day_end),
        ("day", "tokens", budget.daily_tokens, day.tokens, today, day_end),
        ("month", "usd", budget.monthly_usd, month.usd, month_start, month_end),
        ("month", "tokens", budget.monthly_tokens, month.tokens, month_start, month_end),
    ):
        if limit is not None:
            limits.append(
                LimitState(
                    period=period,  # type: ignore[arg-type]
                    unit=unit,  # type: ignore[arg-type]
                    limit=float(limit),
                    used=float(used),
                    period_start=start.isoformat(),
                    resets_at=end,
                )
            )
    return limits


def note_notice(store: Store, agent_group_id: str, period: Period, period_start: str, level: int) -> bool:
    """Remember that the owner was told; True only the first time for this group, period and
    level (so the caller tells them once). The row is written before the notice goes."""
    with store.transaction() as conn:
        cursor = conn.execute(
            f"INSERT OR IGNORE INTO {NOTICES} (agent_group_id, period, period_start, level, sent_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (agent_group_id, period, period_start, level, now_ts()),
        )
        return cursor.rowcount == 1


def _budget(row: sqlite3.Row) -> Budget:
    values = tuple(row)
    return Budget(
        agent_group_id=str(values[0]),
        daily_usd=None if values[1] is None else float(values[1]),
        monthly_usd=None if values[2] is None else float(values[2]),
        daily_tokens=None if values[3] is None else int(values[3]),
        monthly_tokens=None if values[4] is None else int(values[4]),
        updated_at=str(values[5]),
    )


def describe(budget: Budget) -> str:
    """`$5.00 a day, 2,000,000 tokens a month`; `no limits` for an empty one."""
    parts = [
        text
        for value, text in (
            (budget.daily_usd, f"${budget.daily_usd or 0:,.2f} a day"),
            (budget.daily_tokens, f"{budget.daily_tokens or 0:,} tokens a day"),
            (budget.monthly_usd, f"${budget.monthly_usd or 0:,.2f} a month"),
            (budget.monthly_tokens, f"{budget.monthly_tokens or 0:,} tokens a month"),
        )
        if value is not None
    ]
    return ", ".join(parts) or "no limits"
