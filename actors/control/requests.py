"""What may be asked of a host through its control socket, and what it answers.

Each request is one msgspec struct, tagged with its `op`, so a hostile or garbled line is
refused by decoding before any code acts on it. The same structs are what the offline path
runs, so a command behaves the same whether or not a host is up."""

from __future__ import annotations

from typing import Literal

import msgspec

# A request line is small: names, ids, a rule. Anything longer is refused unread.
MAX_REQUEST_BYTES = 16 * 1024

Name = str
TaskVerb = Literal["pause", "resume", "cancel"]
SessionMode = Literal["shared", "per-thread", "agent-shared"]
Untriggered = Literal["context", "drop"]
UnknownSenders = Literal["drop", "pair"]
Role = Literal["owner", "admin", "member"]
# A group's setting given back to the host's (HUTCH_MODEL, HUTCH_AGENT_*).
Default = Literal["default"]


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="op"):
    pass


class StopSession(_Request, frozen=True, tag="sessions.stop"):
    """Stop the session's agent now; its work stays, and the next message starts it again."""

    session: str  # an id, or a prefix only it has


class ClearSession(_Request, frozen=True, tag="sessions.clear"):
    """Ask the session's agent to forget the conversation, as an owner's `/clear` does."""

    session: str


class ChangeTask(_Request, frozen=True, tag="tasks.change"):
    """Pause, resume or cancel a scheduled task (every run of a recurring one)."""

    verb: TaskVerb
    task: str  # a task id, or a prefix only it has
    session: str | None = None  # narrows the search where two sessions share a prefix


class AddGroup(_Request, frozen=True, tag="groups.add"):
    """A new group; a model or limit not given is the host's (HUTCH_MODEL, HUTCH_AGENT_*)."""

    name: Name
    folder: str | None = None  # default: the name
    model: str | None = None
    cpus: float | None = None
    memory_mb: int | None = None
    pids: int | None = None
    shm_mb: int | None = None


class SetGroupModel(_Request, frozen=True, tag="groups.set_model"):
    """Set a group's model (`default`: the host's); its running agents restart with it."""

    name: Name
    model: str


class SetGroup(_Request, frozen=True, tag="groups.set"):
    """Change a group's model and what its agents may use, at once: a field not given (None)
    stays as it is, `default` gives it back to the host's. Its running agents restart with them."""

    name: Name
    model: str | None = None  # a model id, or `default`
    cpus: float | Default | None = None
    memory_mb: int | Default | None = None
    pids: int | Default | None = None
    shm_mb: int | Default | None = None


class SetBudget(_Request, frozen=True, tag="budget.set"):
    """Set a group's daily and monthly limits, all at once: a limit not given is removed
    (`hutch budget set` fills in the ones it keeps). All None: the group has no budget."""

    group: Name
    daily_usd: float | None = None
    monthly_usd: float | None = None
    daily_tokens: int | None = None
    monthly_tokens: int | None = None


class RemoveGroup(_Request, frozen=True, tag="groups.remove"):
    name: Name


class Wire(_Request, frozen=True, tag="wire"):
    """Wire a chat (`channel:platform id`) to an agent group, making the chat if it is new."""

    chat: str
    group: Name
    session_mode: SessionMode = "shared"
    trigger_rule: str = "always"
    untriggered: Untriggered = "context"
    unknown_senders: UnknownSenders | None = None  # None: leave the chat's policy as it is


class Unwire(_Request, frozen=True, tag="unwire"):
    chat: str
    group: Name


class DecidePairing(_Request, frozen=True, tag="senders.decide"):
    code: str
    approve: bool


class AllowSender(_Request, frozen=True, tag="senders.allow"):
    chat: str
    user: str
    role: Role = "member"
    name: str | None = None


class BlockSender(_Request, frozen=True, tag="senders.block"):
    chat: str
    user: str


class AddWebhookRoute(_Request, frozen=True, tag="hooks.add"):
    """Make a webhook route: `POST /hooks/<route>` signed with `secret` reaches the group.
    The command makes the secret (and shows it once); it is never in a reply or a log line."""

    route: str
    group: Name
    secret: str


class RotateWebhookSecret(_Request, frozen=True, tag="hooks.rotate"):
    """Give a route a new secret; the old one is refused from the next request on."""

    route: str
    secret: str


class RemoveWebhookRoute(_Request, frozen=True, tag="hooks.remove"):
    route: str


Request = (
    StopSession
    | ClearSession
    | ChangeTask
    | AddGroup
    | RemoveGroup
    | SetBudget
    | SetGroupModel
    | SetGroup
    | Wire
    | Unwire
    | DecidePairing
    | AllowSender
    | BlockSender
    | AddWebhookRoute
    | RotateWebhookSecret
    | RemoveWebhookRoute
)


class Reply(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What was done, in a sentence for the person; `ok` False: nothing was changed."""

    ok: bool
    message: str


request_decoder: msgspec.json.Decoder[Request] = msgspec.json.Decoder(Request)
reply_decoder = msgspec.json.Decoder(Reply)
encoder = msgspec.json.Encoder()
