"""Budgets in the central DB: limits per group, what is used of them per UTC period, the
notices remembered once per group, period and level, and both gone with their group."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from actors.pricing import Tokens
from actors.store import agent_groups, budgets, usage
from actors.store.agent_groups import AgentGroup
from actors.store.db import MissingReferenceError, Store

NOW = datetime(2026, 12, 15, 18, 30, tzinfo=UTC)
SONNET = "claude-sonnet-4-6"  # $3 in / $15 out per million


def _use(store: Store, group: AgentGroup, day: str, *, input: int = 0, output: int = 0, model: str = SONNET) -> None:
    usage.record(
        store, agent_group_id=group.id, session_id="s1", model=model, tokens=Tokens(input=input, output=output), day=day
    )


def test_put_get_replace_and_remove(store: Store, agent: AgentGroup) -> None:
    assert budgets.get(store, agent.id) is None
    stored = budgets.put(store, budgets.Budget(agent_group_id=agent.id, daily_usd=2.5, monthly_tokens=1000))
    assert stored is not None and budgets.get(store, agent.id) == stored
    assert budgets.describe(stored) == "$2.50 a day, 1,000 tokens a month"
    budgets.put(store, budgets.Budget(agent_group_id=agent.id, monthly_usd=10))
    again = budgets.get(store, agent.id)
    assert again is not None and (again.daily_usd, again.monthly_usd, again.monthly_tokens) == (None, 10.0, None)
    assert budgets.put(store, budgets.Budget(agent_group_id=agent.id)) is None  # no limits: no budget
    assert budgets.get(store, agent.id) is None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_negative_or_non_finite_limit_is_refused(store: Store, agent: AgentGroup, bad: float) -> None:
    with pytest.raises(ValueError, match="daily usd"):
        budgets.put(store, budgets.Budget(agent_group_id=agent.id, daily_usd=bad))


def test_a_budget_needs_its_group(store: Store) -> None:
    with pytest.raises(MissingReferenceError):
        budgets.put(store, budgets.Budget(agent_group_id="nope", daily_usd=1))


def test_state_counts_the_utc_day_and_month_and_when_each_resets(store: Store, agent: AgentGroup) -> None:
    _use(store, agent, "2026-11-30", input=1_000_000)  # last month: counts for neither
    _use(store, agent, "2026-12-01", input=1_000_000)  # $3, this month only
    _use(store, agent, "2026-12-15", input=100_000, output=100_000)  # $1.80 today
    _use(store, agent, "2026-12-15", input=500, model="claude-nope-9")  # no price: tokens only
    budget = budgets.Budget(agent_group_id=agent.id, daily_usd=2, monthly_usd=4, daily_tokens=200_000)
    day_usd, day_tokens, month_usd = budgets.state(store, budget, now=NOW)
    assert day_usd.used == pytest.approx(1.8)
    assert not day_usd.spent
    assert day_usd.share == pytest.approx(0.9)
    assert day_usd.resets_at == datetime(2026, 12, 16, tzinfo=UTC)
    assert (day_tokens.used, day_tokens.spent) == (200_500, True)
    assert month_usd.used == pytest.approx(4.8)
    assert month_usd.spent
    assert month_usd.resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert month_usd.period_start == "2026-12-01"
    assert month_usd.resets_text() == "it resets on 2027-01-01 at 00:00 UTC"


def test_a_zero_limit_is_spent_at_once(store: Store, agent: AgentGroup) -> None:
    [limit] = budgets.state(store, budgets.Budget(agent_group_id=agent.id, daily_tokens=0), now=NOW)
    assert limit.spent


def test_a_notice_is_remembered_once_per_group_period_and_level(store: Store, agent: AgentGroup) -> None:
    assert budgets.note_notice(store, agent.id, "day", "2026-12-15", 80)
    assert not budgets.note_notice(store, agent.id, "day", "2026-12-15", 80)
    assert budgets.note_notice(store, agent.id, "day", "2026-12-15", 100)
    assert budgets.note_notice(store, agent.id, "day", "2026-12-16", 80)  # a new day starts afresh
    assert budgets.note_notice(store, agent.id, "month", "2026-12-01", 80)


def test_budget_and_notices_go_with_their_group(store: Store, agent: AgentGroup) -> None:
    budgets.put(store, budgets.Budget(agent_group_id=agent.id, daily_usd=1))
    budgets.note_notice(store, agent.id, "day", "2026-12-15", 80)
    agent_groups.delete(store, agent.id)
    assert budgets.list_all(store) == []
    with store.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM budget_notices").fetchone()[0] == 0
