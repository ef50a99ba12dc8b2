"""The local terminal chat: JSON lines over a Unix socket; `scripts/chat.py` is its client.

One JSON object per line (UTF-8, at most `MAX_LINE_BYTES`). A client sends

    {"text": "...", "sender": "alice"}            a message; optional "chat" (default
                                                  "local"), "sender_id", "thread"
    {"answer": "...", "question_id": "...", ...}  the choice for a question; optional
                                                  "sender", "chat", "thread"
    {"join": "<chat>"}                            receive that chat's messages

and gets exactly one reply line for each: `{"type": "ack", "id": ...}` once the host took
it, `{"type": "joined", "chat": ...}`, or `{"type": "error", "error": "..."}`. A client is
in one chat at a time ("local" until it says otherwise). The host's sends reach every
client in the chat as lines of type "message", "edit", "reaction", "question" or "card".

The socket is the only access control (mode 0600), so only the host's own user can talk
to the agents through it.

Every input is bounded, because one misbehaving client must not take the host down:
- at most `MAX_CLIENTS` connections at once; one more is told so in an error line and closed,
  before any thread is started for it;
- a line longer than `MAX_LINE_BYTES`, nested deeper than `MAX_DEPTH`, or not JSON at all
  gets an error line and the connection is closed: the client is not speaking this protocol,
  and (for a long line) where its next line starts is unknown;
- a well-formed line with a bad field, or one whose text, names or whole message exceed the
  protocol's caps (`protocol/content.py`), gets an error line before anything reaches the
  host, and the connection stays usable.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import selectors
import socket
import struct
import threading
import typing
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pykka

from actors.channels.base import (
    CARD,
    EDIT,
    FILES,
    QUESTION,
    REACTION,
    Card,
    ChannelError,
    InboundAnswer,
    InboundChat,
    InboundEvent,
    OnEvent,
    Stored,
)
from actors.socket_file import Identity, clear_for_bind, identity, remove_if_ours
from protocol.content import MAX_CONTENT_BYTES, MAX_TEXT_CHARS, ChatIn, QuestionAnswer, Short, encode_content
from protocol.json_depth import nests_deeper
from protocol.rows import Routing

log = logging.getLogger(__name__)

CHANNEL_TYPE = "cli"
DEFAULT_CHAT = "local"
# Connections served at once. Each costs two threads and up to a line's buffer, so this
# bounds what clients can take from the host; a terminal or two is the normal load.
MAX_CLIENTS = 32
# The biggest legal message is MAX_CONTENT_BYTES once stored as UTF-8 JSON. A client may
# send it with every non-ASCII character escaped (json.dumps does by default): an emoji is
# then 12 bytes instead of 4, an accented letter 6 instead of 2, so at most 3 times longer.
# The chat and thread ride on the line too without being stored in the content.
MAX_LINE_BYTES = 3 * MAX_CONTENT_BYTES + 64 * 1024
# No request nests at all (every field is a string); the bound only has to be far below
# the recursion limit a decoder hits (msgspec raises RecursionError near 1000).
MAX_DEPTH = 32
# Lines handed to the host and not yet answered, per client; past this the client's lines
# wait in its socket until the host catches up.
MAX_UNANSWERED = 4096

_RECV_BYTES = 64 * 1024
# Long enough for a busy terminal, short enough that a client that stopped reading cannot
# hold a delivery thread for long: it is dropped instead.
DEFAULT_SEND_TIMEOUT = 5.0
# stop() must not hang on a reader thread stuck inside the host's on_event.
_JOIN_TIMEOUT = 5.0
_ACCEPT_RETRY_DELAY = 0.5


class _BadRequestError(Exception):
    """A client line we cannot use; the message goes back to that client verbatim."""


class _HangUpError(Exception):
    """A line after which the connection cannot go on; the message goes back to the client
    as its last line, and the connection is closed."""


@dataclass(frozen=True)
class _ChatRequest:
    chat: str
    text: str
    sender: str
    sender_id: str
    thread: str | None


@dataclass(frozen=True)
class _AnswerRequest:
    chat: str
    question_id: str
    answer: str
    sender: str | None
    thread: str | None


@dataclass(frozen=True)
class _JoinRequest:
    chat: str


_Request = _ChatRequest | _AnswerRequest | _JoinRequest


class _Client:
    """One connected terminal. Its reader thread owns the socket and closes it; everyone
    else only shuts it down, so a descriptor is never closed under a running recv/send."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self.chat = DEFAULT_CHAT  # guarded by the channel's lock
        self.thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._hung_up = threading.Event()

    @property
    def hung_up(self) -> bool:
        return self._hung_up.is_set()

    def write(self, obj: dict[str, Any] | None) -> None:
        if obj is not None:
            self.write_line(_encode(obj))

    def write_line(self, data: bytes) -> None:
        with self._write_lock:
            self.sock.sendall(data)

    def hang_up(self) -> None:
        self._hung_up.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._hung_up.set()
        with self._write_lock:
            self.sock.close()


