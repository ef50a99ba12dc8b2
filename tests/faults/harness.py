"""What the fault tests share: a host run as a real process that a test can SIGKILL, its
agents found in /proc (or, on the docker runtime, through the engine), a chat client that
outlives restarts, and the checks made after one.

Nothing here sleeps to synchronise: the chat socket's lines are events, and where none
exists (a claim in outbound.db, a tool's process, an agent's end) a bounded poll reads
/proc, a file or the engine.
"""

from __future__ import annotations

import contextlib
import html
import json
import queue
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import docker

from actors.host import INSTALLATION_FILE
from actors.runtime.docker import LABEL_INSTALLATION, LABEL_SESSION
from actors.runtime.process import agents_in
from protocol.layout import SessionLayout
from tests.fakes import probes
from tests.fakes.chat_client import ChatClient
from tests.fakes.fake_messages_api import FakeReply
from tests.fakes.host_process import HostProcess

# Generous: a message whose agent was killed waits for a retry (5 s, then more) and may be
# found again only by the sweep (every 30 s).
ANSWER_TIMEOUT_S = 90.0
POLL_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.02


class FaultError(AssertionError):
    """A step of a fault test did not happen in time; carries the host's recent log."""


def poll(
    what: str, check: Callable[[], Any], timeout_s: float = POLL_TIMEOUT_S, interval_s: float = POLL_INTERVAL_S
) -> Any:
    """Bounded poll: `check()`'s first truthy value, or FaultError after `timeout_s`."""
    return probes.poll(what, check, timeout_s, interval_s, error=FaultError)


# --- /proc ---------------------------------------------------------------------------------


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None  # gone, or not ours to read


def agent_pids(data_dir: Path) -> list[int]:
    """Live runner processes of sessions under `data_dir`: found as the host finds the ones a
    dead host left (a zombie has no command line any more, so it is not counted)."""
    return agents_in(data_dir.resolve())


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc/<pid>/stat."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read(entry / "stat")
        if stat is None:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendant_running(ancestor: int, argv: list[bytes]) -> int | None:
    """The pid of a live process below `ancestor` whose command line is exactly `argv`."""
    parents = _parents()
    for pid in parents:
        cmdline = _read(Path(f"/proc/{pid}/cmdline"))
        if cmdline is None or cmdline.rstrip(b"\0").split(b"\0") != argv:
            continue
        step = pid
        while step in parents and step > 1:
            step = parents[step]
            if step == ancestor:
                return pid
    return None


# --- databases -----------------------------------------------------------------------------


def session_layouts(data_dir: Path) -> list[SessionLayout]:
    """Every session folder (`sessions/<group>/<session id>/`), its paths as both sides know them."""
    return [SessionLayout(folder) for folder in sorted(data_dir.glob("sessions/*/*")) if folder.is_dir()]


def all_dbs(data_dir: Path) -> list[Path]:
    dbs = [data_dir / "hutch.db"]
    for layout in session_layouts(data_dir):
        dbs += [db for db in (layout.inbound_db, layout.outbound_db) if db.exists()]
    return dbs


@contextlib.contextmanager
def reading(db: Path) -> Iterator[sqlite3.Connection]:
    """A reader's connection as the project opens one: it may roll back a hot journal."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute("PRAGMA query_only=1")
        yield conn
    finally:
        conn.close()


def integrity_problems(data_dir: Path) -> list[str]:
    """Every DB's `PRAGMA integrity_check` that did not answer `ok`; a missing DB is one."""
    problems: list[str] = []
    dbs = all_dbs(data_dir)
    if not any(db.name == "inbound.db" for db in dbs):
        problems.append("no session inbound.db found")
    for db in dbs:
        if not db.exists():
            problems.append(f"{db}: missing")
            continue
        try:
            with reading(db) as conn:
                result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        except sqlite3.Error as exc:
            problems.append(f"{db}: {exc}")
            continue
        if result != ["ok"]:
            problems.append(f"{db}: {result}")
    return problems


