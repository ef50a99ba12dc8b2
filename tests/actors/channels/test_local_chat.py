from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pykka
import pytest

from actors.channels.base import (
    CARD,
    EDIT,
    FILES,
    QUESTION,
    REACTION,
    Card,
    ChannelAdapter,
    ChannelError,
    InboundAnswer,
    InboundChat,
    InboundEvent,
    Stored,
)
from actors.channels.local_chat import MAX_DEPTH, MAX_LINE_BYTES, LocalChatChannel
from protocol.content import MAX_CONTENT_BYTES, MAX_TEXT_CHARS, ChatIn, encode_content
from protocol.rows import Routing

pytestmark = pytest.mark.timeout(20)

REPO = Path(__file__).resolve().parents[3]
WAIT = 5.0
LOCAL = Routing("local", "cli")
# `Short` in protocol/content.py: the cap on names and ids.
NAME_CHARS = 256


class Events:
    """Collects what the channel hands the host. Each event's future is resolved at once,
    failed when its text is `fail_on`, or, while `holding`, kept until `release()`."""

    def __init__(self) -> None:
        self.queue: queue.Queue[InboundEvent] = queue.Queue()
        self.fail_on: str | None = None
        self.holding = False
        self.held: list[Stored] = []

    def __call__(self, event: InboundEvent) -> Stored:
        stored: Stored = pykka.ThreadingFuture()
        self.queue.put(event)
        if isinstance(event, InboundChat) and event.text == self.fail_on:
            error = RuntimeError("session store is full")
            stored.set_exception((RuntimeError, error, None))
        elif self.holding:
            self.held.append(stored)
        else:
            stored.set(None)
        return stored

    def release(self) -> None:
        for stored in self.held:
            stored.set(None)

    def next(self) -> InboundEvent:
        return self.queue.get(timeout=WAIT)

    def next_chat(self) -> InboundChat:
        event = self.next()
        assert isinstance(event, InboundChat)
        return event


class Client:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("rb")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_until_hung_up(self, data: bytes) -> None:
        """Send a line the server may close the connection on before it has all of it."""
        # What the server wrote before closing is still there to read afterwards.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def send(self, obj: object) -> None:
        self.send_raw(json.dumps(obj).encode() + b"\n")

    def read(self) -> dict[str, Any]:
        line = self.reader.readline()
        assert line, "the server closed the connection"
        obj = json.loads(line)
        assert isinstance(obj, dict)
        return obj

    def join(self, chat: str = "local") -> None:
        """Once "joined" is back, the server has registered this client in the chat."""
        self.send({"join": chat})
        assert self.read() == {"type": "joined", "chat": chat}

    def say(self, text: str, **extra: str) -> dict[str, Any]:
        self.send({"text": text, "sender": "alice", **extra})
        return self.read()

    def at_eof(self) -> bool:
        return self.reader.readline() == b""

    def is_closed(self) -> bool:
        """The server closed: end of stream, or a reset when it closed with our bytes unread
        (after everything it wrote has been read, so no reply is lost to it)."""
        try:
            return self.reader.readline() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 108-byte limit of a Unix socket path.
    path = Path(tempfile.mkdtemp(prefix="hutch-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def socket_path(sock_dir: Path) -> Path:
    return sock_dir / "run" / "cli.sock"


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def channel(socket_path: Path, events: Events) -> Iterator[LocalChatChannel]:
    adapter = LocalChatChannel(socket_path, assistant_name="Ada")
    adapter.start(events)
    yield adapter
    adapter.stop()


@pytest.fixture
def client(channel: LocalChatChannel, socket_path: Path) -> Iterator[Client]:
    connected = Client(socket_path)
    connected.join()
    yield connected
    connected.close()


def test_is_a_channel_adapter_with_every_capability(socket_path: Path) -> None:
    adapter: ChannelAdapter = LocalChatChannel(socket_path)
    assert adapter.channel_type == "cli"
    assert adapter.capabilities == {FILES, EDIT, REACTION, QUESTION, CARD}


def test_socket_is_private_in_a_created_directory(channel: LocalChatChannel, socket_path: Path) -> None:
    mode = socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_message_becomes_inbound_chat_and_is_acked(client: Client, events: Events) -> None:
    ack = client.say("hello there")
    event = events.next_chat()
    assert event == InboundChat(
        channel_type="cli",
        platform_id="local",
        text="hello there",
        sender="alice",
        sender_id="alice",
        platform_message_id=event.platform_message_id,
        mentions_assistant=True,
    )
    assert event.platform_message_id is not None
    assert event.platform_message_id.startswith("cli-")
    assert ack == {"type": "ack", "id": event.platform_message_id}


def test_optional_fields_are_passed_on(client: Client, events: Events) -> None:
    client.say("in a thread", chat="kitchen", sender_id="u-1", thread="t-9")
    event = events.next_chat()
    assert (event.platform_id, event.sender_id, event.thread_id) == ("kitchen", "u-1", "t-9")


def test_message_ids_are_unique(client: Client) -> None:
    ids = {client.say(f"message {n}")["id"] for n in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"[1, 2]", "expected a JSON object, got an array"),
        (b'{"sender": "alice"}', "missing 'text'"),
        (b'{"text": "hi"}', "missing 'sender'"),
        (b'{"text": 5, "sender": "alice"}', "'text' must be a string"),
        (b'{"text": "hi", "sender": ["alice"]}', "'sender' must be a string"),
        (b'{"text": "", "sender": "alice"}', "'text' must not be empty"),
        (b'{"text": "hi", "sender": "alice", "chat": 3}', "'chat' must be a string"),
        (b'{"text": "hi", "answer": "x", "sender": "alice"}', "not text and answer"),
        (b'{"answer": "yes", "sender": "alice"}', "missing 'question_id'"),
    ],
)
def test_bad_line_gets_an_error_and_the_connection_stays_usable(
    client: Client, events: Events, line: bytes, reason: str
) -> None:
    client.send_raw(line + b"\n")
    reply = client.read()
    assert reply["type"] == "error"
    assert reason in reply["error"]
    assert client.say("still here")["type"] == "ack"
    assert events.next_chat().text == "still here"
    assert events.queue.empty()


