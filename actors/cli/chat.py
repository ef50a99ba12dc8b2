"""Chat with your agent from a terminal, through the host's local chat socket.

    hutch chat [--data-dir PATH] [--socket PATH] [--name NAME] [--chat ID]
    python scripts/chat.py [--socket PATH] [--name NAME] [--chat ID]

Type a line and press Enter to send it. When the assistant asks a question, answer with
the option's number or its text. Ctrl-D quits once the host has taken what you sent.
The protocol is described in actors/channels/local_chat.py. This module uses the standard
library only (nothing of the host is imported), so `scripts/chat.py` runs it with any
Python 3.11, without the host's dependencies installed.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

_READ_BYTES = 64 * 1024
# After Ctrl-D, how long to wait for the host to confirm the last lines before giving up.
_DRAIN_SECONDS = 10.0


def default_socket() -> Path:
    return Path(os.environ.get("HUTCH_DATA_DIR") or "data") / "cli.sock"


def default_name() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "me"


@dataclass(frozen=True)
class Question:
    question_id: str
    options: tuple[str, ...]
    thread: str | None

    def choice(self, reply: str) -> str | None:
        """The option a typed reply picks, or None when it is an ordinary message."""
        reply = reply.strip()
        if not self.options:
            return reply  # an open question: whatever comes next is the answer
        if reply.isdigit() and 1 <= int(reply) <= len(self.options):
            return self.options[int(reply) - 1]
        for option in self.options:
            if option.casefold() == reply.casefold():
                return option
        return None


class LineBuffer:
    """Splits a byte stream into lines; a newline byte never occurs inside a UTF-8 sequence,
    so splitting before decoding is safe."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        return [bytes(line) for line in lines]

    def flush(self) -> list[bytes]:
        rest, self._buffer = bytes(self._buffer), bytearray()
        return [rest] if rest else []


class ChatSession:
    def __init__(self, sock: socket.socket, name: str, chat: str, out: TextIO, err: TextIO) -> None:
        self._sock = sock
        self._name = name
        self._chat = chat
        self._out = out
        self._err = err
        # The host answers every line exactly once (ack, joined or error); quitting waits
        # for those so a message typed just before Ctrl-D is not lost.
        self._unanswered = 0
        self._question: Question | None = None
        self._from_host = LineBuffer()
        self._from_person = LineBuffer()

    def run(self, stdin_fd: int) -> int:
        self._send({"join": self._chat})
        # select() rather than epoll: it also accepts stdin redirected from a regular file.
        with selectors.SelectSelector() as selector:
            selector.register(stdin_fd, selectors.EVENT_READ, "person")
            selector.register(self._sock, selectors.EVENT_READ, "host")
            deadline: float | None = None
            while deadline is None or self._unanswered > 0:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = selector.select(timeout)
                if not events:
                    self._warn("the host did not confirm your last message; it may not have arrived")
                    return 1
                for key, _ in events:
                    if key.data == "host" and not self._read_host():
                        self._warn("the host closed the connection")
                        return 1
                    if key.data == "person" and not self._read_person(stdin_fd):
                        selector.unregister(stdin_fd)
                        deadline = time.monotonic() + _DRAIN_SECONDS
        return 0

    def _read_host(self) -> bool:
        try:
            chunk = self._sock.recv(_READ_BYTES)
        except OSError:
            return False
        for line in self._from_host.feed(chunk):
            self._show(line)
        return bool(chunk)

    def _read_person(self, stdin_fd: int) -> bool:
        chunk = os.read(stdin_fd, _READ_BYTES)
        lines = self._from_person.feed(chunk) if chunk else self._from_person.flush()
        for line in lines:
            self._say(line.decode("utf-8", errors="replace").rstrip("\r"))
        return bool(chunk)

    # -- what the person types ---------------------------------------------------------

    def _say(self, text: str) -> None:
        if not text.strip():
            return
        question = self._question
        choice = question.choice(text) if question is not None else None
        if question is not None and choice is not None:
            self._question = None
            self._send(
                {
                    "answer": choice,
                    "question_id": question.question_id,
                    "sender": self._name,
                    "chat": self._chat,
                    "thread": question.thread,
                }
            )
        else:
            self._send({"text": text, "sender": self._name, "chat": self._chat})

    def _send(self, obj: dict[str, Any]) -> None:
        self._sock.sendall(json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n")
        self._unanswered += 1

    # -- what the host sends -----------------------------------------------------------

    def _show(self, line: bytes) -> None:
        try:
            obj = json.loads(line)
        except ValueError:
            self._warn("the host sent a line that is not JSON; ignored")
            return
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if kind in {"ack", "joined", "error"}:
            self._unanswered = max(0, self._unanswered - 1)
            if kind == "error":
                self._warn(f"the host refused that: {_field(obj, 'error')}")
        elif kind == "message":
            self._show_message(obj)
        elif kind == "edit":
            self._print(f"(edited {_field(obj, 'id')}) {_field(obj, 'text')}")
        elif kind == "reaction":
            self._print(f"(reaction {_field(obj, 'emoji')} on {_field(obj, 'id')})")
        elif kind == "question":
            self._show_question(obj)
        elif kind == "card":
            self._show_card(obj)
        # Other types come from a newer host; skipping them keeps this client usable.

    def _show_message(self, obj: dict[str, Any]) -> None:
        self._print(f"{_speaker(obj)}: {_field(obj, 'text')}")
        for path in _list(obj, "files"):
            self._print(f"  file: {path}")

    def _show_question(self, obj: dict[str, Any]) -> None:
        options = tuple(str(option) for option in _list(obj, "options"))
        thread = obj.get("thread")
        self._question = Question(_field(obj, "question_id"), options, thread if isinstance(thread, str) else None)
        self._print(f"{_speaker(obj)}: {_field(obj, 'question')}")
        for number, option in enumerate(options, start=1):
            self._print(f"  {number}. {option}")
        self._print("  (answer with a number or the option's text)" if options else "  (your next line is the answer)")

    def _show_card(self, obj: dict[str, Any]) -> None:
        self._print(f"{_speaker(obj)}: [{_field(obj, 'title')}]")
        text = _field(obj, "text")
        if text:
            self._print(text)
        for pair in _list(obj, "fields"):
            if isinstance(pair, list) and len(pair) == 2:
                self._print(f"  {pair[0]}: {pair[1]}")

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def _warn(self, text: str) -> None:
        print(f"chat: {text}", file=self._err, flush=True)


def _field(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return "" if value is None else str(value)


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    return value if isinstance(value, list) else []


def _speaker(obj: dict[str, Any]) -> str:
    name = _field(obj, "sender") or "Assistant"
    thread = obj.get("thread")
    return f"{name} [thread {thread}]" if thread else name


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no socket there"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror or str(exc)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Chat with your agent through the hutch host.")
    parser.add_argument("--socket", type=Path, default=default_socket(), help="default: %(default)s")
    parser.add_argument("--name", default=default_name(), help="who you are in the chat (default: %(default)s)")
    parser.add_argument("--chat", default="local", help="which local chat to join (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sock = connect(args.socket)
    except OSError as exc:
        print(
            f"chat: cannot connect to {args.socket} ({_why(exc)}); is the host running? start it with `make run`",
            file=sys.stderr,
        )
        return 1
    with sock:
        session = ChatSession(sock, args.name, args.chat, sys.stdout, sys.stderr)
        try:
            return session.run(sys.stdin.fileno())
        except KeyboardInterrupt:
            return 130
        except OSError as exc:
            print(f"chat: connection lost: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
