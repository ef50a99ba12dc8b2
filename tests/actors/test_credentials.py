"""The credential proxy between a loopback fake upstream and an httpx2 client on the socket."""

from __future__ import annotations

import http.client
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

from actors import credentials
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
            # Only the Messages endpoints get this far, so the body picks the answer.
            request = json.loads(state.seen[-1].body or b"{}")
            if request.get("stream"):
                self._stream()
            elif request.get("model") == "limited":
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


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(path: Path, method: str, target: str, body: bytes = b"", headers: str = "") -> RawResponse:
    """Send exactly `method target` on the socket: a client library would normalise the target."""
    length = "" if "transfer-encoding" in headers.lower() else f"Content-Length: {len(body)}\r\n"
    head = f"{method} {target} HTTP/1.1\r\nHost: proxy.local\r\n{length}{headers}\r\n"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(head.encode("latin-1") + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())


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
            assert client.post("/v1/messages", content=b"{}", headers={"x-api-key": "fake"}).status_code == 200
    finally:
        proxy.stop()
    [seen] = upstream.seen
    assert seen.headers["authorization"] == "Bearer oauth-real"
    assert "x-api-key" not in seen.headers


def test_upstream_errors_pass_through(proxy: CredentialProxy, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    with client_for(path) as client:
        response = client.post("/v1/messages", content=b'{"model": "limited"}')
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_sse_flows_unbuffered(proxy: CredentialProxy, upstream: Upstream, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    lines: list[str] = []
    with (
        client_for(path) as client,
        client.stream("POST", "/v1/messages?beta=true", content=b'{"stream": true}') as response,
    ):
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
        assert client.post("/v1/messages", content=b"{}").status_code == 200


# What the adversarial review got through to the upstream with the real key, and the ways
# of spelling a path that one parser reads differently from another.
REFUSED: list[tuple[str, str]] = [
    ("GET", "/v1/models"),
    ("DELETE", "/v1/files/file_011CNha8iCJcU1wXNR6q4V8w"),
    ("POST", "/v1/messages/batches"),
    ("GET", "/v1/organizations/me"),
    ("POST", "/v1/models"),
    ("POST", "/v1/files"),
    ("POST", "/v1/organizations/me"),
    ("POST", "/v1/complete"),
    ("POST", "/v1/messages/..%2fmodels"),
    ("POST", "/v1/messages/..%2Fmodels"),
    ("POST", "/v1/messages/%2e%2e/models"),
    ("POST", "/v1/messages/%2E%2E%2Fmodels"),
    ("POST", "/v1/%6dessages/batches"),
    ("POST", "/v1//messages"),
    ("POST", "//v1/messages"),
    ("POST", "///v1/messages/count_tokens"),
    ("POST", "/v1/messages/"),
    ("POST", "/v1/messages//count_tokens"),
    ("POST", "/v1/./messages"),
    ("POST", "/v1/messages/."),
    ("POST", "/v1/messages/count_tokens/.."),
    ("POST", "/v1/models/../messages"),
    ("POST", "/v1/messages%2fcount_tokens"),
    ("POST", "/v1/messages%2Fbatches"),
    ("POST", "/v1/messages%252fbatches"),
    ("POST", "/v1/messages%3fbeta=true"),
    ("POST", "/v1/messages;x=1"),
    ("POST", "/v1/messages/count_tokens;jsessionid=1"),
    ("POST", "/v1/messages%3bx=1"),
    ("POST", "/v1/messages\\..\\models"),
    ("POST", "/v1/messages%5c..%5cmodels"),
    ("POST", "/v1/messages%00"),
    ("POST", "/v1/messages\x00"),
    ("POST", "/v1/messages%zz"),
    ("POST", "/v1/messages#frag"),
    ("POST", "/V1/messages"),
    ("POST", "/v1/Messages"),
    ("POST", "http://api.anthropic.com/v1/messages"),
    ("POST", "*"),
    ("POST", "/"),
    ("POST", "/v1"),
    ("POST", "/v2/messages"),
    ("POST", "/api/messages"),
    ("GET", "/v1/messages"),
    ("PUT", "/v1/messages"),
    ("PATCH", "/v1/messages/count_tokens"),
    ("DELETE", "/v1/messages"),
    ("OPTIONS", "/v1/messages"),
    ("TRACE", "/v1/messages"),
    ("post", "/v1/messages"),
    ("BREW", "/v1/messages"),
    # The SDK's one query is `beta=true`; a gateway might read any other as another request.
    ("POST", "/v1/messages?/../models"),
    ("POST", "/v1/messages?beta=true&x=1"),
    ("POST", "/v1/messages?url=/v1/models"),
    ("POST", "/v1/messages/count_tokens?beta=false"),
]


@pytest.mark.parametrize(("method", "target"), REFUSED)
def test_only_the_messages_endpoints_are_forwarded(
    method: str,
    target: str,
    proxy: CredentialProxy,
    upstream: Upstream,
    session_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hutch.credentials")
    path = open_session(proxy, session_dir)
    response = raw_request(path, method, target, b'{"model": "m"}')
    assert response.status == 403
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.body)
    assert body["type"] == "error"
    assert body["error"]["type"] == "permission_error"
    assert body["error"]["message"]
    assert upstream.seen == []
    [warning] = [r for r in caplog.records if r.name == "hutch.credentials" and r.levelno == logging.WARNING]
    shown = target.replace("\x00", "\\x00")
    assert warning.getMessage().startswith(f"[{TAG}] refused {method} {shown}: ")
    # Counted like any other request: the count is of what the agent asked, not what went out.
    assert proxy.requests_by_session() == {SESSION: 1}


def test_only_the_headers_the_sdk_sends_go_upstream(
    proxy: CredentialProxy, upstream: Upstream, session_dir: Path
) -> None:
    """A gateway set as ANTHROPIC_BASE_URL may honour a method override or a rewritten URL,
    and the workspace is the host's to choose."""
    path = open_session(proxy, session_dir)
    sdk = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "Anthropic/Python 0.75.0",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "context-management-2025-06-27",
        "X-Stainless-Retry-Count": "0",
    }
    smuggled = {
        "X-HTTP-Method-Override": "DELETE",
        "X-Original-URL": "/v1/files/file_1",
        "X-Rewrite-URL": "/v1/models",
        "X-Forwarded-Host": "elsewhere.example",
        "anthropic-workspace-id": "wrkspc_other",
        "Cookie": "session=1",
    }
    headers = "".join(f"{name}: {value}\r\n" for name, value in {**sdk, **smuggled}.items())
    assert raw_request(path, "POST", "/v1/messages", b"{}", headers).status == 200
    [seen] = upstream.seen
    for name, value in sdk.items():
        assert seen.headers[name.lower()] == value
    for name in smuggled:
        assert name.lower() not in seen.headers


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
        (b"POST /v1/messages HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400),
        (b"POST /v1/messages HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n", 413),
        (b"POST /v1/messages HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"POST /v1/messages HTTP/2.0\r\n\r\n", 505),
        (b"NONSENSE\r\n\r\n", 400),
    ],
)
def test_a_malformed_request_is_refused_with_a_line_in_the_log(
    request_bytes: bytes,
    status: int,
    proxy: CredentialProxy,
    upstream: Upstream,
    session_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hutch.credentials")
    path = open_session(proxy, session_dir)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(request_bytes)
        # Read whole: a request line that is not HTTP/1.x is answered without a status line.
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    if b"HTTP/1.1" in request_bytes.split(b"\r\n", 1)[0]:
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]
    assert b'"type": "error"' in answer
    assert upstream.seen == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(line.startswith(f"[{TAG}] refused ") and f"{status}" in line for line in warnings), warnings


def test_head_is_refused_without_a_body(proxy: CredentialProxy, upstream: Upstream, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    response = raw_request(path, "HEAD", "/v1/messages")
    assert response.status == 403
    assert response.body == b""
    assert upstream.seen == []


def test_a_long_refused_path_is_logged_cut_short(
    proxy: CredentialProxy, upstream: Upstream, session_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hutch.credentials")
    path = open_session(proxy, session_dir)
    target = "/v1/files/" + "a" * 20_000
    assert raw_request(path, "GET", target).status == 403
    assert upstream.seen == []
    [warning] = [r.getMessage() for r in caplog.records if r.name == "hutch.credentials"]
    assert warning.startswith(f"[{TAG}] refused GET /v1/files/aaa")
    assert f"({len(target)} characters)" in warning
    assert len(warning) < 400


def test_refused_requests_keep_the_connection_from_being_reused(
    proxy: CredentialProxy, upstream: Upstream, session_dir: Path
) -> None:
    # A refused request's body is never read, so the connection must end with the answer:
    # its leftover bytes would otherwise be read as the next request.
    path = open_session(proxy, session_dir)
    response = raw_request(path, "POST", "/v1/messages/batches", b'{"requests": []}')
    assert response.status == 403
    assert response.headers["connection"] == "close"
    assert upstream.seen == []


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("/v1/messages", "/v1/messages"),
        ("/v1/messages?beta=true", "/v1/messages?beta=true"),
        ("/v1/messages/count_tokens", "/v1/messages/count_tokens"),
        ("/v1/messages/count_tokens?beta=true", "/v1/messages/count_tokens?beta=true"),
        # An escaped letter decodes to an allowed path; what goes upstream is the plain path.
        ("/v1/%6dessages", "/v1/messages"),
        ("/v1/messages?", "/v1/messages"),
    ],
)
def test_the_messages_endpoints_are_forwarded(
    target: str, forwarded: str, proxy: CredentialProxy, upstream: Upstream, session_dir: Path
) -> None:
    path = open_session(proxy, session_dir)
    response = raw_request(path, "POST", target, b'{"model": "m"}', "Content-Type: application/json\r\n")
    assert response.status == 200
    assert json.loads(response.body) == {"id": "msg_1", "path": forwarded}
    [seen] = upstream.seen
    assert (seen.method, seen.path, seen.body) == ("POST", forwarded, b'{"model": "m"}')
    assert seen.headers["x-api-key"] == REAL_KEY


def test_the_sdk_reaches_both_endpoints(proxy: CredentialProxy, upstream: Upstream, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    with client_for(path) as client:
        created = client.post("/v1/messages", json={"model": "m", "messages": []})
        counted = client.post("/v1/messages/count_tokens?beta=true", json={"model": "m", "messages": []})
    assert (created.status_code, counted.status_code) == (200, 200)
    assert [seen.path for seen in upstream.seen] == ["/v1/messages", "/v1/messages/count_tokens?beta=true"]


def test_a_body_over_the_cap_is_refused(
    proxy: CredentialProxy, upstream: Upstream, session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small cap stands in for the real 64 MB one; the check reads it at request time.
    monkeypatch.setattr(credentials, "MAX_REQUEST_BODY", 16)
    path = open_session(proxy, session_dir)
    response = raw_request(path, "POST", "/v1/messages", b'{"model": "too-long-for-the-cap"}')
    assert response.status == 413
    assert json.loads(response.body)["error"]["type"] == "request_too_large"
    assert upstream.seen == []
    # Within the cap the same request goes through.
    assert raw_request(path, "POST", "/v1/messages", b"{}").status == 200


def test_a_chunked_body_is_refused_before_anything_goes_upstream(
    proxy: CredentialProxy, upstream: Upstream, session_dir: Path
) -> None:
    """Its size is known only at its end; the SDK always sends a Content-Length."""
    path = open_session(proxy, session_dir)
    body = b"2\r\n{}\r\n0\r\n\r\n"
    response = raw_request(path, "POST", "/v1/messages", body, "Transfer-Encoding: chunked\r\n")
    assert response.status == 411
    assert upstream.seen == []


def test_a_body_that_ends_early_is_not_completed_upstream(
    proxy: CredentialProxy, upstream: Upstream, session_dir: Path
) -> None:
    """Streamed, a body that breaks off ends the upstream request too: the API never gets a
    request the agent did not finish."""
    path = open_session(proxy, session_dir)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(b'POST /v1/messages HTTP/1.1\r\nHost: proxy.local\r\nContent-Length: 100\r\n\r\n{"model"')
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert all(len(seen.body) < 100 for seen in upstream.seen)


def test_connections_past_the_cap_are_closed_without_a_thread(proxy: CredentialProxy, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    baseline = threading.active_count()
    held = []
    try:
        for _ in range(credentials.MAX_CONNECTIONS_PER_SESSION):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(path))
            held.append(sock)
        extras = []
        for _ in range(20):
            extra = socket.socket(socket.AF_UNIX)
            extra.connect(str(path))
            extra.settimeout(10)
            extras.append(extra)
        for extra in extras:
            assert extra.recv(1) == b"", "a connection past the cap was served"
            extra.close()
        # One thread per connection served, none for the refused.
        assert threading.active_count() <= baseline + credentials.MAX_CONNECTIONS_PER_SESSION
    finally:
        for sock in held:
            sock.close()
    # Once they are gone, the agent is served again.
    assert raw_request(path, "POST", "/v1/messages", b"{}").status == 200


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
        assert client.get("/nope").status_code == 403
    with client_for(session_dir / "b" / "proxy.sock") as client:
        assert client.post("/v1/messages", content=b"{}").status_code == 200

    assert proxy.requests_by_session() == {"aaaaaaaa-1": 4, "bbbbbbbb-2": 1}
    messages = [r.getMessage() for r in caplog.records if r.name == "hutch.credentials"]
    assert "[family/aaaaaaaa] POST /v1/messages -> 200" in messages
    assert "[work/bbbbbbbb] POST /v1/messages -> 200" in messages


def test_close_socket_removes_the_file(proxy: CredentialProxy, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    with client_for(path) as client:
        assert client.post("/v1/messages", content=b"{}").status_code == 200
    proxy.close_socket(SESSION)
    assert not path.exists()
    # A raw socket: httpcore leaks its socket when a Unix connect fails.
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(OSError):
        probe.connect(str(path))
    assert proxy.requests_by_session() == {SESSION: 1}
    proxy.close_socket(SESSION)  # closing twice is harmless


def test_close_socket_cuts_a_response_in_flight(proxy: CredentialProxy, upstream: Upstream, session_dir: Path) -> None:
    path = open_session(proxy, session_dir)
    with client_for(path) as client, client.stream("POST", "/v1/messages", content=b'{"stream": true}') as response:
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
        assert client.post("/v1/messages", content=b"{}").status_code == 200


def test_too_long_socket_path_is_refused(proxy: CredentialProxy, session_dir: Path) -> None:
    with pytest.raises(ValueError, match="too long"):
        proxy.open_socket(SESSION, "family", session_dir / ("x" * 120))
