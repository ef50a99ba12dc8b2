"""The credential proxy: how an agent reaches the model API without ever holding a key.

Each session gets its own Unix socket inside its session folder (the one folder its
container can see). The agent's SDK talks plain HTTP to that socket; the proxy forwards
the two calls an agent needs, `POST /v1/messages` and `POST /v1/messages/count_tokens`,
to the real API with the host's credentials added and streams the answer back unbuffered,
so server-sent events arrive as they are produced. Anything else is refused with a 403
and never leaves the host: the key would otherwise reach files, batches, models and the
organisation on the agent's say-so. Because every socket belongs to exactly one session,
the proxy knows who is calling without trusting anything the caller says (invariant 10).
It also reads the tokens each answer used as the bytes go by (`actors/usage_meter.py`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import selectors
import socket
import socketserver
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, cast

import httpx2

from actors.runtime.base import AgentUser
from actors.socket_file import clear_for_bind, identity, remove_if_ours
from actors.usage_meter import UsageBook, UsageMeter

if TYPE_CHECKING:
    from actors.budget_gate import BudgetRefusal

log = logging.getLogger("hutch.credentials")

# All an agent needs of the API (what the anthropic SDK's `messages.create`/`stream` and
# `count_tokens` send, beta variants included). The key is worth more than the model calls:
# everything else (files, batches, models, the organisation) stays out of the agent's reach.
_ALLOWED_METHOD: Final = "POST"
_ALLOWED_PATHS: Final = frozenset({"/v1/messages", "/v1/messages/count_tokens"})
_ALLOWED_QUERIES: Final = frozenset({"", "beta=true"})
# Of the agent's headers, only what the SDK sends for these calls goes upstream: a header
# such as X-HTTP-Method-Override or X-Original-URL could make a gateway in ANTHROPIC_BASE_URL
# serve another endpoint, and anthropic-workspace-id is the host's to choose, not the agent's.
# The proxy sets the rest itself: Host and framing for the upstream hop, credentials always,
# and no Accept-Encoding: an answer it cannot read would hide what it cost (usage_meter.py).
_FORWARDED_HEADERS: Final = frozenset({"content-type", "accept", "user-agent", "anthropic-version", "anthropic-beta"})
_FORWARDED_HEADER_PREFIX: Final = "x-stainless-"

# A percent escape may only stand for a character that means nothing to a path parser.
# Escaped "/", ".", "\", ";", "%" or NUL are how a path says one thing to this check and
# another to whatever normalises it further along, so they are refused, not decoded.
_PERCENT_ESCAPE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_HARMLESS_ESCAPED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~")

# Refused targets are logged; an agent must not be able to flood or forge log lines.
_LOGGED_TARGET_CHARS: Final = 200
# Of an upstream error's body, this much is kept (as it is relayed) to log the API's reason.
_KEPT_ERROR_BODY: Final = 16 * 1024
_LOGGED_ERROR_CHARS: Final = 300

# Meaningful for one connection only (RFC 9110 7.6.1), so never copied across the proxy.
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers"}
    | {"transfer-encoding", "upgrade", "proxy-connection", "expect"}
)
_RESPONSE_REPLACED: Final = frozenset({"content-length"})

# A Messages request tops out around 32 MB; anything far beyond is a misbehaving agent.
MAX_REQUEST_BODY: Final = 64 * 1024 * 1024
# Bodies go upstream as they arrive, in pieces of this size: what the host holds of an
# agent's requests is bounded by the connections, not by what the agent sends.
_BODY_CHUNK: Final = 64 * 1024

# An agent's SDK keeps one or two connections; past this an agent is only costing the host
# threads (one per connection), so further connections are closed at once.
MAX_CONNECTIONS_PER_SESSION: Final = 8
# A connection with no request (or no body byte) for this long is closed: its thread is freed.
_IDLE_TIMEOUT_S: Final = 120.0

# Connecting must be quick; a response may legitimately take minutes between bytes, and the
# agent side is where stalls are detected.
_UPSTREAM_TIMEOUT: Final = httpx2.Timeout(connect=10.0, read=None, write=60.0, pool=None)

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), NUL included.
_MAX_SOCKET_PATH: Final = 107


class CredentialProxy:
    """Forwards each session's model API calls with the host's credentials.

    `api_key` is sent as `x-api-key`, `auth_token` as `authorization: Bearer ...`. Without
    either, requests are answered with a 401 that says so, rather than failing somewhere
    less visible. With a `usage` book, the tokens of every Messages answer are recorded in it.
    """

    def __init__(
        self,
        upstream_base_url: str,
        api_key: str | None,
        auth_token: str | None = None,
        usage: UsageBook | None = None,
    ) -> None:
        self._upstream = _Upstream(upstream_base_url, api_key, auth_token)
        self._usage = usage
        self._lock = threading.Lock()
        self._servers: dict[str, _SessionServer] = {}
        self._counts: dict[str, int] = {}
        self._stopped = False
        if not self._upstream.has_credentials:
            log.warning("credential proxy has no API key or auth token: agents' model calls will fail")

    def open_socket(self, session_id: str, agent_group: str, socket_path: Path, owner: AgentUser | None = None) -> None:
        """Listen for `session_id`'s agent on `socket_path` (replacing any earlier socket of it).
        The socket is private to `owner`, the agent's uid (None: the host's own)."""
        if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
            raise ValueError(f"socket path too long for AF_UNIX ({len(os.fsencode(socket_path))} bytes): {socket_path}")
        with self._lock:
            if self._stopped:
                raise RuntimeError("the credential proxy is stopped")
            previous = self._servers.pop(session_id, None)
        if previous is not None:
            previous.close()
        server = _SessionServer.listen(
            socket_path, session_id, agent_group, self._upstream, self._count, owner, usage=self._usage
        )
        with self._lock:
            stopped = self._stopped
            if not stopped:
                self._servers[session_id] = server
                self._counts.setdefault(session_id, 0)
        if stopped:  # stop() ran while the socket was being set up
            server.close()
            raise RuntimeError("the credential proxy is stopped")
        log.info("[%s] credential proxy listening on %s", server.tag, socket_path)

    def close_socket(self, session_id: str) -> None:
        """Stop serving `session_id`: cut its open connections and remove its socket file."""
        with self._lock:
            server = self._servers.pop(session_id, None)
        if server is not None:
            server.close()
            log.info("[%s] credential proxy closed the session's socket", server.tag)

    def requests_by_session(self) -> dict[str, int]:
        """How many requests each session has made (closed sessions included)."""
        with self._lock:
            return dict(self._counts)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.close()
        self._upstream.close()

    def _count(self, session_id: str) -> None:
        with self._lock:
            self._counts[session_id] = self._counts.get(session_id, 0) + 1


class _Upstream:
    """The real API: where requests go and what credentials they carry."""

    def __init__(self, base_url: str, api_key: str | None, auth_token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials: list[tuple[str, str]] = []
        if api_key:
            self._credentials.append(("x-api-key", api_key))
        if auth_token:
            self._credentials.append(("authorization", f"Bearer {auth_token}"))
        # A bare transport, not a Client: no cookie jar shared between sessions, no default
        # headers, no redirects followed on an agent's behalf.
        self._transport = httpx2.HTTPTransport(limits=httpx2.Limits(max_connections=None, max_keepalive_connections=20))

    @property
    def has_credentials(self) -> bool:
        return bool(self._credentials)

    def send(
        self, method: str, target: str, headers: list[tuple[str, str]], body: Iterator[bytes], length: int
    ) -> httpx2.Response:
        """Send the request, its `length` bytes streamed from `body`, and return as soon as
        the status and headers are in."""
        request = httpx2.Request(
            method,
            self.base_url + target,
            headers=[*headers, ("content-length", str(length)), ("accept-encoding", "identity"), *self._credentials],
            content=body,
            extensions={"timeout": _UPSTREAM_TIMEOUT.as_dict()},
        )
        response = self._transport.handle_request(request)
        response.request = request
        return response

    def close(self) -> None:
        self._transport.close()


class _SessionServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One session's socket: a thread per connection, a wake-up pair to stop promptly."""

    daemon_threads = True
    # Closing a session must not wait for a streaming response to finish.
    block_on_close = False

    def __init__(
        self,
        path: Path,
        session_id: str,
        agent_group: str,
        upstream: _Upstream,
        count: Callable[[str], None],
        usage: UsageBook | None = None,
    ) -> None:
        super().__init__(str(path), _ProxyHandler, bind_and_activate=False)
        self.path = path
        self.session_id = session_id
        self.agent_group = agent_group
        self.tag = f"{agent_group}/{session_id[:8]}"
        self.upstream = upstream
        self._count = count
        self._usage = usage
        self._closing = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._refusing = False
        self._inode: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._serve, name=f"proxy-{self.tag}", daemon=True)

    @classmethod
    def listen(
        cls,
        path: Path,
        session_id: str,
        agent_group: str,
        upstream: _Upstream,
        count: Callable[[str], None],
        owner: AgentUser | None = None,
        usage: UsageBook | None = None,
    ) -> _SessionServer:
        # The agent can write in its session folder: whatever it left in the way goes.
        clear_for_bind(path, replace_foreign=True)
        server = cls(path, session_id, agent_group, upstream, count, usage)
        try:
            server.server_bind()
            server._inode = identity(path)
            # Tightened before listen(): until then every connection attempt is refused, so
            # there is no moment at which a looser mode could be used.
            os.chmod(path, 0o600)
            if owner is not None and os.geteuid() == 0:  # only root can give it away
                os.lchown(path, owner.uid, owner.gid)
            server.socket.setblocking(False)  # a vanished client must not block accept()
            server.server_activate()
        except BaseException:
            server._release()
            raise
        server._thread.start()
        return server

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            # Unblocks the handler: its next read sees EOF, its next write fails.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._release()

    def note_request(self) -> None:
        self._count(self.session_id)

    def usage_meter(self, target: str, response: httpx2.Response) -> UsageMeter | None:
        """A meter for an answer that bills tokens (a Messages answer, not an error or a
        count), when usage is being recorded."""
        if self._usage is None or target.partition("?")[0] != "/v1/messages" or not 200 <= response.status_code < 300:
            return None
        return UsageMeter(response.headers.get("content-type"), response.headers.get("content-encoding"))

    def budget_refusal(self, target: str) -> BudgetRefusal | None:
        """A Messages request of a group whose budget is spent; counting tokens costs nothing
        and passes."""
        if self._usage is None or target.partition("?")[0] != "/v1/messages":
            return None
        return self._usage.refusal(self.session_id, self.agent_group)

    def record_usage(self, meter: UsageMeter) -> None:
        if self._usage is not None:
            self._usage.record(self.session_id, self.agent_group, self.tag, meter.finish())

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, _ = self.socket.accept()
        conn.setblocking(True)
        with self._conns_lock:
            self._conns.add(conn)
        # BaseHTTPRequestHandler expects an (host, port) address; the caller is the session.
        return conn, (self.tag, 0)

    def verify_request(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> bool:
        """Past the cap a connection is closed before it costs a thread; said once per flood."""
        with self._conns_lock:
            allowed = len(self._conns) <= MAX_CONNECTIONS_PER_SESSION
            first_refusal = not allowed and not self._refusing
            self._refusing = not allowed
        if first_refusal:
            log.warning("[%s] refused connections past %d at once", self.tag, MAX_CONNECTIONS_PER_SESSION)
        return allowed

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        with self._conns_lock:
            if isinstance(request, socket.socket):
                self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: object) -> None:
        # Called from an except block. An agent hanging up mid-response is routine; anything
        # else is a proxy bug, worth a traceback in the log rather than on stderr.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.info("[%s] connection ended: %s", self.tag, exc)
        else:
            log.exception("[%s] proxy handler failed", self.tag)

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closing:
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not self._closing:
                        self.handle_request()

    def _release(self) -> None:
        self.server_close()
        self._wake_r.close()
        self._wake_w.close()
        # Only our own socket: a later open_socket may already have bound a new one here.
        remove_if_ours(self.path, self._inode)