def session_rows(data_dir: Path, db: str, sql: str) -> list[tuple[Any, ...]]:
    """`sql`'s rows from every session's `db` ("inbound" or "outbound"), as a reader sees
    them; a DB not created yet has none. Raises sqlite3.Error (a busy DB, say): a poll
    should use `polled_rows`."""
    found: list[tuple[Any, ...]] = []
    for layout in session_layouts(data_dir):
        path = layout.inbound_db if db == "inbound" else layout.outbound_db
        # Opening a missing file would create it, empty, before its writer does.
        if path.exists():
            with reading(path) as conn:
                found += conn.execute(sql).fetchall()
    return found


def polled_rows(data_dir: Path, db: str, sql: str) -> list[tuple[Any, ...]]:
    """`session_rows` for a poll: a DB that cannot be read right now has no rows yet."""
    try:
        return session_rows(data_dir, db, sql)
    except sqlite3.Error:
        return []


def chat_rows(data_dir: Path, first: str) -> list[str]:
    """Ids of the outbound `chat` rows whose text's first line is `first`, over all sessions."""
    sql = "SELECT id, json_extract(content, '$.text') FROM messages_out WHERE kind = 'chat'"
    found: list[str] = []
    for layout in session_layouts(data_dir):
        if layout.outbound_db.exists():
            with reading(layout.outbound_db) as conn:
                found += [key for key, text in conn.execute(sql) if first_line({"text": text}) == first]
    return found


def polled_chat_rows(data_dir: Path, first: str) -> list[str]:
    """`chat_rows` for a poll: a DB that cannot be read right now has none yet."""
    try:
        return chat_rows(data_dir, first)
    except sqlite3.Error:
        return []


def delivered_ids(data_dir: Path) -> set[str]:
    """The outbound row ids whose delivery the host recorded (inbound.db `delivered`)."""
    return {key for (key,) in session_rows(data_dir, "inbound", "SELECT message_out_id FROM delivered")}


def processing_claims(data_dir: Path) -> int:
    """How many rows the agents have claimed (`processing`) right now, over all sessions."""
    claims = 0
    for db in (layout.outbound_db for layout in session_layouts(data_dir)):
        try:
            with reading(db) as conn:
                claims += conn.execute("SELECT count(*) FROM processing_ack WHERE status = 'processing'").fetchone()[0]
        except sqlite3.Error:
            continue  # not created yet, or busy: the poll reads again
    return claims


@contextlib.contextmanager
def inbound_write_lock(data_dir: Path) -> Iterator[None]:
    """Hold the write lock (RESERVED, `BEGIN IMMEDIATE`) of the one session's inbound.db: the
    agent still reads it (journal_mode=DELETE lets readers in), but the host can write
    nothing to it, so whatever it decides to record waits in its busy handler (5 s) until
    the lock is let go: rolled back, nothing written."""
    (layout,) = session_layouts(data_dir)
    conn = sqlite3.connect(layout.inbound_db, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        conn.close()


# --- a gate a turn's bash tool waits at ------------------------------------------------------


class Gate:
    """A bash command that waits until the test opens the gate (a file appears). Its folder
    is world-searchable: agents may run under a uid of their own."""

    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="hutch-gate-", dir="/tmp"))
        self._folder.chmod(0o755)
        self._open = self._folder / "open"
        self.command = f"while [ ! -e {self._open} ]; do sleep 0.02; done"
        self.argv = [b"bash", b"-c", self.command.encode()]

    def tool_line(self) -> str:
        """The mock provider's directive that runs the command."""
        return "!tool bash " + json.dumps({"command": self.command})

    def open(self) -> None:
        self._open.touch()

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- a held model call ---------------------------------------------------------------------

_TAGS = re.compile(r"<[^>]+>")


