"""What the attack tests share: a host run as a real process (`python -m actors.main`, mock
provider) whose local chat gives every thread a session of its own, a chat client that keeps
every line it received, and a hostile agent for a session that acts where a real one would.

The hostile agent runs shell and Python as the agent of its session does. In the process
runtime that is the test itself, writing into the session folder on the host (as root, which
the process runtime does not prevent); in the Docker runtime it is `exec_run` inside the
session's live container, as the container's user, so the mounts decide what it may touch.
Either way a script names the session folder `$HUTCH_SESSION_DIR`, as the runner does, so one
script serves both runtimes.

Nothing here sleeps to synchronise: the chat socket's lines are events, and the host's log,
its DBs and the containers are polled with a bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from actors.host import INSTALLATION_FILE
from actors.runtime.docker import LABEL_INSTALLATION, LABEL_SESSION
from actors.runtime.process import agents_in
from actors.store import agent_groups, messaging_group_agents, messaging_groups
from actors.store.db import open_store
from protocol.layout import SessionLayout
from tests.fakes import probes
from tests.fakes.chat_client import ChatClient
from tests.fakes.host_process import REPO, HostProcess
from tests.faults.harness import reading

# The sweep re-reads every live session's files: at its production pace (30 s) a refusal
# would take that long to show when no file event wakes the session.
SWEEP_INTERVAL_S = 1
ANSWER_TIMEOUT_S = 30.0
POLL_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.02
# A container start, or a command in one, on a busy 2-core machine.
EXEC_TIMEOUT_S = 60.0

# The thread of the local chat whose agent attacks, and one whose session must go on.
ATTACKER = "attacker"
BYSTANDER = "bystander"

MOCK = "mock: "
# What a shell says when a file's owner or mode, not the mount, refused a change.
PERMISSION_REFUSALS = ("Operation not permitted", "Permission denied")
# The logger under which the host repeats what an agent printed.
AGENT_LOGGER = " hutch.agent: "


class AttackError(AssertionError):
    """A step of an attack test did not happen in time; carries the host's recent log."""


def poll(what: str, check: Callable[[], Any], timeout_s: float = POLL_TIMEOUT_S) -> Any:
    """Bounded poll: `check()`'s first truthy value, or AttackError after `timeout_s`."""
    return probes.poll(what, check, timeout_s, POLL_INTERVAL_S, error=AttackError)


# --- the hostile agent -------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    code: int
    output: str


class Agent(Protocol):
    """A session's agent, hostile: what it runs, it runs where and as whom the agent would."""

    def sh(self, script: str) -> Done: ...

    def python(self, script: str, *args: str) -> Done: ...


class ProcessAgent:
    """The process runtime's agent is a process on the host: the test acts in its place."""

    def __init__(self, layout: SessionLayout) -> None:
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HUTCH_SESSION_DIR": str(layout.root),
            "PYTHONPATH": str(REPO),
        }

    def sh(self, script: str) -> Done:
        return self._run(["sh", "-c", script])

    def python(self, script: str, *args: str) -> Done:
        return self._run([sys.executable, "-c", script, *args])

    def _run(self, argv: list[str]) -> Done:
        done = subprocess.run(argv, env=self._env, capture_output=True, text=True, timeout=EXEC_TIMEOUT_S, check=False)
        return Done(done.returncode, done.stdout + done.stderr)


class DockerAgent:
    """Commands run inside the session's live container, as the container's user."""

    def __init__(self, find_container: Callable[[], Any]) -> None:
        self._find_container = find_container

    def sh(self, script: str) -> Done:
        return self._exec(["sh", "-c", script])

    def python(self, script: str, *args: str) -> Done:
        return self._exec(["python", "-c", script, *args])

    def _exec(self, argv: list[str]) -> Done:
        code, output = self._find_container().exec_run(argv)
        return Done(int(code), output.decode(errors="replace"))


