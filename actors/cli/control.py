"""How a `hutch` subcommand changes anything: one control request (`actors.control.requests`),
carried out by the running host through its control socket, or, while no host runs, here,
holding the data folder's lock so that no host starts meanwhile. Either way the same code
(`actors.control.operations`) does it, and each file keeps its one writer."""

from __future__ import annotations

import typer

from actors.cli.common import CliError, open_central
from actors.config import HostConfig
from actors.control.client import ControlSocketError, submit
from actors.control.requests import Reply, Request
from actors.data_lock import DataFolderBusy, DataFolderLock


def carry_out(config: HostConfig, request: Request) -> Reply:
    """The host's reply, or the one made here while no host runs."""
    with open_central(config) as store:  # the folder and its schema checked, whoever acts
        try:
            lock = DataFolderLock.acquire(config.data_dir)
        except DataFolderBusy:
            lock = None
        if lock is not None:
            # Imported here: they pull in the session code, which a command sent to a
            # running host never needs (a third of the command's start-up time).
            from actors.control.offline import OfflineSessions
            from actors.control.operations import Operations

            try:
                return Operations(store, config, OfflineSessions(store), config.owners).execute(request)
            finally:
                lock.release()
    try:
        return submit(config.control_socket, request)
    except ControlSocketError as exc:
        raise CliError(f"{exc} (is the host still starting? `hutch status` tells)") from None


def run(config: HostConfig, request: Request) -> None:
    """Carry the request out and say what happened: one line, exit 1 when it was refused."""
    reply = carry_out(config, request)
    if not reply.ok:
        raise CliError(reply.message)
    typer.echo(reply.message)
