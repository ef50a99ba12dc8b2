"""`hutch groups`: the agent groups, one agent identity each."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from actors.cli import control
from actors.cli.common import DataDirOption, HostFlags, console, load, open_central
from actors.control.requests import AddGroup, RemoveGroup, SetGroupModel
from actors.runtime.base import AgentLimits
from actors.store import agent_groups, sessions
from actors.store.agent_groups import AgentGroup

app = typer.Typer(name="groups", help="The agent groups: one agent identity each, with its folder and model.")

# Marks a model or limit the group sets itself; the others are the host's defaults.
OWN = "*"


@app.command("list")
def list_groups(data_dir: DataDirOption = None) -> None:
    """Every agent group with its folder (in groups/), model, limits and active sessions."""
    config = load(HostFlags(data_dir=data_dir))
    with open_central(config) as store:
        groups = agent_groups.list_all(store)
        active = {group.id: len(sessions.list_all(store, agent_group_id=group.id, status="active")) for group in groups}
    if not groups:
        console().print("no agent groups yet: the host makes `main` on its first start")
        return
    table = Table(
        title="agent groups",
        title_justify="left",
        caption=f"{OWN} set for this group; the others are the host's defaults (HUTCH_MODEL, HUTCH_AGENT_*)",
        caption_justify="left",
    )
    table.add_column("name", overflow="fold")
    table.add_column("folder", overflow="fold")
    table.add_column("model", overflow="fold")
    for column in ("cpus", "memory", "pids", "shm", "sessions"):
        table.add_column(column, no_wrap=True)
    for group in groups:
        table.add_row(
            group.name,
            group.folder,
            _own_or_default(group.model or config.model, group.model),
            *limit_cells(group, config.agent_limits),
            str(active[group.id]),
        )
    console().print(table)


def limit_cells(group: AgentGroup, defaults: AgentLimits) -> tuple[str, str, str, str]:
    limits = group.limits(defaults)
    return (
        _own_or_default(f"{limits.cpus:g}", group.cpus),
        _own_or_default(f"{limits.memory_mb} MB", group.memory_mb),
        _own_or_default(str(limits.pids), group.pids),
        _own_or_default(f"{limits.shm_mb} MB", group.shm_mb),
    )


def _own_or_default(value: str, own: object) -> str:
    return f"{value} {OWN}" if own is not None else value


NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The agent group's name.")]


@app.command("add")
def add(
    name: NameArgument,
    data_dir: DataDirOption = None,
    folder: Annotated[
        str | None, typer.Option(help="Its folder in groups/ and sessions/.", show_default="the name, lower-case")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Its model.", show_default="the host's (HUTCH_MODEL)")] = None,
) -> None:
    """Add an agent group: a new agent identity with its own folder and memory."""
    control.run(load(HostFlags(data_dir=data_dir)), AddGroup(name=name, folder=folder, model=model))


@app.command("set")
def set_group(
    name: NameArgument,
    model: Annotated[
        str, typer.Option(help="Its model; `default` for the host's (HUTCH_MODEL). Running agents restart with it.")
    ],
    data_dir: DataDirOption = None,
) -> None:
    """Change an agent group: its model, from its next message on."""
    control.run(load(HostFlags(data_dir=data_dir)), SetGroupModel(name=name, model=model))


@app.command("remove")
def remove(
    name: NameArgument,
    data_dir: DataDirOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
) -> None:
    """Remove an agent group with its wirings and sessions; its files stay on disk.

    Its running agents are stopped first.
    """
    config = load(HostFlags(data_dir=data_dir))
    if not yes:
        typer.confirm(f"Remove agent group {name!r}, its wirings and its sessions?", abort=True)
    control.run(config, RemoveGroup(name=name))