# Inserts chat rows into outbound.db as the runner's OutboxActor does (protocol.outbound), so
# each row is well formed: whatever the host refuses, it refuses for the attack, not the form.
# argv[1]: {"routing": {...}, "rows": [{"id", "text", "files"}]} or {"prefix", "count"}.
ROWS_SCRIPT = """
import json, os, sys
from pathlib import Path
from protocol import outbound
from protocol.content import ChatOut
from protocol.db import max_seq, read_transaction, write_transaction
from protocol.layout import SessionLayout
from protocol.rows import Routing
from protocol.timeutil import now_ts

order = json.loads(sys.argv[1])
layout = SessionLayout(Path(os.environ["HUTCH_SESSION_DIR"]))
with read_transaction(layout.inbound_db) as conn:
    highest = max_seq(conn, "messages_in")
rows = order.get("rows") or [
    {"id": f"{order['prefix']}-{i}", "text": f"{order['prefix']} {i}"} for i in range(order["count"])
]
with write_transaction(layout.outbound_db) as conn:
    for row in rows:
        outbound.insert_message(
            conn, message_id=row["id"], content=ChatOut(text=row["text"], files=row.get("files", [])),
            timestamp=now_ts(), highest_inbound_seq=highest, routing=Routing(**order["routing"]),
        )
print(len(rows))
"""


# --- one host under attack ---------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    id: str
    layout: SessionLayout

    @property
    def tag(self) -> str:
        """How the host's log names it."""
        return f"[main/{self.id[:8]}]"


def wire_threads_apart(data_dir: Path) -> None:
    """Before the host's first start: the local chat wired to the main agent group with one
    session per thread, so two threads of one client are two sessions (two agents)."""
    with open_store(data_dir / "hutch.db") as store:
        group = agent_groups.create(store, name="main", folder="main")
        chat = messaging_groups.create(store, channel_type="cli", platform_id="local", name="local chat")
        messaging_group_agents.create(
            store, messaging_group_id=chat.id, agent_group_id=group.id, session_mode="per-thread"
        )


