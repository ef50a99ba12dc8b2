"""The contract between the host and a messaging channel (local chat, Telegram, ...).

An adapter turns platform events into `InboundEvent`s and performs sends. A send either
returns (the platform accepted it) or raises `ChannelError`; the host records and retries.
Sends are made from the host's delivery thread for that channel and may block it (a
platform library runs its own event loop in a thread of its own; a send hands it the call
and waits, within a timeout); they never block another channel or any other actor. Who may
talk to an agent is the host's to decide: an adapter reports every message with the
sender's platform id and leaves refusing to the host.
Where a send goes is a `protocol.rows.Routing` (channel, chat, thread): the same type a row
carries, checked by the session before it reaches an adapter.

Handing an event to the host returns at once with a future (`Stored`) that resolves once the
message is committed to its session's inbound.db; an adapter acks its sender only then, and
may hand over a burst before waiting on any of them.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import pykka

from protocol.rows import Routing


class IncomingFile(msgspec.Struct, frozen=True):
    """A file a person sent; `path` is a local temporary copy the host moves into the inbox."""

    name: str
    path: str


class InboundChat(msgspec.Struct, frozen=True, kw_only=True):
    channel_type: str
    platform_id: str
    text: str
    sender: str
    sender_id: str | None = None
    thread_id: str | None = None
    platform_message_id: str | None = None
    chat_name: str | None = None
    is_group: bool = False
    # True when the platform says the assistant was addressed (a mention, a reply to it).
    mentions_assistant: bool = False
    files: tuple[IncomingFile, ...] = ()


class InboundAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A person picked an option of a question the agent asked: by its text (`answer`), or,
    where the platform carries only a short payload (a button's callback data), by its place
    in the options (`option_index`, from 0), which the host looks up in the question it keeps."""

    channel_type: str
    platform_id: str
    question_id: str
    answer: str = ""
    option_index: int | None = None
    sender: str | None = None
    sender_id: str | None = None
    thread_id: str | None = None


class InboundWebhook(msgspec.Struct, frozen=True, kw_only=True):
    """A signed POST to `/hooks/<route>`; the route names the agent group it is for."""

    route: str
    payload: Any
    event: str | None = None


InboundEvent = InboundChat | InboundAnswer | InboundWebhook

# Resolves once the event is committed to inbound.db; fails with the reason it was refused.
# What it resolves with tells an adapter whether the event was taken: what was stored (never
# None), or None when the host kept nothing on purpose (a sender it does not admit, a command
# it answered itself).
Stored = pykka.Future[Any]
OnEvent = Callable[[InboundEvent], Stored]
# Whether a sender in a chat (channel type, platform id, sender id) could reach an agent:
# asked before a file is fetched, so a stranger the host will drop costs no download.
Admits = Callable[[str, str, str | None], bool]


def admit_all(channel_type: str, platform_id: str, sender_id: str | None) -> bool:
    """An adapter on its own (tests, embedding) fetches every file."""
    return True


