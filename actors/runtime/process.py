"""Development runtime: the agent is a plain child process of the host.

Little is isolated here: the agent shares the host's filesystem. What this runtime keeps
from the container runtime is the shape of the contract: a minimal environment without
credentials, the agent folder as working directory, its own process group (so a Ctrl-C in
the host's terminal does not reach it, and stopping it takes everything it started), one
`on_exit` per agent, and, when the host runs as root, the agent group's own uid (so the
folder permissions keep groups apart, and no agent is root). It drops to that uid only where
the uid can run the agent: the program and the data folder must be reachable to it, which a
probe checks once; where they are not, the host says so and why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Final

from actors.runtime.base import AgentHandle, AgentSpec, AgentUser, RuntimeStartError
from protocol.logs import AgentOutput

log = logging.getLogger("hutch.runtime.process")

# The runner is started by module name, so the repo root must be importable whatever the
# host's working directory is (actors/runtime/process.py -> repo root).
REPO_ROOT: Final = Path(__file__).resolve().parents[2]

# Only what a Python program needs to behave normally; anything else in the host's
# environment (API keys, tokens, cloud credentials) stays with the host.
_INHERITED_ENV: Final = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH")

# Even if a caller puts them in spec.env or extra_env by mistake: invariant 10.
_CREDENTIAL_ENV: Final = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"})

# After SIGKILL the kernel ends the process promptly; this only bounds a process stuck in
# uninterruptible sleep so stop() cannot hang forever.
_KILL_WAIT_S: Final = 5.0

# A program that prints without newlines must not make the reader buffer without bound.
_MAX_LINE_BYTES: Final = 64 * 1024

# Grandchildren that escaped the process group may keep the output pipe open; on_exit
# must not wait on them for long.
_READER_JOIN_S: Final = 5.0

# Every agent's environment carries its session folder; so does whatever it starts.
_MARKER: Final = b"HUTCH_SESSION_DIR="

# Python's start and one import; far more means something is wrong, not slow.
_PROBE_TIMEOUT_S: Final = 30.0
# Run as the agent's uid: the program must be executable and the agent's folders enterable
# (so every folder above them passable), as the agent will need them.
_REACHABLE: Final = 'test -x "$1" || { echo "$1: not executable" >&2; exit 1; }; cd "$2" && cd "$3"'


class ProcessRuntime:
    """Starts `python -m container_runner` (or `command`) as a child process per session."""

    name: Final = "process"
    isolates: Final = False

    def __init__(
        self,
        python: str = sys.executable,
        extra_env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
        scope: Path | None = None,
    ) -> None:
        """`scope` is the host's sessions folder: `cleanup_orphans` ends only agents of it."""
        self._program: tuple[str, ...] = tuple(command) if command is not None else (python, "-m", "container_runner")
        self._runs_runner = command is None
        self._setpriv = shutil.which("setpriv")
        if self._setpriv is None:
            log.warning("setpriv not found: an agent may outlive a host that is killed, and runs as the host's uid")
        self._extra_env: dict[str, str] = dict(extra_env or {})
        self._scope = scope
        # Whether agents can run under their own uid here: probed once, at the first start
        # that asks for one (the answer depends on the folders above the data folder and
        # the program's, the same for every uid).
        self._drop_lock = threading.Lock()
        self._can_drop: bool | None = None

    def cleanup_orphans(self) -> list[str]:
        """End the agents a dead host of this data folder left running (one that was killed
        before its agents could be told, on a system without a parent-death signal); returns
        their pids. Only agents whose session folder lies in `scope` are touched."""
        if self._scope is None:
            return []
        found = _under(self._scope.resolve())
        agents = _agents(found)
        ended = [str(pid) for pid in _kill_all(agents)]
        for pid in ended:
            log.warning("ended agent pid %s left by an earlier host", pid)
        # What those agents started (a tool's command lives in a session of its own) ends too.
        strays = _kill_all([pid for pid in found if pid not in agents])
        if strays:
            log.warning("ended %d process(es) the agents of an earlier host started", len(strays))
        return ended

    def start(self, spec: AgentSpec, on_exit: Callable[[int], None]) -> AgentHandle:
        if shutil.which(self._program[0]) is None:  # behind setpriv, exec would fail in the child
            raise RuntimeStartError(f"cannot start agent {spec.tag}: {self._program[0]} is not an executable")
        user = self._user_for(spec)
        env = self._child_env(spec, user)
        try:
            proc = subprocess.Popen(
                self._prefix(user) + self._program,
                cwd=spec.agent_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise RuntimeStartError(f"cannot start agent {spec.tag}: {exc}") from exc
        uid = os.getuid() if user is None else user.uid
        log.info("[%s] started the agent as pid %d (uid %d)", spec.tag, proc.pid, uid)
        return ProcessHandle(proc, spec.tag, on_exit, session_marker=env.get("HUTCH_SESSION_DIR"))

    def _prefix(self, user: AgentUser | None) -> tuple[str, ...]:
        """setpriv makes the kernel kill the agent when the host's thread that started it ends,
        the host's death included (PR_SET_PDEATHSIG, kept across exec), and drops to the
        agent's uid for good (no supplementary groups, no way back through a setuid file)."""
        if self._setpriv is None:
            return ()
        prefix = [self._setpriv, "--pdeathsig", "KILL"]
        if user is not None:
            prefix += ["--reuid", str(user.uid), "--regid", str(user.gid), "--clear-groups", "--no-new-privs"]
        return (*prefix, "--")

    def _user_for(self, spec: AgentSpec) -> AgentUser | None:
        """The uid to drop to, or None to run as the host's."""
        user = spec.user
        if user is None or (user.uid, user.gid) == (os.getuid(), os.getgid()):
            return None
        if os.geteuid() != 0 or self._setpriv is None:
            log.warning(
                "[%s] the agent runs as uid %d: only a host run as root with setpriv can drop to %s",
                spec.tag,
                os.getuid(),
                user,
            )
            return None
        with self._drop_lock:
            if self._can_drop is None:
                self._can_drop = self._probe(spec, user)
            return user if self._can_drop else None

    def _probe(self, spec: AgentSpec, user: AgentUser) -> bool:
        """Can `user` start the program and enter the agent's folders? Asked once, as that user."""
        program = shutil.which(self._program[0]) or self._program[0]
        env = self._child_env(spec, user)
        folders = (str(spec.session_dir), str(spec.agent_dir))
        checks = [[*self._prefix(user), "/bin/sh", "-c", _REACHABLE, "sh", program, *folders]]
        if self._runs_runner:  # the runner's code must be importable too
            checks.append([*self._prefix(user), program, "-c", "import container_runner"])
        for check in checks:
            try:
                done = subprocess.run(
                    check, env=env, cwd="/", capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                reason = str(exc)
            else:
                if done.returncode == 0:
                    continue
                reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            log.warning(
                "agents run as the host's uid %d, not their own: uid %d cannot run %s on %s (%s). "
                "Let other users pass through the folders above the data folder and the program's "
                "(chmod o+x), or run the host as a user other than root.",
                os.getuid(), user.uid, program, spec.session_dir, reason,
            )  # fmt: skip
            return False
        return True

    def _child_env(self, spec: AgentSpec, user: AgentUser | None) -> dict[str, str]:
        env = {key: os.environ[key] for key in _INHERITED_ENV if key in os.environ}
        env.update(self._extra_env)
        env.update(spec.env)
        for key in _CREDENTIAL_ENV & env.keys():
            log.warning("[%s] not passing %s to the agent: credentials never reach an agent", spec.tag, key)
            del env[key]
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        # A pipe makes Python block-buffer stdout; log lines should arrive as they happen.
        env.setdefault("PYTHONUNBUFFERED", "1")
        if user is not None:  # the host's home is not the agent's to write
            env["HOME"] = str(spec.agent_dir)
        return env


def agents_in(scope: Path) -> list[int]:
    """Pids of runner processes whose session folder lies under `scope`, from /proc.

    A process an agent forks looks like the agent until it execs (the bash tool's shell, for
    a moment), so one whose parent matched too is the agent's child, not a second agent."""
    return _agents(_under(scope))


def _under(scope: Path) -> dict[int, tuple[int, bool]]:
    """The agents under `scope` and everything they started that kept their environment (a
    tool's command runs in a session of its own, out of the agent's group), as `_marked`."""
    return _marked(lambda value: value.startswith(f"{scope}{os.sep}".encode()))


def _agents(found: dict[int, tuple[int, bool]]) -> list[int]:
    """Of `found`, the runners whose parent is not a runner too."""
    runners = {pid: parent for pid, (parent, is_runner) in found.items() if is_runner}
    return [pid for pid, parent in runners.items() if parent not in runners]


def processes_of(session_dir: str) -> list[int]:
    """Pids of every process carrying this one session's marker."""
    return list(_marked(lambda value: value == session_dir.encode()))


def _marked(wanted: Callable[[bytes], bool]) -> dict[int, tuple[int, bool]]:
    """Each process whose HUTCH_SESSION_DIR `wanted` accepts, from /proc: its parent's pid,
    and whether it is the runner itself."""
    found: dict[int, tuple[int, bool]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        if any(item.startswith(_MARKER) and wanted(item[len(_MARKER) :]) for item in environ):
            # The parent pid is the second field after the command name, which may hold ")".
            parent = int(stat[stat.rfind(b")") + 2 :].split()[1])
            found[int(entry.name)] = (parent, b"container_runner" in cmdline)
    return found


def _kill_all(pids: Sequence[int]) -> list[int]:
    """SIGKILL each; the pids that were still there to be killed."""
    killed = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


class ProcessHandle:
    """A running agent process and the two threads that watch it."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        tag: str,
        on_exit: Callable[[int], None],
        *,
        session_marker: str | None = None,
    ) -> None:
        """`session_marker`: the agent's HUTCH_SESSION_DIR, by which what it started is found."""
        self._proc = proc
        self._session_marker = session_marker
        self._tag = f"[{tag}]"  # the session's, as every log line names it (protocol.logs)
        self._on_exit = on_exit
        # Held while signalling the group and while reaping the leader, so a signal is never
        # sent to a process group id the kernel may already have handed to someone else.
        self._lock = threading.Lock()
        self._reaped = False
        self._left = threading.Event()  # the leader has ended (it may not be reaped yet)
        self._exited = threading.Event()  # reaped, output drained: returncode is final
        if proc.stdout is None:
            raise ValueError("the agent process must be started with stdout=PIPE")
        self._reader = threading.Thread(
            target=self._pump_output, args=(proc.stdout,), name=f"agent-out-{tag}", daemon=True
        )
        self._waiter = threading.Thread(target=self._wait, name=f"agent-wait-{tag}", daemon=True)
        self._reader.start()
        self._waiter.start()

    @property
    def ident(self) -> str:
        return str(self._proc.pid)

    def alive(self) -> bool:
        return not self._left.is_set()

    def stop(self, timeout_s: float = 10) -> int | None:
        self._signal_group(signal.SIGTERM)
        if not self._exited.wait(timeout_s):
            log.warning("%s the agent ignored SIGTERM for %.1fs; killing it", self._tag, timeout_s)
            self._signal_group(signal.SIGKILL)
            if not self._exited.wait(_KILL_WAIT_S):
                log.error("%s the agent (pid %s) did not end after SIGKILL", self._tag, self.ident)
                return None
        return self._proc.returncode

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        with self._lock:
            if not self._reaped:
                self._killpg_locked(sig)

    def _killpg_locked(self, sig: signal.Signals) -> None:
        # start_new_session=True made the child leader of a group with its own pid; a
        # missing group just means everything in it has already ended.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _pump_output(self, stream: IO[bytes]) -> None:
        output = AgentOutput(self._tag)
        with stream:
            for raw in iter(lambda: stream.readline(_MAX_LINE_BYTES), b""):
                output.line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    def _wait(self) -> None:
        self._wait_for_leader()
        self._left.set()
        with self._lock:
            # Whatever the agent started dies with it, as it would with its container: its
            # group, and what left the group (a tool's command has a session of its own).
            self._killpg_locked(signal.SIGKILL)
            if self._session_marker is not None:
                _kill_all(processes_of(self._session_marker))
            code = self._proc.wait()
            self._reaped = True
        self._reader.join(_READER_JOIN_S)
        log.info("%s the agent's process exited with code %d", self._tag, code)
        self._exited.set()
        try:
            self._on_exit(code)
        except Exception:
            log.exception("%s on_exit callback for the agent failed", self._tag)

    def _wait_for_leader(self) -> None:
        """Block until the leader has ended, leaving it a zombie where the OS allows.

        A zombie still holds its pid, so the group can be killed afterwards without any
        chance of hitting a recycled process group id.
        """
        if hasattr(os, "waitid"):
            # ChildProcessError: someone else reaped it; Popen.wait() copes with that.
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOWAIT)
        else:  # macOS before Python 3.13: reap now, accept the tiny reuse window
            self._proc.wait()
