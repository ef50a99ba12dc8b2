"""The `hutch` command's root: `--version`, `run`, `chat`, `status`, and the command groups,
each in a module of its own."""

from __future__ import annotations

import sqlite3
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from actors.cli import budget, groups, hooks, senders, sessions, tasks, wiring
from actors.cli.common import (
    CliError,
    DataDirOption,
    HostFlags,
    IdleTimeoutOption,
    LogLevelOption,
    MaxContainersOption,
    ModelOption,
    ProviderOption,
    RuntimeOption,
    TimezoneOption,
    is_broken_pipe,
    load,
    one_line,
)
from actors.cli.doctor import doctor
from actors.cli.logs import logs
from actors.cli.onboard import onboard
from actors.cli.status import status
from actors.cli.usage import usage
from actors.store.db import StoreError


class ReportingGroup(TyperGroup):
    """Turns the failures a person can act on into one line on stderr and a non-zero exit,
    for every subcommand at once (they all run inside the root group's `invoke`)."""

    # `ctx: Any`: the Context class is click's in older typers and typer's own copy in newer.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            _fail(str(exc), exc.exit_code)
        except (StoreError, sqlite3.Error) as exc:
            _fail(one_line(exc), 1)
        except OSError as exc:
            if is_broken_pipe(exc):
                raise  # typer's own handling: quiet, exit 1
            _fail(one_line(exc), 1)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"hutch: {message}", err=True)
    raise typer.Exit(code)


app = typer.Typer(
    name="hutch",
    cls=ReportingGroup,
    epilog="Every command reads the host's configuration: HUTCH_* from the environment or .env, then flags.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def package_version() -> str:
    try:
        return version("hutch")
    except PackageNotFoundError:
        return "unknown (the package is not installed: pip install -e .)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"hutch {package_version()}")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print hutch's version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Run the hutch host and look after it: its agents, sessions and the people who talk to them."""


@app.command()
def run(
    data_dir: DataDirOption = None,
    runtime: RuntimeOption = None,
    provider: ProviderOption = None,
    model: ModelOption = None,
    idle_timeout: IdleTimeoutOption = None,
    max_containers: MaxContainersOption = None,
    timezone: TimezoneOption = None,
    log_level: LogLevelOption = None,
) -> None:
    """Run the host until Ctrl-C or SIGTERM: what `make run` does, the same as `python -m actors.main`."""
    # Imported here: the whole host (actors, channels, runtimes) is for this command only.
    from actors.main import main as run_host

    flags = HostFlags(
        data_dir=data_dir,
        runtime=runtime,
        provider=provider,
        model=model,
        idle_timeout=idle_timeout,
        max_containers=max_containers,
        timezone=timezone,
        log_level=log_level,
    )
    raise typer.Exit(run_host(flags.argv()))


@app.command()
def chat(
    data_dir: DataDirOption = None,
    socket: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="The host's chat socket.", show_default="cli.sock in the data folder"),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Who you are in the chat.", show_default="$USER, else $LOGNAME, else me")
    ] = None,
    chat_id: Annotated[str, typer.Option("--chat", help="Which local chat to join.")] = "local",
) -> None:
    """Chat with your agent from this terminal, through the host's local chat socket.

    Enter sends a line; a question is answered with its option's number or text; Ctrl-D quits.
    """
    from actors.cli.chat import main as run_chat

    path = socket if socket is not None else load(HostFlags(data_dir=data_dir)).chat_socket
    argv = [f"--socket={path}", f"--chat={chat_id}"]
    if name is not None:
        argv.append(f"--name={name}")
    raise typer.Exit(run_chat(argv))


# After `run` and `chat`, so `--help` lists them first, in the order a person meets them.
app.command("onboard")(onboard)
app.command("doctor")(doctor)
app.command("status")(status)
app.command("logs")(logs)
app.command("usage")(usage)
app.command("wire")(wiring.wire)
app.command("unwire")(wiring.unwire)
app.add_typer(groups.app)
app.add_typer(sessions.app)
app.add_typer(tasks.app)
app.add_typer(senders.app)
app.add_typer(hooks.app)
app.add_typer(budget.app)