class AttackRun:
    """A data folder, its host (restarted as often as a test asks), a chat client per host,
    and every line the clients received, in order, across restarts."""

    def __init__(self, data_dir: Path, runtime: str, docker_client: Any = None) -> None:
        self.data_dir = data_dir
        self.runtime = runtime
        self.docker = docker_client
        self.log: list[str] = []
        self.received: list[dict[str, Any]] = []
        self.host: HostProcess | None = None
        self.client: ChatClient | None = None
        # The moves a container's uid was not allowed to make, made as a writer instead.
        self.made_as_writer: list[str] = []
        wire_threads_apart(data_dir)

    # -- the host --------------------------------------------------------------------------

    def start(self) -> None:
        assert self.host is None
        self.log.append("=== host start ===\n")
        self.host = HostProcess(
            self.data_dir, self.log, runtime=self.runtime, env={"HUTCH_SWEEP_INTERVAL": str(SWEEP_INTERVAL_S)}
        )
        self.client = ChatClient(self.data_dir / "cli.sock", timeout=ANSWER_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM, as a person stops it; returns its exit status."""
        assert self.host is not None
        code = self.host.terminate()
        self.host = None
        self._close_client()
        return code

    def restart(self) -> None:
        assert self.stop() == 0, self.tail()
        self.start()

    def close(self) -> None:
        """After a test, whatever happened: nothing of this run stays behind."""
        if self.host is not None:
            self.host.kill()
            self.host = None
        self._close_client()
        # Process agents die with a killed host (parent-death signal); wait for it.
        poll("the agents to end", lambda: not agents_in(self.data_dir))
        if self.docker is not None:
            for container in self.containers():
                with contextlib.suppress(Exception):
                    container.remove(force=True)

    def _close_client(self) -> None:
        """Once the host is gone its socket ends, so every line it wrote is queued by then."""
        if self.client is None:
            return
        self.client._thread.join(timeout=10)
        self.client.close()
        self._take_queued()
        self.client = None

    # -- the chat ----------------------------------------------------------------------------

    def send(self, thread: str, text: str) -> None:
        assert self.client is not None
        answer = self.client.send(text, thread=thread)
        assert answer["type"] == "ack", answer

    def ask(self, thread: str, text: str, timeout_s: float = ANSWER_TIMEOUT_S) -> float:
        """Send `text` in `thread` and read up to the agent's answer; returns the seconds it took."""
        started = time.monotonic()
        self.send(thread, text)
        self.read_until(f"the answer to {text!r} in {thread}", lambda: self.answers(thread, text), timeout_s)
        return time.monotonic() - started

    def answers(self, thread: str, text: str) -> int:
        return sum(1 for line in self.in_thread(thread) if first_line(line) == MOCK + text)

    def in_thread(self, thread: str) -> list[dict[str, Any]]:
        return [line for line in self.received if line.get("thread") == thread]

    def read_until(self, what: str, check: Callable[[], Any], timeout_s: float = ANSWER_TIMEOUT_S) -> Any:
        """Read the chat until `check()` is truthy."""
        assert self.client is not None
        deadline = time.monotonic() + timeout_s
        while not (found := check()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AttackError(f"timed out after {timeout_s:g} s waiting for {what}\n{self.summary()}")
            with contextlib.suppress(queue.Empty):
                self.received.append(self.client.next_message(timeout=min(left, 0.5)))
                self._take_queued()
        return found

    def _take_queued(self) -> None:
        if self.client is None:
            return
        while not self.client.messages.empty():
            self.received.append(self.client.messages.get_nowait())

    def everything_received(self) -> str:
        """Every line the chat clients got, as one text: what a leak would show up in."""
        self._take_queued()
        return "\n".join(json.dumps(line) for line in self.received)

    # -- the sessions ------------------------------------------------------------------------

    def session(self, thread: str) -> Session:
        with reading(self.data_dir / "hutch.db") as conn:
            row = conn.execute(
                "SELECT s.id, g.folder FROM sessions s JOIN agent_groups g ON g.id = s.agent_group_id"
                " WHERE s.thread_id = ?",
                (thread,),
            ).fetchone()
        assert row is not None, f"no session for thread {thread!r}"
        return Session(row[0], SessionLayout(self.data_dir / "sessions" / row[1] / row[0]))

    def agent(self, thread: str) -> Agent:
        session = self.session(thread)
        if self.runtime == "docker":
            return DockerAgent(lambda: self.container(session.id))
        return ProcessAgent(session.layout)

    def move(self, thread: str, script: str) -> None:
        """A hostile move in the session folder, made by the agent of `thread` itself where it
        can. Where the folder's owners and modes stop a container's uid (one model of who owns
        `out/`; the runtimes are free to choose), the move is then made as a writer into the
        folder on the host: what the host does with the result is tested either way."""
        done = self.agent(thread).sh(script)
        if done.code == 0:
            return
        assert self.runtime == "docker" and any(refusal in done.output for refusal in PERMISSION_REFUSALS), done.output
        self.made_as_writer.append(script)
        done = ProcessAgent(self.session(thread).layout).sh(script)
        assert done.code == 0, done.output

    def write_rows(self, thread: str, order: dict[str, Any]) -> None:
        """The agent of `thread` inserts chat rows addressed to its own chat and thread."""
        order = {"routing": {"platform_id": "local", "channel_type": "cli", "thread_id": thread}} | order
        done = self.agent(thread).python(ROWS_SCRIPT, json.dumps(order))
        assert done.code == 0, done.output

    def deliveries(self, thread: str) -> dict[str, tuple[str, str | None]]:
        """What the host recorded of the rows it sent or refused: id -> (status, last error)."""
        with reading(self.session(thread).layout.inbound_db) as conn:
            rows = conn.execute("SELECT message_out_id, status, last_error FROM delivered").fetchall()
        return {key: (status, error) for key, status, error in rows}

    def outbound_ids(self, thread: str) -> set[str]:
        with reading(self.session(thread).layout.outbound_db) as conn:
            return {row[0] for row in conn.execute("SELECT id FROM messages_out")}

    # -- containers --------------------------------------------------------------------------

    def containers(self, session_id: str | None = None, *, running: bool = False) -> list[Any]:
        """This installation's containers (of one session, if given)."""
        path = self.data_dir / INSTALLATION_FILE
        if self.docker is None or not path.exists():
            return []
        labels = [f"{LABEL_INSTALLATION}={path.read_text().strip()}"]
        if session_id is not None:
            labels.append(f"{LABEL_SESSION}={session_id}")
        filters: dict[str, Any] = {"label": labels} | ({"status": "running"} if running else {})
        return list(self.docker.containers.list(all=not running, filters=filters, ignore_removed=True))

    def container(self, session_id: str) -> Any:
        """The session's live container, once there is one."""
        found: list[Any] = poll(
            f"a running container of session {session_id[:8]}",
            lambda: self.containers(session_id, running=True),
            EXEC_TIMEOUT_S,
        )
        assert len(found) == 1, found
        return found[0]

    # -- the host's log ----------------------------------------------------------------------

    def await_log(self, *parts: str, timeout_s: float = POLL_TIMEOUT_S, after: int = 0) -> str:
        """The first log line (past the first `after` lines) holding all `parts`."""
        return self.await_line(
            f"a log line with {parts}",
            lambda line: all(part in line for part in parts),
            timeout_s=timeout_s,
            after=after,
        )

    def warnings(self, session: Session, about: str, *reasons: str, after: int = 0) -> list[str]:
        """The host's own warnings (past the first `after` log lines) that name `session` and
        `about` (a file) with one of `reasons`: the wording is the host's to choose, what it
        is about is not."""
        return [line for line in list(self.log)[after:] if _warns(line, session, about, reasons)]

    def await_warning(self, session: Session, about: str, *reasons: str, after: int = 0) -> str:
        return self.await_line(
            f"a warning about {about} of {session.tag}: {reasons}",
            lambda line: _warns(line, session, about, reasons),
            after=after,
        )

    def await_line(
        self, what: str, matches: Callable[[str], bool], *, timeout_s: float = POLL_TIMEOUT_S, after: int = 0
    ) -> str:
        def find() -> str | None:
            return next((line for line in list(self.log)[after:] if matches(line)), None)

        try:
            found: str = poll(what, find, timeout_s)
        except AttackError as exc:
            raise AttackError(f"{exc}\n{self.summary()}") from None
        return found

    def failures(self) -> list[str]:
        """Log lines that mean the host lost a part of itself (an agent's own are its business)."""
        markers = ("Unhandled exception", "session failed", "Traceback")
        return [
            line for line in list(self.log) if any(marker in line for marker in markers) and AGENT_LOGGER not in line
        ]

    def summary(self) -> str:
        texts = [line.get("text") for line in self.received[-20:]]
        return f"received (last 20): {texts}\nhost log (tail):\n{self.tail()}"

    def tail(self, lines: int = 60) -> str:
        return "".join(list(self.log)[-lines:])


def _warns(line: str, session: Session, about: str, reasons: tuple[str, ...]) -> bool:
    return (
        "WARNING" in line
        and AGENT_LOGGER not in line
        and session.id[:8] in line
        and about in line
        and any(reason.lower() in line.lower() for reason in reasons)
    )


def first_line(line: dict[str, Any]) -> str:
    text = line.get("text")
    return text.splitlines()[0] if isinstance(text, str) and text else ""


def end_agent(run: AttackRun, thread: str) -> None:
    """The agent of `thread` ends itself, as a hostile one may at any moment: in a container it
    kills every process it may (the runner; tini then ends the container), in the process
    runtime the test kills the runner. Returns once the host saw the agent exit."""
    session = run.session(thread)
    mark = len(run.log)
    if run.runtime == "docker":
        # Detached: the exec'd shell dies with the container, so there is nothing to wait on.
        run.container(session.id).exec_run(["sh", "-c", "kill -KILL -1"], detach=True)
    else:
        for pid in runner_pids(run.data_dir, session.layout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    run.await_log(session.tag, "agent exited with code", after=mark)


def runner_pids(data_dir: Path, layout: SessionLayout) -> list[int]:
    """The runner processes of one session, found as the host's clean-up finds agents."""
    wanted = f"HUTCH_SESSION_DIR={layout.root}".encode()
    pids = []
    for pid in agents_in(data_dir):
        with contextlib.suppress(OSError):
            if wanted in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                pids.append(pid)
    return pids