@pytest.mark.parametrize(
    "line",
    [b"not json", b"\xff\xfe", b'{"text": "cut short", "sender": "alice"'],
    ids=["words", "not-utf8", "unterminated"],
)
def test_not_json_gets_an_error_then_the_connection_closes(client: Client, events: Events, line: bytes) -> None:
    # A client that does not speak JSON lines is not this protocol's: it is told, then cut off.
    client.send_raw(line + b"\n")
    reply = client.read()
    assert reply["type"] == "error"
    assert "not valid JSON" in reply["error"]
    assert client.is_closed()
    assert events.queue.empty()


def test_answers_owed_come_before_the_error_that_closes(client: Client, events: Events) -> None:
    events.holding = True
    client.send_raw(json.dumps({"text": "first", "sender": "alice"}).encode() + b"\nnot json\n")
    assert events.next_chat().text == "first"
    events.release()
    assert client.read()["type"] == "ack"
    assert "not valid JSON" in client.read()["error"]
    assert client.is_closed()


@pytest.mark.parametrize("newline_later", [False, True])
def test_oversize_line_closes_the_connection_and_others_are_served(
    client: Client, events: Events, socket_path: Path, newline_later: bool
) -> None:
    big = b'{"text": "' + b"x" * MAX_LINE_BYTES + b'", "sender": "alice"}'
    # Without a newline the cap is enforced all the same, as the bytes arrive: a huge line
    # is never buffered whole.
    client.send_until_hung_up(big if newline_later else big + b"\n")
    reply = client.read()
    assert reply["type"] == "error"
    assert f"line longer than {MAX_LINE_BYTES} bytes" in reply["error"]
    assert client.is_closed()
    assert events.queue.empty()

    after = Client(socket_path)
    try:
        assert after.say("after the big one")["type"] == "ack"
        assert events.next_chat().text == "after the big one"
    finally:
        after.close()


def test_line_at_the_cap_is_accepted(client: Client, events: Events) -> None:
    # JSON may carry any amount of whitespace, so a legal message can fill the line exactly.
    head, tail = b'{"sender": "alice", "text": "padded"', b"}"
    client.send_raw(head + b" " * (MAX_LINE_BYTES - len(head) - len(tail)) + tail + b"\n")
    assert client.read()["type"] == "ack"
    assert events.next_chat().text == "padded"


