"""Turning a validated outbound row into one channel action. Everything the container named
(files, routes, the messages an edit or a reaction points at) is checked here against what
the host itself knows; a row that fails a check is rejected, never sent."""

from __future__ import annotations

from collections.abc import Callable

from actors.channels.base import Card, Target
from actors.messages import AskQuestion, DeliveryAction, EditText, React, SendCard, SendText
from protocol import inbound, outbound
from protocol.content import AskQuestionOut, CardOut, ChatIn, ChatOut, ContentError, EditOut, ReactionOut
from protocol.db import read_transaction
from protocol.layout import SessionLayout, UnsafePathError
from protocol.rows import MessageOut


class DeliveryRejected(ValueError):  # noqa: N818 - reads as the fact it reports
    pass


# message_out_id -> the platform's id of that delivered message, if any.
PlatformIdOf = Callable[[str], str | None]


def target_of(row: MessageOut, routes: frozenset[tuple[str, str]]) -> tuple[str, Target]:
    """The channel and chat of a row; only chats this session has received messages from."""
    if not row.channel_type or not row.platform_id:
        raise DeliveryRejected(f"row {row.id!r} names no channel or chat")
    if (row.channel_type, row.platform_id) not in routes:
        raise DeliveryRejected(f"row {row.id!r} is addressed to a chat this session has never talked to")
    return row.channel_type, Target(row.platform_id, row.thread_id)


def plan_action(
    layout: SessionLayout, row: MessageOut, content: object, platform_id_of: PlatformIdOf
) -> DeliveryAction:
    match content:
        case ChatOut(text=text, files=files):
            if not text.strip() and not files:
                raise DeliveryRejected(f"row {row.id!r} is an empty message")
            return SendText(text, tuple(str(_outbox_file(layout, row.id, name)) for name in files))
        case EditOut(message_seq=seq, text=text):
            return EditText(_sent_platform_id(layout, seq, platform_id_of), text)
        case ReactionOut(message_seq=seq, emoji=emoji):
            return React(_any_platform_id(layout, seq, platform_id_of), emoji)
        case AskQuestionOut(question_id=question_id, question=question, options=options):
            return AskQuestion(question_id, question, tuple(options))
        case CardOut(title=title, text=text, fields=fields):
            return SendCard(Card(title, text, tuple((field.label, field.value) for field in fields)))
    raise DeliveryRejected(f"row {row.id!r} ({row.kind}) is not something a channel delivers")


def _outbox_file(layout: SessionLayout, message_id: str, name: str) -> str:
    try:
        return str(layout.outbox_file(message_id, name))
    except UnsafePathError as exc:
        raise DeliveryRejected(f"row {message_id!r}: {exc}") from None


def _sent_platform_id(layout: SessionLayout, seq: int, platform_id_of: PlatformIdOf) -> str:
    if seq % 2 == 0:
        raise DeliveryRejected(f"message {seq} is not one the agent sent, so it cannot be edited")
    with read_transaction(layout.outbound_db) as conn:
        target = outbound.get_by_seq(conn, seq)
    platform_id = platform_id_of(target.id) if target is not None else None
    if platform_id is None:
        raise DeliveryRejected(f"message {seq} was never delivered, so it cannot be changed")
    return platform_id


def _any_platform_id(layout: SessionLayout, seq: int, platform_id_of: PlatformIdOf) -> str:
    if seq % 2:
        return _sent_platform_id(layout, seq, platform_id_of)
    with read_transaction(layout.inbound_db) as conn:
        target = inbound.get_by_seq(conn, seq)
    try:
        content = target.decoded() if target is not None else None
    except ContentError:
        content = None
    if not isinstance(content, ChatIn) or not content.platform_message_id:
        raise DeliveryRejected(f"message {seq} has no platform message to react to")
    return content.platform_message_id
