"""The host's control socket: `control.sock` in the data folder, one JSON request line in,
one JSON reply line out, then the connection closes.

Only the host's own user (or root) may connect: the file is 0600 in a folder only the host
writes, and the peer's uid is checked again on each connection (SO_PEERCRED). A request is
decoded strictly (`actors.control.requests`) from at most `MAX_REQUEST_BYTES`; anything
else is answered with a refusal, never acted on. At most `MAX_CONNECTIONS` are served at
once; the rest are closed unread. Requests run in the connection's own thread, never in an
actor's (docs/ARCHITECTURE.md, "The control socket")."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from actors.control.requests import MAX_REQUEST_BYTES, Reply, Request, encoder, request_decoder
from actors.socket_file import Identity, clear_for_bind, identity, remove_if_ours

log = logging.getLogger("hutch.control")

MAX_CONNECTIONS = 4
# A client has this long to send its line; a request that is being carried out may take
# longer (an agent stopping), which the client waits for.
READ_TIMEOUT_S = 10.0
# How soon a stop is noticed by the accept loop.
_POLL_S = 0.1

Execute = Callable[[Request], Reply]


class ControlServerError(OSError):
    """The control socket cannot be listened on."""


class ControlServer:
    """Serves `execute` on `path` from a thread of its own until `stop`."""

    def __init__(self, path: Path, execute: Execute) -> None:
        self._path = path
        self._execute = execute
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket_id: Identity | None = None

    @property
    def path(self) -> Path:
        return self._path

    def start(self) -> None:
        server = _Server(self._path, self._serve)
        self._socket_id = identity(self._path)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(_POLL_S,), name="control-socket", daemon=True
        )
        self._thread.start()
        log.info("control socket listening on %s", self._path)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(READ_TIMEOUT_S)
        remove_if_ours(self._path, self._socket_id)

    def _serve(self, conn: socket.socket) -> None:
        if not _trusted_peer(conn):
            _answer(conn, Reply(ok=False, message="only the host's own user may use its control socket"))
            return
        try:
            line = _read_line(conn)
            request: Request = request_decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, OSError) as exc:
            _answer(conn, Reply(ok=False, message=f"bad request: {exc}"))
            return
        try:
            reply = self._execute(request)
        except Exception as exc:
            log.exception("control: %s failed", type(request).__name__)
            reply = Reply(ok=False, message=f"the host failed to carry that out: {type(exc).__name__}: {exc}")
        _answer(conn, reply)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: Path, serve: Callable[[socket.socket], None]) -> None:
        super().__init__(os.fspath(path), _Handler, bind_and_activate=False)
        self.serve = serve
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        try:
            clear_for_bind(path, replace_foreign=False)
            # The socket is private from the moment its file exists (Linux takes the mode of
            # the unbound socket); the chmod covers systems that do not.
            with contextlib.suppress(OSError):
                os.fchmod(self.socket.fileno(), 0o600)
            self.server_bind()
            os.chmod(path, 0o600)
            self.server_activate()
        except OSError as exc:
            self.server_close()
            raise ControlServerError(f"cannot listen for control requests on {path}: {exc}") from exc

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: closed unread, the client says so
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.serve(self.request)


def _trusted_peer(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in {0, os.geteuid()}


def _read_line(conn: socket.socket) -> bytes:
    conn.settimeout(READ_TIMEOUT_S)
    data = bytearray()
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError(f"a request is at most {MAX_REQUEST_BYTES} bytes")
    line = bytes(data).split(b"\n", 1)[0]
    if not line.strip():
        raise ValueError("empty request")
    return line


def _answer(conn: socket.socket, reply: Reply) -> None:
    with contextlib.suppress(OSError):  # the client may have gone; nothing is owed to it
        conn.settimeout(READ_TIMEOUT_S)
        conn.sendall(encoder.encode(reply) + b"\n")
