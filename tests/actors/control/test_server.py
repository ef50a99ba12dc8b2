"""The control socket: one strict request line in, one reply out; a garbled, oversized or
foreign request is refused unread, and its bounds hold."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.control.client import ControlSocketError, submit
from actors.control.requests import (
    MAX_REQUEST_BYTES,
    AddWebhookRoute,
    RemoveWebhookRoute,
    Reply,
    Request,
    RotateWebhookSecret,
    StopSession,
    reply_decoder,
)
from actors.control.server import MAX_CONNECTIONS, ControlServer, ControlServerError

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """An `execute` that records what it was asked; `hold` keeps it busy until released."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Semaphore(0)

    def __call__(self, request: Request) -> Reply:
        self.requests.append(request)
        self.entered.release()
        self.hold.wait(20)
        return Reply(ok=True, message=f"did {type(request).__name__}")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(tmp_path: Path, recorder: Recorder) -> Iterator[ControlServer]:
    made = ControlServer(tmp_path / "control.sock", recorder)
    made.start()
    yield made
    recorder.hold.set()
    made.stop()


def _raw(path: Path, payload: bytes) -> Reply:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    return reply_decoder.decode(data.split(b"\n")[0])


def test_a_request_is_carried_out_and_answered(server: ControlServer, recorder: Recorder) -> None:
    assert submit(server.path, StopSession(session="abc")) == Reply(ok=True, message="did StopSession")
    assert recorder.requests == [StopSession(session="abc")]


def test_the_socket_is_the_host_users_alone(server: ControlServer) -> None:
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600


@pytest.mark.parametrize(
    "payload",
    [
        b"not json\n",
        b'{"op": "sessions.stop"}\n',  # a field missing
        b'{"op": "sessions.stop", "session": "a", "extra": 1}\n',  # a field unknown
        b'{"op": "shell", "command": "rm -rf /"}\n',  # no such request
        b'{"op": "sessions.stop", "session": 5}\n',  # a field of the wrong type
        b"\n",
        b"",
    ],
)
def test_a_bad_request_is_refused_and_nothing_runs(server: ControlServer, recorder: Recorder, payload: bytes) -> None:
    reply = _raw(server.path, payload)
    assert not reply.ok
    assert reply.message.startswith("bad request")
    assert recorder.requests == []


def test_an_oversized_request_is_refused_unread(server: ControlServer, recorder: Recorder) -> None:
    reply = _raw(server.path, b'{"op": "sessions.stop", "session": "' + b"a" * MAX_REQUEST_BYTES + b'"}\n')
    assert reply == Reply(ok=False, message=f"bad request: a request is at most {MAX_REQUEST_BYTES} bytes")
    assert recorder.requests == []


def test_an_operation_that_fails_is_a_refusal_not_a_dead_server(tmp_path: Path) -> None:
    def broken(request: Request) -> Reply:
        raise RuntimeError("boom")

    made = ControlServer(tmp_path / "c.sock", broken)
    made.start()
    try:
        reply = submit(made.path, StopSession(session="x"))
        assert not reply.ok
        assert "RuntimeError: boom" in reply.message
        assert not submit(made.path, StopSession(session="x")).ok  # still serving
    finally:
        made.stop()


def test_connections_beyond_the_bound_are_closed_unread(server: ControlServer, recorder: Recorder) -> None:
    recorder.hold.clear()
    waiting: list[threading.Thread] = []
    replies: list[Reply] = []
    for _ in range(MAX_CONNECTIONS):
        thread = threading.Thread(target=lambda: replies.append(submit(server.path, StopSession(session="s"))))
        thread.start()
        waiting.append(thread)
    for _ in range(MAX_CONNECTIONS):
        assert recorder.entered.acquire(timeout=10)
    with pytest.raises(ControlSocketError):  # closed unread: reset, or closed before a reply
        submit(server.path, StopSession(session="one too many"))
    recorder.hold.set()
    for thread in waiting:
        thread.join(10)
    assert len(replies) == MAX_CONNECTIONS
    assert all(reply.ok for reply in replies)
    assert StopSession(session="one too many") not in recorder.requests


def test_stop_removes_the_socket_file(tmp_path: Path, recorder: Recorder) -> None:
    made = ControlServer(tmp_path / "control.sock", recorder)
    made.start()
    made.stop()
    assert not made.path.exists()
    with pytest.raises(ControlSocketError, match="does not answer"):
        submit(made.path, StopSession(session="x"))


def test_a_file_in_the_way_is_not_replaced(tmp_path: Path, recorder: Recorder) -> None:
    path = tmp_path / "control.sock"
    path.write_text("somebody's file")
    with pytest.raises(ControlServerError, match="not a socket"):
        ControlServer(path, recorder).start()
    assert path.read_text() == "somebody's file"


def test_a_live_socket_in_the_way_is_not_taken_over(server: ControlServer, recorder: Recorder) -> None:
    with pytest.raises(ControlServerError, match="already listens"):
        ControlServer(server.path, recorder).start()
    assert submit(server.path, StopSession(session="x")).ok


def test_a_host_whose_control_socket_cannot_listen_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors.main import main

    for name in list(os.environ):
        if name.startswith("HUTCH_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    data.mkdir()
    (data / "control.sock").write_text("somebody's file")
    assert main(["--data-dir", str(data), "--provider", "mock", "--runtime", "process"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"hutch: cannot listen for control requests on {data.absolute() / 'control.sock'}")
    assert "Traceback" not in "\n".join(lines)
    assert (data / "control.sock").read_text() == "somebody's file"


def test_webhook_route_requests_cross_the_socket_and_a_bad_one_never_echoes_its_secret(
    server: ControlServer, recorder: Recorder
) -> None:
    wanted: list[Request] = [
        AddWebhookRoute(route="gh", group="main", secret="s" * 43),
        RotateWebhookSecret(route="gh", secret="n" * 43),
        RemoveWebhookRoute(route="gh"),
    ]
    for request in wanted:
        assert submit(server.path, request).ok
    assert recorder.requests == wanted
    reply = _raw(server.path, b'{"op": "hooks.add", "route": "gh", "group": "main", "secret": "hush-hush-hush-hush", '
                              b'"replace": true}\n')  # fmt: skip
    assert not reply.ok
    assert "hush" not in reply.message
    assert recorder.requests == wanted
