"""A test's side of the local chat socket: what `scripts/chat.py` does for a person."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
from pathlib import Path
from typing import Any


class ChatClient:
    def __init__(self, path: Path, sender: str = "tester", timeout: float = 30) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(str(path))
        self._reader = self._socket.makefile("r", encoding="utf-8")
        self._sender = sender
        self._timeout = timeout
        self._acks: queue.Queue[dict[str, Any]] = queue.Queue()
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        # Typing hints, kept apart: a test waiting for a message must not get one.
        self.typing: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._reader:
            event = json.loads(line)
            if event.get("type") in {"ack", "error", "joined"}:
                self._acks.put(event)
            elif event.get("type") == "typing":
                self.typing.put(event)
            else:
                self.messages.put(event)

    def send(self, text: str, thread: str | None = None) -> dict[str, Any]:
        """Send a message (in `thread`, if given); returns the host's ack (or error) line."""
        line = {"text": text, "sender": self._sender} | ({"thread": thread} if thread else {})
        return self._request(line)

    def answer(self, question_id: str, choice: str) -> dict[str, Any]:
        """Pick `choice` for a question line; returns the host's ack (or error) line."""
        return self._request({"answer": choice, "question_id": question_id, "sender": self._sender})

    def _request(self, line: dict[str, Any]) -> dict[str, Any]:
        self._socket.sendall((json.dumps(line) + "\n").encode())
        return self._acks.get(timeout=self._timeout)

    def next_message(self, timeout: float | None = None) -> dict[str, Any]:
        return self.messages.get(timeout=timeout or self._timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
