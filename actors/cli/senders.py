"""`hutch senders`: who may talk to a chat's agents. Strangers who asked (a chat whose
unknown-sender policy is `pair`) are approved or refused here as the owner would with
`/approve CODE` in chat; anyone can be allowed or blocked ahead of time.

A running host makes the change itself (and tells the person about a decision); with none
running it is made here (`actors.cli.control`). The host reads who may talk per message, so
it counts from their next one.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from actors.cli import control
from actors.cli.common import DataDirOption, HostFlags, console, load, open_central, when
from actors.control.requests import AllowSender, BlockSender, DecidePairing
from actors.store import messaging_groups, pairing_requests
from protocol.timeutil import utc_now

app = typer.Typer(name="senders", help="Who may talk to a chat's agents: pairing requests, allow and block.")

CodeArgument = Annotated[str, typer.Argument(metavar="CODE", help="The pairing code the sender was given.")]


@app.command("pending")
def pending(data_dir: DataDirOption = None) -> None:
    """The open pairing requests: code, chat, user, name and when they asked."""
    config = load(HostFlags(data_dir=data_dir))
    now = utc_now()
    with open_central(config) as store:
        requests = pairing_requests.pending(store)
        chats = {chat.id: chat for chat in messaging_groups.list_all(store)}
    if not requests:
        console().print("no open pairing requests")
        return
    table = Table(title="open pairing requests", title_justify="left")
    table.add_column("code", no_wrap=True)
    for column in ("chat", "user", "name", "asked"):
        table.add_column(column, overflow="fold")
    for request in requests:
        chat = chats.get(request.messaging_group_id)
        table.add_row(
            request.code,
            "-" if chat is None else chat.label,
            request.user_id,
            request.user_name or "-",
            when(request.created_at, config.timezone, now),
        )
    console().print(table)


@app.command("approve")
def approve(code: CodeArgument, data_dir: DataDirOption = None) -> None:
    """Let the sender talk to the agent in the chat they asked in; a running host tells them."""
    control.run(load(HostFlags(data_dir=data_dir)), DecidePairing(code=code, approve=True))


@app.command("refuse")
def refuse(code: CodeArgument, data_dir: DataDirOption = None) -> None:
    """Refuse the sender; they are not offered another code. A running host tells them."""
    control.run(load(HostFlags(data_dir=data_dir)), DecidePairing(code=code, approve=False))


ChatArgument = Annotated[str, typer.Argument(metavar="CHAT", help="CHANNEL:ID, e.g. telegram:-100123 or discord:6789.")]
UserArgument = Annotated[str, typer.Argument(metavar="USER", help="The person's user id on that platform.")]


class Role(StrEnum):
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"


@app.command("allow")
def allow(
    chat: ChatArgument,
    user: UserArgument,
    data_dir: DataDirOption = None,
    role: Annotated[Role, typer.Option(help="admin and owner may use session commands such as /clear.")] = Role.MEMBER,
    name: Annotated[str | None, typer.Option(help="What to call them.")] = None,
) -> None:
    """Let a person talk to the chat's agents without asking (or change their role)."""
    control.run(load(HostFlags(data_dir=data_dir)), AllowSender(chat=chat, user=user, role=role.value, name=name))


@app.command("block")
def block(chat: ChatArgument, user: UserArgument, data_dir: DataDirOption = None) -> None:
    """Drop a person's messages in the chat for good; they are never offered a code."""
    control.run(load(HostFlags(data_dir=data_dir)), BlockSender(chat=chat, user=user))
