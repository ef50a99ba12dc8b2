"""The credential proxy's token accounting: every Messages answer's usage recorded per agent
group, session, model and day in the central DB, while the agent gets the bytes unchanged
and unhurried, and what the proxy keeps of a body stays bounded whatever the upstream sends."""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import tempfile
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import httpx2
import pytest

from actors.credentials import CredentialProxy
from actors.store import agent_groups, sessions, usage
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store
from actors.usage_meter import MAX_JSON_BODY, Metered, UsageBook
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply, FakeUsage

pytestmark = pytest.mark.timeout(30)

LOGGER = "hutch.credentials"
SONNET = "claude-sonnet-4-6"


class WatchedBook(UsageBook):
    """The real book; each record is also handed to the test, which waits on it."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.recorded: queue.Queue[Metered] = queue.Queue()

    def record(self, session_id: str, agent_folder: str, tag: str, metered: Metered) -> None:
        super().record(session_id, agent_folder, tag, metered)
        self.recorded.put(metered)

    def next(self) -> Metered:
        return self.recorded.get(timeout=10)


@dataclass
class Reply:
    """One scripted upstream answer: its status, headers and body pieces, sent as they are
    (chunked when `chunked`, else with a Content-Length)."""

    body: Callable[[], Iterator[bytes]]
    content_type: str = "application/json"
    status: int = 200
    chunked: bool = False
    length: int | None = None

    @classmethod
    def of(
        cls, pieces: list[bytes], content_type: str = "application/json", chunked: bool = False, status: int = 200
    ) -> Reply:
        return cls(lambda: iter(pieces), content_type, status, chunked, length=sum(map(len, pieces)))


@dataclass
class Scripted:
    url: str = ""
    replies: queue.Queue[Reply] = field(default_factory=queue.Queue)
    accept_encodings: list[str | None] = field(default_factory=list)


def _scripted_handler(state: Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            state.accept_encodings.append(self.headers.get("accept-encoding"))
            reply = state.replies.get(timeout=5)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(reply.length))
            self.end_headers()
            for piece in reply.body():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if reply.chunked else piece)
            if reply.chunked:
                self.wfile.write(b"0\r\n\r\n")

    return Handler


@pytest.fixture
def upstream() -> Iterator[Scripted]:
    state = Scripted()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _scripted_handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def family(store: Store) -> AgentGroup:
    return agent_groups.create(store, name="family", folder="family")


@pytest.fixture
def session_id(store: Store, family: AgentGroup) -> str:
    return sessions.create(store, agent_group_id=family.id, session_key="family-chat").id


@pytest.fixture
def book(store: Store) -> WatchedBook:
    return WatchedBook(store)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # tmp_path can be too long for an AF_UNIX path; a short temp dir is not.
    with tempfile.TemporaryDirectory(prefix="hutch-") as name:
        yield Path(name)


@contextmanager
def proxy_socket(url: str, book: UsageBook, session_id: str, folder: Path) -> Iterator[Path]:
    proxy = CredentialProxy(url, api_key="sk-real", usage=book)
    try:
        path = folder / "proxy.sock"
        proxy.open_socket(session_id, "family", path)
        yield path
    finally:
        proxy.stop()


@pytest.fixture
def socket_path(upstream: Scripted, book: WatchedBook, session_id: str, short_dir: Path) -> Iterator[Path]:
    with proxy_socket(upstream.url, book, session_id, short_dir) as path:
        yield path


def client_for(path: Path) -> httpx2.Client:
    return httpx2.Client(transport=httpx2.HTTPTransport(uds=str(path)), base_url="http://proxy.local")


def recorded(store: Store) -> list[tuple[object, ...]]:
    with store.read() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                "SELECT agent_group_id, session_id, model, requests, input_tokens, output_tokens,"
                " cache_read_tokens, cache_write_tokens, cache_write_1h_tokens FROM token_usage ORDER BY model"
            )
        ]


def sse(name: str, data: object) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def start_event(model: str = SONNET) -> bytes:
    usage = {
        "input_tokens": 120,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 4000,
        "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
        "output_tokens": 1,
    }
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": model, "usage": usage}
    return sse("message_start", {"type": "message_start", "message": message})


def delta_event(output_tokens: int = 77, padding: str = "") -> bytes:
    data = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output_tokens}}
    if padding:
        data["padding"] = padding
    return sse("message_delta", data)


def text_events(text: str) -> bytes:
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return sse("content_block_delta", delta)


STREAM = [start_event(), text_events("Hel"), text_events("lo"), delta_event(), sse("message_stop", {})]
STREAM_TOKENS = (120, 77, 4000, 30, 20)


def test_a_json_answer_is_recorded_and_passed_on_unchanged(
    socket_path: Path, upstream: Scripted, book: WatchedBook, store: Store, family: AgentGroup, session_id: str
) -> None:
    body = json.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "model": SONNET,
            "content": [{"type": "text", "text": "héllo"}],
            "usage": {"input_tokens": 11, "output_tokens": 22, "cache_read_input_tokens": 33},
        }
    ).encode()
    upstream.replies.put(Reply.of([body[:7], body[7:]]))
    with client_for(socket_path) as client:
        response = client.post("/v1/messages", content=b"{}", headers={"accept-encoding": "gzip, br"})
    assert response.content == body
    assert book.next().complete
    assert recorded(store) == [(family.id, session_id, SONNET, 1, 11, 22, 33, 0, 0)]
    # The proxy asks for what it can read, whatever the agent would take.
    assert upstream.accept_encodings == ["identity"]


def test_a_streamed_answer_is_recorded_and_passed_on_unchanged(
    socket_path: Path, upstream: Scripted, book: WatchedBook, store: Store, family: AgentGroup, session_id: str
) -> None:
    whole = b"".join(STREAM)
    # Pieces cut across lines and events, as the network cuts them.
    upstream.replies.put(Reply.of([whole[i : i + 37] for i in range(0, len(whole), 37)], "text/event-stream", True))
    with client_for(socket_path) as client, client.stream("POST", "/v1/messages?beta=true", content=b"{}") as response:
        got = b"".join(response.iter_raw())
    assert got == whole
    assert book.next().complete
    assert recorded(store) == [(family.id, session_id, SONNET, 1, *STREAM_TOKENS)]


def test_answers_add_up_and_errors_and_counts_are_not_recorded(
    socket_path: Path, upstream: Scripted, book: WatchedBook, store: Store
) -> None:
    error = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}).encode()
    upstream.replies.put(Reply.of([error], status=529))
    upstream.replies.put(Reply.of([b'{"input_tokens": 5000}']))  # count_tokens
    for _ in range(3):
        upstream.replies.put(Reply.of(STREAM, "text/event-stream", chunked=True))
    with client_for(socket_path) as client:  # one connection: each answer is done before the next
        assert client.post("/v1/messages", content=b"{}").status_code == 529
        assert client.post("/v1/messages/count_tokens", content=b"{}").status_code == 200
        for _ in range(3):
            assert client.post("/v1/messages", content=b"{}").status_code == 200
    for _ in range(3):
        book.next()
    [(_, _, _, requests, *tokens)] = recorded(store)
    assert (requests, tuple(tokens)) == (3, tuple(3 * count for count in STREAM_TOKENS))
    assert book.recorded.empty()


def test_the_sdk_through_the_proxy_records_what_the_api_reported(
    store: Store, family: AgentGroup, session_id: str, book: WatchedBook, short_dir: Path
) -> None:
    """The real SDK, streamed and not, against the fake Messages API."""
    used = FakeUsage(input_tokens=321, output_tokens=54, cache_creation_input_tokens=7, cache_read_input_tokens=900)
    with FakeMessagesAPI(default_usage=used) as api, proxy_socket(api.base_url, book, session_id, short_dir) as path:
        transport = httpx2.HTTPTransport(uds=str(path))
        client = anthropic.Anthropic(
            api_key="placeholder",
            base_url="http://proxy.local",
            max_retries=0,
            http_client=anthropic.DefaultHttpxClient(transport=transport),
        )
        with client:
            message = client.messages.create(
                model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
            with client.messages.stream(
                model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "again"}]
            ) as streamed:
                final = streamed.get_final_message()
            api.enqueue(FakeReply.error(400, "bad request"))
            with pytest.raises(anthropic.BadRequestError):
                client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[])
    assert message.usage.input_tokens == final.usage.input_tokens == 321
    assert [book.next().complete, book.next().complete] == [True, True]
    assert recorded(store) == [(family.id, session_id, "claude-haiku-4-5", 2, 642, 108, 1800, 14, 0)]
    assert book.recorded.empty()


def test_a_huge_line_passes_whole_and_is_never_held(
    socket_path: Path, upstream: Scripted, book: WatchedBook, store: Store
) -> None:
    """A hostile or broken upstream: a line far longer than anything the proxy keeps."""
    line_size = 24 * 1024 * 1024
    piece = b"x" * 65536

    def body() -> Iterator[bytes]:
        yield start_event()
        yield b'event: content_block_delta\ndata: {"type": "content_block_delta", "text": "'
        for _ in range(line_size // len(piece)):
            yield piece
        yield b'"}\n\n'
        yield delta_event()

    expected = hashlib.sha256()
    for part in body():
        expected.update(part)
    upstream.replies.put(Reply(body, "text/event-stream", chunked=True))
    got = hashlib.sha256()
    received = 0
    tracemalloc.start()
    try:
        with client_for(socket_path) as client, client.stream("POST", "/v1/messages", content=b"{}") as response:
            for chunk in response.iter_raw():
                got.update(chunk)
                received += len(chunk)
        book.next()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.hexdigest() == expected.hexdigest()
    assert received > line_size
    # Everything the process allocated at once, test client and fake upstream included.
    assert peak < line_size // 4, f"peak {peak} bytes"
    [(_, _, model, requests, *tokens)] = recorded(store)
    assert (model, requests, tuple(tokens)) == (SONNET, 1, (120, 77, 4000, 30, 20))


def test_usage_that_cannot_be_read_is_counted_as_unknown_and_said_once(
    socket_path: Path, upstream: Scripted, book: WatchedBook, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    too_long = start_event() + delta_event(padding="y" * (300 * 1024))
    too_big = json.dumps({"model": SONNET, "content": "z" * MAX_JSON_BODY, "usage": {"input_tokens": 1}}).encode()
    upstream.replies.put(Reply.of([too_long], "text/event-stream"))
    upstream.replies.put(Reply.of([too_big]))
    with client_for(socket_path) as client:
        assert client.post("/v1/messages", content=b"{}").content == too_long
        assert client.post("/v1/messages", content=b"{}").content == too_big
    assert [book.next().problem is not None, book.next().problem is not None] == [True, True]
    # Counted under a model with no price, so the day's cost shows as unknown, not as less.
    [(_, _, model, requests, input_tokens, *_)] = recorded(store)
    assert (model, requests, input_tokens) == (usage.UNKNOWN_MODEL, 2, 120)
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "token usage of a response could not be read: a message_delta event over" in warnings[0]


def test_a_session_without_a_row_is_recorded_for_its_groups_folder(
    upstream: Scripted, book: WatchedBook, store: Store, family: AgentGroup, short_dir: Path
) -> None:
    """A SessionActor embedded without the Supervisor has no sessions row."""
    with proxy_socket(upstream.url, book, "embedded-session", short_dir) as path:
        upstream.replies.put(Reply.of(STREAM, "text/event-stream"))
        with client_for(path) as client:
            assert client.post("/v1/messages", content=b"{}").status_code == 200
        book.next()
    assert recorded(store) == [(family.id, "embedded-session", SONNET, 1, *STREAM_TOKENS)]


def test_without_a_group_the_agent_is_served_and_nothing_is_recorded(
    upstream: Scripted, book: WatchedBook, store: Store, short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    proxy = CredentialProxy(upstream.url, api_key="sk-real", usage=book)
    try:
        proxy.open_socket("orphan", "nobody", short_dir / "proxy.sock")
        for _ in range(2):
            upstream.replies.put(Reply.of(STREAM, "text/event-stream"))
        with client_for(short_dir / "proxy.sock") as client:
            for _ in range(2):
                assert client.post("/v1/messages", content=b"{}").content == b"".join(STREAM)
        book.next()
        book.next()
    finally:
        proxy.stop()
    assert recorded(store) == []
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert warnings == ["[nobody/orphan] token usage not recorded: no agent group for this session"]


def test_a_closed_store_costs_the_count_not_the_answer(
    socket_path: Path, upstream: Scripted, book: WatchedBook, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    store.close()  # as when a stopping host closes it under a response still in flight
    upstream.replies.put(Reply.of(STREAM, "text/event-stream"))
    with client_for(socket_path) as client:
        assert client.post("/v1/messages", content=b"{}").content == b"".join(STREAM)
    book.next()
    assert any("token usage not recorded" in r.getMessage() for r in caplog.records if r.name == LOGGER)
