"""`hutch senders`: strangers who asked to talk to an agent (a chat whose unknown-sender
policy is `pair`), approved or refused here as the owner would with `/approve CODE` in chat.

The decision is written to `hutch.db`, which the host reads for every message: a running
host lets an approved sender in from their next message, without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from rich.table import Table

from actors.cli.common import CliError, DataDirOption, HostFlags, chat_name, console, load, open_central, when
from actors.inbound_router import decide_pairing
from actors.store import agent_groups, messaging_groups, pairing_requests
from actors.store.db import Store
from actors.store.pairing_requests import PairingRequest
from protocol.timeutil import utc_now

app = typer.Typer(name="senders", help="Pairing requests from people an agent does not know yet.")

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
            "-" if chat is None else chat_name(chat),
            request.user_id,
            request.user_name or "-",
            when(request.created_at, config.timezone, now),
        )
    console().print(table)


@app.command("approve")
def approve(code: CodeArgument, data_dir: DataDirOption = None) -> None:
    """Let the sender talk to the agent in the chat they asked in."""
    _decide_and_say(code, True, data_dir)


@app.command("refuse")
def refuse(code: CodeArgument, data_dir: DataDirOption = None) -> None:
    """Refuse the sender; they are not offered another code."""
    _decide_and_say(code, False, data_dir)


@dataclass(frozen=True)
class Decision:
    request: PairingRequest
    chat: str
    wired_to: str | None  # the agent group a direct chat was wired to by this approval


def decide(store: Store, code: str, approve: bool) -> Decision:
    """Approve or refuse the open request `code` as the host does for `/approve CODE`
    (`actors.inbound_router.decide_pairing`, the one rule for both)."""
    decision = decide_pairing(store, code, approve)
    if decision is None:
        raise CliError(_not_open(store, code))
    wired_to = None
    if decision.wired is not None:
        group = agent_groups.get(store, decision.wired.agent_group_id)
        wired_to = group.name if group is not None else None
    chat = decision.chat
    return Decision(decision.request, "-" if chat is None else chat_name(chat), wired_to)


def _not_open(store: Store, code: str) -> str:
    known = pairing_requests.get(store, code)
    if known is None:
        return f"no pairing request {code.strip().upper()} (`hutch senders pending` lists the open ones)"
    return f"pairing request {known.code} is not open: it was {known.status} at {known.decided_at or '?'}"


def _decide_and_say(code: str, approve: bool, data_dir: DataDirOption) -> None:
    config = load(HostFlags(data_dir=data_dir))
    with open_central(config) as store:
        decision = decide(store, code, approve)
    request = decision.request
    who = f"{request.user_name} ({request.user_id})" if request.user_name else request.user_id
    if approve:
        wired = f"; the chat is wired to {decision.wired_to!r}" if decision.wired_to else ""
        typer.echo(f"{request.code}: {who} is approved in {decision.chat}{wired}. They can talk to the agent now.")
    else:
        typer.echo(f"{request.code}: {who} is refused in {decision.chat}.")
    # The host tells them when the owner decides in chat; from here there is no channel to do so.
    typer.echo("They are not told by hutch: tell them yourself, or decide with /approve or /refuse in your chat.")