class _BadRequestError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


class _RefusedError(Exception):
    """The request is not one the proxy forwards; the message says why (for the host log)."""


class _ProxyHandler(BaseHTTPRequestHandler):
    # Keep-alive saves the agent's SDK a connect per request; every response below is
    # either length-delimited, chunked, or followed by closing the connection.
    protocol_version = "HTTP/1.1"
    # A read (the next request, a piece of a body) that waits longer ends the connection.
    timeout = _IDLE_TIMEOUT_S

    @property
    def session(self) -> _SessionServer:
        return cast(_SessionServer, self.server)

    def _forward(self) -> None:
        session = self.session
        session.note_request()
        try:
            # Decided before anything else, the body included: a refused request costs the
            # host nothing and gets nowhere near the credentials.
            target = _upstream_target(self.command, self._raw_target)
        except _RefusedError as exc:
            self._refuse(str(exc))
            return
        if not session.upstream.has_credentials:
            self._send_error_json(401, "authentication_error", "the host has no Anthropic API credentials configured")
            return
        refusal = session.budget_refusal(target)
        if refusal is not None:
            # Before the body is read or anything goes upstream: a spent budget costs nothing.
            # `x-should-retry: false` keeps the SDK from retrying what only time or the owner
            # changes; the agent hands its batch back instead (docs/ARCHITECTURE.md, "Budgets").
            log.info("[%s] %s %s -> 429 budget: %s", session.tag, self.command, target, refusal.message)
            self._send_error_json(
                429,
                "budget_exceeded",
                refusal.message,
                [("retry-after", str(refusal.retry_after_s)), ("x-should-retry", "false")],
            )
            return
        try:
            body, length = self._body()
            response = session.upstream.send(self.command, target, self._forwarded_headers(), body, length)
        except _BadRequestError as exc:
            self.close_connection = True  # the rest of a refused body is never read
            log.warning("[%s] refused %s %s -> %d: %s", session.tag, self.command, target, exc.status, exc)
            self._send_error_json(exc.status, exc.error_type, str(exc))
            return
        except httpx2.InvalidURL as exc:
            self._send_error_json(400, "invalid_request_error", f"invalid request target: {exc}")
            return
        except httpx2.HTTPError as exc:
            log.warning("[%s] %s %s -> upstream unreachable: %s", session.tag, self.command, target, exc)
            self._send_error_json(502, "api_error", f"the model API could not be reached: {exc}")
            return
        failed = response.status_code >= 400
        if not failed:
            log.info("[%s] %s %s -> %d", session.tag, self.command, target, response.status_code)
        meter = session.usage_meter(target, response)
        try:
            kept = self._relay(response, keep=_KEPT_ERROR_BODY if failed else 0, meter=meter)
        finally:
            response.close()
            if meter is not None:  # after the last byte went to the agent, never before
                session.record_usage(meter)
        if failed:
            # The agent is told by the body itself; the host's log says why too, in one line.
            reason = _upstream_error(kept, response.headers.get("content-encoding"))
            log.warning("[%s] %s %s -> %d %s", session.tag, self.command, target, response.status_code, reason)

    # BaseHTTPRequestHandler dispatches on these names. They all go through the one check, so
    # a method is refused for the same reason a path is; any other method is caught in
    # send_error (the 501 the base class sends for it).
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815
    do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _forward  # noqa: N815

    @property
    def _raw_target(self) -> str:
        # The target exactly as sent: the base class already rewrites a leading "//" in
        # self.path, and the check must see what the agent wrote, not a first normalisation.
        words = self.requestline.split()
        return words[1] if len(words) >= 2 else self.path

    def _refuse(self, reason: str) -> None:
        log.warning(
            "[%s] refused %s %s: %s",
            self.session.tag,
            _loggable(self.command, 20),
            _loggable(self._raw_target, _LOGGED_TARGET_CHARS),
            reason,
        )
        self._send_error_json(
            403,
            "permission_error",
            "the credential proxy forwards only POST /v1/messages and POST /v1/messages/count_tokens",
        )

    def _forwarded_headers(self) -> list[tuple[str, str]]:
        return [
            (name, value)
            for name, value in self.headers.items()
            if name.lower() in _FORWARDED_HEADERS or name.lower().startswith(_FORWARDED_HEADER_PREFIX)
        ]

    def _body(self) -> tuple[Iterator[bytes], int]:
        """The request body as pieces read on demand, and its length. A chunked body is
        refused (411): its size is known only at its end, after the upstream got the start,
        and the SDK always sends a length. A body that ends early raises `_BadRequestError`
        from the iterator, which ends the upstream request too."""
        if self.headers.get("transfer-encoding") is not None:
            raise _BadRequestError(411, "invalid_request_error", "send the body with a Content-Length")
        raw_length = self.headers.get("content-length")
        if raw_length is None:
            return iter(()), 0
        try:
            length = int(raw_length)
        except ValueError:
            raise _BadRequestError(400, "invalid_request_error", "invalid Content-Length") from None
        if length < 0:
            raise _BadRequestError(400, "invalid_request_error", "invalid Content-Length")
        if length > MAX_REQUEST_BODY:
            raise _BadRequestError(413, "request_too_large", "request body too large")
        return self._pieces(length), length

    def _pieces(self, length: int) -> Iterator[bytes]:
        left = length
        while left > 0:
            piece = self.rfile.read(min(_BODY_CHUNK, left))
            if not piece:
                raise _BadRequestError(400, "invalid_request_error", "request body ended early")
            left -= len(piece)
            yield piece

    def _relay(self, response: httpx2.Response, keep: int = 0, meter: UsageMeter | None = None) -> bytes:
        """Pass status, headers and body on; body bytes leave as soon as they arrive. Returns
        the first `keep` bytes of the body as relayed. `meter` reads each piece once it is sent."""
        kept = bytearray()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw]
        connection_tokens = [v for k, v in headers if k.lower() == "connection"]
        self.send_response_only(response.status_code, response.reason_phrase or None)
        for name, value in _strip_headers(headers, _RESPONSE_REPLACED, connection_tokens):
            self.send_header(name, value)
        framing = self._send_framing_headers(response)
        self.end_headers()
        if framing == "none":
            return bytes(kept)
        try:
            for chunk in response.iter_raw():
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if framing == "chunked" else chunk)
                    kept += chunk[: keep - len(kept)]
                    if meter is not None:
                        meter.feed(chunk)
            if framing == "chunked":
                self.wfile.write(b"0\r\n\r\n")
        except httpx2.HTTPError as exc:
            # Headers are gone already; an unterminated body is how the agent learns of it.
            log.warning("[%s] upstream broke off %s %s: %s", self.session.tag, self.command, self.path, exc)
            self.close_connection = True
        except OSError as exc:
            log.info("[%s] agent went away during %s %s: %s", self.session.tag, self.command, self.path, exc)
            self.close_connection = True
        return bytes(kept)

    def _send_framing_headers(self, response: httpx2.Response) -> Literal["none", "raw", "chunked"]:
        """Send the framing headers and say how the body is to be written."""
        length = response.headers.get("content-length")
        status = response.status_code
        if self.command == "HEAD" or status in (204, 304) or 100 <= status < 200:
            if length is not None:
                self.send_header("Content-Length", length)
            return "none"
        if length is not None:
            self.send_header("Content-Length", length)
            return "raw"
        if self.request_version != "HTTP/1.0":
            self.send_header("Transfer-Encoding", "chunked")
            return "chunked"
        self.send_header("Connection", "close")
        return "raw"

    def _send_error_json(
        self, status: int, error_type: str, message: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        body = json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        # Whatever of the request body is still unread would be taken for the next request.
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            with contextlib.suppress(OSError):
                self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code == 501:
            # The base class's answer to a method with no do_* handler: to the agent it is
            # one more request the proxy does not forward, and it is logged as such.
            self.session.note_request()
            self._refuse("unsupported method")
            return
        # Malformed request lines, oversized headers and the like: answer in the API's error
        # shape, not HTML, and say in the host's log what was refused.
        log.warning(
            "[%s] refused %s -> %d: %s",
            self.session.tag,
            _loggable(getattr(self, "requestline", "") or "(no request line)", _LOGGED_TARGET_CHARS),
            code,
            message or self.responses.get(code, ("error",))[0],
        )
        error_type = "not_found_error" if code == 404 else "invalid_request_error"
        self._send_error_json(code, error_type, message or self.responses.get(code, ("error",))[0])

    def log_message(self, format: str, *args: object) -> None:
        log.debug("[%s] %s", self.address_string(), format % args)


def _upstream_target(method: str, target: str) -> str:
    """The request target to send upstream, or `_RefusedError` if the request is not allowed.

    The path is judged after decoding, and what goes upstream is the allowlisted path itself,
    never the agent's spelling of it: nothing the upstream (or anything between) might
    decode or normalise differently can then matter. The one query the SDK sends
    (`?beta=true`, on its beta calls) is the one query allowed: a gateway between the host
    and the API might read anything else as a different request.
    """
    # Printable ASCII only: whitespace, control characters (NUL among them) and non-ASCII
    # have no place in what an SDK sends, and each is a way to split or confuse a parser.
    if not target.isascii() or not target.isprintable() or " " in target:
        raise _RefusedError("unprintable or non-ASCII character in the target")
    # Origin form only: an absolute-form target ("http://elsewhere/...") or "*" names no path.
    if not target.startswith("/"):
        raise _RefusedError("not a path")
    if "#" in target or "\\" in target:
        raise _RefusedError("fragment or backslash in the target")
    raw_path, has_query, query = target.partition("?")
    if ";" in raw_path:
        raise _RefusedError("path parameters")
    path = _decode_path(raw_path)
    # Empty segments ("//", a trailing "/") and dot segments are normalised away by some
    # servers and kept by others; an allowed path has none, so none is accepted.
    segments = path.split("/")[1:]
    if any(segment in ("", ".", "..") for segment in segments):
        raise _RefusedError("empty or dot segment in the path")
    if path not in _ALLOWED_PATHS:
        raise _RefusedError("endpoint not allowed")
    if method != _ALLOWED_METHOD:
        raise _RefusedError("method not allowed")
    if has_query and query not in _ALLOWED_QUERIES:
        raise _RefusedError("query not allowed")
    return f"{path}?{query}" if query else path


def _decode_path(raw_path: str) -> str:
    """Percent-decode `raw_path`, refusing escapes of anything with meaning in a path."""
    for escape in _PERCENT_ESCAPE.finditer(raw_path):
        if chr(int(escape.group(1), 16)) not in _HARMLESS_ESCAPED:
            raise _RefusedError("percent-escaped separator, dot or control character in the path")
    decoded = _PERCENT_ESCAPE.sub(lambda escape: chr(int(escape.group(1), 16)), raw_path)
    # A "%" left over was not a valid escape ("%zz", "%4"): ambiguous, so refused.
    if "%" in decoded:
        raise _RefusedError("malformed percent escape in the path")
    return decoded


def _loggable(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with anything unprintable escaped, for one log line."""
    shown = text[:limit].encode("ascii", "backslashreplace").decode("ascii")
    shown = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in shown)
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"


def _upstream_error(body: bytes, encoding: str | None) -> str:
    """`type: message` of the API's error body, for one bounded log line; what there is of the
    body when it is not one."""
    if encoding is not None and encoding.strip().lower() in ("gzip", "deflate"):
        try:
            # 32 + 15: a gzip or a zlib header, whichever it is; a body cut short still yields its start.
            body = zlib.decompressobj(wbits=47).decompress(body, _KEPT_ERROR_BODY)
        except zlib.error:
            return f"(a {encoding} error body that does not decompress)"
    elif encoding is not None and encoding.strip().lower() != "identity":
        return f"(an error body in {_loggable(encoding, 20)})"
    try:
        error = json.loads(body)["error"]
        shown = f"{error['type']}: {error['message']}"
    except (ValueError, LookupError, TypeError):
        shown = body.decode("utf-8", "replace").strip() or "(no body)"
    return _loggable(" ".join(shown.split()), _LOGGED_ERROR_CHARS)


def _strip_headers(
    headers: Iterable[tuple[str, str]], replaced: frozenset[str], connection_values: list[str]
) -> list[tuple[str, str]]:
    # Headers named in Connection are hop-by-hop too, whatever they are called.
    listed = {token.strip().lower() for value in connection_values for token in value.split(",")}
    dropped = _HOP_BY_HOP | replaced | listed
    return [(name, value) for name, value in headers if name.lower() not in dropped]
