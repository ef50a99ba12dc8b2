"""The client end of the host's control socket (`actors.control.server`): one request, one
reply (docs/ARCHITECTURE.md, "The control socket")."""

from __future__ import annotations

import socket
from pathlib import Path

import msgspec

from actors.control.requests import Reply, Request, encoder, reply_decoder

# Longer than the host's own longest wait (an agent given its stop grace, then killed).
REPLY_TIMEOUT_S = 120.0
_MAX_REPLY_BYTES = 64 * 1024


class ControlSocketError(OSError):
    """The host holds the data folder but its control socket does not answer."""


def submit(socket_path: Path, request: Request, timeout_s: float = REPLY_TIMEOUT_S) -> Reply:
    """Send one request to a running host and wait for its reply."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout_s)
            conn.connect(str(socket_path))
            conn.sendall(encoder.encode(request) + b"\n")
            data = bytearray()
            while b"\n" not in data and len(data) <= _MAX_REPLY_BYTES:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise ControlSocketError(f"the host's control socket {socket_path} does not answer: {exc}") from exc
    line = bytes(data).split(b"\n", 1)[0]
    if not line:
        raise ControlSocketError(f"the host closed its control socket {socket_path} without a reply (busy?)")
    try:
        return reply_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ControlSocketError(f"the host's control socket answered something else: {exc}") from exc
