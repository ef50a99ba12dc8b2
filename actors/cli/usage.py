"""`hutch usage`: the tokens agents used and what they cost, per agent group and UTC day.

The credential proxy records every model answer's usage in hutch.db; this only reads it, so
it works the same with the host down. Cost comes from the price table (`actors.pricing`,
with the data folder's `prices.toml` over it) at the time of asking."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from actors.cli.common import CliError, DataDirOption, HostFlags, console, load, open_central
from actors.pricing import PRICES_FILE, PricesError, load_prices
from actors.store import agent_groups
from actors.store import usage as recorded
from actors.store.usage import DailyUsage, UsageTotals
from protocol.timeutil import utc_now

DEFAULT_DAYS = 30
# Shown for a cost that includes a model without a price.
UNKNOWN_COST = "?"

DaysOption = Annotated[
    int, typer.Option("--days", min=1, max=36_600, metavar="N", help="How many UTC days back, today included.")
]
GroupOption = Annotated[str | None, typer.Option("--group", metavar="NAME", help="Only this agent group.")]


def usage(data_dir: DataDirOption = None, days: DaysOption = DEFAULT_DAYS, group: GroupOption = None) -> None:
    """Tokens and cost per agent group and UTC day, with totals."""
    config = load(HostFlags(data_dir=data_dir))
    try:
        prices = load_prices(config.data_dir)
    except PricesError as exc:
        raise CliError(str(exc)) from None
    today = utc_now().date()
    since = (today - timedelta(days=days - 1)).isoformat()
    with open_central(config) as store:
        group_id = None
        if group is not None:
            found = agent_groups.get_by_name(store, group)
            if found is None:
                raise CliError(f"no agent group named {group!r} (`hutch groups list` shows them)")
            group_id = found.id
        rows = recorded.daily_by_group(store, since, agent_group_id=group_id, prices=prices)
        ever = bool(rows) or recorded.any_recorded(store)
    out = console()
    if not rows:
        out.print(f"no usage in the last {days} days" if ever else "no usage recorded yet")
        return
    table = Table(
        title=f"token usage, {since} to {today.isoformat()} (UTC days)",
        title_justify="left",
        caption=_caption(rows),
        caption_justify="left",
    )
    table.add_column("day", no_wrap=True)
    table.add_column("group", overflow="fold")
    for column in ("requests", "input", "output", "cache read", "cache write", "cost"):
        table.add_column(column, justify="right", no_wrap=True)
    for day in rows:
        table.add_row(day.day, day.group_name, *_cells(day))
    table.add_section()
    *counts, _ = _cells(recorded.totals(rows))
    table.add_row("total", "", *counts, _total_cost(rows), style="bold")
    out.print(table)


def _cells(row: DailyUsage | UsageTotals) -> tuple[str, str, str, str, str, str]:
    return (
        f"{row.requests:,}",
        f"{row.input_tokens:,}",
        f"{row.output_tokens:,}",
        f"{row.cache_read_tokens:,}",
        f"{row.cache_write_tokens:,}",
        money(row.cost_usd),
    )


def money(cost: float | None) -> str:
    if cost is None:
        return UNKNOWN_COST
    # Cents hide a day of light use; below a cent the first digits that matter are shown.
    return f"${cost:,.2f}" if cost == 0 or cost >= 0.01 else f"${cost:.4f}"


def _total_cost(rows: list[DailyUsage]) -> str:
    """What the priced days cost, and a mark when other days could not be priced: the
    known part is still worth seeing."""
    known = money(sum(row.cost_usd for row in rows if row.cost_usd is not None))
    if all(row.cost_usd is not None for row in rows):
        return known
    return UNKNOWN_COST if known == money(0) else f"{known} + {UNKNOWN_COST}"


def _caption(rows: list[DailyUsage]) -> str:
    note = (
        "input excludes cache reads and writes; "
        f"cost in USD at list prices ({PRICES_FILE} in the data folder overrides them)"
    )
    if any(row.cost_usd is None for row in rows):
        note += f"\n{UNKNOWN_COST}: a model without a price, or an answer whose usage could not be read"
    return note