def last_user_words(body: Any) -> str:
    """What the mock provider answers to (`mock: <this>`), from a Messages API request: the
    last line of the last user text, tags stripped, `!` directives skipped."""
    text = ""
    for message in reversed(body.get("messages") or [] if isinstance(body, dict) else []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        texts = [block.get("text", "") for block in blocks if isinstance(block, dict) and block.get("type") == "text"]
        if texts:
            text = html.unescape(_TAGS.sub("", texts[-1]))
            break
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("!")]
    return lines[-1] if lines else text.strip()


class HeldModel:
    """A responder for the fake Messages API: answers `claude: <last user words>`, except the
    first request whose words are `held`, which it holds (no byte of an answer) until
    `release()`. `arrived` is set when the held request came in; `holding` is true while
    its answer has not been given."""

    def __init__(self, held: str) -> None:
        self._held = held
        self.arrived = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.holding = False
        self.calls: list[str] = []

    def __call__(self, body: Any) -> FakeReply:
        words = last_user_words(body)
        with self._lock:
            self.calls.append(words)
            hold = words == self._held and not self.arrived.is_set()
            if hold:
                self.holding = True
                self.arrived.set()
        if hold:
            self._released.wait(timeout=ANSWER_TIMEOUT_S)
            with self._lock:
                self.holding = False
        return FakeReply.text(f"claude: {words}")

    def release(self) -> None:
        self._released.set()


# --- duplicates: counted and reported --------------------------------------------------------

DUPLICATES_PROPERTY = "send_then_record_duplicates"


def report_duplicates(record_property: Callable[[str, object], None], marker: str, count: int) -> int:
    """Record how often `marker` was shown beyond once (the send-then-record window's
    repeats): a test property, printed in the run's summary by tests/faults/conftest.py."""
    duplicates = max(count - 1, 0)
    record_property(DUPLICATES_PROPERTY, {"marker": marker, "answers": count, "duplicates": duplicates})
    print(f"{marker!r} was answered {count} time(s): {duplicates} duplicate(s)")
    return duplicates


# --- docker ----------------------------------------------------------------------------------


def docker_containers(data_dir: Path, session_id: str | None = None) -> list[Any]:
    """The containers of the installation in `data_dir` (of one session, if given), running
    or not; none before its host named the installation."""
    path = data_dir / INSTALLATION_FILE
    if not path.exists():
        return []
    labels = [f"{LABEL_INSTALLATION}={path.read_text().strip()}"]
    if session_id is not None:
        labels.append(f"{LABEL_SESSION}={session_id}")
    client = docker.from_env()
    try:
        # A container removed between the engine's list and its inspect is not an error.
        return list(client.containers.list(all=True, filters={"label": labels}, ignore_removed=True))
    finally:
        client.close()


def remove_containers(data_dir: Path) -> None:
    """A killed host leaves its containers running (no parent-death signal crosses into
    the engine): remove them, so a failed test does not leave agents behind."""
    for container in docker_containers(data_dir):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


# --- a whole fault run ---------------------------------------------------------------------


def first_line(message: dict[str, Any]) -> str:
    text = message.get("text")
    return text.splitlines()[0] if isinstance(text, str) and text else ""


