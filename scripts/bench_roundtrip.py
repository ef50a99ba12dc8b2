"""How long a message takes to get answered, in milliseconds, and what the file events cost.

(a) The whole host, in this process: a client on the local chat socket sends a line; the
    Supervisor routes it, the SessionActor writes `inbound.db`; the agent (process runtime,
    `python -m container_runner`, mock provider) wakes on a watchdog event, writes its reply
    to `outbound.db`; the host wakes on a watchdog event and the DeliveryActor puts the
    reply back on the socket. The first message also starts the agent ("cold start"); the
    next N go one after another to the warm agent.
(b) The container alone: a `python -m container_runner` child on a session folder. The
    bench plays host: it writes a `messages_in` row and waits, on watchdog events, for the
    reply row in `outbound.db`.
(c) Baselines from the same run: (b) with a waiter that polls `outbound.db` every 10 ms
    instead of waiting for events (interleaved with (b), same child); and the floor of
    event delivery on this machine: a file written -> its watchdog event, and an SQLite
    insert committed -> the event for the commit (the journal's deletion).

    python scripts/bench_roundtrip.py [N] [--n N] [--dir DIR]

The agent runs with the mock provider (no model, no network) and the runner's default
heartbeat interval, so what is measured is the plumbing: sockets, actors, SQLite commits
(synchronous=FULL: fsync cost depends on the disk under --dir) and inotify.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import queue
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, NamedTuple, TypeVar

# Run as a file, `python scripts/...` puts scripts/ on the path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_machine import cpu_model
from watchdog.observers import Observer

from actors.config import HostConfig
from actors.host import Host, start_host
from actors.runtime.base import AgentHandle, AgentSpec
from actors.runtime.process import ProcessRuntime
from protocol import inbound, outbound
from protocol.content import ChatIn, ChatOut
from protocol.db import create_session_db, read_transaction, write_transaction
from protocol.filewatch import watch_folder
from protocol.layout import OUTBOUND_DB, SessionLayout
from protocol.rows import MessageIn, Routing
from protocol.schema import INBOUND, OUTBOUND
from protocol.timeutil import now_ts

T = TypeVar("T")

REPO_ROOT: Final = Path(__file__).resolve().parents[1]

DEFAULT_N: Final = 50
# Generous: a cold start on a loaded CI machine can take seconds; a hang must still end.
WAIT_TIMEOUT_S: Final = 30.0
POLL_INTERVAL_S: Final = 0.010
# Like tests/fakes/session.py's FolderEvents: a slow re-check so a lost event cannot hang the
# bench; a reply found by it (not by an event) is counted and reported.
FALLBACK_RECHECK_S: Final = 1.0
UNIX_SOCKET_MAX: Final = 107  # sun_path is 108 bytes with the terminating NUL
ROUTING: Final = Routing(platform_id="bench", channel_type="cli", thread_id=None)
_OUTBOUND_FILES: Final = frozenset({OUTBOUND_DB, f"{OUTBOUND_DB}-journal"})

log = logging.getLogger("bench_roundtrip")

# Row labels, in print order (the smoke test checks for them).
HOST_COLD: Final = "(a) host round trip, cold start (agent starts)"
HOST_WARM: Final = "(a) host round trip, warm agent: socket -> reply on socket"
CONTAINER_COLD: Final = "(b) container cold start: spawn -> reply row"
CONTAINER_EVENTS: Final = "(b) container: insert -> reply row, waiter on events"
CONTAINER_POLL: Final = "(c) container: same, waiter polls outbound.db every 10 ms"
FLOOR_FILE: Final = "(c) floor: file write -> watchdog event"
FLOOR_SQLITE: Final = "(c) floor: SQLite insert+commit -> event for the commit"
SQLITE_COMMIT: Final = "(c) SQLite insert+commit alone, no waiting (FULL)"
LABELS: Final = (
    HOST_COLD,
    HOST_WARM,
    CONTAINER_COLD,
    CONTAINER_EVENTS,
    CONTAINER_POLL,
    FLOOR_FILE,
    FLOOR_SQLITE,
    SQLITE_COMMIT,
)


class BenchError(RuntimeError):
    """Something did not answer in time or answered wrongly; the message says what."""


@dataclass
class Result:
    label: str
    samples_ms: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def _ms_since(start_ns: int, end_ns: int | None = None) -> float:
    return ((time.perf_counter_ns() if end_ns is None else end_ns) - start_ns) / 1e6


def _expected_reply(text: str) -> str:
    """The mock provider answers `mock: <last line>` and a `[turn k]` line."""
    return f"mock: {text}"


def _is_reply_to(reply_text: str, text: str) -> bool:
    return reply_text.splitlines()[:1] == [_expected_reply(text)]


# -- waiting -------------------------------------------------------------------------------


class EventWaiter:
    """Re-runs a check on every file event in a folder until it returns something."""

    def __init__(self, folder: Path) -> None:
        self._changed = threading.Condition()
        self._events = 0
        self.found_by_fallback = 0
        self.outbound_events = 0  # on outbound.db and its journal: what the host reacts to
        self._observer = watch_folder(folder, self._notify, recursive=False)

    def _notify(self, path: Path) -> None:
        with self._changed:
            self._events += 1
            if path.name in _OUTBOUND_FILES:
                self.outbound_events += 1
            self._changed.notify_all()

    def wait_until(self, check: Callable[[], T | None], timeout: float = WAIT_TIMEOUT_S) -> T:
        deadline = time.monotonic() + timeout
        with self._changed:
            woken_by_event = True
            while True:
                result = check()
                if result is not None:
                    if not woken_by_event:
                        self.found_by_fallback += 1
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s")
                seen = self._events
                self._changed.wait(min(FALLBACK_RECHECK_S, remaining))
                woken_by_event = self._events != seen

    def close(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)


def poll_until(check: Callable[[], T | None], timeout: float = WAIT_TIMEOUT_S) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(POLL_INTERVAL_S)


# -- (a) the whole host --------------------------------------------------------------------


class _Line(NamedTuple):
    at_ns: int
    event: dict[str, Any]


class ChatSocket:
    """The bench's side of the local chat socket; every line is stamped when it arrives."""

    def __init__(self, path: Path, sender: str = "bench") -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(str(path))
        self._sender = sender
        self._answers: queue.Queue[_Line] = queue.Queue()  # ack / error / joined
        self._messages: queue.Queue[_Line] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(self._socket.makefile("rb"),), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        with stream, contextlib.suppress(OSError, ValueError):
            for raw in stream:
                at = time.perf_counter_ns()
                event = json.loads(raw)
                target = self._answers if event.get("type") in {"ack", "error", "joined"} else self._messages
                target.put(_Line(at, event))

    def round_trip(self, text: str, timeout: float = WAIT_TIMEOUT_S) -> float:
        """Send `text`; milliseconds until the agent's reply to it is on the socket."""
        start = time.perf_counter_ns()
        self._socket.sendall((json.dumps({"text": text, "sender": self._sender}) + "\n").encode())
        answer = self._answers.get(timeout=timeout).event
        if answer.get("type") != "ack":
            raise BenchError(f"the host did not take {text!r}: {answer}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"no reply to {text!r} within {timeout} s") from None
            if line.event.get("type") == "message" and _is_reply_to(str(line.event.get("text", "")), text):
                return _ms_since(start, line.at_ns)
            log.warning("ignoring an unexpected chat line: %s", line.event)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(timeout=5)


class TrackingRuntime(ProcessRuntime):
    """The real process runtime; it keeps its handles so no agent can outlive the bench."""

    def __init__(self) -> None:
        super().__init__()
        self.handles: list[AgentHandle] = []

    def start(self, spec: AgentSpec, on_exit: Callable[[int], None]) -> AgentHandle:
        handle = super().start(spec, on_exit)
        self.handles.append(handle)
        return handle


@contextlib.contextmanager
def running_host(data_dir: Path) -> Iterator[Host]:
    config = HostConfig(data_dir=data_dir, runtime="process", provider="mock")
    if len(str(config.chat_socket)) > UNIX_SOCKET_MAX:
        raise BenchError(f"{config.chat_socket} is too long for a Unix socket; use a shorter --dir")
    runtime = TrackingRuntime()
    host = start_host(config, runtime=runtime)
    try:
        yield host
    finally:
        try:
            host.stop()
        finally:
            for handle in runtime.handles:
                if handle.alive():
                    log.warning("agent %s outlived the host; stopping it", handle.ident)
                    handle.stop(timeout_s=5)


def bench_host(data_dir: Path, n: int) -> list[Result]:
    cold, warm = Result(HOST_COLD), Result(HOST_WARM)
    with running_host(data_dir) as host:
        chat = ChatSocket(host.config.chat_socket)
        try:
            cold.samples_ms.append(chat.round_trip("bench a cold"))
            for i in range(n):
                warm.samples_ms.append(chat.round_trip(f"bench a {i}"))
        finally:
            chat.close()
    return [cold, warm]


# -- (b) the container alone ---------------------------------------------------------------


def _runner_env(layout: SessionLayout, agent_dir: Path) -> dict[str, str]:
    # No credentials and no HUTCH_* overrides from the caller's shell: the runner's defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "HUTCH_", "CLAUDE_"))}
    env.update(
        HUTCH_SESSION_DIR=str(layout.root),
        HUTCH_AGENT_DIR=str(agent_dir),
        HUTCH_PROVIDER="mock",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
        PYTHONUNBUFFERED="1",
    )
    return env


class RunnerChild:
    """`python -m container_runner` on a session folder, in its own process group."""

    def __init__(self, layout: SessionLayout, agent_dir: Path, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "container_runner"],
                cwd=REPO_ROOT,
                env=_runner_env(layout, agent_dir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        code = self._proc.poll()
        if code is not None:
            raise BenchError(f"the runner exited with code {code}; its log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("the runner ignored SIGTERM; killing it")
        # Whatever it started goes with it, as with a container.
        self._signal(signal.SIGKILL)
        self._proc.wait(timeout=10)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)


class ContainerBench:
    """Plays host for one session folder: writes inbound rows, finds the replies."""

    def __init__(self, root: Path) -> None:
        self.layout = SessionLayout(root / "session")
        self.layout.create()
        create_session_db(self.layout.inbound_db, INBOUND)
        create_session_db(self.layout.outbound_db, OUTBOUND)
        self.agent_dir = root / "agent"
        self.agent_dir.mkdir()
        self.log_path = root / "runner.log"
        self._cursor = 0  # the seq of the last reply seen

    def write(self, text: str) -> MessageIn:
        with write_transaction(self.layout.inbound_db) as conn:
            return inbound.insert_message(
                conn,
                message_id=uuid.uuid4().hex,
                content=ChatIn(text=text, sender="bench", sender_id="bench"),
                timestamp=now_ts(),
                routing=ROUTING,
            )

    def reply_check(self, row: MessageIn, text: str) -> Callable[[], str | None]:
        def check() -> str | None:
            with read_transaction(self.layout.outbound_db) as conn:
                replies = outbound.messages_after(conn, self._cursor)
            for reply in replies:
                if reply.in_reply_to == row.id and reply.kind == "chat":
                    content = reply.decoded()
                    if not isinstance(content, ChatOut) or not _is_reply_to(content.text, text):
                        raise BenchError(f"unexpected reply to {text!r}: {reply}")
                    self._cursor = reply.seq
                    return content.text
            return None

        return check

    def round_trip(self, text: str, wait: Callable[[Callable[[], str | None]], str]) -> float:
        start = time.perf_counter_ns()
        row = self.write(text)
        wait(self.reply_check(row, text))
        return _ms_since(start)


@dataclass(frozen=True)
class ContainerNotes:
    found_by_fallback: int  # replies only the slow re-check found: events that never came
    outbound_events_per_message: float  # each one is an `OutboundChanged` for a real host


def bench_container(root: Path, n: int) -> tuple[list[Result], ContainerNotes]:
    """(b) and its polling variant, interleaved on one runner."""
    cold, events, polled = Result(CONTAINER_COLD), Result(CONTAINER_EVENTS), Result(CONTAINER_POLL)
    bench = ContainerBench(root)
    waiter = EventWaiter(bench.layout.out)
    runner: RunnerChild | None = None
    try:
        # As the host does it: the row first, then the container; the runner finds it at start.
        start = time.perf_counter_ns()
        runner = RunnerChild(bench.layout, bench.agent_dir, bench.log_path)
        row = bench.write("bench b cold")
        try:
            waiter.wait_until(bench.reply_check(row, "bench b cold"))
        except TimeoutError:
            runner.check_alive()
            raise BenchError(f"the runner did not answer; its log:\n{runner.log_tail()}") from None
        cold.samples_ms.append(_ms_since(start))
        outbound_before = waiter.outbound_events
        for i in range(n):
            try:
                events.samples_ms.append(bench.round_trip(f"bench b {i}", waiter.wait_until))
                polled.samples_ms.append(bench.round_trip(f"bench c {i}", poll_until))
            except TimeoutError:
                runner.check_alive()
                raise BenchError(f"the runner stopped answering; its log:\n{runner.log_tail()}") from None
        per_message = (waiter.outbound_events - outbound_before) / (2 * n)
        return [cold, events, polled], ContainerNotes(waiter.found_by_fallback, per_message)
    finally:
        waiter.close()
        if runner is not None:
            runner.stop()


# -- (c) the floor of event delivery -------------------------------------------------------


class FirstEvent:
    """Stamps the first event that `matches` accepts after `arm()`."""

    def __init__(self, folder: Path, matches: Callable[[Path], bool]) -> None:
        self._matches = matches
        self._lock = threading.Lock()
        self._armed = False
        self._at_ns = 0
        self._hit = threading.Event()
        self._observer = watch_folder(folder, self._on_event, recursive=False)

    def _on_event(self, path: Path) -> None:
        at = time.perf_counter_ns()
        with self._lock:
            if self._armed and self._matches(path):
                self._armed = False
                self._at_ns = at
                self._hit.set()

    def arm(self) -> None:
        with self._lock:
            self._armed = True
            self._hit.clear()

    def wait(self, timeout: float = WAIT_TIMEOUT_S) -> int:
        if not self._hit.wait(timeout):
            raise BenchError(f"no file event within {timeout} s")
        return self._at_ns

    def close(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)


def bench_file_floor(folder: Path, n: int) -> Result:
    folder.mkdir()
    result = Result(FLOOR_FILE)
    expected: list[str] = [""]
    first = FirstEvent(folder, lambda path: path.name == expected[0])
    try:
        for i in range(n):
            expected[0] = f"f{i}"
            first.arm()
            start = time.perf_counter_ns()
            (folder / expected[0]).write_bytes(b"x")
            result.samples_ms.append(_ms_since(start, first.wait()))
    finally:
        first.close()
    return result


def bench_sqlite_floor(folder: Path, n: int) -> list[Result]:
    """The commit point of a DELETE-mode transaction is the journal's deletion: the event
    the other side needs before it can see the row."""
    folder.mkdir()
    db = folder / "floor.db"
    create_session_db(db, INBOUND)
    journal = folder / "floor.db-journal"
    floor, commit = Result(FLOOR_SQLITE), Result(SQLITE_COMMIT)
    first = FirstEvent(folder, lambda path: path.name == journal.name and not journal.exists())
    try:
        for i in range(n):
            first.arm()
            start = time.perf_counter_ns()
            with write_transaction(db) as conn:
                inbound.insert_message(
                    conn, message_id=f"m{i}", content=ChatIn(text=f"floor {i}", sender="bench"), timestamp=now_ts()
                )
            commit.samples_ms.append(_ms_since(start))
            floor.samples_ms.append(_ms_since(start, first.wait()))
    finally:
        first.close()
    return [floor, commit]


# -- report --------------------------------------------------------------------------------


def _filesystem(path: Path) -> str:
    """The file system type under `path` (fsync and inotify costs depend on it)."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    target = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3:
            point = parts[1]
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, kind = point, parts[2]
    return kind


def _report(results: list[Result], n: int, folder: Path, notes: ContainerNotes, took_s: float) -> str:
    width = max(len(result.label) for result in results)
    observer = getattr(Observer, "__name__", str(Observer))
    lines = [
        f"round-trip benchmark: N={n} sequential messages per case, mock provider, temp data in {folder}",
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}",
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"watchdog {importlib.metadata.version('watchdog')} ({observer}), file system {_filesystem(folder)}",
        "",
        f"{'case':<{width}}  {'n':>4}  {'median ms':>10}  {'p99 ms':>10}",
        f"{'-' * width}  {'-' * 4}  {'-' * 10}  {'-' * 10}",
    ]
    lines += [f"{r.label:<{width}}  {len(r.samples_ms):>4}  {r.median_ms:>10.2f}  {r.p99_ms:>10.2f}" for r in results]
    lines += [
        "",
        f"(b)/(c) file events on outbound.db and its journal per warm message: "
        f"{notes.outbound_events_per_message:.1f} (the host and the inbox read once per burst, not once per event)",
        f"(b) replies found only by the {FALLBACK_RECHECK_S:.0f} s fallback re-check (a lost event): "
        f"{notes.found_by_fallback}",
        f"total time: {took_s:.1f} s",
    ]
    return "\n".join(lines)


def _quiet_stop_race(record: logging.LogRecord) -> bool:
    """watchdog (>= 3) logs this at ERROR when an event arrives while an observer is being
    stopped, and then drops the event as intended; in a bench that starts and stops several
    observers it is noise, not a failure."""
    return "called when the thread is inactive" not in record.getMessage()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n_pos", nargs="?", type=int, metavar="N", help=f"messages per case (default {DEFAULT_N})")
    parser.add_argument("--n", type=int, default=None, help="the same as N")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where to make the temporary folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the host's and the agent's log")
    args = parser.parse_args(argv)
    if args.n is not None and args.n_pos is not None and args.n != args.n_pos:
        parser.error("N and --n disagree")
    n = args.n if args.n is not None else args.n_pos if args.n_pos is not None else DEFAULT_N
    if n < 1:
        parser.error("N must be at least 1")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    if not args.verbose:
        logging.getLogger("watchdog.observers.inotify").addFilter(_quiet_stop_race)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-rt-", dir=args.dir) as name:
        folder = Path(name)
        results = bench_host(folder / "host", n)
        container, notes = bench_container(folder / "container", n)
        results += container
        results.append(bench_file_floor(folder / "floor-file", n))
        results += bench_sqlite_floor(folder / "floor-sqlite", n)
        print(_report(results, n, folder, notes, time.monotonic() - started), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
