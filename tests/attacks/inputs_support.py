"""What the input attacks share: a host run as a real process (`python -m actors.main`, the
process runtime, either provider), its /proc figures, raw clients of its chat socket and of a
session's credential proxy, and a normal person who must still be served.

Nothing here sleeps to synchronise: socket reads have deadlines, and the host's log, its DBs
and /proc are polled with a bound.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import queue
import selectors
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.fakes import probes
from tests.fakes.host_process import READY_LINE, REPO, START_TIMEOUT_S

POLL_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.02
ANSWER_TIMEOUT_S = 30.0
# /proc is read this often while an attack runs, so a short-lived peak is still seen.
SAMPLE_INTERVAL_S = 0.002
TOO_MANY_CLIENTS = "too many local chat clients"


class InputAttackError(AssertionError):
    """A step of an attack test did not happen in time."""


def poll(what: str, check: Callable[[], Any], timeout_s: float = POLL_TIMEOUT_S) -> Any:
    """Bounded poll: `check()`'s first truthy value, or InputAttackError after `timeout_s`."""
    return probes.poll(what, check, timeout_s, POLL_INTERVAL_S, error=InputAttackError)


# --- the host ------------------------------------------------------------------------------


class Host:
    """`python -m actors.main` on `data_dir`, as a person starts it.

    Not tests/fakes/host_process.HostProcess: that one always sets HUTCH_PROVIDER=mock after
    the caller's env, so it cannot run the claude provider the credential proxy needs. The
    provider is given here as a flag, which beats the environment (actors/config.py)."""

    def __init__(self, data_dir: Path, *, provider: str = "mock", env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        env_vars = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "HUTCH_"))}
        env_vars.update(env or {})
        env_vars.update(HUTCH_DATA_DIR=str(data_dir), HUTCH_RUNTIME="process")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "actors.main", "--provider", provider], cwd=REPO, env=env_vars, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.pid = self.process.pid
        self.log: list[str] = []
        ready: queue.Queue[str] = queue.Queue()
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.process.stdout, ready), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, None), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()
        try:
            ready.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            self.kill()
            raise InputAttackError("the host did not start:\n" + self.tail()) from None

    def _pump(self, stream: IO[str], ready: queue.Queue[str] | None) -> None:
        for line in stream:
            self.log.append(line)
            if ready is not None and READY_LINE in line:
                ready.put(line)

    @property
    def chat_socket(self) -> Path:
        return self.data_dir / "cli.sock"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> list[str]:
        """SIGTERM, as a person stops it; it must exit cleanly. Returns the host's whole log:
        read to its end, so a check of what it never logged misses nothing."""
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(timeout=60)
        for pump in self._pumps:
            pump.join(timeout=10)
        assert code == 0, f"the host exited with {code}:\n{self.tail()}"
        return list(self.log)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    # -- /proc --------------------------------------------------------------------------------

    def status(self, name: str) -> int:
        """A number from /proc/<pid>/status: "Threads", or "VmRSS" (in kB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == name:
                return int(value.split()[0])
        raise KeyError(name)

    def threads(self) -> int:
        return self.status("Threads")

    def rss_mb(self) -> float:
        return self.status("VmRSS") / 1024

    # -- the log ------------------------------------------------------------------------------

    def tail(self, lines: int = 40) -> str:
        return "".join(list(self.log)[-lines:])

    # -- its files ----------------------------------------------------------------------------

    def session_dir(self) -> Path:
        """The folder of the one session the local chat's messages go to."""
        with read_only(self.data_dir / "hutch.db") as conn:
            rows = conn.execute(
                "SELECT s.id, g.folder FROM sessions s JOIN agent_groups g ON g.id = s.agent_group_id"
            ).fetchall()
        assert len(rows) == 1, rows
        [(session_id, folder)] = rows
        return self.data_dir / "sessions" / str(folder) / str(session_id)

    def session_tag(self) -> str:
        """How the host's log names the session: "[<group>/<first 8 of its id>]"."""
        session = self.session_dir()
        return f"[{session.parent.name}/{session.name[:8]}]"


@contextlib.contextmanager
def host_process(data_dir: Path, *, provider: str = "mock", env: Mapping[str, str] | None = None) -> Iterator[Host]:
    """A host for one test; stopped (unless the test did) as a person stops it, and it must
    stop cleanly: an attack that left it unable to shut down has not been survived."""
    host = Host(data_dir, provider=provider, env=env)
    try:
        yield host
    except BaseException:
        host.kill()
        raise
    host.stop()