def test_the_biggest_legal_message_fits_a_line_even_fully_escaped(client: Client, events: Events) -> None:
    # Emoji as many as the stored content holds; json.dumps escapes each as 12 bytes.
    count = (MAX_CONTENT_BYTES - 200) // 4
    text = "\U0001f600" * count
    stored = ChatIn(text=text, sender="alice", sender_id="alice", platform_message_id="cli-12345678-1")
    assert len(encode_content(stored).encode()) <= MAX_CONTENT_BYTES
    line = json.dumps({"text": text, "sender": "alice"}).encode()
    assert len(line) > 2 * MAX_CONTENT_BYTES
    client.send_raw(line + b"\n")
    assert client.read()["type"] == "ack"
    assert events.next_chat().text == text


def _nested(depth: int) -> bytes:
    """A message whose ignored field makes the line nest `depth` levels, its object included."""
    inner = b"[" * (depth - 1) + b"]" * (depth - 1)
    return b'{"text": "deep", "sender": "alice", "extra": ' + inner + b"}"


@pytest.mark.parametrize(
    "line", [_nested(MAX_DEPTH + 1), b"[" * 100_000, b"[" * 50_000 + b"]" * 50_000], ids=["one-over", "open", "closed"]
)
def test_deep_nesting_gets_an_error_then_the_connection_closes(client: Client, events: Events, line: bytes) -> None:
    # Decoding 100k levels used to raise RecursionError and end the client's thread silently.
    client.send_raw(line + b"\n")
    reply = client.read()
    assert reply["type"] == "error"
    assert f"nested deeper than {MAX_DEPTH}" in reply["error"]
    assert client.is_closed()
    assert events.queue.empty()


def test_nesting_at_the_bound_and_brackets_in_strings_are_fine(client: Client, events: Events) -> None:
    client.send_raw(_nested(MAX_DEPTH) + b"\n")
    assert client.read()["type"] == "ack"
    assert events.next_chat().text == "deep"
    brackets = '[{"\\' * 1000  # inside a string they nest nothing, escaped quote or not
    assert client.say(brackets)["type"] == "ack"
    assert events.next_chat().text == brackets


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (
            {"text": "x" * (MAX_TEXT_CHARS + 1)},
            f"'text' is {MAX_TEXT_CHARS + 1} characters, more than {MAX_TEXT_CHARS}",
        ),
        ({"text": "x" * 800_000}, f"'text' is 800000 characters, more than {MAX_TEXT_CHARS}"),
        ({"sender": "s" * 800_000}, f"'sender' is 800000 characters, more than {NAME_CHARS}"),
        ({"sender": "s" * (NAME_CHARS + 1)}, f"'sender' is {NAME_CHARS + 1} characters"),
        ({"sender_id": "i" * (NAME_CHARS + 1)}, "'sender_id' is"),
        ({"chat": "c" * (NAME_CHARS + 1)}, "'chat' is"),
        ({"thread": "t" * (NAME_CHARS + 1)}, "'thread' is"),
        ({"text": "\U0001f600" * MAX_TEXT_CHARS}, f"bytes once stored, more than {MAX_CONTENT_BYTES}"),
        ({"join": "c" * (NAME_CHARS + 1)}, "'join' is"),
        ({"answer": "a" * (MAX_TEXT_CHARS + 1), "question_id": "q-1"}, "'answer' is"),
        ({"answer": "yes", "question_id": "q" * (NAME_CHARS + 1)}, "'question_id' is"),
    ],
    ids=[
        "text-over",
        "text-800k",
        "sender-800k",
        "sender-over",
        "sender_id",
        "chat",
        "thread",
        "whole-message",
        "join",
        "answer",
        "question_id",
    ],
)
def test_fields_over_the_protocol_caps_are_refused_before_the_host_sees_them(
    client: Client, events: Events, request_: dict[str, str], reason: str
) -> None:
    line: dict[str, str] = {"text": "hi", "sender": "alice"}
    if "join" in request_ or "answer" in request_:
        line = {}
    line.update(request_)
    client.send(line)
    reply = client.read()
    assert reply["type"] == "error"
    assert reason in reply["error"]
    # Nothing was handed over (so nothing stored), and the line was well formed: go on.
    assert client.say("still here")["type"] == "ack"
    assert events.next_chat().text == "still here"
    assert events.queue.empty()