@dataclass
class _Run:
    """What one start() created; stop() tears down exactly this."""

    server: socket.socket
    wake_reader: socket.socket
    wake_writer: socket.socket
    socket_id: Identity | None
    on_event: OnEvent
    stopping: threading.Event
    accept_thread: threading.Thread | None = None


class LocalChatChannel:
    """The `ChannelAdapter` for people chatting from a terminal on the host machine."""

    def __init__(
        self,
        socket_path: Path,
        assistant_name: str = "Assistant",
        *,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._socket_path = Path(socket_path)
        self._assistant_name = assistant_name
        self._send_timeout = send_timeout
        self._max_clients = max_clients
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._clients: set[_Client] = set()
        # Connections whose threads are still running, guarded by _lock. Not len(_clients):
        # a client dropped after a failed send leaves that set while its threads still run,
        # and the cap is on threads and buffers, not on who receives the chat.
        self._connected = 0
        # A fresh token per adapter keeps ids unique across host restarts, so an id stored
        # before a restart can never name a different message afterwards.
        self._id_prefix = uuid.uuid4().hex[:8]
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._client_numbers = itertools.count(1)

    @property
    def channel_type(self) -> str:
        return CHANNEL_TYPE

    @property
    def capabilities(self) -> frozenset[str]:
        # Not TYPING: the terminal client has nothing to show for it, and on the warm path a
        # line per turn costs about as much as the rest of the hand-off (make bench).
        return frozenset({FILES, EDIT, REACTION, QUESTION, CARD})

    @property
    def socket_path(self) -> Path:
        return self._socket_path

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, on_event: OnEvent) -> None:
        with self._lock:
            if self._run is not None:
                return
            server = _listen(self._socket_path)
            wake_reader, wake_writer = socket.socketpair()
            run = _Run(server, wake_reader, wake_writer, identity(self._socket_path), on_event, threading.Event())
            run.accept_thread = threading.Thread(
                target=self._accept_loop, args=(run,), name="local-chat-accept", daemon=True
            )
            self._run = run
            run.accept_thread.start()
        log.info("local chat listening on %s", self._socket_path)

    def stop(self) -> None:
        with self._lock:
            run = self._run
            if run is None:
                return
            self._run = None
            run.stopping.set()
            clients = list(self._clients)
            self._clients.clear()
        with contextlib.suppress(OSError):
            run.wake_writer.send(b"x")
        if run.accept_thread is not None:
            run.accept_thread.join(_JOIN_TIMEOUT)
        for sock in (run.server, run.wake_reader, run.wake_writer):
            sock.close()
        remove_if_ours(self._socket_path, run.socket_id)
        for client in clients:
            client.hang_up()
        for client in clients:
            _join(client.thread)
        log.info("local chat stopped")

    # -- sends -------------------------------------------------------------------------

    def send_text(self, to: Routing, text: str, files: tuple[Path, ...] = ()) -> str | None:
        message_id = self._next_id("cli-out")
        self._send_to_chat(
            _chat_of(to),
            {
                "type": "message",
                "id": message_id,
                "sender": self._assistant_name,
                "text": text,
                "files": [os.path.abspath(path) for path in files],
                "thread": to.thread_id,
            },
        )
        return message_id

    def edit_text(self, to: Routing, platform_message_id: str, text: str) -> None:
        self._send_to_chat(_chat_of(to), {"type": "edit", "id": platform_message_id, "text": text})

    def add_reaction(self, to: Routing, platform_message_id: str, emoji: str) -> None:
        self._send_to_chat(_chat_of(to), {"type": "reaction", "id": platform_message_id, "emoji": emoji})

    def ask_question(self, to: Routing, question_id: str, question: str, options: tuple[str, ...]) -> str | None:
        message_id = self._next_id("cli-out")
        self._send_to_chat(
            _chat_of(to),
            {
                "type": "question",
                "id": message_id,
                "sender": self._assistant_name,
                "question_id": question_id,
                "question": question,
                "options": list(options),
                "thread": to.thread_id,
            },
        )
        return message_id

    def send_card(self, to: Routing, card: Card) -> str | None:
        message_id = self._next_id("cli-out")
        self._send_to_chat(
            _chat_of(to),
            {
                "type": "card",
                "id": message_id,
                "sender": self._assistant_name,
                "title": card.title,
                "text": card.text,
                "fields": [[label, value] for label, value in card.fields],
                "thread": to.thread_id,
            },
        )
        return message_id

    def show_typing(self, to: Routing) -> None:
        # A hint, not a message: a chat nobody has open is no error.
        with contextlib.suppress(ChannelError):
            self._send_to_chat(_chat_of(to), {"type": "typing", "thread": to.thread_id})

    def _send_to_chat(self, chat: str, obj: dict[str, Any]) -> None:
        data = _encode(obj)
        delivered = 0
        for client in self._members(chat):
            try:
                client.write_line(data)
            except OSError as exc:
                log.info("local chat: dropping %s, write failed: %s", client.name, exc)
                self._drop(client)
            else:
                delivered += 1
        if delivered == 0:
            raise _no_client(chat)

    def _members(self, chat: str) -> list[_Client]:
        with self._lock:
            if self._run is None:
                raise ChannelError("the local chat is not running", retryable=True)
            members = [client for client in self._clients if client.chat == chat]
        if not members:
            raise _no_client(chat)
        return members

    # -- clients -----------------------------------------------------------------------

    def _accept_loop(self, run: _Run) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(run.server, selectors.EVENT_READ)
            selector.register(run.wake_reader, selectors.EVENT_READ)
            while not run.stopping.is_set():
                ready = {key.fileobj for key, _ in selector.select()}
                if run.wake_reader in ready or run.stopping.is_set():
                    return
                try:
                    conn, _ = run.server.accept()
                except OSError as exc:
                    # e.g. out of descriptors: the listening socket stays readable, so back
                    # off instead of spinning.
                    log.warning("local chat: accept failed: %s", exc)
                    run.stopping.wait(_ACCEPT_RETRY_DELAY)
                    continue
                self._admit(run, conn)

    def _admit(self, run: _Run, conn: socket.socket) -> None:
        _set_send_timeout(conn, self._send_timeout)
        client = _Client(conn, f"client-{next(self._client_numbers)}")
        client.thread = threading.Thread(
            target=self._serve_client, args=(client, run.on_event), name=f"local-chat-{client.name}", daemon=True
        )
        with self._lock:
            if self._run is not run:
                conn.close()
                return
            full = self._connected >= self._max_clients
            if not full:
                self._connected += 1
                self._clients.add(client)
                try:
                    # Started under the lock so stop() never sees a client whose thread it
                    # cannot join.
                    client.thread.start()
                except RuntimeError as exc:  # out of threads: the slot must not leak
                    self._connected -= 1
                    self._clients.discard(client)
                    log.warning("local chat: cannot serve %s: %s", client.name, exc)
                    conn.close()
                    return
        if full:
            log.info("local chat: refused a client, %d are connected already", self._max_clients)
            _refuse(conn, f"too many local chat clients (at most {self._max_clients}); try again later")
            return
        log.debug("local chat: %s connected", client.name)

    def _serve_client(self, client: _Client, on_event: OnEvent) -> None:
        try:
            self._read_and_answer(client, on_event)
        except OSError as exc:
            log.debug("local chat: %s: %s", client.name, exc)
        finally:
            self._forget(client)
            client.close()
            with self._lock:
                self._connected -= 1
            log.debug("local chat: %s disconnected", client.name)

    def _read_and_answer(self, client: _Client, on_event: OnEvent) -> None:
        """Reads and hands over; a second thread answers, in order, as the host stores each
        message. So a client that writes line after line never waits for one commit before
        the next line is read, and a burst shares its sessions' commits."""
        answers: queue.Queue[_Answer | _End | None] = queue.Queue(maxsize=MAX_UNANSWERED)
        answering = threading.Thread(
            target=_answer, args=(client, answers), name=f"local-chat-{client.name}-answers", daemon=True
        )
        answering.start()
        try:
            for lines in _read_batches(client.sock):
                if client.hung_up:
                    break
                for line in lines:
                    # Blocks once MAX_UNANSWERED are waiting: a client cannot outrun the host.
                    answers.put(self._handle_line(client, line, on_event))
        except _HangUpError as exc:
            log.info("local chat: closing %s: %s", client.name, exc)
            # Queued behind the answers still owed, so the client hears them first.
            answers.put(_error(str(exc)))
        finally:
            answers.put(_END)
            _join(answering)
            if answering.is_alive():
                # Still waiting on the host for an ack (at most _STORE_TIMEOUT_S). Hanging
                # up makes it skip whatever is queued behind that one; waiting for it keeps
                # the slot taken until both of this connection's threads have ended.
                client.hang_up()
                answering.join()

    def _drop(self, client: _Client) -> None:
        self._forget(client)
        client.hang_up()

    def _forget(self, client: _Client) -> None:
        with self._lock:
            self._clients.discard(client)

    def _handle_line(self, client: _Client, line: bytes, on_event: OnEvent) -> _Answer | None:
        """What to answer the line with: a reply now, or a message handed to the host.
        Raises _HangUpError for a line after which the connection must close."""
        if not line.strip():
            return None  # blank lines are harmless (e.g. typed into netcat)
        message_id: str | None = None
        try:
            request = _parse(line)
            if not isinstance(request, _JoinRequest):
                message_id = self._next_id("cli")
                _check_fits(request, message_id)
        except _BadRequestError as exc:
            return _error(str(exc))
        with self._lock:
            # Joining first means a reply the host produces meanwhile finds the client.
            client.chat = request.chat
        if message_id is None or isinstance(request, _JoinRequest):
            return {"type": "joined", "chat": request.chat}
        try:
            stored = on_event(_to_event(request, message_id))
        except Exception as exc:  # the contract says it never raises; the sender hears if it does
            stored = pykka.ThreadingFuture()
            stored.set_exception((type(exc), exc, exc.__traceback__))
        return _Handed(stored, message_id)

    def _next_id(self, kind: str) -> str:
        with self._ids_lock:
            number = next(self._ids)
        return f"{kind}-{self._id_prefix}-{number}"


