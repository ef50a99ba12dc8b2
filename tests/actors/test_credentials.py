"""The credential proxy between a loopback fake upstream and an httpx2 client on the socket."""

from __future__ import annotations

import json
import logging
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest

from actors.credentials import CredentialProxy

pytestmark = pytest.mark.timeout(20)

REAL_KEY = "sk-ant-real-host-key"
SESSION = "5e55104aabcdef"
TAG = "family/5e55104a"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    url: str
    seen: list[Seen] = field(default_factory=list)
    # SSE: the client sets `client_got_first`; the upstream notes whether it was set
    # before it sent the second event.
    client_got_first: threading.Event = field(default_factory=threading.Event)
    first_arrived_before_second: bool | None = None


def _upstream_handler(state: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _record(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            state.seen.append(
                Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
            )

        def do_GET(self) -> None:
            self.do_POST()

        def do_POST(self) -> None:
            self._record()
            if self.path.startswith("/v1/stream"):
                self._stream()
            elif self.path.startswith("/v1/limited"):
                self._json(429, {"type": "error", "error": {"type": "rate_limit_error"}}, {"retry-after": "3"})
            else:
                self._json(200, {"id": "msg_1", "path": self.path})

        def _json(self, status: int, payload: object, extra: dict[str, str] | None = None) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            # HTTP/1.0 and no Content-Length: the body ends when the connection closes.
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b'event: message_start\ndata: {"n": 1}\n\n')
            self.wfile.flush()
            state.first_arrived_before_second = state.client_got_first.wait(10)
            self.wfile.write(b'event: message_stop\ndata: {"n": 2}\n\n')
            self.wfile.flush()

    return Handler


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    state = Upstream(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _upstream_handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval only makes shutdown() at teardown quick.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def session_dir() -> Iterator[Path]:
    # tmp_path can be too long for an AF_UNIX path; a short temp dir is not.
    with tempfile.TemporaryDirectory(prefix="hutch-") as name:
        yield Path(name)


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[CredentialProxy]:
    proxy = CredentialProxy(upstream.url, api_key=REAL_KEY)
    yield proxy
    proxy.stop()


def client_for(path: Path) -> httpx2.Client:
    return httpx2.Client(transport=httpx2.HTTPTransport(uds=str(path)), base_url="http://proxy.local")


def open_session(proxy: CredentialProxy, session_dir: Path, session_id: str = SESSION) -> Path:
    path = session_dir / "proxy.sock"
    proxy.open_socket(session_id, "family", path)
    return path


def test_forwards_with_the_real_key_only(proxy: CredentialProxy, upstream: Upstream, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    with client_for(path) as client:
        response = client.post(
            "/v1/messages?beta=true",
            content=b'{"model": "m"}',
            headers={
                "x-api-key": "sk-fake-from-agent",
                "authorization": "Bearer fake",
                "anthropic-version": "2023-06-01",
                "content-type": "application/json",
            },
        )
    assert response.status_code == 200
    assert response.json() == {"id": "msg_1", "path": "/v1/messages?beta=true"}
    assert response.headers["content-type"] == "application/json"

    [seen] = upstream.seen
    assert (seen.method, seen.path, seen.body) == ("POST", "/v1/messages?beta=true", b'{"model": "m"}')
    assert seen.headers["x-api-key"] == REAL_KEY
    assert "authorization" not in seen.headers
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["host"] == upstream.url.removeprefix("http://")


def test_auth_token_goes_as_bearer(upstream: Upstream, session_dir: Path) -> None:
    proxy = CredentialProxy(upstream.url, api_key=None, auth_token="oauth-real")
    try:
        path = open_session(proxy, session_dir)
        with client_for(path) as client:
            assert client.get("/v1/models", headers={"x-api-key": "fake"}).status_code == 200
    finally:
        proxy.stop()
    [seen] = upstream.seen
    assert seen.headers["authorization"] == "Bearer oauth-real"
    assert "x-api-key" not in seen.headers


def test_upstream_errors_pass_through(proxy: CredentialProxy, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    with client_for(path) as client:
        response = client.post("/v1/limited", content=b"{}")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_sse_flows_unbuffered(proxy: CredentialProxy, upstream: Upstream, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    lines: list[str] = []
    with client_for(path) as client, client.stream("POST", "/v1/stream", content=b"{}") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("data:") and '"n": 1' in line:
                upstream.client_got_first.set()
    assert upstream.first_arrived_before_second is True
    assert lines == [
        "event: message_start",
        'data: {"n": 1}',
        "",
        "event: message_stop",
        'data: {"n": 2}',
        "",
    ]


def test_socket_is_private_and_replaces_a_stale_one(proxy: CredentialProxy, session_dir: Path) -> None:
    stale = session_dir / "proxy.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(stale))
    leftover.close()  # the file stays behind, as after a crash

    path = open_session(proxy, session_dir)
    assert path == stale
    mode = path.lstat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    with client_for(path) as client:
        assert client.get("/v1/models").status_code == 200


def test_only_v1_paths_are_forwarded(proxy: CredentialProxy, upstream: Upstream, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    with client_for(path) as client:
        for target in ("/", "/v2/messages", "/v1", "/v1/../admin", "/v1/%2e%2e/admin"):
            response = client.get(target)
            assert response.status_code == 404, target
            assert response.json()["type"] == "error"
            assert response.json()["error"]["type"] == "not_found_error"
    assert upstream.seen == []


def test_unreachable_upstream_is_a_502(session_dir: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = CredentialProxy(f"http://127.0.0.1:{port}", api_key=REAL_KEY)
    try:
        path = open_session(proxy, session_dir)
        with client_for(path) as client:
            response = client.post("/v1/messages", content=b"{}")
    finally:
        proxy.stop()
    assert response.status_code == 502
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert body["error"]["message"]


def test_without_credentials_the_agent_hears_why(upstream: Upstream, session_dir: Path) -> None:
    proxy = CredentialProxy(upstream.url, api_key=None)
    try:
        path = open_session(proxy, session_dir)
        with client_for(path) as client:
            response = client.post("/v1/messages", content=b"{}")
    finally:
        proxy.stop()
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert upstream.seen == []


def test_requests_are_counted_and_logged_per_session(
    proxy: CredentialProxy, caplog: pytest.LogCaptureFixture, session_dir: Path
) -> None:
    caplog.set_level(logging.INFO, logger="hutch.credentials")
    (session_dir / "a").mkdir()
    (session_dir / "b").mkdir()
    proxy.open_socket("aaaaaaaa-1", "family", session_dir / "a" / "proxy.sock")
    proxy.open_socket("bbbbbbbb-2", "work", session_dir / "b" / "proxy.sock")
    with client_for(session_dir / "a" / "proxy.sock") as client:
        for _ in range(3):  # one keep-alive connection, several requests
            assert client.post("/v1/messages", content=b"{}").status_code == 200
        assert client.get("/nope").status_code == 404
    with client_for(session_dir / "b" / "proxy.sock") as client:
        assert client.post("/v1/messages", content=b"{}").status_code == 200

    assert proxy.requests_by_session() == {"aaaaaaaa-1": 4, "bbbbbbbb-2": 1}
    messages = [r.getMessage() for r in caplog.records if r.name == "hutch.credentials"]
    assert "[family/aaaaaaaa] POST /v1/messages -> 200" in messages
    assert "[work/bbbbbbbb] POST /v1/messages -> 200" in messages


def test_close_socket_removes_the_file(proxy: CredentialProxy, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    with client_for(path) as client:
        assert client.get("/v1/models").status_code == 200
    proxy.close_socket(SESSION)
    assert not path.exists()
    # A raw socket: httpcore leaks its socket when a Unix connect fails.
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(OSError):
        probe.connect(str(path))
    assert proxy.requests_by_session() == {SESSION: 1}
    proxy.close_socket(SESSION)  # closing twice is harmless


def test_close_socket_cuts_a_response_in_flight(proxy: CredentialProxy, upstream: Upstream, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    with client_for(path) as client, client.stream("POST", "/v1/stream", content=b"{}") as response:
        lines = response.iter_lines()
        assert next(lines) == "event: message_start"
        proxy.close_socket(SESSION)
        with pytest.raises(httpx2.TransportError):
            list(lines)
    upstream.client_got_first.set()  # let the upstream handler finish
    assert not path.exists()


def test_reopening_a_session_replaces_its_socket(proxy: CredentialProxy, session_dir: Path) -> None:
    first = open_session(proxy, session_dir)
    (session_dir / "again").mkdir()
    second = session_dir / "again" / "proxy.sock"
    proxy.open_socket(SESSION, "family", second)
    assert not first.exists()
    with client_for(second) as client:
        assert client.get("/v1/models").status_code == 200


def test_too_long_socket_path_is_refused(proxy: CredentialProxy, session_dir: Path) -> None:
    with pytest.raises(ValueError, match="too long"):
        proxy.open_socket(SESSION, "family", session_dir / ("x" * 120))