def test_fields_at_the_protocol_caps_are_taken(client: Client, events: Events) -> None:
    name = "n" * NAME_CHARS
    assert client.say("t" * MAX_TEXT_CHARS, sender_id=name, chat=name, thread=name)["type"] == "ack"
    event = events.next_chat()
    assert (len(event.text), event.sender_id, event.platform_id, event.thread_id) == (MAX_TEXT_CHARS, name, name, name)


def _chat_threads() -> int:
    return sum(thread.name.startswith("local-chat-client-") for thread in threading.enumerate())


def test_clients_past_the_cap_are_refused_without_a_thread(socket_path: Path, events: Events) -> None:
    cap = 3
    adapter = LocalChatChannel(socket_path, max_clients=cap)
    adapter.start(events)
    threads_before = _chat_threads()
    admitted = [Client(socket_path) for _ in range(cap)]
    refused: list[Client] = []
    try:
        for admitted_client in admitted:
            admitted_client.join()  # answered, so both of its threads are running
        for _ in range(cap + 2):
            extra = Client(socket_path)
            refused.append(extra)
            reply = extra.read()
            assert reply["type"] == "error"
            assert f"too many local chat clients (at most {cap})" in reply["error"]
            assert extra.is_closed()
        # Two threads per admitted client (reader and answerer); none for the refused.
        assert _chat_threads() <= threads_before + 2 * cap
        for number, admitted_client in enumerate(admitted):
            assert admitted_client.say(f"still served {number}")["type"] == "ack"

        # A slot is freed once its client has gone (when exactly is the server's business,
        # so this tries again, each try a full round trip, until the slot is back).
        admitted.pop().close()
        replacement = _connect_when_admitted(socket_path)
        admitted.append(replacement)
        assert replacement.say("in the freed slot")["type"] == "ack"
    finally:
        for connected in admitted + refused:
            connected.close()
        adapter.stop()


def _connect_when_admitted(socket_path: Path) -> Client:
    for _ in range(1000):
        candidate = Client(socket_path)
        # A refused connection may be closed before the request is even written.
        candidate.send_until_hung_up(b'{"join": "local"}\n')
        reply = candidate.read()
        if reply == {"type": "joined", "chat": "local"}:
            return candidate
        assert "too many local chat clients" in reply["error"]
        candidate.close()
    raise AssertionError("the freed slot never came back")


def test_on_event_failure_is_reported_instead_of_acked(client: Client, events: Events) -> None:
    events.fail_on = "doomed"
    reply = client.say("doomed")
    assert reply == {"type": "error", "error": "the host could not take the message: session store is full"}
    assert events.next_chat().text == "doomed"
    assert client.say("fine")["type"] == "ack"
    assert events.next_chat().text == "fine"


def test_a_burst_is_handed_over_whole_before_any_ack_and_acked_in_order(client: Client, events: Events) -> None:
    events.holding = True
    client.send_raw(b"".join(json.dumps({"text": f"m{i}", "sender": "alice"}).encode() + b"\n" for i in range(20)))
    # Every line reaches the host while none of them is stored yet: nobody waits in between.
    assert [events.next_chat().text for _ in range(20)] == [f"m{i}" for i in range(20)]
    events.release()
    acks = [client.read() for _ in range(20)]
    assert [ack["type"] for ack in acks] == ["ack"] * 20
    ids = [ack["id"] for ack in acks]
    assert ids == sorted(ids, key=lambda message_id: int(message_id.rsplit("-", 1)[1]))


def test_answer_becomes_inbound_answer(client: Client, events: Events) -> None:
    client.send({"answer": "Tuesday", "question_id": "q-7", "sender": "alice", "thread": "t-1"})
    assert client.read()["type"] == "ack"
    assert events.next() == InboundAnswer(
        channel_type="cli", platform_id="local", question_id="q-7", answer="Tuesday", sender="alice", thread_id="t-1"
    )


