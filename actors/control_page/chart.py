"""Token use per agent group over days, laid out for an inline SVG drawn by the page's
template: no chart library and no script, so it renders the same with JavaScript off and
under a strict Content-Security-Policy. Only geometry and labels are made here; the
template escapes every label."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from actors.control_page.reads import MAX_NAME, USAGE_DAYS, cut
from actors.store.usage import DailyUsage

WIDTH = 760
HEIGHT = 260
_LEFT = 64  # room for the y axis' labels
_RIGHT = 8
_TOP = 10
_BOTTOM = 28  # room for the days
# Told apart by people with the commoner colour blindnesses (Okabe and Ito's palette).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MAX_GROUPS = len(PALETTE)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class GroupTotal:
    name: str
    color: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_bottom: float
    plot_right: float
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    groups: list[GroupTotal]
    first_day: str
    last_day: str

    @property
    def empty(self) -> bool:
        return not self.bars


def tokens(row: DailyUsage) -> int:
    return row.input_tokens + row.output_tokens + row.cache_read_tokens + row.cache_write_tokens


def build_chart(rows: Sequence[DailyUsage], today: date, days: int = USAGE_DAYS) -> Chart:
    """Stacked bars, one per day from `today - days + 1` to `today`, a colour per agent
    group (the groups that used most get their own colour; the rest share "other")."""
    first = today - timedelta(days=days - 1)
    shown = [row for row in rows if first.isoformat() <= row.day <= today.isoformat()]
    totals = _totals(shown)
    order = sorted(totals, key=lambda group_id: -tokens_of(totals[group_id]))
    named = order[: MAX_GROUPS - 1] if len(order) > MAX_GROUPS else order
    colors = {group_id: PALETTE[index] for index, group_id in enumerate(named)}
    other_color = PALETTE[MAX_GROUPS - 1]

    per_day: dict[str, dict[str, int]] = {}
    for row in shown:
        key = row.agent_group_id if row.agent_group_id in colors else ""
        stack = per_day.setdefault(row.day, {})
        stack[key] = stack.get(key, 0) + tokens(row)
    peak = max((sum(stack.values()) for stack in per_day.values()), default=0)
    top = _nice_ceiling(peak)
    plot_bottom = HEIGHT - _BOTTOM
    plot_height = plot_bottom - _TOP
    slot = (WIDTH - _LEFT - _RIGHT) / days
    names = {group_id: totals[group_id].name for group_id in totals}

    bars: list[Bar] = []
    x_ticks: list[Tick] = []
    for index in range(days):
        day = (first + timedelta(days=index)).isoformat()
        x = _LEFT + index * slot
        if index % max(1, days // 6) == 0 or index == days - 1:
            x_ticks.append(Tick(x + slot / 2, day[5:]))
        y = float(plot_bottom)
        for key in [*named, ""]:
            value = per_day.get(day, {}).get(key, 0)
            if not value or not top:
                continue
            height = value / top * plot_height
            y -= height
            name = names[key] if key else "other groups"
            bars.append(
                Bar(
                    x=round(x + slot * 0.1, 2),
                    y=round(y, 2),
                    width=round(slot * 0.8, 2),
                    height=round(height, 2),
                    color=colors.get(key, other_color),
                    title=f"{day} {name}: {human(value)} tokens",
                )
            )
    y_ticks = [Tick(plot_bottom - plot_height * step / 4, human(top * step // 4)) for step in range(5)] if top else []
    groups = [
        GroupTotal(
            name=totals[group_id].name,
            color=colors.get(group_id, other_color),
            requests=totals[group_id].requests,
            input_tokens=totals[group_id].input_tokens,
            output_tokens=totals[group_id].output_tokens,
            cache_read_tokens=totals[group_id].cache_read_tokens,
            cache_write_tokens=totals[group_id].cache_write_tokens,
            cost=totals[group_id].cost,
        )
        for group_id in order
    ]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        plot_left=_LEFT,
        plot_bottom=plot_bottom,
        plot_right=WIDTH - _RIGHT,
        bars=bars,
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        groups=groups,
        first_day=first.isoformat(),
        last_day=today.isoformat(),
    )


@dataclass
class _Sum:
    name: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True

    @property
    def cost(self) -> str:
        return f"${self.cost_usd:,.2f}" if self.cost_known else "unknown"


def tokens_of(total: _Sum) -> int:
    return total.input_tokens + total.output_tokens + total.cache_read_tokens + total.cache_write_tokens


def _totals(rows: Sequence[DailyUsage]) -> dict[str, _Sum]:
    totals: dict[str, _Sum] = {}
    for row in rows:
        total = totals.setdefault(row.agent_group_id, _Sum(cut(row.group_name, MAX_NAME)))
        total.requests += row.requests
        total.input_tokens += row.input_tokens
        total.output_tokens += row.output_tokens
        total.cache_read_tokens += row.cache_read_tokens
        total.cache_write_tokens += row.cache_write_tokens
        if row.cost_usd is None:
            total.cost_known = False
        else:
            total.cost_usd += row.cost_usd
    return totals


def _nice_ceiling(value: int) -> int:
    """Four times the smallest round step (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of
    ten, at least 1) that reaches `value` in four, so the quarter marks are round numbers."""
    if value <= 0:
        return 0
    magnitude = 1
    while True:
        for step in (10, 15, 20, 25, 30, 40, 50, 60, 80):
            size = max(1, step * magnitude // 10)
            if 4 * size >= value:
                return 4 * size
        magnitude *= 10


def human(value: int) -> str:
    for unit, size in (("G", 1_000_000_000), ("M", 1_000_000), ("k", 1_000)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return str(value)