class FaultRun:
    """One data folder, its host (restarted as often as a test kills it), a chat client per
    host, and every line the clients received, in order, across restarts.

    `env`, when given, runs the host with those settings and no forced provider
    (HostProcess's `provider`); `reply_prefix` is what the provider puts before the words it answers."""

    def __init__(
        self,
        data_dir: Path,
        *,
        runtime: str = "process",
        env: Mapping[str, str] | None = None,
        reply_prefix: str = "mock: ",
    ) -> None:
        self.data_dir = data_dir
        self.runtime = runtime
        self.env = env
        self.reply_prefix = reply_prefix
        self.log: list[str] = []
        self.received: list[dict[str, Any]] = []
        self.host: HostProcess | None = None
        self.client: ChatClient | None = None
        self._probes = 0

    def __enter__(self) -> FaultRun:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.host is not None:
            self.host.kill()
            self.host = None
        self._close_client()
        if self.runtime == "docker":
            remove_containers(self.data_dir)
        poll("the agents to end", lambda: not agent_pids(self.data_dir))

    def start(self) -> None:
        """A new host on the folder (the last one is gone) and a client connected to it."""
        assert self.host is None
        self.log.append("=== host start ===\n")
        if self.env is None:
            self.host = HostProcess(self.data_dir, self.log, runtime=self.runtime)
        else:
            provider = self.env.get("HUTCH_PROVIDER", "mock")
            self.host = HostProcess(self.data_dir, self.log, runtime=self.runtime, env=self.env, provider=provider)
        self.client = ChatClient(self.data_dir / "cli.sock", timeout=30)

    def send(self, text: str) -> None:
        assert self.client is not None
        answer = self.client.send(text)
        assert answer["type"] == "ack", answer

    def agent(self) -> int:
        """The one running agent's pid, once there is one."""
        pids: list[int] = poll("an agent to run", lambda: agent_pids(self.data_dir))
        assert len(pids) == 1, pids
        return pids[0]

    def kill_host(self) -> None:
        """SIGKILL the host; its agents die with it (parent-death signal): wait for that."""
        assert self.host is not None
        self.host.kill()
        self.host = None
        self._close_client()  # after the kill: whatever reached the client is counted
        self.log.append("=== host SIGKILLed ===\n")
        poll("the killed host's agents to end", lambda: not agent_pids(self.data_dir))

    def restart(self) -> None:
        self.start()

    def stop(self) -> None:
        """A graceful stop (SIGTERM) that must succeed."""
        assert self.host is not None
        code = self.host.terminate()
        self.host = None
        self._close_client()
        assert code == 0, self.tail()

    def answers(self, marker: str) -> int:
        return sum(1 for message in self.received if first_line(message) == f"{self.reply_prefix}{marker}")

    def await_answer(self, marker: str) -> None:
        """Read the client until `marker` has been answered at least once."""
        self.await_received(f"an answer to {marker!r}", lambda: self.answers(marker) > 0)

    def await_received(self, what: str, done: Callable[[], bool]) -> None:
        """Read the client until `done()` holds for what was received."""
        assert self.client is not None
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while not done():
            left = deadline - time.monotonic()
            try:
                self.received.append(self.client.next_message(timeout=max(left, 0.01)))
            except queue.Empty:
                raise FaultError(f"no {what} in {ANSWER_TIMEOUT_S:g} s\n{self.summary()}") from None

    def barrier(self) -> None:
        """Send a probe and read up to its answer. Replies go out in seq order per session,
        so a reply sent again (or a second answer already written) comes before it."""
        self._probes += 1
        probe = f"probe {self._probes}"
        self.send(probe)
        self.await_answer(probe)

    def summary(self) -> str:
        lines = [f"received: {[message.get('text') for message in self.received]}"]
        return "\n".join(lines) + "\nhost log (tail):\n" + self.tail()

    def tail(self, lines: int = 60) -> str:
        return "".join(self.log[-lines:])

    def _close_client(self) -> None:
        """Once the host is gone: the client's reader sees the socket end, so every line
        the host wrote is in the queue by then."""
        if self.client is None:
            return
        self.client._thread.join(timeout=10)
        self.client.close()
        while not self.client.messages.empty():
            self.received.append(self.client.messages.get_nowait())
        self.client = None


def finish(run: FaultRun, marker: str, at_most: int = 1) -> int:
    """Probe, check the DBs with the host running and once it stopped; the answer count,
    which must be 1..`at_most`."""
    run.barrier()
    problems = integrity_problems(run.data_dir)
    count = run.answers(marker)
    run.stop()
    problems += integrity_problems(run.data_dir)
    assert not problems, f"integrity_check failed: {problems}\n{run.summary()}"
    assert 1 <= count <= at_most, f"{marker!r} answered {count} time(s), expected 1..{at_most}\n{run.summary()}"
    return count