@contextlib.contextmanager
def read_only(db: Path) -> Iterator[sqlite3.Connection]:
    """Opened read-only: the test looks, it never takes part in the one-writer rule."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        conn.execute("PRAGMA query_only=1")
        yield conn
    finally:
        conn.close()


def dump(db: Path) -> str:
    """Everything in a database as SQL text: what a stored attack would show up in."""
    with read_only(db) as conn:
        return "\n".join(conn.iterdump())


@dataclass
class Peak:
    """The highest value a reading took while sampled (and how many samples there were)."""

    value: float = 0.0
    samples: int = 0


@contextlib.contextmanager
def sampling(read: Callable[[], float]) -> Iterator[Peak]:
    """Samples `read()` on a thread until the block ends; the block sees the peak so far."""
    peak = Peak()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError, KeyError, ValueError):  # the host may be gone
                peak.value = max(peak.value, read())
                peak.samples += 1
            done.wait(SAMPLE_INTERVAL_S)

    sampler = threading.Thread(target=sample, name="proc-sampler", daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join(timeout=5)


# --- the chat socket -----------------------------------------------------------------------


def connect_unix(path: Path, timeout_s: float = ANSWER_TIMEOUT_S) -> socket.socket:
    """A stream connection to `path` whose connect and reads are bounded by `timeout_s`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # A blocking connect waits while the listen backlog is full, as a client's would (a
        # socket with a timeout is non-blocking and fails at once with EAGAIN); SO_SNDTIMEO
        # bounds that wait.
        whole = int(timeout_s)
        timeval = struct.pack("ll", whole, int((timeout_s - whole) * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        sock.connect(str(path))
        sock.settimeout(timeout_s)
    except BaseException:
        sock.close()
        raise
    return sock


def encode(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@dataclass
class RawChat:
    """One connection to the chat socket, speaking bytes; reads have a deadline."""

    sock: socket.socket
    buffer: bytes = b""
    eof: bool = False
    lines: list[bytes] = field(default_factory=list)

    @classmethod
    def connect(cls, path: Path) -> RawChat:
        return cls(connect_unix(path))

    def send_until_hung_up(self, data: bytes) -> bool:
        """Send `data`; False if the host closed the connection before taking all of it (what
        it wrote before closing is still there to read)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def feed(self) -> None:
        """One read's worth: lines split off, EOF (or a reset after the last line) noted."""
        try:
            chunk = self.sock.recv(64 * 1024)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return
        self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        self.lines.extend(complete)

    def read(self) -> dict[str, Any]:
        """The next line the host wrote, decoded; typing hints (the agent is at work) skipped."""
        while True:
            while not self.lines:
                if self.eof:
                    raise InputAttackError("the host closed the connection without another line")
                self.feed()
            obj = json.loads(self.lines.pop(0))
            assert isinstance(obj, dict), obj
            if obj.get("type") != "typing":
                return obj

    def read_to_eof(self) -> list[dict[str, Any]]:
        """Every line up to the host's close; a socket timeout if the host never closes."""
        while not self.eof:
            self.feed()
        lines, self.lines = self.lines, []
        return [json.loads(line) for line in lines if line]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Person:
    """A normal client of the chat: one connection, a message at a time, each answered."""

    def __init__(self, host: Host, chat: RawChat) -> None:
        self.host = host
        self.chat = chat

    @classmethod
    def connect(cls, host: Host) -> Person:
        return cls(host, RawChat.connect(host.chat_socket))

    def say(self, text: str, timeout_s: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        """Send `text`; returns the agent's answer to it once the host acked it. The answer
        echoes `text` (mock: "mock: <text>", the fake Messages API: "echo: ...<text>...")."""
        assert self.chat.send_until_hung_up(encode({"text": text, "sender": "alice"})), "the host hung up"
        deadline = time.monotonic() + timeout_s
        ack: dict[str, Any] | None = None
        answer: dict[str, Any] | None = None
        # The ack and the answer may come in either order, and every client of the chat gets
        # every answer: only the one to `text` counts.
        while ack is None or answer is None:
            self.chat.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                line = self.chat.read()
            except TimeoutError:
                raise InputAttackError(f"no ack and answer to {text!r} in time\n{self.host.tail()}") from None
            if line.get("type") == "message":
                if text in line.get("text", ""):
                    answer = line
            else:
                assert line["type"] == "ack", line
                ack = line
        return answer

    def close(self) -> None:
        self.chat.close()


def served(host: Host, text: str, timeout_s: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
    """A newcomer's turn: connect (again, while every slot is still taken), say `text`, and
    return the agent's answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        person = Person.connect(host)
        try:
            # A join is answered without reaching the host: it only shows a slot was free.
            if person.chat.send_until_hung_up(encode({"join": "local"})):
                joined = person.chat.read()
            else:
                joined = person.chat.read_to_eof()[0]
            if joined["type"] == "joined":
                return person.say(text, max(0.01, deadline - time.monotonic()))
            assert joined["type"] == "error" and TOO_MANY_CLIENTS in joined["error"], joined
        finally:
            person.close()
        if time.monotonic() > deadline:
            raise InputAttackError(f"no chat slot came free within {timeout_s:g} s\n{host.tail()}")
        time.sleep(POLL_INTERVAL_S)


def await_refusals(chats: list[RawChat], count: int, timeout_s: float = POLL_TIMEOUT_S) -> list[RawChat]:
    """Read all `chats` at once until `count` of them were closed by the host; returns those."""
    closed: list[RawChat] = [chat for chat in chats if chat.eof]
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        for chat in chats:
            if not chat.eof:
                selector.register(chat.sock, selectors.EVENT_READ, chat)
        while len(closed) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise InputAttackError(f"only {len(closed)} of {len(chats)} connections closed, expected {count}")
            for key, _ in selector.select(timeout=left):
                chat = key.data
                chat.feed()
                if chat.eof:
                    selector.unregister(chat.sock)
                    closed.append(chat)
    return closed


# --- the credential proxy ------------------------------------------------------------------


def unread_by_peer(sock: socket.socket) -> int:
    """Bytes sent on a Unix stream socket that its peer has not read yet (SIOCOUTQ): zero
    means the other side has taken everything, into its own memory."""
    try:
        queued: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except OSError:  # closed: nothing of it is waiting for the peer
        return 0
    return queued


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_http(path: Path, method: str, target: str, body: bytes = b"", headers: str = "") -> HttpAnswer:
    """Send exactly `method target` on a Unix socket: a client library would normalise the
    target, and the point is to send what a hostile agent would."""
    head = f"{method} {target} HTTP/1.1\r\nHost: anthropic-proxy\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    with connect_unix(path) as sock:
        sock.sendall(head.encode("latin-1") + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return HttpAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