@dataclass(frozen=True)
class _Handed:
    stored: Stored
    message_id: str


_Answer = dict[str, Any] | _Handed

# The host answers once the row is committed; a longer wait means something is stuck, and
# the sender is told so rather than kept waiting for ever.
_STORE_TIMEOUT_S = 60.0


class _End:
    """The reader is done: nothing more to answer."""


_END = _End()


def _answer(client: _Client, answers: queue.Queue[_Answer | _End | None]) -> None:
    while not isinstance(answer := answers.get(), _End):
        if client.hung_up:
            continue  # nobody to tell; the rest are drained until the reader's end
        try:
            client.write(_settle(answer))
        except OSError as exc:
            log.debug("local chat: %s: %s", client.name, exc)
            client.hang_up()


def _settle(answer: _Answer | None) -> dict[str, Any] | None:
    """The line to send back; for a handed-over message, only once the host has stored it,
    because the ack promises exactly that."""
    if not isinstance(answer, _Handed):
        return answer
    try:
        answer.stored.get(timeout=_STORE_TIMEOUT_S)
    except Exception as exc:
        if not isinstance(exc, ValueError | pykka.Timeout):
            log.error("local chat: the host did not take message %s: %s", answer.message_id, exc)
        reason = str(exc) or type(exc).__name__
        return _error(f"the host could not take the message: {reason}")
    return {"type": "ack", "id": answer.message_id}


