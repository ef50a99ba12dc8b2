"""Reading `usage` and `model` out of a Messages API response as its bytes pass through the
credential proxy, without holding the body and without holding the bytes back.

The proxy hands each piece to `UsageMeter.feed` after it has written it to the agent. A
streamed answer (server-sent events) is parsed line by line: `message_start` carries the
model and the input side (input, cache reads, cache writes) with the output so far, and
`message_delta` the final, cumulative counts (anthropic's `RawMessageStartEvent`,
`RawMessageDeltaEvent`, `MessageDeltaUsage`). Only the line being read is kept, and at most
`MAX_EVENT_LINE` bytes of it; a longer line is dropped as it goes by, and matters only when
it belonged to one of those two events. A whole JSON answer is kept up to `MAX_JSON_BODY`,
then decoded; past that it is let through unread and its usage is unknown.

`UsageBook` is where the proxy puts what a meter read: the central DB's `token_usage`; with
a `BudgetGate` it is also what the proxy asks whether a group may spend (actors/budget_gate.py).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from typing import TYPE_CHECKING, Annotated, Final, Literal

import msgspec

from actors.pricing import Tokens
from actors.store import agent_groups, sessions, usage
from actors.store.db import Store, StoreError

if TYPE_CHECKING:
    from actors.budget_gate import BudgetGate, BudgetRefusal

log = logging.getLogger("hutch.credentials")

# A Message's JSON without its content is a few hundred bytes; the content of a non-streamed
# answer is bounded by the SDK (it refuses long non-streamed requests), which keeps it far below.
MAX_JSON_BODY: Final = 1024 * 1024
# message_start and message_delta lines are small; the long lines of a stream are content
# (a tool's result, a document) and are skipped.
MAX_EVENT_LINE: Final = 256 * 1024

_EOL: Final = re.compile(rb"\r\n|\r|\n")
_READ_EVENTS: Final = frozenset({"message_start", "message_delta"})

# Far above any real count, far below SQLite's integer limit however many are added up.
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**40)]


class _CacheCreation(msgspec.Struct):
    ephemeral_5m_input_tokens: _Count = 0
    ephemeral_1h_input_tokens: _Count = 0


class _Usage(msgspec.Struct):
    input_tokens: _Count | None = None
    output_tokens: _Count | None = None
    cache_creation_input_tokens: _Count | None = None
    cache_read_input_tokens: _Count | None = None
    cache_creation: _CacheCreation | None = None


class _Message(msgspec.Struct):
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    usage: _Usage | None = None


class _MessageStart(msgspec.Struct):
    type: Literal["message_start"]
    message: _Message


class _MessageDelta(msgspec.Struct):
    type: Literal["message_delta"]
    usage: _Usage | None = None


_decode_start = msgspec.json.Decoder(_MessageStart).decode
_decode_delta = msgspec.json.Decoder(_MessageDelta).decode
_decode_message = msgspec.json.Decoder(_Message).decode


class Metered(msgspec.Struct, frozen=True, kw_only=True):
    """What one response used, as far as it could be read.

    `problem` says why the usage could not be read (the tokens are then what was read before
    it, often nothing); `complete` is False when a stream ended before its final counts (the
    agent hung up, the upstream broke off): the counts so far are real, only not final.
    """

    model: str | None
    tokens: Tokens
    complete: bool
    problem: str | None = None


class UsageMeter:
    """Follows one response body; `feed` every piece in order, then `finish` once."""

    def __init__(self, content_type: str | None, content_encoding: str | None) -> None:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        self._kind: Literal["sse", "json", "other"] = (
            "sse" if media == "text/event-stream" else "json" if media.endswith("json") else "other"
        )
        self._problem: str | None = None
        if self._kind == "other":
            self._problem = f"unexpected content type {_shown(content_type)}"
        elif (content_encoding or "identity").strip().lower() != "identity":
            # The proxy asks the upstream for identity; a body it cannot read is not guessed at.
            self._problem = f"compressed body ({_shown(content_encoding)})"
        self._model: str | None = None
        self._usage: dict[str, int] = {}
        self._cache_1h: int = 0
        self._saw_start = False
        self._saw_delta = False
        # JSON: the body so far, while within the bound.
        self._body = bytearray()
        # SSE: the line being read, the current event's name and data lines.
        self._line = bytearray()
        self._line_too_long = False
        self._after_cr = False
        self._event: str | None = None
        self._data: list[bytes] = []
        self._data_size = 0
        self._data_too_long = False

    def feed(self, chunk: bytes) -> None:
        if self._problem is not None or not chunk:
            return
        try:
            if self._kind == "json":
                self._feed_json(chunk)
            else:
                self._feed_sse(chunk)
        except Exception as exc:
            # The meter rides on the agent's response: a fault of its own must cost the
            # count, never the bytes.
            log.exception("usage meter failed")
            self._problem = f"meter failed ({type(exc).__name__})"

    def finish(self) -> Metered:
        try:
            if self._problem is None and self._kind == "json":
                self._read_json()
            elif self._problem is None:
                self._end_line()  # a last line without its newline
                self._dispatch()  # and an event without its blank line
                if not self._saw_start and self._problem is None:
                    self._problem = "the stream had no message_start event"
        except Exception as exc:
            log.exception("usage meter failed")
            self._problem = f"meter failed ({type(exc).__name__})"
        return Metered(
            model=self._model,
            tokens=self._tokens(),
            complete=self._problem is None and (self._kind == "json" or self._saw_delta),
            problem=self._problem,
        )

    # -- a whole JSON body -------------------------------------------------------------

    def _feed_json(self, chunk: bytes) -> None:
        if len(self._body) + len(chunk) > MAX_JSON_BODY:
            self._problem = f"JSON body over {MAX_JSON_BODY} bytes"
            self._body = bytearray()  # given back at once, not at the end of the response
            return
        self._body += chunk

    def _read_json(self) -> None:
        try:
            message = _decode_message(self._body)
        except msgspec.DecodeError as exc:
            self._problem = f"unreadable JSON body ({exc})"
            return
        finally:
            self._body = bytearray()
        self._model = message.model
        if message.usage is None:
            self._problem = "no usage in the body"
            return
        self._take_usage(message.usage)

    # -- server-sent events ---------------------------------------------------------------

    def _feed_sse(self, chunk: bytes) -> None:
        start = 0
        if self._after_cr and chunk.startswith(b"\n"):
            start = 1  # the second half of a CRLF cut between two pieces
        self._after_cr = False
        for end in _EOL.finditer(chunk, start):
            self._take(chunk[start : end.start()])
            self._end_line()
            start = end.end()
        if start < len(chunk):
            self._take(chunk[start:])
        else:
            self._after_cr = chunk.endswith(b"\r")

    def _take(self, piece: bytes) -> None:
        if self._line_too_long or not piece:
            return
        if len(self._line) + len(piece) > MAX_EVENT_LINE:
            self._line_too_long = True
            self._line = bytearray()
            return
        self._line += piece

    def _end_line(self) -> None:
        line, too_long = bytes(self._line), self._line_too_long
        self._line = bytearray()
        self._line_too_long = False
        if too_long:
            # Either a data line (the current event's data is then incomplete) or a field
            # nobody sends this long; in both cases the event cannot be read whole.
            self._data_too_long = True
            return
        if not line:
            self._dispatch()
            return
        if line.startswith(b":"):
            return  # a comment
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"data" and self._wanted(self._event):
            self._data_size += len(value) + 1
            if self._data_size > MAX_EVENT_LINE:
                self._data_too_long = True
                self._data = []
            elif not self._data_too_long:
                self._data.append(value)

    @staticmethod
    def _wanted(event: str | None) -> bool:
        # The name normally comes first; data seen before any name is kept, within the bound,
        # until the event's end says what it was.
        return event is None or event in _READ_EVENTS

    def _dispatch(self) -> None:
        event, data, too_long = self._event, b"\n".join(self._data), self._data_too_long
        self._event, self._data, self._data_size, self._data_too_long = None, [], 0, False
        if event not in _READ_EVENTS or self._problem is not None:
            return
        if too_long:
            self._problem = f"a {event} event over {MAX_EVENT_LINE} bytes"
            return
        try:
            if event == "message_start":
                start = _decode_start(data)
                self._saw_start = True
                self._model = start.message.model
                if start.message.usage is not None:
                    self._take_usage(start.message.usage)
            else:
                delta = _decode_delta(data)
                self._saw_delta = True
                if delta.usage is not None:
                    self._take_usage(delta.usage)
        except msgspec.DecodeError as exc:
            self._problem = f"unreadable {event} event ({exc})"

    # -- the counts -----------------------------------------------------------------------

    def _take_usage(self, usage: _Usage) -> None:
        """Counts in a later event are cumulative: each replaces the one before."""
        for field, value in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_write", usage.cache_creation_input_tokens),
            ("cache_read", usage.cache_read_input_tokens),
        ):
            if value is not None:
                self._usage[field] = value
        if usage.cache_creation is not None:
            self._cache_1h = usage.cache_creation.ephemeral_1h_input_tokens

    def _tokens(self) -> Tokens:
        cache_write = self._usage.get("cache_write", 0)
        return Tokens(
            input=self._usage.get("input", 0),
            output=self._usage.get("output", 0),
            cache_read=self._usage.get("cache_read", 0),
            cache_write=cache_write,
            cache_write_1h=min(self._cache_1h, cache_write),
        )


def _shown(value: str | None) -> str:
    if value is None:
        return "(none)"
    return repr(value[:60])


class UsageBook:
    """Records each metered response in the central DB, per agent group, session, model and
    UTC day. Called from the proxy's connection threads; the Store serialises its own use."""

    def __init__(self, store: Store, budgets: BudgetGate | None = None) -> None:
        self._store = store
        self._budgets = budgets
        self._lock = threading.Lock()
        self._groups: dict[str, str] = {}  # session id -> agent group id, once found
        self._warned: set[tuple[str, str]] = set()  # (session, what) already warned about

    def record(self, session_id: str, agent_folder: str, tag: str, metered: Metered) -> None:
        model = metered.model or usage.UNKNOWN_MODEL
        if metered.problem is not None:
            # Counted all the same, under a model with no price: its cost shows as unknown.
            model = usage.UNKNOWN_MODEL
            self._warn_once(
                (session_id, "unreadable"), f"[{tag}] token usage of a response could not be read: {metered.problem}"
            )
        try:
            group_id = self._group_of(session_id, agent_folder)
            if group_id is None:
                self._warn_once(
                    (session_id, "no group"), f"[{tag}] token usage not recorded: no agent group for this session"
                )
                return
            usage.record(
                self._store, agent_group_id=group_id, session_id=session_id, model=model, tokens=metered.tokens
            )
        except (StoreError, sqlite3.Error) as exc:
            # A group deleted meanwhile, a store closed by a stopping host: the response
            # itself went through, only its count is lost.
            log.warning("[%s] token usage not recorded: %s", tag, exc)
            return
        if self._budgets is not None:
            self._budgets.after_use(group_id)

    def refusal(self, session_id: str, agent_folder: str) -> BudgetRefusal | None:
        """Why the session's group may not spend now (its budget is spent), or None."""
        if self._budgets is None:
            return None
        try:
            group_id = self._group_of(session_id, agent_folder)
        except (StoreError, sqlite3.Error) as exc:
            log.warning("budget not checked: %s", exc)
            return None
        return None if group_id is None else self._budgets.refusal(group_id)

    def _group_of(self, session_id: str, agent_folder: str) -> str | None:
        with self._lock:
            known = self._groups.get(session_id)
        if known is not None:
            return known
        session = sessions.get(self._store, session_id)
        if session is not None:
            found: str | None = session.agent_group_id
        else:  # a session the host runs without a row (embedding): its group by folder
            group = agent_groups.get_by_folder(self._store, agent_folder)
            found = None if group is None else group.id
        if found is not None:
            with self._lock:
                self._groups[session_id] = found
        return found

    def _warn_once(self, key: tuple[str, str], message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning("%s", message)
