"""`hutch wire` / `hutch unwire`: which agent group answers in which chat, and how."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from actors.cli import control
from actors.cli.common import DataDirOption, HostFlags, load
from actors.control.requests import Unwire, Wire

ChatArgument = Annotated[
    str, typer.Argument(metavar="CHAT", help="CHANNEL:ID, e.g. telegram:12345, discord:6789, cli:local.")
]
GroupArgument = Annotated[str, typer.Argument(metavar="GROUP", help="The agent group's name.")]


class SessionMode(StrEnum):
    SHARED = "shared"
    PER_THREAD = "per-thread"
    AGENT_SHARED = "agent-shared"


class Untriggered(StrEnum):
    CONTEXT = "context"
    DROP = "drop"


class UnknownSenders(StrEnum):
    DROP = "drop"
    PAIR = "pair"


def wire(
    chat: ChatArgument,
    group: GroupArgument,
    data_dir: DataDirOption = None,
    mode: Annotated[
        SessionMode,
        typer.Option(help="One session for the chat, one per thread, or one shared by every chat of the group."),
    ] = SessionMode.SHARED,
    trigger: Annotated[
        str,
        typer.Option(
            metavar="RULE",
            help="always, mention, mention-sticky, pattern:REGEX, sender-scope:ID,ID or prefix:TEXT.",
        ),
    ] = "always",
    untriggered: Annotated[
        Untriggered,
        typer.Option(
            help="A message that does not trigger: kept as context for the next turn, or dropped.",
        ),
    ] = Untriggered.CONTEXT,
    unknown_senders: Annotated[
        UnknownSenders | None,
        typer.Option(help="Strangers in this chat: dropped, or offered a pairing code.", show_default="unchanged"),
    ] = None,
) -> None:
    """Wire a chat to an agent group, or change how an existing wiring answers.

    A chat hutch has not seen yet is made, so a group can be wired before anyone writes there.
    """
    request = Wire(
        chat=chat,
        group=group,
        session_mode=mode.value,
        trigger_rule=trigger,
        untriggered=untriggered.value,
        unknown_senders=None if unknown_senders is None else unknown_senders.value,
    )
    control.run(load(HostFlags(data_dir=data_dir)), request)


def unwire(chat: ChatArgument, group: GroupArgument, data_dir: DataDirOption = None) -> None:
    """Stop the agent group answering in the chat."""
    control.run(load(HostFlags(data_dir=data_dir)), Unwire(chat=chat, group=group))