def test_sends_reach_the_client_as_lines(channel: LocalChatChannel, client: Client, sock_dir: Path) -> None:
    report = sock_dir / "report.txt"
    message_id = channel.send_text(Routing("local", "cli", "t-2"), "here you go", (report,))
    assert message_id is not None
    assert message_id.startswith("cli-out-")
    assert client.read() == {
        "type": "message",
        "id": message_id,
        "sender": "Ada",
        "text": "here you go",
        "files": [str(report)],
        "thread": "t-2",
    }

    channel.edit_text(LOCAL, message_id, "here you go, fixed")
    assert client.read() == {"type": "edit", "id": message_id, "text": "here you go, fixed"}

    channel.add_reaction(LOCAL, message_id, "👍")
    assert client.read() == {"type": "reaction", "id": message_id, "emoji": "👍"}

    question_id = channel.ask_question(LOCAL, "q-1", "Which day?", ("Monday", "Tuesday"))
    assert client.read() == {
        "type": "question",
        "id": question_id,
        "sender": "Ada",
        "question_id": "q-1",
        "question": "Which day?",
        "options": ["Monday", "Tuesday"],
        "thread": None,
    }

    card_id = channel.send_card(LOCAL, Card("Build", "all green", (("tests", "412"), ("time", "9s"))))
    assert client.read() == {
        "type": "card",
        "id": card_id,
        "sender": "Ada",
        "title": "Build",
        "text": "all green",
        "fields": [["tests", "412"], ["time", "9s"]],
        "thread": None,
    }
    assert len({message_id, question_id, card_id}) == 3


def test_relative_file_paths_are_made_absolute(channel: LocalChatChannel, client: Client) -> None:
    channel.send_text(LOCAL, "see attached", (Path("out/report.txt"),))
    assert client.read()["files"] == [os.path.join(os.getcwd(), "out", "report.txt")]


def test_every_client_of_the_chat_receives_and_others_do_not(
    channel: LocalChatChannel, client: Client, socket_path: Path
) -> None:
    second, elsewhere = Client(socket_path), Client(socket_path)
    try:
        second.join()
        elsewhere.join("kitchen")
        channel.send_text(LOCAL, "to everyone here")
        assert client.read()["text"] == "to everyone here"
        assert second.read()["text"] == "to everyone here"
        channel.send_text(Routing("kitchen", "cli"), "only the kitchen")
        assert elsewhere.read()["text"] == "only the kitchen"
    finally:
        second.close()
        elsewhere.close()


def test_client_joins_the_chat_it_writes_to(channel: LocalChatChannel, client: Client, events: Events) -> None:
    client.say("moving", chat="garden")
    with pytest.raises(ChannelError):
        channel.send_text(LOCAL, "nobody in local now")
    channel.send_text(Routing("garden", "cli"), "hi garden")
    assert client.read()["text"] == "hi garden"


def test_send_without_a_client_is_a_retryable_error(channel: LocalChatChannel) -> None:
    with pytest.raises(ChannelError, match="no local chat client is connected to chat 'local'") as caught:
        channel.send_text(LOCAL, "anyone?")
    assert caught.value.retryable


def test_send_before_start_is_a_retryable_error(socket_path: Path) -> None:
    with pytest.raises(ChannelError) as caught:
        LocalChatChannel(socket_path).send_text(LOCAL, "too early")
    assert caught.value.retryable


def test_disconnected_client_is_dropped(channel: LocalChatChannel, client: Client, socket_path: Path) -> None:
    gone = Client(socket_path)
    gone.join()
    gone.close()
    for attempt in range(2):
        channel.send_text(LOCAL, f"still one listener ({attempt})")
        assert client.read()["text"] == f"still one listener ({attempt})"
    client.close()
    for _ in range(2):
        with pytest.raises(ChannelError, match="no local chat client") as caught:
            channel.send_text(LOCAL, "nobody left")
        assert caught.value.retryable


def test_client_that_stops_reading_is_dropped(socket_path: Path, events: Events) -> None:
    adapter = LocalChatChannel(socket_path, send_timeout=0.2)
    adapter.start(events)
    stuck = Client(socket_path)
    try:
        stuck.join()
        with pytest.raises(ChannelError, match="no local chat client"):
            for _ in range(1000):
                adapter.send_text(LOCAL, "z" * 65536)
        with pytest.raises(ChannelError):
            adapter.send_text(LOCAL, "small")
    finally:
        stuck.close()
        adapter.stop()


def test_stop_disconnects_clients_and_removes_the_socket(
    channel: LocalChatChannel, client: Client, socket_path: Path, events: Events
) -> None:
    channel.stop()
    assert not socket_path.exists()
    assert client.at_eof()
    channel.stop()  # idempotent
    with pytest.raises(ChannelError):
        channel.send_text(LOCAL, "stopped")

    channel.start(events)
    channel.start(events)  # idempotent
    again = Client(socket_path)
    try:
        assert again.say("back again")["type"] == "ack"
        assert events.next_chat().text == "back again"
    finally:
        again.close()


