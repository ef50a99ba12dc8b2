"""Attacks on what a real host process (`python -m actors.main`) takes in: its local chat
socket, flooded, fed oversized, deeply nested or garbage lines, and a session's credential
proxy, asked by the agent for what it must never reach. Each test shows the host refusing,
bounded in what the attack costs it, still serving a normal person afterwards, and leaking
nothing: no attacker byte stored, echoed back or logged, no refused request let through to the
model API, and a clean shutdown at the end.

The unit tests (tests/actors/channels/test_local_chat.py, tests/actors/test_credentials.py)
check each bound in-process; these show the bounds hold in the host as it is really run.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from actors.channels.local_chat import MAX_CLIENTS, MAX_DEPTH, MAX_LINE_BYTES
from protocol.content import MAX_TEXT_CHARS
from tests.attacks.inputs_support import (
    POLL_TIMEOUT_S,
    TOO_MANY_CLIENTS,
    Host,
    HttpAnswer,
    InputAttackError,
    Person,
    RawChat,
    await_refusals,
    connect_unix,
    dump,
    encode,
    host_process,
    poll,
    raw_http,
    read_only,
    sampling,
    served,
    unread_by_peer,
)
from tests.fakes import fake_messages_api
from tests.fakes.fake_messages_api import FakeMessagesAPI

pytestmark = pytest.mark.integration

# Threads the host may start besides the ones a client costs while under attack (a timer, a
# delivery): the bound is on what an attacker can make it start, not on the host at rest.
THREAD_MARGIN = 8
# Whatever the caps are set to, a flood must never cost the host this many threads.
THREAD_BUDGET = 100
# `Short` in protocol/content.py: the cap on a sender's name.
NAME_CHARS = 256
# What the host says or logs about a client stays short, whatever the client sent.
LONGEST_LOG_LINE = 2000
LONGEST_ERROR_LINE = 1000


@pytest.fixture
def folder() -> Iterator[Path]:
    # Unix socket paths must stay short: pytest's tmp_path can be too long for cli.sock.
    with tempfile.TemporaryDirectory(prefix="hutch-in-", dir="/tmp") as name:
        yield Path(name)


@pytest.fixture
def host(folder: Path) -> Iterator[Host]:
    with host_process(folder) as started:
        yield started


def assert_nothing_echoed(marker: str, replies: list[dict[str, Any]]) -> None:
    """Each attacker was answered with a short reason of the host's own, not its bytes."""
    for reply in replies:
        text = json.dumps(reply)
        assert marker not in text, text[:200]
        assert len(text) < LONGEST_ERROR_LINE, text[:200]


def assert_nothing_logged(log: list[str], marker: str) -> None:
    """The host's whole log neither repeats the attacker's bytes nor grows a line with them."""
    assert not [line[:200] for line in log if marker in line]
    assert not [line[:200] for line in log if len(line) > LONGEST_LOG_LINE]


# --- 1. a flood of connections -----------------------------------------------------------------

FLOOD = 1000


def flood(connect: Callable[[], RawChat], count: int) -> list[RawChat]:
    """`count` connections made from many threads at once, so that they pile into the listen
    backlog together; every one made is returned (and so closed by the caller) even when one
    fails."""
    made: list[RawChat] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        connection = connect()
        with lock:
            made.append(connection)

    try:
        with ThreadPoolExecutor(max_workers=64) as pool:
            list(pool.map(one, range(count)))
    except BaseException:
        for connection in made:
            connection.close()
        raise
    return made


@pytest.mark.timeout(60)
def test_a_thousand_chat_connections_at_once_cost_at_most_the_cap_in_threads(host: Host) -> None:
    """Attack: 1000 connections to the chat socket opened at once and held open.
    Proves: the host serves MAX_CLIENTS of them and refuses every other one with an error line
    and a close, starting no thread for it, so its thread count never grows by more than the
    cap's two threads a client; once the attackers leave the threads are given back, and a
    normal person is served."""
    baseline = host.threads()
    chats: list[RawChat] = []
    try:
        with sampling(host.threads) as peak:
            chats = flood(lambda: RawChat.connect(host.chat_socket), FLOOD)
            refused = await_refusals(chats, FLOOD - MAX_CLIENTS)
            admitted = [chat for chat in chats if not chat.eof]
            # Only a served connection answers a join: these hold the slots, and are live.
            for chat in admitted:
                assert chat.send_until_hung_up(encode({"join": "local"}))
                assert chat.read() == {"type": "joined", "chat": "local"}
            held = host.threads()
        print(
            f"\nthreads: {baseline} before, {held} with {len(admitted)} served and {len(refused)} refused,"
            f" peak {peak.value:.0f} ({peak.samples} samples)"
        )
        assert len(admitted) == MAX_CLIENTS
        for chat in refused:
            [reply] = chat.read_to_eof()
            assert reply == {
                "type": "error",
                "error": f"{TOO_MANY_CLIENTS} (at most {MAX_CLIENTS}); try again later",
            }
        assert peak.value <= baseline + 2 * MAX_CLIENTS + THREAD_MARGIN
        assert peak.value - baseline < THREAD_BUDGET
    finally:
        for chat in chats:
            chat.close()

    after = poll("the attackers' threads to end", lambda: (n := host.threads()) <= baseline + THREAD_MARGIN and n)
    print(f"threads after the attackers left: {after}")
    assert served(host, "after the flood")["type"] == "message"
    log = host.stop()
    # At least: the newcomer may have been turned away too while the last slots came back.
    refusals = [line for line in log if f"refused a client, {MAX_CLIENTS} are connected already" in line]
    assert len(refusals) >= len(refused)


