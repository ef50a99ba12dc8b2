"""The bench's client on the local chat socket, made for pipelining.

Sending never waits for the host: a reader thread takes every line the host writes (acks,
errors and replies), stamps it as it arrives and wakes whoever waits. Every wait has a
deadline and ends with an error that says how far the host got, so a slow host is measured
as slow and a stuck one ends the bench instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench_proc import BenchError

_ANSWERS: Final = frozenset({"ack", "error", "joined"})
# A host that reads nothing for this long is stuck, not slow.
SEND_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True)
class Reply:
    at_ns: int
    thread: str | None
    text: str


def expected_reply(text: str) -> str:
    """The mock provider answers `mock: <last line>` and a `[turn k]` line."""
    return f"mock: {text}"


class ChatClient:
    """One connection to the chat socket, as one person's terminal."""

    def __init__(self, path: Path, sender: str = "bench") -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(str(path))
        # Bounds a send to a host that stopped reading (its buffer full); reads stay unbounded.
        seconds = int(SEND_TIMEOUT_S)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))
        self._sender = sender
        self._changed = threading.Condition()
        # Guarded by _changed.
        self._acks = 0
        self._last_answer_ns = 0
        self._errors: list[str] = []
        self._replies: list[Reply] = []
        self._other: list[dict[str, object]] = []  # edits, reactions, ...: counted, not used
        self._closed: str | None = None
        self._thread = threading.Thread(target=self._read, name="bench-chat-reader", daemon=True)
        self._thread.start()

    # -- the reader thread ---------------------------------------------------------------

    def _read(self) -> None:
        reason = "the host closed the chat socket"
        try:
            with self._socket.makefile("rb") as stream:
                for raw in stream:
                    self._take(time.perf_counter_ns(), json.loads(raw))
        except (OSError, ValueError) as exc:
            reason = f"reading the chat socket failed: {exc}"
        with self._changed:
            self._closed = reason
            self._changed.notify_all()

    def _take(self, at_ns: int, event: dict[str, object]) -> None:
        kind = event.get("type")
        with self._changed:
            if kind in _ANSWERS:
                self._last_answer_ns = at_ns
                if kind == "error":
                    self._errors.append(str(event.get("error")))
                else:
                    self._acks += 1
            elif kind == "message":
                thread = event.get("thread")
                self._replies.append(Reply(at_ns, str(thread) if thread is not None else None, str(event.get("text"))))
            else:
                self._other.append(event)
            self._changed.notify_all()

    # -- sending -------------------------------------------------------------------------

    def _line(self, text: str, thread: str | None) -> bytes:
        line: dict[str, str] = {"text": text, "sender": self._sender}
        if thread is not None:
            line["thread"] = thread
        return (json.dumps(line) + "\n").encode()

    def send(self, text: str, thread: str | None = None) -> int:
        """Send one line; returns when it was sent (perf_counter ns)."""
        at = time.perf_counter_ns()
        self._socket.sendall(self._line(text, thread))
        return at

    def send_all(self, messages: Sequence[tuple[str, str | None]]) -> int:
        """Every line, one after another, without waiting for any ack; returns the first send's time."""
        lines = [self._line(text, thread) for text, thread in messages]  # encoded before the clock starts
        first = time.perf_counter_ns()
        for sent, line in enumerate(lines):
            try:
                self._socket.sendall(line)
            except OSError as exc:
                raise BenchError(f"sending line {sent + 1} of {len(lines)} failed: {exc}") from exc
        return first

    # -- waiting -------------------------------------------------------------------------

    @property
    def answers(self) -> int:
        with self._changed:
            return self._acks + len(self._errors)

    @property
    def errors(self) -> list[str]:
        with self._changed:
            return list(self._errors)

    @property
    def reply_count(self) -> int:
        with self._changed:
            return len(self._replies)

    def wait_answers(self, count: int, timeout: float, stall_s: float) -> int:
        """Until `count` answers (acks or errors) came in all; returns when the last one did.
        Raises when the whole wait takes over `timeout` or no answer comes for `stall_s`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            seen, progress_at = self._acks + len(self._errors), time.monotonic()
            while (got := self._acks + len(self._errors)) < count:
                now = time.monotonic()
                if got != seen:
                    seen, progress_at = got, now
                if self._closed is not None:
                    raise BenchError(f"{self._closed} after {got} of {count} answers")
                if now >= deadline:
                    raise BenchError(f"the host answered {got} of {count} lines within {timeout:.0f} s")
                if now - progress_at >= stall_s:
                    raise BenchError(f"the host answered {got} of {count} lines, then nothing for {stall_s:.0f} s")
                self._changed.wait(min(deadline - now, stall_s - (now - progress_at)))
            return self._last_answer_ns

    def wait_mentions(self, wanted: Mapping[str | None, str], since: int, timeout: float) -> int:
        """Until, for each thread in `wanted`, a reply on that thread (from reply number
        `since` on) contains its text; returns when the last of them arrived. The mock names
        the newest message of each turn, so the reply naming a thread's last message closes
        that thread."""
        missing = dict(wanted)
        last_ns = 0
        index = since
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for reply in self._replies[index:]:
                    text = missing.get(reply.thread)
                    if text is not None and text in reply.text:
                        del missing[reply.thread]
                        last_ns = max(last_ns, reply.at_ns)
                index = len(self._replies)
                if not missing:
                    return last_ns
                if self._closed is not None:
                    raise BenchError(f"{self._closed} with {len(missing)} thread(s) unanswered")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    sample = ", ".join(f"{thread}: {text!r}" for thread, text in list(missing.items())[:5])
                    raise BenchError(
                        f"no reply naming the last message on {len(missing)} of {len(wanted)} thread(s) "
                        f"within {timeout:.0f} s (e.g. {sample}); {len(self._replies)} replies so far"
                    )
                self._changed.wait(remaining)

    def round_trip(self, text: str, thread: str | None, timeout: float) -> float:
        """Send `text`; milliseconds until the agent's reply to it is on the socket."""
        since = self.reply_count
        answers = self.answers
        errors = len(self.errors)
        start = self.send(text, thread)
        self.wait_answers(answers + 1, timeout, timeout)
        if len(self.errors) > errors:
            raise BenchError(f"the host did not take {text!r}: {self.errors[-1]}")
        at = self.wait_mentions({thread: expected_reply(text)}, since, timeout)
        return (at - start) / 1e6

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(timeout=5)
