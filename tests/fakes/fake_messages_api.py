"""A scripted stand-in for the Anthropic Messages API, served over real HTTP.

Tests point the real `anthropic` SDK at it (loopback TCP, and optionally a Unix socket like
the host's credential proxy) so that streaming, retries, timeouts and error mapping are
exercised through the same code paths as production. Replies are taken from a queue of
`FakeReply` values; every request is recorded for assertions.
"""

from __future__ import annotations

import hashlib
import http.server
import itertools
import json
import os
import socket
import socketserver
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

ReplyKind = Literal["message", "error", "stall"]

# The `error.type` the real API reports for each status code.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# Deltas are cut into pieces this long so the SDK's accumulation is exercised.
_DELTA_CHUNK = 8

_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):06d}"


@dataclass(frozen=True)
class FakeUsage:
    """Token counts reported for a reply; set them high to make a provider compact."""

    input_tokens: int = 10
    output_tokens: int = 5
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True)
class FakeReply:
    """One scripted answer to one `POST /v1/messages`. Build it with the class methods."""

    kind: ReplyKind
    content: tuple[dict[str, Any], ...] = ()
    stop_reason: str = "end_turn"
    usage: FakeUsage | None = None
    status: int = 200
    error_message: str = ""
    mid_stream: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    stall_seconds: float = 0.0
    before_headers: bool = False

    @classmethod
    def text(cls, text: str, *, usage: FakeUsage | None = None, stop_reason: str = "end_turn") -> FakeReply:
        return cls("message", content=({"type": "text", "text": text},), stop_reason=stop_reason, usage=usage)

    @classmethod
    def tool_use(
        cls,
        name: str,
        input: dict[str, Any],
        id: str | None = None,
        *,
        text: str | None = None,
        usage: FakeUsage | None = None,
    ) -> FakeReply:
        """A model turn asking for one tool call, optionally preceded by some text."""
        blocks: list[dict[str, Any]] = [] if text is None else [{"type": "text", "text": text}]
        blocks.append(tool_use_block(name, input, id))
        return cls("message", content=tuple(blocks), stop_reason="tool_use", usage=usage)

    @classmethod
    def blocks(
        cls, content: Iterable[dict[str, Any]], *, stop_reason: str = "end_turn", usage: FakeUsage | None = None
    ) -> FakeReply:
        """Any content (e.g. several `tool_use_block`s) with any stop reason."""
        return cls("message", content=tuple(content), stop_reason=stop_reason, usage=usage)

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        retry_after_ms: int | None = 1,
        mid_stream: bool = False,
        headers: dict[str, str] | None = None,
    ) -> FakeReply:
        """An API error. `retry_after_ms` keeps the SDK's retry back-off from slowing tests
        (None sends no hint). `mid_stream` answers 200 and sends an SSE `error` event after
        `message_start`, as the API does when it fails during generation."""
        extra = dict(headers or {})
        if retry_after_ms is not None:
            extra.setdefault("retry-after-ms", str(retry_after_ms))
        return cls(
            "error",
            status=status,
            error_message=message or f"fake error {status}",
            mid_stream=mid_stream,
            headers=tuple(extra.items()),
        )

    @classmethod
    def stall(cls, seconds: float, *, before_headers: bool = False) -> FakeReply:
        """Go silent for `seconds` (cut short when the server stops): after `message_start`
        by default, or before any response byte with `before_headers`."""
        return cls("stall", stall_seconds=seconds, before_headers=before_headers)


