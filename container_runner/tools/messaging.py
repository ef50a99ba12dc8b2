"""Tools that talk to the user: replies, files, edits, reactions and questions.
Every one of them is a row the OutboxActor writes; the host delivers it."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import msgspec
import pykka

from container_runner.messages import WriteMessage
from container_runner.outbox import OutboxActor
from container_runner.questions import QuestionBoard
from container_runner.tools.base import Tool, ToolError, ToolOutcome
from container_runner.tools.function import FunctionTool
from container_runner.turn import TurnContext
from protocol import inbound, outbound
from protocol.content import (
    MAX_BUTTON_BYTES,
    MAX_CARD_BUTTONS,
    MAX_CONTENT_BYTES,
    MAX_TEXT_CHARS,
    AskQuestionOut,
    CardField,
    CardOut,
    ChatOut,
    EditOut,
    OutboundContent,
    ReactionOut,
    encode_content,
)
from protocol.db import read_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageOut


class _Sender:
    """What all messaging tools share: write a row for the current conversation."""

    def __init__(self, outbox: pykka.ActorRef[OutboxActor], context: TurnContext) -> None:
        self.outbox = outbox
        self.context = context

    def send(self, content: OutboundContent, message_id: str | None = None) -> MessageOut:
        """Write the row. Without an id of its own it gets the turn's next effect id (see
        `send_effect`)."""
        if message_id:
            return self._write(content, message_id)
        return self.send_effect(lambda _effect_id: content)

    def send_effect(self, make: Callable[[str | None], OutboundContent]) -> MessageOut:
        """Write `make(effect id)` under the turn's next effect id, so a turn retried after a
        kill does not send the same thing twice; content that names itself (a card's question)
        takes its name from that id. Only the same content counts as the same effect (a retried
        model may say something else): other content is written anew, as `make(None)`."""
        effect_id = self.context.effect_id()
        content = make(effect_id)
        written = self._write(content, effect_id)
        if effect_id is not None and written.content != encode_content(content):
            written = self._write(make(None), None)
        return written

    def _write(self, content: OutboundContent, message_id: str | None) -> MessageOut:
        request = WriteMessage(content, self.context.routing, self.context.reply_to, message_id)
        written: MessageOut = self.outbox.ask(request, block=True)
        return written


class SendMessageInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, description="The message to send, in Markdown.")]


class SendMessage(FunctionTool[SendMessageInput]):
    name = "send_message"
    description = "Send a message to the user right away, before your turn ends (e.g. progress on a long task)."
    input_type = SendMessageInput

    def __init__(self, sender: _Sender) -> None:
        self._sender = sender

    def call(self, arguments: SendMessageInput) -> ToolOutcome:
        row = self._sender.send(ChatOut(text=arguments.text))
        return ToolOutcome(f"sent as message {row.seq}")


class SendFileInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(description="Path of the file, relative to your workspace or absolute.")]
    text: Annotated[str, msgspec.Meta(description="Optional caption.")] = ""


class SendFile(FunctionTool[SendFileInput]):
    name = "send_file"
    description = "Send a file from your workspace (or an attachment you received) to the user."
    input_type = SendFileInput

    def __init__(self, sender: _Sender, layout: SessionLayout, workspace: Path) -> None:
        self._sender = sender
        self._layout = layout
        self._roots = (workspace.resolve(), (layout.root / "inbox").resolve())
        self._workspace = workspace

    def call(self, arguments: SendFileInput) -> ToolOutcome:
        source = self._source(arguments.path)
        # A fresh id each time: a file copied for a retried turn may differ from the first's.
        message_id = uuid.uuid4().hex
        folder = self._layout.outbox(message_id)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / source.name)
        row = self._sender.send(ChatOut(text=arguments.text, files=[source.name]), message_id=message_id)
        return ToolOutcome(f"sent {source.name} as message {row.seq}")

    def _source(self, raw: str) -> Path:
        candidate = Path(raw) if Path(raw).is_absolute() else self._workspace / raw
        real = candidate.resolve()
        if not any(real.is_relative_to(root) for root in self._roots):
            raise ToolError(f"{raw}: only files in your workspace or your received attachments can be sent")
        if not real.is_file():
            raise ToolError(f"{raw}: no such file")
        return real


class EditMessageInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    message_id: Annotated[int, msgspec.Meta(description="The id (seq) of a message you sent earlier.")]
    text: Annotated[str, msgspec.Meta(min_length=1, description="The new text.")]


class EditMessage(FunctionTool[EditMessageInput]):
    name = "edit_message"
    description = "Replace the text of a message you sent earlier."
    input_type = EditMessageInput

    def __init__(self, sender: _Sender, layout: SessionLayout) -> None:
        self._sender = sender
        self._layout = layout

    def call(self, arguments: EditMessageInput) -> ToolOutcome:
        with read_transaction(self._layout.outbound_db) as conn:
            target = outbound.get_by_seq(conn, arguments.message_id)
        if target is None or target.kind != "chat":
            raise ToolError(f"message {arguments.message_id} is not a message you sent")
        row = self._sender.send(EditOut(message_seq=arguments.message_id, text=arguments.text))
        return ToolOutcome(f"edit requested as message {row.seq}")


class AddReactionInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    message_id: Annotated[int, msgspec.Meta(description="The id (seq) of any message in this conversation.")]
    emoji: Annotated[str, msgspec.Meta(min_length=1, max_length=32, description="One emoji, e.g. 👍.")]


class AddReaction(FunctionTool[AddReactionInput]):
    name = "add_reaction"
    description = "React to a message with an emoji."
    input_type = AddReactionInput

    def __init__(self, sender: _Sender, layout: SessionLayout) -> None:
        self._sender = sender
        self._layout = layout

    def call(self, arguments: AddReactionInput) -> ToolOutcome:
        if not self._exists(arguments.message_id):
            raise ToolError(f"there is no message {arguments.message_id} in this conversation")
        row = self._sender.send(ReactionOut(message_seq=arguments.message_id, emoji=arguments.emoji))
        return ToolOutcome(f"reaction requested as message {row.seq}")

    def _exists(self, seq: int) -> bool:
        # Parity says which table: even seqs are the host's, odd ones ours.
        if seq % 2 == 0:
            with read_transaction(self._layout.inbound_db) as conn:
                return inbound.get_by_seq(conn, seq) is not None
        with read_transaction(self._layout.outbound_db) as conn:
            return outbound.get_by_seq(conn, seq) is not None


class AskUserQuestionInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    question: Annotated[str, msgspec.Meta(min_length=1)]
    options: Annotated[list[str], msgspec.Meta(min_length=1, max_length=10, description="The choices offered.")]


class AskUserQuestion(FunctionTool[AskUserQuestionInput]):
    name = "ask_user_question"
    description = "Ask the user a multiple-choice question and wait for the answer."
    input_type = AskUserQuestionInput

    def __init__(self, sender: _Sender, board: QuestionBoard, timeout_s: float) -> None:
        self._sender = sender
        self._board = board
        self._timeout_s = timeout_s

    def call(self, arguments: AskUserQuestionInput) -> ToolOutcome:
        question_id = uuid.uuid4().hex
        self._board.open(question_id)
        self._sender.send(AskQuestionOut(question_id, arguments.question, list(arguments.options)))
        answer = self._board.wait(question_id, self._timeout_s)
        if answer is None:
            return ToolOutcome(f"no answer within {self._timeout_s:.0f} s", is_error=True)
        return ToolOutcome(f"the user chose: {answer}")


# CardOut's own caps: a card the tool accepts is a row the host accepts.
_CARD_SHORT = 256
_CARD_FIELDS = 25


class CardFieldInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=_CARD_SHORT)]
    value: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]


class SendCardInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=_CARD_SHORT, description="The card's title.")]
    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS, description="The body, in Markdown.")] = ""
    fields: Annotated[
        list[CardFieldInput],
        msgspec.Meta(max_length=_CARD_FIELDS, description="Label/value pairs shown under the text, in order."),
    ] = []
    buttons: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_BUTTON_BYTES)]],
        msgspec.Meta(
            max_length=MAX_CARD_BUTTONS,
            description=f"Optional button labels (at most {MAX_CARD_BUTTONS}, {MAX_BUTTON_BYTES} bytes each). "
            "A press reaches you later as a message naming the card and the button.",
        ),
    ] = []


class SendCard(FunctionTool[SendCardInput]):
    name = "send_card"
    description = (
        "Send the user a card: a title, a short text, labelled fields (a status, a summary, a forecast) and "
        "optional buttons. Channels that cannot show cards get it as text. The turn does not wait for a press; "
        "to wait for a choice before you go on, use ask_user_question."
    )
    input_type = SendCardInput

    def __init__(self, sender: _Sender) -> None:
        self._sender = sender

    def call(self, arguments: SendCardInput) -> ToolOutcome:
        if not arguments.title.strip():
            raise ToolError("title must not be blank")
        for button in arguments.buttons:
            if not button.strip():
                raise ToolError("a button label must not be blank")
            if len(button.encode()) > MAX_BUTTON_BYTES:
                raise ToolError(f"button {button!r} is more than {MAX_BUTTON_BYTES} bytes: shorten it")

        def card(effect_id: str | None) -> CardOut:
            return CardOut(
                title=arguments.title,
                text=arguments.text,
                fields=[CardField(label=item.label, value=item.value) for item in arguments.fields],
                buttons=list(arguments.buttons),
                question_id=card_question_id(effect_id) if arguments.buttons else None,
            )

        # The host refuses a row past this size; say so here, where the model can shorten it.
        size = len(encode_content(card(None)).encode())
        if size > MAX_CONTENT_BYTES:
            raise ToolError(f"the card is {size} bytes, more than {MAX_CONTENT_BYTES}: shorten its text or fields")
        row = self._sender.send_effect(card)
        return ToolOutcome(f"card sent as message {row.seq}")


def card_question_id(effect_id: str | None) -> str:
    """The question a card's buttons answer: named after the row's effect id, so a retried turn
    names the same question (and writes the same row, once). Hashed short, so Telegram's
    callback data carries it whole and a press survives a host restart."""
    if effect_id is None:
        return "c" + uuid.uuid4().hex
    return "c" + hashlib.sha256(effect_id.encode()).hexdigest()[:24]


def messaging_tools(
    outbox: pykka.ActorRef[OutboxActor],
    context: TurnContext,
    layout: SessionLayout,
    workspace: Path,
    board: QuestionBoard,
    question_timeout_s: float,
) -> list[Tool]:
    sender = _Sender(outbox, context)
    return [
        SendMessage(sender),
        SendCard(sender),
        SendFile(sender, layout, workspace),
        EditMessage(sender, layout),
        AddReaction(sender, layout),
        AskUserQuestion(sender, board, question_timeout_s),
    ]