class ChannelError(Exception):
    """A send that did not go through. `retryable=False` means trying again cannot help
    (e.g. the chat no longer exists); `retry_after_s`, the wait the platform asked for (flood
    control), which the host's next try honours."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class Card(msgspec.Struct, frozen=True):
    title: str
    text: str = ""
    fields: tuple[tuple[str, str], ...] = ()


def card_as_text(card: Card) -> str:
    """A card as one plain message: for a channel without cards, and as the question text of
    a card with buttons (which is delivered as a question)."""
    lines = [f"*{card.title}*", card.text, *(f"{label}: {value}" for label, value in card.fields)]
    return "\n".join(line for line in lines if line)


# What an adapter can do beyond plain text; the DeliveryActor degrades gracefully without.
FILES = "files"
EDIT = "edit"
REACTION = "reaction"
QUESTION = "question"
CARD = "card"
TYPING = "typing"


class ChannelAdapter(Protocol):
    @property
    def channel_type(self) -> str: ...

    @property
    def capabilities(self) -> frozenset[str]: ...

    def start(self, on_event: OnEvent) -> None:
        """Begin receiving; `on_event` may be called from any thread and never blocks."""
        ...

    def stop(self) -> None: ...

    def send_text(self, to: Routing, text: str, files: tuple[Path, ...] = ()) -> str | None:
        """Send a message (with files when FILES is a capability); returns the platform's message id."""
        ...

    def edit_text(self, to: Routing, platform_message_id: str, text: str) -> None: ...

    def add_reaction(self, to: Routing, platform_message_id: str, emoji: str) -> None: ...

    def ask_question(self, to: Routing, question_id: str, question: str, options: tuple[str, ...]) -> str | None:
        """Offer the options as the platform can (buttons, a numbered list); the choice comes
        back as an `InboundAnswer`."""
        ...

    def send_card(self, to: Routing, card: Card) -> str | None: ...

    def show_typing(self, to: Routing) -> None:
        """Show that the assistant is working (with TYPING); the platform shows it for a few
        seconds, and the host says it again while a turn runs."""
        ...


# -- resuming a send made of several messages ------------------------------------------------

_T = TypeVar("_T")

# Sends remembered at once, and for how long: longer than the host keeps retrying a row.
SENT_PARTS_LIMIT = 256
SENT_PARTS_TTL_S = 36 * 3600.0


def send_key(to: Routing, *what: object) -> str:
    """What a send is known by across the host's retries: where it goes and what it is (the
    text, the files), which the host's retry of an outbound row sends again unchanged."""
    parts = (to.channel_type, to.platform_id, to.thread_id, *what)
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()


class SentParts:
    """The messages a multi-part send (a long text split in several, files after it) got
    accepted so far, by `send_key`, so that the host's retry of a send that failed halfway
    goes on from the first part not yet accepted instead of showing the others twice.

    In memory only (after a restart a retry sends it whole again: at least once), at most
    `limit` sends, each for at most `ttl_s`. A send is forgotten once it is complete, or
    once it failed in a way the host does not retry."""

    def __init__(
        self,
        limit: int = SENT_PARTS_LIMIT,
        ttl_s: float = SENT_PARTS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sends: collections.OrderedDict[str, tuple[float, list[str]]] = collections.OrderedDict()

    def begin(self, key: str) -> list[str]:
        """The platform ids of the parts of this send already accepted, in order (empty for
        a send not begun); the sender appends each part's id to this list as it is accepted."""
        now = self._clock()
        with self._lock:
            while self._sends:
                oldest, (since, _) = next(iter(self._sends.items()))
                if now - since <= self._ttl_s:
                    break
                del self._sends[oldest]
            found = self._sends.get(key)
            if found is None:
                found = self._sends[key] = (now, [])
                while len(self._sends) > self._limit:
                    self._sends.popitem(last=False)
            return found[1]

    async def resume(
        self,
        key: str,
        send: Callable[[list[str]], Awaitable[_T]],
        retryable: Callable[[BaseException], bool],
    ) -> _T:
        """`send(taken)`: a send of several messages that skips the first `len(taken)`
        (accepted by an earlier try of the same send) and appends the id of each it gets
        accepted. What was accepted is kept while the host will try again (`retryable` says
        whether it will after an error), and forgotten once the send is complete."""
        taken = self.begin(key)
        try:
            result = await send(taken)
        except BaseException as exc:
            self.end(key, retryable=retryable(exc))
            raise
        self.end(key)
        return result

    def end(self, key: str, *, retryable: bool = False) -> None:
        """The send is complete (or failed): forget it, unless it failed with parts out and
        the host will try again (`retryable`)."""
        with self._lock:
            found = self._sends.get(key)
            if found is not None and not (retryable and found[1]):
                del self._sends[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._sends)