def test_stale_socket_file_is_replaced(socket_path: Path, events: Events) -> None:
    socket_path.parent.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(socket_path))  # closed without unlinking, as a crash leaves it
    adapter = LocalChatChannel(socket_path)
    adapter.start(events)
    try:
        talker = Client(socket_path)
        assert talker.say("hi")["type"] == "ack"
        talker.close()
    finally:
        adapter.stop()


def test_live_socket_is_not_taken_over(channel: LocalChatChannel, socket_path: Path, events: Events) -> None:
    with pytest.raises(ChannelError, match="already listens") as caught:
        LocalChatChannel(socket_path).start(events)
    assert not caught.value.retryable
    assert socket_path.exists()


def test_a_regular_file_is_not_replaced(socket_path: Path, events: Events) -> None:
    socket_path.parent.mkdir()
    socket_path.write_text("precious")
    with pytest.raises(ChannelError, match="not a socket"):
        LocalChatChannel(socket_path).start(events)
    assert socket_path.read_text() == "precious"


# -- scripts/chat.py ---------------------------------------------------------------------


def _lines_of(stream: IO[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], expected: str) -> list[str]:
    seen: list[str] = []
    while expected not in seen:
        seen.append(lines.get(timeout=WAIT))
    return seen


def _run_chat(socket_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "chat.py"), "--socket", str(socket_path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def test_chat_script_sends_and_prints(channel: LocalChatChannel, socket_path: Path, events: Events) -> None:
    chat = _run_chat(socket_path, "--name", "bob")
    assert chat.stdin is not None
    assert chat.stdout is not None
    out = _lines_of(chat.stdout)
    try:
        chat.stdin.write("hello from the terminal\n")
        chat.stdin.flush()
        event = events.next_chat()
        assert (event.text, event.sender, event.platform_id) == ("hello from the terminal", "bob", "local")

        channel.send_text(LOCAL, "hi bob", (Path("/tmp/a.txt"),))
        assert _wait_for(out, "Ada: hi bob")
        assert _wait_for(out, "  file: /tmp/a.txt")

        channel.ask_question(LOCAL, "q-3", "Coffee or tea?", ("coffee", "tea"))
        assert _wait_for(out, "  2. tea")
        chat.stdin.write("2\n")
        chat.stdin.flush()
        assert events.next() == InboundAnswer(
            channel_type="cli", platform_id="local", question_id="q-3", answer="tea", sender="bob"
        )

        message_id = channel.send_text(LOCAL, "draft")
        assert message_id is not None
        channel.edit_text(LOCAL, message_id, "final")
        channel.add_reaction(LOCAL, message_id, "🎉")
        channel.send_card(LOCAL, Card("Status", "ok", (("disk", "12%"),)))
        shown = _wait_for(out, "  disk: 12%")
        assert f"(edited {message_id}) final" in shown
        assert f"(reaction 🎉 on {message_id})" in shown
        assert "Ada: [Status]" in shown

        chat.stdin.close()  # Ctrl-D
        assert chat.wait(WAIT) == 0
    finally:
        chat.kill()
        chat.wait()


def test_chat_script_explains_a_missing_host(sock_dir: Path) -> None:
    chat = _run_chat(sock_dir / "nothing.sock")
    _, err = chat.communicate(timeout=WAIT)
    assert chat.returncode == 1
    assert "is the host running? start it with `make run`" in err
    assert len(err.strip().splitlines()) == 1


def test_lines_sent_one_by_one_are_all_handed_over_before_the_first_is_stored(client: Client, events: Events) -> None:
    """Reading never waits for the host: the next line is taken while earlier ones commit."""
    events.holding = True
    for i in range(10):
        client.send({"text": f"m{i}", "sender": "alice"})
    assert [events.next_chat().text for _ in range(10)] == [f"m{i}" for i in range(10)]
    events.release()
    assert [client.read()["type"] for _ in range(10)] == ["ack"] * 10


def test_typing_when_asked_reaches_the_chats_clients_and_is_no_error_without_one(
    channel: LocalChatChannel, client: Client
) -> None:
    channel.show_typing(Routing("local", "cli", "t1"))
    assert client.read() == {"type": "typing", "thread": "t1"}
    channel.show_typing(Routing("nobody-here", "cli"))  # no client of that chat: nothing raised