def tool_use_block(name: str, input: dict[str, Any], id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": id or _next_id("toolu"), "name": name, "input": input}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    raw_body: bytes
    body: Any  # the decoded JSON, or None when the body was not JSON
    transport: Literal["tcp", "unix"]

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True


@dataclass
class _Shared:
    """State shared by the server threads; every access holds `lock`."""

    default_usage: FakeUsage
    lock: threading.Condition = field(default_factory=threading.Condition)
    replies: deque[FakeReply] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    context: FakeContext | None = None
    responder: Callable[[Any], FakeReply | None] | None = None


class FakeMessagesAPI:
    """The fake server. Use it as a context manager, or call `start()` and `stop()`.

    `base_url` is the loopback URL; `socket_path` the Unix socket when one was asked for.
    """

    def __init__(
        self,
        replies: Iterable[FakeReply] = (),
        *,
        unix_socket: str | os.PathLike[str] | None = None,
        default_usage: FakeUsage | None = None,
        context: FakeContext | None = None,
        responder: Callable[[Any], FakeReply | None] | None = None,
    ) -> None:
        """`responder` answers (from the request body) when no scripted reply is queued, for
        sessions too long to script; None from it means the default echo."""
        self._shared = _Shared(default_usage=default_usage or FakeUsage(), context=context, responder=responder)
        self._shared.replies.extend(replies)
        self._socket_path = None if unix_socket is None else str(unix_socket)
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self._base_url: str | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeMessagesAPI:
        tcp = _TCPServer(("127.0.0.1", 0), _Handler, self._shared)
        self._base_url = f"http://127.0.0.1:{tcp.server_address[1]}"
        self._servers.append(tcp)
        if self._socket_path is not None:
            Path(self._socket_path).unlink(missing_ok=True)
            self._servers.append(_UnixServer(self._socket_path, _Handler, self._shared))
        for server in self._servers:
            # A short poll interval only so that stop() returns promptly.
            thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-messages-api", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        # Wake stalled handlers first so that nothing holds a connection open.
        self._shared.stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._socket_path is not None:
            Path(self._socket_path).unlink(missing_ok=True)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeMessagesAPI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the fake Messages API is not started")
        return self._base_url

    @property
    def socket_path(self) -> str | None:
        return self._socket_path

    # -- scripting -------------------------------------------------------------------

    def enqueue(self, *replies: FakeReply) -> None:
        with self._shared.lock:
            self._shared.replies.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        with self._shared.lock:
            return len(self._shared.replies)

    @property
    def default_usage(self) -> FakeUsage:
        with self._shared.lock:
            return self._shared.default_usage

    @default_usage.setter
    def default_usage(self, usage: FakeUsage) -> None:
        with self._shared.lock:
            self._shared.default_usage = usage

    # -- recordings ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._shared.lock:
            return list(self._shared.requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `count` requests arrived (for tests that drive the client
        from another thread); raises TimeoutError otherwise."""
        with self._shared.lock:
            if not self._shared.lock.wait_for(lambda: len(self._shared.requests) >= count, timeout):
                raise TimeoutError(f"expected {count} requests, got {len(self._shared.requests)}")
            return list(self._shared.requests)


class _TCPServer(http.server.ThreadingHTTPServer):
    # Handler threads may sit on idle keep-alive connections; never wait for them.
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], shared: _Shared) -> None:
        self.shared = shared
        self.transport: Literal["tcp", "unix"] = "tcp"
        super().__init__(address, handler)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, handler: type[_Handler], shared: _Shared) -> None:
        self.shared = shared
        self.transport: Literal["tcp", "unix"] = "unix"
        super().__init__(path, handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An idle keep-alive connection is dropped after this long so that handler threads end.
    timeout = 10

    @property
    def _shared(self) -> _Shared:
        shared: _Shared = getattr(self.server, "shared")  # noqa: B009 - set by both server classes
        return shared

    def setup(self) -> None:
        # Headers and body go out as separate writes: with Nagle's algorithm on, the client's
        # delayed ACK holds every answer back some 40 ms, which long sessions add up.
        super().setup()
        if getattr(self.server, "transport", "tcp") == "tcp":
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: test output stays readable (and Unix-socket peers have no address)."""

    def address_string(self) -> str:
        return str(self.client_address or "unix")

    def do_POST(self) -> None:
        request = self._record()
        try:
            path = request.path.split("?")[0]
            context = self._shared.context
            if context is not None and path in ("/v1/messages", "/v1/messages/count_tokens"):
                refusal = context.refusal(request.body)
                if refusal is not None:
                    self._send_error_json(400, refusal)
                    return
                if path == "/v1/messages/count_tokens":
                    self._send_json(200, {"input_tokens": context.tokens(request.body)})
                    return
            if path == "/v1/messages/count_tokens":
                self._count_tokens(self._next_reply(request))
                return
            if path != "/v1/messages":
                self._send_error_json(404, f"no such path: {request.path}")
                return
            reply = self._next_reply(request)
            self._answer(request, reply)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            # The client gave up (read timeout, closed stream); nothing left to tell it.
            self.close_connection = True

    # -- request side ----------------------------------------------------------------

    def _record(self) -> RecordedRequest:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            raw_body=raw,
            body=body,
            transport=getattr(self.server, "transport", "tcp"),
        )
        with self._shared.lock:
            self._shared.requests.append(recorded)
            self._shared.lock.notify_all()
        return recorded

    def _next_reply(self, request: RecordedRequest) -> FakeReply:
        with self._shared.lock:
            if self._shared.replies:
                return self._shared.replies.popleft()
            responder = self._shared.responder
        if responder is not None and (answer := responder(request.body)) is not None:
            return answer
        # No usage of its own: the default, or what a FakeContext works out.
        return FakeReply("message", content=({"type": "text", "text": _echo(request.body)},))

    # -- response side ---------------------------------------------------------------

    def _answer(self, request: RecordedRequest, reply: FakeReply) -> None:
        if reply.kind == "stall" and reply.before_headers:
            self._shared.stopping.wait(reply.stall_seconds)
            self.close_connection = True
            return
        if reply.kind == "error" and not (reply.mid_stream and request.stream):
            self._send_error_json(reply.status, reply.error_message, dict(reply.headers))
            return
        message = self._message(request, reply)
        if request.stream:
            self._send_stream(message, reply)
        else:
            self._send_json(200, message)

    def _message(self, request: RecordedRequest, reply: FakeReply) -> dict[str, Any]:
        context = self._shared.context
        compaction = context.compaction_for(request.body) if context is not None and reply.kind == "message" else None
        if compaction is not None:
            reply = replace(reply, content=(compaction, *reply.content))
        usage = reply.usage
        if usage is None and self._shared.context is not None:
            usage = self._shared.context.usage(request.body)
        if usage is None:
            with self._shared.lock:
                usage = self._shared.default_usage
        model = request.body.get("model", "claude-fake") if isinstance(request.body, dict) else "claude-fake"
        return {
            "id": _next_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [dict(block) for block in reply.content],
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": usage.to_json(),
        }

    def _send_stream(self, message: dict[str, Any], reply: FakeReply) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", _next_id("req"))
        self.end_headers()
        start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
        self._event("message_start", {"type": "message_start", "message": start})
        if reply.kind == "stall":
            self._shared.stopping.wait(reply.stall_seconds)
            self.close_connection = True
            return
        if reply.kind == "error":
            error_type = _ERROR_TYPES.get(reply.status, "api_error")
            self._event("error", {"type": "error", "error": {"type": error_type, "message": reply.error_message}})
            self._end_chunks()
            return
        self._event("ping", {"type": "ping"})
        for index, block in enumerate(message["content"]):
            for name, data in _block_events(index, block):
                self._event(name, data)
        delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        usage = {"output_tokens": message["usage"]["output_tokens"]}
        self._event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        self._event("message_stop", {"type": "message_stop"})
        self._end_chunks()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _count_tokens(self, reply: FakeReply) -> None:
        """A scripted error is answered as is; anything else counts `input_tokens` of its usage."""
        if reply.kind == "error":
            self._send_error_json(reply.status, reply.error_message, dict(reply.headers))
            return
        usage = reply.usage or self._shared.default_usage
        self._send_json(200, {"input_tokens": usage.input_tokens})

    def _send_error_json(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        error_type = _ERROR_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": _next_id("req")}
        self._send_json(status, body, headers)

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", body.get("request_id") or _next_id("req"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _block_events(index: int, block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The content_block_start/delta/stop events the API streams for one block."""
    if block["type"] == "text":
        yield (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": {**block, "text": ""}},
        )
        for piece in _chunks(block["text"]):
            delta = {"type": "text_delta", "text": piece}
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    elif block["type"] == "tool_use":
        start = {**block, "input": {}}
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        for piece in _chunks(json.dumps(block["input"])):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    elif block["type"] == "compaction":
        # As the API streams it: the signature with the start, the summary in one delta.
        start = {**block, "content": None, "encrypted_content": None}
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        summary = {
            "type": "compaction_delta",
            "content": block.get("content"),
            "encrypted_content": block.get("encrypted_content"),
        }
        yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": summary}
    else:
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def _chunks(text: str) -> Iterator[str]:
    for start in range(0, len(text), _DELTA_CHUNK):
        yield text[start : start + _DELTA_CHUNK]


def _echo(body: Any) -> str:
    """The default reply: echoes the last user text, so flows without a script still talk."""
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return f"echo: {content}"
        texts = [
            block.get("text", "") for block in content or [] if isinstance(block, dict) and block.get("type") == "text"
        ]
        if texts:
            return f"echo: {texts[-1]}"
    return "echo"


class FakeContext:
    """Opt-in (`FakeMessagesAPI(context=...)`): the size of a request and the prompt cache,
    modelled. Tokens are characters / 4 of the request's JSON. A request over `window`
    tokens is refused as the API does ("prompt is too long", not consuming a scripted
    reply); `count_tokens` answers the count; a reply without scripted usage reports cache
    reads and writes: each `cache_control` breakpoint caches the request up to it (its
    `cache_control` left out, as the API keys the cache) for its TTL on `clock` (seconds),
    and a later request reads the longest live prefix it shares."""

    CHARS_PER_TOKEN = 4

    def __init__(
        self,
        *,
        window: int | None = None,
        clock: Callable[[], float] | None = None,
        server_compaction: bool = False,
    ) -> None:
        """`server_compaction`: the `compact_20260112` edit is honoured. A request that asks
        for it and is over its trigger gets a (streamed) `compaction` block first in its
        reply, signed here; a request must send that block back verbatim and as the first
        block of `messages` (the SDK's `compaction_block_misplaced` and
        `compaction_content_mismatch` errors), and only what follows it is counted."""
        self.window = window
        self.server_compaction = server_compaction
        self._clock = clock or (lambda: 0.0)
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        # Every compaction made, in order: (tokens of the request it closed, its summary).
        self.compactions: list[tuple[int, str]] = []

    def tokens(self, body: Any) -> int:
        return sum(len(text) for text, _ in _segments(body)) // self.CHARS_PER_TOKEN

    def refusal(self, body: Any) -> str | None:
        """The API's error for a request it would refuse, or None."""
        if self.server_compaction and (wrong := _compaction_refusal(body)) is not None:
            return wrong
        ttls = [ttl for _, ttl in _segments(body) if ttl is not None]
        if "5m" in ttls and "1h" in ttls[ttls.index("5m") :]:
            return "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block"
        size = self.tokens(body)
        if self.window is not None and size > self.window:
            return f"prompt is too long: {size} tokens > {self.window} maximum"
        return None

    def usage(self, body: Any) -> FakeUsage:
        now = self._clock()
        digest = hashlib.sha256()
        chars = 0
        breakpoints: list[tuple[str, int, float]] = []  # (prefix hash, tokens up to it, TTL seconds)
        for text, ttl in _segments(body):
            digest.update(text.encode())
            chars += len(text)
            if ttl is not None:
                lifetime = 3600.0 if ttl == "1h" else 300.0
                breakpoints.append((digest.hexdigest(), chars // self.CHARS_PER_TOKEN, lifetime))
        total = chars // self.CHARS_PER_TOKEN
        with self._lock:
            read = 0
            for key, size, _ in breakpoints:
                if self._expiry.get(key, -1.0) > now:
                    read = max(read, size)
            written = 0
            for key, size, lifetime in breakpoints:
                # A read refreshes an entry's lifetime; what was not cached is written.
                self._expiry[key] = max(self._expiry.get(key, -1.0), now + lifetime)
                written = max(written, size)
        creation = max(0, written - read)
        return FakeUsage(
            input_tokens=max(0, total - read - creation),
            cache_read_input_tokens=read,
            cache_creation_input_tokens=creation,
            output_tokens=5,
        )

    def compaction_for(self, body: Any) -> dict[str, Any] | None:
        """The `compaction` block the reply to `body` starts with, or None: only with
        `server_compaction`, when the request asks for the edit and is over its trigger."""
        if not self.server_compaction or not isinstance(body, dict):
            return None
        edits = (body.get("context_management") or {}).get("edits") or []
        edit = next((edit for edit in edits if edit.get("type") == "compact_20260112"), None)
        if edit is None:
            return None
        # The API's default trigger when the edit names none.
        trigger = (edit.get("trigger") or {}).get("value", 150_000)
        size = self.tokens(body)
        if size <= trigger:
            return None
        with self._lock:
            summary = f"SERVER SUMMARY {len(self.compactions) + 1} of {len(body.get('messages') or [])} messages"
            self.compactions.append((size, summary))
        return {
            "type": "compaction",
            "content": summary,
            "encrypted_content": f"opaque-{len(summary)}",
            "signature": _signature(summary),
            "tool_changes": [],
        }


def _signature(summary: str) -> str:
    return "sig-" + hashlib.sha256(summary.encode()).hexdigest()[:32]


def _compaction_refusal(body: Any) -> str | None:
    """What the API says of a compaction block sent back wrongly: not first in `messages`
    (the client must drop what it replaced), or not as it was returned."""
    messages = body.get("messages") if isinstance(body, dict) else None
    for number, message in enumerate(messages or []):
        content = message.get("content") if isinstance(message, dict) else None
        for position, block in enumerate(content if isinstance(content, list) else []):
            if not isinstance(block, dict) or block.get("type") != "compaction":
                continue
            if (number, position) != (0, 0):
                return "compaction_block_misplaced: the compaction block must be the first block of the conversation"
            if block.get("content") is not None and block.get("signature") != _signature(block["content"]):
                return "compaction_content_mismatch: the compaction block's content differs from its signature"
    return None


def _segments(body: Any) -> Iterator[tuple[str, str | None]]:
    """The request in cache order (tools, system, messages), a piece per block: its JSON
    without `cache_control`, and the TTL of its breakpoint (None: not one). Messages count
    from the latest `compaction` block on."""
    if not isinstance(body, dict):
        return
    system = body.get("system")
    blocks: list[Any] = list(body.get("tools") or [])
    blocks += [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
    for tool_or_block in blocks:
        yield _segment(tool_or_block)
    # The API reads the conversation from its latest compaction block on.
    pieces: list[tuple[str, str | None]] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        role = json.dumps(message.get("role"))
        if isinstance(content, str):
            pieces.append((role + json.dumps(content), None))
            continue
        for block in content or []:
            if isinstance(block, dict) and block.get("type") == "compaction":
                pieces.clear()
            text, ttl = _segment(block)
            pieces.append((role + text, ttl))
    yield from pieces


def _segment(block: Any) -> tuple[str, str | None]:
    if not isinstance(block, dict):
        return json.dumps(block), None
    marker = block.get("cache_control")
    plain = {key: value for key, value in block.items() if key != "cache_control"}
    ttl = None if not isinstance(marker, dict) else str(marker.get("ttl") or "5m")
    return json.dumps(plain, sort_keys=True), ttl
