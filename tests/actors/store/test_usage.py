"""token_usage: responses add up per day, group, session and model; sums and costs per
group and day; a deleted group takes its usage with it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import msgspec
import pytest

from actors.pricing import DEFAULT_PRICES, Price, PriceTable, Tokens
from actors.store import agent_groups, sessions, usage
from actors.store.agent_groups import AgentGroup
from actors.store.db import MissingReferenceError, Store
from actors.store.sessions import Session
from actors.store.usage import DailyUsage, UsageTotals

SONNET = "claude-sonnet-4-6"  # $3 / $15
HAIKU = "claude-haiku-4-5"  # $1 / $5


def rows(store: Store) -> list[tuple[object, ...]]:
    with store.read() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                "SELECT day, agent_group_id, session_id, model, requests, input_tokens, output_tokens,"
                " cache_read_tokens, cache_write_tokens, cache_write_1h_tokens FROM token_usage"
                " ORDER BY day, agent_group_id, session_id, model"
            )
        ]


def test_responses_add_up_in_one_row_per_day_group_session_and_model(
    store: Store, agent: AgentGroup, session: Session
) -> None:
    for tokens in (
        Tokens(input=10, output=5, cache_read=100, cache_write=20, cache_write_1h=20),
        Tokens(input=1, output=2, cache_read=3, cache_write=4),
    ):
        usage.record(
            store, agent_group_id=agent.id, session_id=session.id, model=SONNET, tokens=tokens, day="2026-12-01"
        )
    assert rows(store) == [("2026-12-01", agent.id, session.id, SONNET, 2, 11, 7, 103, 24, 20)]


def test_each_day_model_and_session_is_a_row_of_its_own(store: Store, agent: AgentGroup, session: Session) -> None:
    one = Tokens(input=1)
    for day, session_id, model in [
        ("2026-12-01", session.id, SONNET),
        ("2026-12-02", session.id, SONNET),
        ("2026-12-01", session.id, HAIKU),
        ("2026-12-01", "another-session", SONNET),
    ]:
        usage.record(store, agent_group_id=agent.id, session_id=session_id, model=model, tokens=one, day=day)
    assert len(rows(store)) == 4


def test_the_day_defaults_to_today_in_utc(store: Store, agent: AgentGroup, session: Session) -> None:
    before = usage.utc_day()
    usage.record(store, agent_group_id=agent.id, session_id=session.id, model=SONNET, tokens=Tokens(output=1))
    after = usage.utc_day()
    [(day, *_)] = rows(store)
    assert day in {before, after}
    assert usage.utc_day(datetime(2026, 12, 31, 23, 30, tzinfo=UTC)) == "2026-12-31"


def test_an_unknown_group_is_refused(store: Store) -> None:
    with pytest.raises(MissingReferenceError):
        usage.record(store, agent_group_id="nope", session_id="s", model=SONNET, tokens=Tokens(input=1))
    assert rows(store) == []
    assert not usage.any_recorded(store)


def test_deleting_a_group_deletes_its_usage_and_deleting_a_session_keeps_it(
    store: Store, agent: AgentGroup, session: Session
) -> None:
    other = agent_groups.create(store, name="work", folder="work")
    for group_id in (agent.id, other.id):
        usage.record(store, agent_group_id=group_id, session_id=session.id, model=SONNET, tokens=Tokens(input=1))
    sessions.delete(store, session.id)
    assert {row[1] for row in rows(store)} == {agent.id, other.id}  # what a session cost stays
    agent_groups.delete(store, other.id)
    assert {row[1] for row in rows(store)} == {agent.id}


def test_daily_by_group_sums_sessions_and_models_and_prices_each_model(
    store: Store, agent: AgentGroup, session: Session
) -> None:
    work = agent_groups.create(store, name="work", folder="work")
    day = "2026-12-01"
    usage.record(
        store,
        agent_group_id=agent.id,
        session_id=session.id,
        model=SONNET,
        tokens=Tokens(input=1_000_000, output=100_000, cache_read=1_000_000, cache_write=1_000_000),
        day=day,
    )
    usage.record(
        store,
        agent_group_id=agent.id,
        session_id="s2",
        model=HAIKU,
        tokens=Tokens(input=1_000_000, output=1_000_000, cache_write=1_000_000, cache_write_1h=1_000_000),
        day=day,
    )
    usage.record(
        store, agent_group_id=work.id, session_id="s3", model=HAIKU, tokens=Tokens(output=10), day="2026-12-02"
    )
    usage.record(
        store, agent_group_id=work.id, session_id="s3", model=HAIKU, tokens=Tokens(output=10), day="2026-11-30"
    )

    found = usage.daily_by_group(store, "2026-12-01")
    assert [(d.day, d.group_name) for d in found] == [("2026-12-01", "main"), ("2026-12-02", "work")]
    main = found[0]
    # Sonnet: 3 + 1.5 + 0.3 (reads) + 3.75 (5m writes); Haiku: 1 + 5 + 2 (1h writes).
    assert main.cost_usd == pytest.approx(3 + 1.5 + 0.3 + 3.75 + 1 + 5 + 2)
    assert msgspec.structs.replace(main, cost_usd=None) == DailyUsage(
        day=day,
        agent_group_id=agent.id,
        group_name="main",
        requests=2,
        input_tokens=2_000_000,
        output_tokens=1_100_000,
        cache_read_tokens=1_000_000,
        cache_write_tokens=2_000_000,
        cost_usd=None,
    )
    assert [d.day for d in usage.daily_by_group(store, "2026-11-01", "2026-11-30")] == ["2026-11-30"]
    only_work = usage.daily_by_group(store, "2026-11-01", agent_group_id=work.id)
    assert [(d.day, d.output_tokens) for d in only_work] == [("2026-11-30", 10), ("2026-12-02", 10)]


def test_a_model_without_a_price_makes_the_days_cost_unknown(store: Store, agent: AgentGroup) -> None:
    usage.record(store, agent_group_id=agent.id, session_id="s", model=SONNET, tokens=Tokens(input=1), day="2026-12-01")
    usage.record(
        store, agent_group_id=agent.id, session_id="s", model=usage.UNKNOWN_MODEL, tokens=Tokens(), day="2026-12-01"
    )
    usage.record(store, agent_group_id=agent.id, session_id="s", model=SONNET, tokens=Tokens(input=1), day="2026-12-02")
    first, second = usage.daily_by_group(store, "2026-12-01")
    assert (first.requests, first.cost_usd) == (2, None)
    assert second.cost_usd == pytest.approx(3 / 1_000_000)
    assert usage.totals([first, second]).cost_usd is None
    # A price given for it (prices.toml) prices it.
    table = PriceTable({**DEFAULT_PRICES, usage.UNKNOWN_MODEL: Price.standard(0, 0)})
    assert usage.daily_by_group(store, "2026-12-01", prices=table)[0].cost_usd == pytest.approx(3 / 1_000_000)


def test_totals_for_one_group_since_a_day(store: Store, agent: AgentGroup) -> None:
    work = agent_groups.create(store, name="work", folder="work")
    for day in ("2026-11-30", "2026-12-01", "2026-12-02"):
        for group_id in (agent.id, work.id):
            usage.record(
                store, agent_group_id=group_id, session_id="s", model=HAIKU, tokens=Tokens(input=10, output=1), day=day
            )
    found = usage.totals_for(store, agent.id, "2026-12-01")
    assert found.cost_usd == pytest.approx((20 * 1 + 2 * 5) / 1_000_000)
    assert msgspec.structs.replace(found, cost_usd=None) == UsageTotals(
        requests=2, input_tokens=20, output_tokens=2, cost_usd=None
    )
    assert usage.totals_for(store, agent.id, "2027-01-01") == UsageTotals()
    assert usage.any_recorded(store)


@pytest.mark.parametrize("day", ["2026-12-1", "yesterday", "2026-13-01", "2026-12-01T00:00"])
def test_a_malformed_day_is_refused(store: Store, day: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        usage.daily_by_group(store, day)


def test_records_from_many_threads_all_count(store: Store, agent: AgentGroup, session: Session) -> None:
    """The proxy's connection threads share the host's Store; no increment may be lost."""
    threads = 8
    each = 25
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(each):
            usage.record(
                store, agent_group_id=agent.id, session_id=session.id, model=SONNET, tokens=Tokens(input=1, output=2)
            )

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    [row] = rows(store)
    assert row[4:7] == (threads * each, threads * each, 2 * threads * each)
