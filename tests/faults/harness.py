"""What the fault tests share: a host run as a real process that a test can SIGKILL, its
agents found in /proc, a chat client that outlives restarts, and the checks made after one.

Nothing here sleeps to synchronise: the chat socket's lines are events, and where none
exists (a claim in outbound.db, a tool's process, an agent's end) a bounded poll reads
/proc or a file.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from actors.runtime.process import agents_in
from protocol.layout import SessionLayout
from tests.fakes.chat_client import ChatClient
from tests.fakes.host_process import HostProcess

# Generous: a message whose agent was killed waits for a retry (5 s, then more) and may be
# found again only by the sweep (every 30 s).
ANSWER_TIMEOUT_S = 90.0
POLL_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.02


class FaultError(AssertionError):
    """A step of a fault test did not happen in time; carries the host's recent log."""


def poll(what: str, check: Callable[[], Any], timeout_s: float = POLL_TIMEOUT_S) -> Any:
    """Bounded poll: `check()`'s first truthy value, or FaultError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise FaultError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


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


# --- a whole fault run ---------------------------------------------------------------------


def first_line(message: dict[str, Any]) -> str:
    text = message.get("text")
    return text.splitlines()[0] if isinstance(text, str) and text else ""


class FaultRun:
    """One data folder, its host (restarted as often as a test kills it), a chat client per
    host, and every line the clients received, in order, across restarts."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
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
        poll("the agents to end", lambda: not agent_pids(self.data_dir))

    def start(self) -> None:
        """A new host on the folder (the last one is gone) and a client connected to it."""
        assert self.host is None
        self.log.append("=== host start ===\n")
        self.host = HostProcess(self.data_dir, self.log)
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
        return sum(1 for message in self.received if first_line(message) == f"mock: {marker}")

    def await_answer(self, marker: str) -> None:
        """Read the client until `marker` has been answered at least once."""
        assert self.client is not None
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while not self.answers(marker):
            left = deadline - time.monotonic()
            try:
                self.received.append(self.client.next_message(timeout=max(left, 0.01)))
            except queue.Empty:
                raise FaultError(f"no answer to {marker!r} in {ANSWER_TIMEOUT_S:g} s\n{self.summary()}") from None

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