# -- socket plumbing --------------------------------------------------------------------


def _listen(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        clear_for_bind(path, replace_foreign=False)
    except OSError as exc:
        raise ChannelError(f"cannot listen for local chat on {path}: {exc}", retryable=False) from exc
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound = False
    try:
        # Linux gives the new socket file the mode of the unbound socket, so it is private
        # from the moment it exists; the chmod after bind covers systems that ignore this.
        with contextlib.suppress(OSError):
            os.fchmod(server.fileno(), 0o600)
        server.bind(str(path))
        bound = True
        os.chmod(path, 0o600)
        server.listen(16)
    except OSError as exc:
        server.close()
        if bound:
            path.unlink(missing_ok=True)
        raise ChannelError(f"cannot listen for local chat on {path}: {exc}", retryable=False) from exc
    return server


def _set_send_timeout(conn: socket.socket, seconds: float) -> None:
    # SO_SNDTIMEO bounds writes only; a plain settimeout would also end the idle reads.
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except OSError as exc:
        log.warning("local chat: cannot bound send time: %s", exc)


def _refuse(conn: socket.socket, reason: str) -> None:
    """Tell a client we will not serve it, then close. Runs on the accept thread, so the
    write must never wait: an error line fits in a fresh socket's buffer, and if it somehow
    does not, the client just sees the connection close."""
    try:
        conn.setblocking(False)
        conn.send(_encode(_error(reason)))
    except OSError as exc:
        log.debug("local chat: could not tell a refused client why: %s", exc)
    finally:
        conn.close()


def _join(thread: threading.Thread | None) -> None:
    if thread is None or thread is threading.current_thread():
        return
    thread.join(_JOIN_TIMEOUT)
    if thread.is_alive():
        log.warning("local chat: %s did not finish within %.0fs", thread.name, _JOIN_TIMEOUT)


def _read_batches(sock: socket.socket) -> Iterator[list[bytes]]:
    """The complete lines of each read from the client. A line over MAX_LINE_BYTES raises
    _HangUpError (after the lines before it), as soon as the cap is passed, newline or not.

    An unfinished line is kept as the reads' own chunks, never grown in one buffer: it holds
    at most MAX_LINE_BYTES plus one read, and nothing outlives the line it belongs to."""
    pending: list[bytes] = []  # the unfinished line's chunks
    pending_bytes = 0
    while True:
        chunk = sock.recv(_RECV_BYTES)
        if not chunk:
            if pending:
                yield [b"".join(pending)]  # a last line without its newline still counts
            return
        lines: list[bytes] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if pending_bytes + end - start > MAX_LINE_BYTES:
                break
            if pending:
                lines.append(b"".join((*pending, chunk[start:end])))
                pending, pending_bytes = [], 0
            else:
                lines.append(chunk[start:end])
            start = end + 1
        else:
            if start < len(chunk):
                pending.append(chunk[start:])
                pending_bytes += len(chunk) - start
            if pending_bytes <= MAX_LINE_BYTES:
                if lines:
                    yield lines
                continue
        # Either the line just ended past the cap or it passed the cap unfinished.
        if lines:
            yield lines
        raise _HangUpError(f"line longer than {MAX_LINE_BYTES} bytes; closing the connection")


# -- the wire format --------------------------------------------------------------------


def _encode(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj) + b"\n"


def _chat_of(to: Routing) -> str:
    if not to.platform_id:
        raise ChannelError("a local chat message needs a chat to go to", retryable=False)
    return to.platform_id


def _error(reason: str) -> dict[str, Any]:
    return {"type": "error", "error": reason}


def _no_client(chat: str) -> ChannelError:
    return ChannelError(f"no local chat client is connected to chat {chat!r}", retryable=True)


def _decode(line: bytes) -> object:
    if nests_deeper(line, MAX_DEPTH):
        raise _HangUpError(f"JSON nested deeper than {MAX_DEPTH} levels; closing the connection")
    try:
        return msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        raise _HangUpError(f"not valid JSON ({exc}); closing the connection") from exc
    except RecursionError as exc:  # nests_deeper should have caught it; never let it end the thread
        raise _HangUpError(f"JSON nested too deep; closing the connection ({exc})") from exc


def _max_length(annotated: object) -> int:
    """The max_length a protocol type declares, so the caps are defined in one place."""
    for meta in typing.get_args(annotated)[1:]:
        if isinstance(meta, msgspec.Meta) and meta.max_length is not None:
            return meta.max_length
    raise TypeError(f"{annotated!r} declares no max_length")


# A message's text and a question's answer are `Text` in the protocol; names and ids
# (sender, chat, thread, question id) have no looser use here than a `Short` id.
_TEXT_CHARS = MAX_TEXT_CHARS
_NAME_CHARS = _max_length(Short)


def _parse(line: bytes) -> _Request:
    obj = _decode(line)
    if not isinstance(obj, dict):
        raise _BadRequestError(f"expected a JSON object, got {_json_type(obj)}")
    kinds = [key for key in ("text", "answer", "join") if key in obj]
    if len(kinds) > 1:
        raise _BadRequestError(f"a line carries one of 'text', 'answer' or 'join', not {' and '.join(kinds)}")
    if not kinds:
        raise _BadRequestError("missing 'text' (a message), 'answer' or 'join'")
    if kinds[0] == "join":
        return _JoinRequest(chat=_required_str(obj, "join", _NAME_CHARS))
    chat = _optional_str(obj, "chat", _NAME_CHARS) or DEFAULT_CHAT
    thread = _optional_str(obj, "thread", _NAME_CHARS)
    if kinds[0] == "answer":
        return _AnswerRequest(
            chat=chat,
            question_id=_required_str(obj, "question_id", _NAME_CHARS),
            answer=_required_str(obj, "answer", _TEXT_CHARS),
            sender=_optional_str(obj, "sender", _NAME_CHARS),
            thread=thread,
        )
    sender = _required_str(obj, "sender", _NAME_CHARS)
    return _ChatRequest(
        chat=chat,
        text=_required_str(obj, "text", _TEXT_CHARS),
        sender=sender,
        sender_id=_optional_str(obj, "sender_id", _NAME_CHARS) or sender,
        thread=thread,
    )


def _required_str(obj: dict[str, Any], key: str, max_chars: int) -> str:
    value = _optional_str(obj, key, max_chars)
    if value is None:
        raise _BadRequestError(f"missing '{key}'")
    return value


def _optional_str(obj: dict[str, Any], key: str, max_chars: int) -> str | None:
    """A non-empty string of at most max_chars characters, or None when the key is absent
    or null."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _BadRequestError(f"'{key}' must be a string, got {_json_type(value)}")
    if not value.strip():
        raise _BadRequestError(f"'{key}' must not be empty")
    if len(value) > max_chars:
        raise _BadRequestError(f"'{key}' is {len(value)} characters, more than {max_chars}")
    return value


def _check_fits(request: _ChatRequest | _AnswerRequest, message_id: str) -> None:
    """Refuse a message the protocol would refuse once stored. Every field can be within
    its cap while the whole is not (64k emoji are 256 KiB of UTF-8), so this measures the
    content the host will store: the Supervisor builds the same ChatIn / QuestionAnswer
    (actors/supervisor.py), and decode_content rejects anything over MAX_CONTENT_BYTES."""
    content: ChatIn | QuestionAnswer
    if isinstance(request, _AnswerRequest):
        content = QuestionAnswer(question_id=request.question_id, answer=request.answer, answered_by=request.sender)
    else:
        content = ChatIn(
            text=request.text, sender=request.sender, sender_id=request.sender_id, platform_message_id=message_id
        )
    size = len(encode_content(content).encode())
    if size > MAX_CONTENT_BYTES:
        raise _BadRequestError(f"the message is {size} bytes once stored, more than {MAX_CONTENT_BYTES}")


def _json_type(value: object) -> str:
    names: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _to_event(request: _ChatRequest | _AnswerRequest, message_id: str) -> InboundEvent:
    if isinstance(request, _AnswerRequest):
        return InboundAnswer(
            channel_type=CHANNEL_TYPE,
            platform_id=request.chat,
            question_id=request.question_id,
            answer=request.answer,
            sender=request.sender,
            thread_id=request.thread,
        )
    return InboundChat(
        channel_type=CHANNEL_TYPE,
        platform_id=request.chat,
        text=request.text,
        sender=request.sender,
        sender_id=request.sender_id,
        thread_id=request.thread,
        platform_message_id=message_id,
        # Everything typed here is addressed to the assistant: there is no one else to talk to.
        mentions_assistant=True,
    )
