"""What a validated outbound row asks a channel to do: a pure decision, no I/O.

Everything the container named (the chat, the messages an edit or a reaction points at) is
checked against what the host itself knows, handed in as `References`; a row that fails a
check is rejected, never sent. Files stay names here: `attach_files` (which looks at the
disk) turns them into checked paths afterwards.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field

from actors.channels.base import Card, card_as_text
from actors.messages import AskQuestion, DeliveryAction, EditText, React, SendCard, SendText
from protocol.content import AskQuestionOut, CardOut, ChatOut, EditOut, ReactionOut
from protocol.layout import MAX_OUTBOX_MESSAGE_BYTES, SessionLayout, UnsafePathError
from protocol.rows import MessageOut, Routing


class DeliveryRejected(ValueError):  # noqa: N818 - reads as the fact it reports
    pass


@dataclass(frozen=True)
class References:
    """What the host knows about the messages a row may point at, by seq.

    `sent`: the agent's delivered rows (odd seqs) -> the platform's message id.
    `received`: people's messages (even seqs) -> the platform's message id, for reactions."""

    sent: Mapping[int, str] = field(default_factory=dict)
    received: Mapping[int, str] = field(default_factory=dict)


def referenced_seq(content: object) -> int | None:
    """The seq an edit or a reaction points at: what the caller must look up first."""
    if isinstance(content, EditOut | ReactionOut):
        return content.message_seq
    return None


def target_of(row: MessageOut, routes: frozenset[tuple[str, str]]) -> Routing:
    """The row's channel and chat; only chats this session has received messages from."""
    if not row.channel_type or not row.platform_id:
        raise DeliveryRejected(f"row {row.id!r} names no channel or chat")
    if (row.channel_type, row.platform_id) not in routes:
        raise DeliveryRejected(f"row {row.id!r} is addressed to a chat this session has never talked to")
    return row.routing


def plan_action(row: MessageOut, content: object, refs: References) -> DeliveryAction:
    match content:
        case ChatOut(text=text, files=files):
            if not text.strip() and not files:
                raise DeliveryRejected(f"row {row.id!r} is an empty message")
            return SendText(text, tuple(files))
        case EditOut(message_seq=seq, text=text):
            if seq % 2 == 0:
                raise DeliveryRejected(f"message {seq} is not one the agent sent, so it cannot be edited")
            return EditText(_sent(seq, refs), text)
        case ReactionOut(message_seq=seq, emoji=emoji):
            return React(_sent(seq, refs) if seq % 2 else _received(seq, refs), emoji)
        case AskQuestionOut(question_id=question_id, question=question, options=options):
            return AskQuestion(question_id, question, tuple(options))
        case CardOut(title=title, text=text, fields=fields, buttons=buttons, question_id=question_id):
            card = Card(title, text, tuple((item.label, item.value) for item in fields))
            if not buttons:
                return SendCard(card)
            if question_id is None:  # CardOut refuses this itself; kept so a bug cannot show a dead button
                raise DeliveryRejected(f"row {row.id!r} is a card with buttons but no question_id")
            # A question in all but looks: the Supervisor records it and the channel shows the
            # buttons, so a press comes back the way any answer does.
            return AskQuestion(question_id, card_as_text(card), tuple(buttons))
    raise DeliveryRejected(f"row {row.id!r} ({row.kind}) is not something a channel delivers")


def _sent(seq: int, refs: References) -> str:
    platform_id = refs.sent.get(seq)
    if platform_id is None:
        raise DeliveryRejected(f"message {seq} was never delivered, so it cannot be changed")
    return platform_id


def _received(seq: int, refs: References) -> str:
    platform_id = refs.received.get(seq)
    if platform_id is None:
        raise DeliveryRejected(f"message {seq} has no platform message to react to")
    return platform_id


def attach_files(layout: SessionLayout, message_id: str, action: DeliveryAction) -> DeliveryAction:
    """A send's files, checked and copied out of `outbox/<message_id>/` into the host's
    `sent/<message_id>/` (this one touches the disk: links, second links, other file systems
    and files past the cap are refused)."""
    if not isinstance(action, SendText) or not action.files:
        return action
    paths: list[str] = []
    left = MAX_OUTBOX_MESSAGE_BYTES  # for the files of this message together
    try:
        for name in action.files:
            copy = layout.take_outbox_file(message_id, name, left)
            left -= copy.stat().st_size
            paths.append(str(copy))
    except (UnsafePathError, OSError) as exc:
        release_files(layout, message_id)
        raise DeliveryRejected(f"row {message_id!r}: {exc}") from None
    return SendText(action.text, tuple(paths))


def release_files(layout: SessionLayout, message_id: str) -> None:
    """The host's copies of a settled message's files (`sent/<message id>/`): no channel
    needs them any more, and kept they would fill the host's disk message by message."""
    try:
        folder = layout.sent(message_id)
    except UnsafePathError:
        return  # an id no copy was ever made under
    shutil.rmtree(folder, ignore_errors=True)
