"""`hutch budget`: each agent group's daily and monthly limits, in USD and/or tokens, and how
much of them is used (docs/ARCHITECTURE.md, "Budgets")."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from actors.cli import control
from actors.cli.common import CliError, DataDirOption, HostFlags, console, load, open_central
from actors.control.requests import SetBudget
from actors.pricing import PRICES_FILE, PricesError, load_prices
from actors.store import agent_groups, budgets

app = typer.Typer(
    name="budget",
    help="Daily and monthly limits per agent group (USD or tokens): at 80% the owner is told, "
    "at 100% the group's agents wait until the period ends or the limit is raised.",
)


@app.command("show")
def show(
    group: Annotated[str | None, typer.Argument(metavar="[GROUP]", help="One agent group; all by default.")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Each group's limits, what is used of them this UTC day and month, and when they reset."""
    config = load(HostFlags(data_dir=data_dir))
    try:
        prices = load_prices(config.data_dir)
    except PricesError as exc:
        raise CliError(str(exc)) from None
    with open_central(config) as store:
        groups = agent_groups.list_all(store)
        if group is not None:
            groups = [g for g in groups if group in (g.name, g.folder)]
            if not groups:
                raise CliError(f"no agent group {group!r} (`hutch groups list` shows them)")
        rows: list[tuple[str, list[budgets.LimitState]]] = []
        for each in groups:
            budget = budgets.get(store, each.id)
            rows.append((each.name, [] if budget is None else budgets.state(store, budget, prices)))
    table = Table(
        title="budgets",
        title_justify="left",
        caption=f"UTC days and months; USD at list prices ({PRICES_FILE} in the data folder overrides them)",
        caption_justify="left",
    )
    for column in ("group", "limit", "used", "share", "resets"):
        table.add_column(column, overflow="fold")
    for name, limits in rows:
        if not limits:
            table.add_row(name, "none", "", "", "")
        for limit in limits:
            share = "spent" if limit.spent else f"{limit.share:.0%}"
            resets = limit.resets_at.strftime("%Y-%m-%d %H:%M UTC")
            table.add_row(name, limit.describe(), limit.used_text(), share, resets)
    console().print(table)


@app.command("set")
def set_budget(
    group: Annotated[str, typer.Argument(metavar="GROUP", help="The agent group's name.")],
    daily_usd: Annotated[float | None, typer.Option("--daily-usd", min=0, help="USD per UTC day.")] = None,
    monthly_usd: Annotated[float | None, typer.Option("--monthly-usd", min=0, help="USD per UTC month.")] = None,
    daily_tokens: Annotated[int | None, typer.Option("--daily-tokens", min=0, help="Tokens per UTC day.")] = None,
    monthly_tokens: Annotated[int | None, typer.Option("--monthly-tokens", min=0, help="Tokens per UTC month.")] = None,
    none: Annotated[
        bool, typer.Option("--none", help="Remove the group's limits first (those given here are then the only ones).")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Set a group's limits; those not given stay as they are.

    A running host lets what waited for the budget run at once, and the proxy decides again
    on the next request.
    """
    config = load(HostFlags(data_dir=data_dir))
    given = (daily_usd, monthly_usd, daily_tokens, monthly_tokens)
    if not none and all(value is None for value in given):
        raise CliError(
            "give at least one limit (--daily-usd, --monthly-usd, --daily-tokens, --monthly-tokens) or --none"
        )
    current = budgets.Budget(agent_group_id="")
    if not none:
        with open_central(config) as store:
            found = agent_groups.get_by_name(store, group) or agent_groups.get_by_folder(store, group)
            current = (budgets.get(store, found.id) if found is not None else None) or current
    request = SetBudget(
        group=group,
        daily_usd=current.daily_usd if daily_usd is None else daily_usd,
        monthly_usd=current.monthly_usd if monthly_usd is None else monthly_usd,
        daily_tokens=current.daily_tokens if daily_tokens is None else daily_tokens,
        monthly_tokens=current.monthly_tokens if monthly_tokens is None else monthly_tokens,
    )
    control.run(config, request)
