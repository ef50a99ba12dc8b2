"""The token chart's layout: a stacked bar per day and group inside the plot, the groups that
used most coloured apart, totals per group, round axis marks."""

from __future__ import annotations

from datetime import date, timedelta

from actors.control_page.chart import MAX_GROUPS, PALETTE, build_chart, human
from actors.store.usage import DailyUsage

TODAY = date(2026, 12, 2)


def Usage(  # noqa: N802 - reads as the row it makes
    day: str, agent_group_id: str, group_name: str, cost_usd: float | None = 0.0, **tokens: int
) -> DailyUsage:
    counts = {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0} | tokens
    return DailyUsage(
        day=day, agent_group_id=agent_group_id, group_name=group_name, requests=1, cost_usd=cost_usd, **counts
    )


def _day(back: int) -> str:
    return (TODAY - timedelta(days=back)).isoformat()


def test_no_use_is_an_empty_chart() -> None:
    chart = build_chart([], TODAY)
    assert chart.empty
    assert chart.y_ticks == []
    assert chart.first_day == _day(29)
    assert chart.last_day == TODAY.isoformat()


def test_bars_stack_per_day_within_the_plot() -> None:
    rows = [
        Usage(_day(0), "a", "alpha", input_tokens=300, output_tokens=100),
        Usage(_day(0), "b", "beta", input_tokens=100),
        Usage(_day(3), "a", "alpha", cache_read_tokens=50, cache_write_tokens=50),
        Usage(_day(30), "a", "alpha", input_tokens=10**9),  # before the window
    ]
    chart = build_chart(rows, TODAY)
    assert len(chart.bars) == 3
    today_bars = [bar for bar in chart.bars if bar.title.startswith(_day(0))]
    assert len({bar.x for bar in today_bars}) == 1  # one column
    bottom = max(bar.y + bar.height for bar in today_bars)
    top = min(bar.y for bar in today_bars)
    assert abs(bottom - chart.plot_bottom) < 0.01
    assert top >= 0
    assert [tick.label for tick in chart.y_ticks] == ["0", "150", "300", "450", "600"]  # 500 tokens at most
    assert [group.name for group in chart.groups] == ["alpha", "beta"]  # most used first
    alpha = chart.groups[0]
    assert (alpha.input_tokens, alpha.output_tokens, alpha.cache_read_tokens, alpha.cache_write_tokens) == (
        300,
        100,
        50,
        50,
    )
    assert alpha.color == PALETTE[0]


def test_the_groups_past_the_palette_share_a_colour_and_unknown_cost_says_so() -> None:
    rows = [Usage(_day(0), f"g{n}", f"group {n}", input_tokens=100 - n) for n in range(MAX_GROUPS + 2)]
    rows.append(Usage(_day(1), "g0", "group 0", input_tokens=1, cost_usd=None))
    chart = build_chart(rows, TODAY)
    colors = {group.name: group.color for group in chart.groups}
    assert len(set(colors.values())) == MAX_GROUPS
    assert colors[f"group {MAX_GROUPS + 1}"] == colors[f"group {MAX_GROUPS - 1}"]
    assert any("other groups" in bar.title for bar in chart.bars)
    assert chart.groups[0].cost == "unknown"
    assert chart.groups[1].cost == "$0.00"


def test_human_numbers() -> None:
    assert [human(n) for n in (0, 999, 1000, 6300, 2_500_000, 3_000_000_000)] == [
        "0",
        "999",
        "1k",
        "6.3k",
        "2.5M",
        "3G",
    ]
