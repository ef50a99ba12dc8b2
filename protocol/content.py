"""The JSON shapes stored in the `content` column, one msgspec type per `kind`.

Decoding is strict: unknown fields, wrong types and oversized rows are errors. The host
decodes everything a container wrote with these types (docs/ARCHITECTURE.md, invariant 6).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

MAX_CONTENT_BYTES = 256 * 1024
MAX_TEXT_CHARS = 64 * 1024
MAX_FILES = 20

Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
Files = Annotated[list[Annotated[str, msgspec.Meta(max_length=255)]], msgspec.Meta(max_length=MAX_FILES)]
Short = Annotated[str, msgspec.Meta(max_length=256)]


class _Content(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


# --- inbound: host -> container ------------------------------------------------------------


class ChatIn(_Content, frozen=True):
    """A person's message. `files` are basenames inside `inbox/<message id>/`. `sender_role`
    is the host's word on who the sender is in that chat (owner, admin, member): session
    commands such as /clear are for owners and admins."""

    text: Text
    sender: str
    sender_id: str | None = None
    platform_message_id: str | None = None
    files: Files = []
    sender_role: Literal["owner", "admin", "member"] | None = None


class TaskIn(_Content, frozen=True):
    """A scheduled prompt the agent set for itself."""

    prompt: Text
    scheduled_by: int | None = None
    # The occurrence's own time: a retry moves `process_after`, never this, so the next
    # occurrence of a series is computed from the schedule, not from when a retry ran.
    scheduled_for: str | None = None


class WebhookIn(_Content, frozen=True):
    source: str
    payload: Any = None
    event: str | None = None


class QuestionAnswer(_Content, frozen=True, tag="question_answer", tag_field="type"):
    question_id: Short
    answer: Text
    answered_by: str | None = None


class Notice(_Content, frozen=True, tag="notice", tag_field="type"):
    """A fact the host tells the agent, e.g. that a task it asked for was rejected."""

    text: Text


SystemIn = QuestionAnswer | Notice

InboundKind = Literal["chat", "task", "webhook", "system"]
INBOUND_TYPES: dict[str, Any] = {"chat": ChatIn, "task": TaskIn, "webhook": WebhookIn, "system": SystemIn}


# --- outbound: container -> host -----------------------------------------------------------


class ChatOut(_Content, frozen=True):
    """A reply. `files` are basenames inside `outbox/<message id>/`."""

    text: Text = ""
    files: Files = []


class EditOut(_Content, frozen=True):
    """Replace the text of an earlier reply, named by its seq."""

    message_seq: int
    text: Text


class ReactionOut(_Content, frozen=True):
    """React to any message of the session, named by its seq (even: inbound, odd: outbound)."""

    message_seq: int
    emoji: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class AskQuestionOut(_Content, frozen=True):
    question_id: Short
    question: Text
    options: Annotated[list[Short], msgspec.Meta(min_length=1, max_length=20)]


class CardField(_Content, frozen=True):
    label: Short
    value: Text


# A card's buttons are few and short: a row of them must fit every channel's button bar
# (Discord labels stop at 80 characters), and a press is asked as a question of its own.
MAX_CARD_BUTTONS = 8
MAX_BUTTON_BYTES = 64
Button = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_BUTTON_BYTES)]


class CardOut(_Content, frozen=True):
    """A card; with `buttons` it is delivered as the question `question_id` (its text the
    card, its options the buttons), so a press comes back as a `QuestionAnswer`."""

    title: Short
    text: Text = ""
    fields: Annotated[list[CardField], msgspec.Meta(max_length=25)] = []
    buttons: Annotated[list[Button], msgspec.Meta(max_length=MAX_CARD_BUTTONS)] = []
    question_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None

    def __post_init__(self) -> None:
        # Runs on decode too, where msgspec reports it as the row's validation error.
        if self.buttons and self.question_id is None:
            raise ValueError("a card with buttons needs a question_id")
        if self.question_id is not None and not self.buttons:
            raise ValueError("a card without buttons has no question_id")
        for button in self.buttons:
            if len(button.encode()) > MAX_BUTTON_BYTES:
                raise ValueError(f"button {button[:16]!r}... is more than {MAX_BUTTON_BYTES} bytes of UTF-8")


class ScheduleTask(_Content, frozen=True, tag="schedule_task", tag_field="action"):
    """`task_id` is chosen by the container so that applying the row twice is harmless."""

    task_id: Short
    prompt: Text
    process_after: str
    recurrence: str | None = None


class CancelTask(_Content, frozen=True, tag="cancel_task", tag_field="action"):
    task_id: Short


class PauseTask(_Content, frozen=True, tag="pause_task", tag_field="action"):
    task_id: Short


class ResumeTask(_Content, frozen=True, tag="resume_task", tag_field="action"):
    task_id: Short


class UpdateTask(_Content, frozen=True, tag="update_task", tag_field="action"):
    """Change what a task series does next: its prompt, its time (UTC), its recurrence.
    Only its pending and paused occurrences change; what ran or runs stays as it was."""

    task_id: Short
    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)] | None = None
    process_after: Short | None = None
    recurrence: Short | None = None
    clear_recurrence: bool = False


# What changes a task series that exists: every occurrence of it.
SeriesChange = CancelTask | PauseTask | ResumeTask
SystemAction = ScheduleTask | UpdateTask | SeriesChange

OutboundKind = Literal["chat", "edit", "reaction", "ask_question", "card", "system"]
OUTBOUND_TYPES: dict[str, Any] = {
    "chat": ChatOut,
    "edit": EditOut,
    "reaction": ReactionOut,
    "ask_question": AskQuestionOut,
    "card": CardOut,
    "system": SystemAction,
}

InboundContent = ChatIn | TaskIn | WebhookIn | QuestionAnswer | Notice
OutboundContent = ChatOut | EditOut | ReactionOut | AskQuestionOut | CardOut | SystemAction


class ContentError(ValueError):
    """A row whose content does not fit its kind. The message names the row and the field."""


def decode_content(table: str, row_id: str, kind: str, raw: str | bytes) -> Any:
    """Decode one row's content for its kind, or raise ContentError naming row and field."""
    types = INBOUND_TYPES if table == "messages_in" else OUTBOUND_TYPES
    where = f"{table} row {row_id!r} (kind {kind!r})"
    content_type = types.get(kind)
    if content_type is None:
        raise ContentError(f"{where}: unknown kind; expected one of {sorted(types)}")
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_CONTENT_BYTES:
        raise ContentError(f"{where}: content is {size} bytes, more than {MAX_CONTENT_BYTES}")
    try:
        content = msgspec.json.decode(raw, type=content_type, strict=True)
    except msgspec.ValidationError as exc:
        raise ContentError(f"{where}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ContentError(f"{where}: content is not valid JSON: {exc}") from None
    return content


def encode_content(content: InboundContent | OutboundContent) -> str:
    return msgspec.json.encode(content).decode()


def check_inbound(content: InboundContent) -> None:
    """Raise ContentError unless `content` keeps the protocol's caps. A struct built in code is
    not validated by msgspec; this is the round trip the agent's reader will make."""
    decode_content("messages_in", "new", inbound_kind(content), encode_content(content))


def outbound_kind(content: OutboundContent) -> OutboundKind:
    for kind, content_type in OUTBOUND_TYPES.items():
        if kind != "system" and isinstance(content, content_type):
            return kind  # type: ignore[return-value]
    return "system"


def inbound_kind(content: InboundContent) -> InboundKind:
    if isinstance(content, ChatIn):
        return "chat"
    if isinstance(content, TaskIn):
        return "task"
    if isinstance(content, WebhookIn):
        return "webhook"
    return "system"