# --- 2. megabyte lines ---------------------------------------------------------------------

# A line's start, then a megabyte without a newline: more than MAX_LINE_BYTES.
MEGABYTE_LINE = b'{"sender": "mallory", "text": "' + b"Z" * (1024 * 1024)
LINE_ATTACKERS = 128
RSS_MARGIN_MB = 100


def send_a_megabyte_line(host: Host) -> list[dict[str, Any]]:
    """One attacker: connects (again, while every slot is taken) and sends MEGABYTE_LINE;
    returns what the host answered before it closed the connection."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        chat = RawChat.connect(host.chat_socket)
        try:
            chat.send_until_hung_up(MEGABYTE_LINE)
            replies = chat.read_to_eof()
        finally:
            chat.close()
        # As many attackers as slots: one may arrive before its predecessor's slot is back.
        if not (len(replies) == 1 and TOO_MANY_CLIENTS in str(replies[0].get("error"))):
            return replies
        if time.monotonic() > deadline:
            raise InputAttackError("no chat slot came free for an attacker")


@pytest.mark.timeout(60)
def test_megabyte_lines_without_a_newline_are_cut_off_and_their_memory_given_back(host: Host) -> None:
    """Attack: 128 clients, as many at once as the host serves, each sending a 1 MB line that
    never ends. Proves: each is told its line is too long and closed as soon as the cap is
    passed; the host's RSS after the attackers left is within RSS_MARGIN_MB of before;
    nothing of the lines is echoed or logged, and a normal person is served."""
    assert served(host, "warm up")["type"] == "message"  # the session and its agent exist
    baseline_threads = host.threads()
    before = host.rss_mb()
    with sampling(host.rss_mb) as peak, ThreadPoolExecutor(max_workers=MAX_CLIENTS) as pool:
        outcomes = list(pool.map(lambda _: send_a_megabyte_line(host), range(LINE_ATTACKERS)))
    reason = f"line longer than {MAX_LINE_BYTES} bytes; closing the connection"
    for replies in outcomes:
        assert replies == [{"type": "error", "error": reason}]
    poll("the attackers' threads to end", lambda: host.threads() <= baseline_threads + THREAD_MARGIN)
    after = host.rss_mb()
    print(
        f"\nRSS: {before:.1f} MB before, peak {peak.value:.1f} MB ({peak.samples} samples),"
        f" {after:.1f} MB after {LINE_ATTACKERS} lines of 1 MB"
    )
    assert after < before + RSS_MARGIN_MB
    assert served(host, "after the big lines")["type"] == "message"
    log = host.stop()
    assert len([line for line in log if "local chat: closing client-" in line and reason in line]) == LINE_ATTACKERS
    assert_nothing_logged(log, "ZZZZZZZZ")


# --- 3. deep and broken JSON -------------------------------------------------------------

TOO_DEEP = f"JSON nested deeper than {MAX_DEPTH} levels; closing the connection"
GARBAGE = "Q7-garbage"
HOSTILE_LINES = {
    "100k open arrays": (b"[" * 100_000, TOO_DEEP),
    "100k closed arrays": (b"[" * 100_000 + b"]" * 100_000, TOO_DEEP),
    "100k objects": (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, TOO_DEEP),
    "a message with a 100k-deep field": (
        b'{"text": "deep", "sender": "mallory", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        TOO_DEEP,
    ),
    "not JSON": (f"{GARBAGE}: this is no JSON at all".encode(), "not valid JSON"),
    "not UTF-8": (b"\xff\xfe\x00" + GARBAGE.encode(), "not valid JSON"),
}


@pytest.mark.timeout(60)
def test_deep_and_broken_json_closes_only_its_own_connection(host: Host) -> None:
    """Attack: lines nested 100k deep (arrays, objects, a field of a real message) and lines
    that are not JSON or not UTF-8, each on its own connection, while another person stays
    connected. Proves: each attacker gets an error line naming the reason and is closed (the
    decoder's recursion is never reached), the host lives on, the person connected throughout
    is still served on the same connection, and a newcomer is served too."""
    bystander = Person.connect(host)
    try:
        assert bystander.say("before the garbage")["type"] == "message"
        for name, (line, reason) in HOSTILE_LINES.items():
            attacker = RawChat.connect(host.chat_socket)
            try:
                attacker.send_until_hung_up(line + b"\n")
                replies = attacker.read_to_eof()
            finally:
                attacker.close()
            assert [reply["type"] for reply in replies] == ["error"], (name, replies)
            error = str(replies[0]["error"])
            assert reason in error and error.endswith("closing the connection"), (name, error)
            assert_nothing_echoed(GARBAGE, replies)
        assert host.alive
        assert bystander.say("after the garbage")["type"] == "message"
    finally:
        bystander.close()
    assert served(host, "a newcomer after the garbage")["type"] == "message"
    log = host.stop()
    assert len([line for line in log if "local chat: closing client-" in line]) == len(HOSTILE_LINES)
    assert_nothing_logged(log, GARBAGE)


# --- 4. oversized fields ---------------------------------------------------------------------

MARKER = "m4ll0ry-"
OVER_THE_LINE = f"line longer than {MAX_LINE_BYTES} bytes; closing the connection"


def _filled(chars: int) -> str:
    return (MARKER * (chars // len(MARKER) + 1))[:chars]


@pytest.mark.parametrize(
    ("field", "chars", "reason", "closes"),
    [
        # 900 KB do not fit a line at all: refused unparsed, and the connection must end.
        ("text", 900_000, OVER_THE_LINE, True),
        ("sender", 900_000, OVER_THE_LINE, True),
        # 800 KB fit a line, so the field's own cap refuses them, and the connection goes on.
        ("text", 800_000, f"'text' is 800000 characters, more than {MAX_TEXT_CHARS}", False),
        ("sender", 800_000, f"'sender' is 800000 characters, more than {NAME_CHARS}", False),
    ],
    ids=["text-900k", "sender-900k", "text-800k", "sender-800k"],
)
@pytest.mark.timeout(60)
def test_an_oversized_text_or_sender_is_refused_before_anything_is_stored(
    host: Host, field: str, chars: int, reason: str, closes: bool
) -> None:
    """Attack: a message whose text, or whose sender's name, is 900 KB (past the line cap) or
    800 KB (within it, past the field's cap). Proves: the client is told why; nothing of it
    reaches the session's inbound.db or the central DB, which hold only the normal person's
    messages; the connection closes only when the line itself was too long; a normal person
    is served before and after."""
    person = Person.connect(host)
    try:
        assert person.say("before the big field")["type"] == "message"
        inbound_db = host.session_dir() / "inbound.db"
        attacker = RawChat.connect(host.chat_socket)
        try:
            attacker.send_until_hung_up(encode({"text": "hi", "sender": "mallory"} | {field: _filled(chars)}))
            if closes:
                replies = attacker.read_to_eof()
            else:
                replies = [attacker.read()]
                # Only the field was refused: the connection is still the client's to use.
                assert attacker.send_until_hung_up(encode({"join": "local"}))
                assert attacker.read() == {"type": "joined", "chat": "local"}
        finally:
            attacker.close()
        assert replies == [{"type": "error", "error": reason}]
        assert person.say("after the big field")["type"] == "message"
    finally:
        person.close()

    with read_only(inbound_db) as conn:
        stored = [json.loads(content) for (content,) in conn.execute("SELECT content FROM messages_in ORDER BY seq")]
    assert [(row.get("sender"), row.get("text")) for row in stored] == [
        ("alice", "before the big field"),
        ("alice", "after the big field"),
    ]
    log = host.stop()
    for db in (inbound_db, host.data_dir / "hutch.db"):
        assert MARKER not in dump(db), db
    assert_nothing_logged(log, MARKER)


# --- 5. the credential proxy, from the agent's side -------------------------------------------

API_KEY = "some-test-key"
# What the agent's SDK sends instead of a key; the proxy must put the real one in its place.
PLACEHOLDER_KEY = "agent-holds-no-key"
# The fake Messages API records POSTs only; these make it record whatever it is sent.
HANDLER_METHODS = ("do_GET", "do_PUT", "do_PATCH", "do_DELETE", "do_OPTIONS", "do_HEAD")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    handler = fake_messages_api._Handler
    for method in HANDLER_METHODS:
        monkeypatch.setattr(handler, method, handler.do_POST, raising=False)
    with FakeMessagesAPI() as server:
        yield server


@pytest.fixture
def claude_host(folder: Path, api: FakeMessagesAPI) -> Iterator[Host]:
    env = {
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": api.base_url,
        # The agent, and with it the session's proxy socket, must outlive the test.
        "HUTCH_IDLE_TIMEOUT": "3600",
    }
    with host_process(folder, provider="claude", env=env) as started:
        yield started


def forbidden(api: FakeMessagesAPI) -> list[tuple[str, str]]:
    return [
        ("GET", "/v1/models"),
        ("DELETE", "/v1/files/abc"),
        ("POST", "/v1/messages/batches"),
        ("GET", "/v1/organizations/me"),
        ("POST", "/v1/messages/..%2f..%2fv1%2fmodels"),
        ("POST", "/v1/%2e%2e/models"),
        ("POST", "/v1/messages\x00/../../v1/models"),
        ("POST", "/v1/messages%00"),
        # The absolute form naming the upstream itself: had the proxy followed it, the fake
        # would have recorded it.
        ("POST", f"{api.base_url}/v1/models"),
        ("POST", f"{api.base_url}/v1/messages"),
        ("GET", "http://evil.example/v1/messages"),
    ]


def say_once(host: Host, text: str) -> dict[str, Any]:
    person = Person.connect(host)
    try:
        return person.say(text)
    finally:
        person.close()


@pytest.mark.timeout(60)
def test_the_proxy_refuses_every_other_endpoint_and_still_forwards_messages(
    claude_host: Host, api: FakeMessagesAPI
) -> None:
    """Attack: from the agent's side of a live session, raw HTTP on its proxy.sock for other
    endpoints (models, files, batches, the organisation), for escaped and dot-segment paths
    that decode to them, for targets with a NUL, and for absolute URLs. Proves: each is
    answered 403 by the proxy itself (no upstream header), never reaches the model API, and
    is named in the host's log with its session; the key is in no answer and no log line; a
    real POST /v1/messages on the same socket still gets the model's 200 with the real key
    put in, and the person chatting is still answered through the agent."""
    host = claude_host
    assert "hello proxy" in say_once(host, "hello proxy")["text"]
    socket_path = host.session_dir() / "proxy.sock"
    tag = host.session_tag()
    assert socket_path.is_socket()
    seen_before = api.requests
    assert seen_before and all((r.method, r.path.split("?")[0]) == ("POST", "/v1/messages") for r in seen_before)

    attacks = forbidden(api)
    for method, target in attacks:
        answer = raw_http(socket_path, method, target, b'{"model": "m"}', f"x-api-key: {PLACEHOLDER_KEY}\r\n")
        assert answer.status == 403, (method, target, answer)
        assert json.loads(answer.body)["error"]["type"] == "permission_error"
        assert "request-id" not in answer.headers  # the fake's header: this answer is the proxy's
        assert answer.headers["connection"] == "close"
        assert API_KEY.encode() not in answer.body
    assert api.requests == seen_before, "a refused request reached the model API"

    body = {"model": "claude-fake", "max_tokens": 16, "messages": [{"role": "user", "content": "ping-7731"}]}
    answer = raw_http(
        socket_path, "POST", "/v1/messages", json.dumps(body).encode(),
        f"content-type: application/json\r\nx-api-key: {PLACEHOLDER_KEY}\r\n",
    )  # fmt: skip
    assert answer.status == 200, answer
    assert json.loads(answer.body)["content"] == [{"type": "text", "text": "echo: ping-7731"}]
    [forwarded] = api.requests[len(seen_before) :]
    assert (forwarded.method, forwarded.path) == ("POST", "/v1/messages")
    assert forwarded.headers["x-api-key"] == API_KEY
    assert PLACEHOLDER_KEY not in json.dumps(forwarded.headers)

    assert "still there" in say_once(host, "still there, proxy?")["text"]
    log = host.stop()
    for method, target in attacks:
        shown = target.replace("\x00", "\\x00")
        assert [line for line in log if f"{tag} refused {method} {shown}: " in line], (method, target)
    assert not [line for line in log if API_KEY in line], "the key reached the host's log"


PROXY_FLOOD = 500
PING = json.dumps(
    {"model": "claude-fake", "max_tokens": 16, "messages": [{"role": "user", "content": "ping"}]}
).encode()


def ping(socket_path: Path) -> HttpAnswer | None:
    """A real Messages call on the proxy; None if the proxy closed the connection instead."""
    try:
        return raw_http(socket_path, "POST", "/v1/messages", PING)
    except (http.client.RemoteDisconnected, ConnectionError):
        return None


@pytest.mark.timeout(60)
def test_a_connection_flood_on_the_proxy_costs_the_host_bounded_threads(
    claude_host: Host, api: FakeMessagesAPI
) -> None:
    """Attack: the agent of a live session opens 500 connections to its proxy.sock at once and
    sends nothing on them. Proves: the host's thread
    count stays within the budget the chat socket keeps, whatever one session's agent does,
    and once the agent lets go its real calls are forwarded again and its person answered."""
    host = claude_host
    assert "hello proxy" in say_once(host, "hello proxy")["text"]
    socket_path = host.session_dir() / "proxy.sock"
    baseline = host.threads()
    idle: list[RawChat] = []
    try:
        with sampling(host.threads) as peak:
            idle = flood(lambda: RawChat.connect(socket_path), PROXY_FLOOD)
            # The proxy accepts in order, so any outcome of a later call (an answer, a refusal,
            # a close) means it has dealt with every idle connection before it, threads and all.
            ping(socket_path)
            held = host.threads()
        print(f"\nthreads: {baseline} before, {held} with {PROXY_FLOOD} idle proxy connections, peak {peak.value:.0f}")
        assert peak.value <= baseline + 2 * MAX_CLIENTS + THREAD_MARGIN
    finally:
        for connection in idle:
            connection.close()
    answer = poll(
        "a 200 from the proxy once the flood is gone", lambda: (a := ping(socket_path)) and a.status == 200 and a
    )
    assert json.loads(answer.body)["content"] == [{"type": "text", "text": "echo: ping"}]
    assert "still there" in say_once(host, "still there, proxy?")["text"]


BIG_BODIES = 8
# Under the proxy's cap on one request (MAX_REQUEST_BODY, 64 MB): each body is one it takes.
BIG_BODY = 60 * 1024 * 1024
# What one session's agent may make the host hold, whatever it sends.
BODY_BUDGET_MB = 128


@pytest.mark.timeout(60)
def test_unfinished_request_bodies_on_the_proxy_hold_bounded_host_memory(
    claude_host: Host, api: FakeMessagesAPI
) -> None:
    """Attack: the agent of a live session opens 8 connections to its proxy.sock, and on each
    sends POST /v1/messages with a body of 60 MB (within the per-request cap) but for its
    last byte, then waits. Proves: the host's memory
    held for one session's agent stays within BODY_BUDGET_MB, and once the agent lets go,
    its real calls are forwarded and its person answered."""
    host = claude_host
    assert "hello proxy" in say_once(host, "hello proxy")["text"]
    socket_path = host.session_dir() / "proxy.sock"
    head = f"POST /v1/messages HTTP/1.1\r\nHost: anthropic-proxy\r\nContent-Length: {BIG_BODY}\r\n\r\n".encode()
    chunk = b"{" * (1024 * 1024)
    before = host.rss_mb()
    stalled: list[socket.socket] = []
    try:
        with sampling(host.rss_mb) as peak:
            for _ in range(BIG_BODIES):
                sock = connect_unix(socket_path)
                stalled.append(sock)
                # A proxy that turns the connection away by closing it has held nothing.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(head)
                    for _ in range(BIG_BODY // len(chunk) - 1):
                        sock.sendall(chunk)
                    sock.sendall(chunk[:-1])
            # Once nothing is left unread in the sockets, every byte sent is in the host.
            poll("the host to read what was sent", lambda: not any(unread_by_peer(sock) for sock in stalled))
            held = host.rss_mb()
        print(
            f"\nRSS: {before:.0f} MB before, {held:.0f} MB (peak {peak.value:.0f}) with {BIG_BODIES}"
            f" unfinished bodies of {BIG_BODY >> 20} MB"
        )
        assert held - before < BODY_BUDGET_MB
    finally:
        for sock in stalled:
            sock.close()
    answer = poll(
        "a 200 from the proxy once the bodies are gone", lambda: (a := ping(socket_path)) and a.status == 200 and a
    )
    assert json.loads(answer.body)["content"] == [{"type": "text", "text": "echo: ping"}]
    assert "still there" in say_once(host, "still there, proxy?")["text"]
