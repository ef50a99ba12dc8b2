"""`hutch groups`: the agent groups, one agent identity each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from actors.cli import control
from actors.cli.common import CliError, DataDirOption, HostFlags, console, load, open_central
from actors.control.requests import AddGroup, Default, RemoveGroup, SetGroup
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

# The limits' help, shared by `add` and `set`; they bind the Docker runtime's agents only.
_CPUS = "CPUs its agents may use, e.g. 0.5; at most the machine's."
_MEMORY = "Memory its agents may use, in MB; at least 64."
_PIDS = "Processes its agents may run; at least 16."
_SHM = "Size of its agents' /dev/shm, in MB; at least 1."
_HOST_LIMIT = "the host's (HUTCH_AGENT_*)"
_OR_DEFAULT = " `default`: the host's (HUTCH_AGENT_*)."
_Number = TypeVar("_Number", int, float)


def _limit(option: str, text: str | None, kind: Callable[[str], _Number]) -> _Number | Default | None:
    """An option of `set`: None (not given), `default`, or a number of `kind`."""
    if text is None:
        return None
    if text.strip().lower() == "default":
        return "default"
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise CliError(f"{option} {text!r}: give {what}, or `default` for the host's") from None


def _limit_option(help: str, metavar: str) -> Any:
    return typer.Option(metavar=metavar, help=help + _OR_DEFAULT, show_default="unchanged")


@app.command("add")
def add(
    name: NameArgument,
    data_dir: DataDirOption = None,
    folder: Annotated[
        str | None, typer.Option(help="Its folder in groups/ and sessions/.", show_default="the name, lower-case")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Its model.", show_default="the host's (HUTCH_MODEL)")] = None,
    cpus: Annotated[float | None, typer.Option(help=_CPUS, show_default=_HOST_LIMIT)] = None,
    memory_mb: Annotated[int | None, typer.Option(help=_MEMORY, show_default=_HOST_LIMIT)] = None,
    pids: Annotated[int | None, typer.Option(help=_PIDS, show_default=_HOST_LIMIT)] = None,
    shm_mb: Annotated[int | None, typer.Option(help=_SHM, show_default=_HOST_LIMIT)] = None,
) -> None:
    """Add an agent group: a new agent identity with its own folder and memory."""
    request = AddGroup(name=name, folder=folder, model=model, cpus=cpus, memory_mb=memory_mb, pids=pids, shm_mb=shm_mb)
    control.run(load(HostFlags(data_dir=data_dir)), request)


@app.command("set")
def set_group(
    name: NameArgument,
    model: Annotated[
        str | None, typer.Option(help="Its model; `default` for the host's (HUTCH_MODEL).", show_default="unchanged")
    ] = None,
    cpus: Annotated[str | None, _limit_option(_CPUS, "FLOAT|default")] = None,
    memory_mb: Annotated[str | None, _limit_option(_MEMORY, "INTEGER|default")] = None,
    pids: Annotated[str | None, _limit_option(_PIDS, "INTEGER|default")] = None,
    shm_mb: Annotated[str | None, _limit_option(_SHM, "INTEGER|default")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Change an agent group's model or limits; its running agents stop, and its next
    message starts them with the change. The limits bind Docker agents only."""
    if model is None and cpus is None and memory_mb is None and pids is None and shm_mb is None:
        raise CliError("nothing to change: give --model or a limit (--cpus, --memory-mb, --pids, --shm-mb)")
    request = SetGroup(
        name=name,
        model=model,
        cpus=_limit("--cpus", cpus, float),
        memory_mb=_limit("--memory-mb", memory_mb, int),
        pids=_limit("--pids", pids, int),
        shm_mb=_limit("--shm-mb", shm_mb, int),
    )
    control.run(load(HostFlags(data_dir=data_dir)), request)


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
