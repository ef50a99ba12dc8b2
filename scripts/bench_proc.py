"""Processes for the host benchmark: CPU time and family read from /proc, and the host run
as a real process (`python -m actors.main`), as a person runs it.

Nothing here needs psutil: /proc/<pid>/stat has the CPU time of a whole thread group
(every thread, live or ended) and the parent, group and start time of each process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
READY_LINE: Final = "hutch is running"
# A process that has ended but is not reaped yet (Z), or is being torn down (X), uses no CPU
# and cannot be signalled into doing anything: for a leftover check it is gone.
_GONE_STATES: Final = frozenset({"Z", "X", "x"})
# On an error path the host gets this long to stop by itself before everything is killed.
CLEANUP_GRACE_S: Final = 15.0
_POLL_S: Final = 0.05

log = logging.getLogger("bench_proc")


class BenchError(RuntimeError):
    """Something did not answer in time or answered wrongly; the message says what."""


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    pgrp: int
    state: str
    cpu_ticks: int  # utime + stime, in clock ticks
    start_ticks: int  # since boot: with the pid, names one process even after pid reuse

    @property
    def cpu_s(self) -> float:
        return self.cpu_ticks / CLOCK_TICKS

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start_ticks)


def read_stat(pid: int) -> ProcStat | None:
    """None when the process is gone (or was never there)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    # Field numbers of proc(5) minus 3: state(3) ppid(4) pgrp(5) utime(14) stime(15) starttime(22).
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        state=fields[0],
        cpu_ticks=int(fields[11]) + int(fields[12]),
        start_ticks=int(fields[19]),
    )


def all_processes() -> list[ProcStat]:
    found: list[ProcStat] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                found.append(stat)
    return found


def descendants(pid: int) -> list[ProcStat]:
    """Every live process below `pid`: its children (the agents), theirs, and so on."""
    processes = all_processes()
    children: dict[int, list[ProcStat]] = {}
    for stat in processes:
        children.setdefault(stat.ppid, []).append(stat)
    found: list[ProcStat] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child.state not in _GONE_STATES:
                found.append(child)
                todo.append(child.pid)
    return found


def still_running(stat: ProcStat) -> bool:
    now = read_stat(stat.pid)
    return now is not None and now.start_ticks == stat.start_ticks and now.state not in _GONE_STATES


def cwd_under(folder: Path) -> list[ProcStat]:
    """Processes working inside `folder`: process-runtime agents run in their group folder,
    so this finds them even after their host died and they were handed to init."""
    root = str(folder.resolve())
    found: list[ProcStat] = []
    for stat in all_processes():
        if stat.pid == os.getpid() or stat.state in _GONE_STATES:
            continue
        try:
            cwd = os.readlink(f"/proc/{stat.pid}/cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + "/"):
            found.append(stat)
    return found


def kill_all(stats: Iterable[ProcStat]) -> list[ProcStat]:
    """SIGKILL each process that is still the one we saw, and its group when it leads one
    (an agent leads its own group, and what it started goes with it). Returns those killed."""
    killed: list[ProcStat] = []
    for stat in stats:
        if not still_running(stat):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if stat.pgrp == stat.pid:
                os.killpg(stat.pid, signal.SIGKILL)
            else:
                os.kill(stat.pid, signal.SIGKILL)
            killed.append(stat)
    return killed


def bench_env() -> dict[str, str]:
    """The caller's environment without credentials or HUTCH_* overrides: the bench says
    everything it wants on the command line, and a stray setting must not change a figure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "HUTCH_", "CLAUDE_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True)
class StopOutcome:
    seconds: float | None  # None: it did not exit within the limit and was killed
    exit_code: int | None
    leftovers: list[ProcStat]  # agents still running after the host had gone; now killed


class HostProcess:
    """`python -m actors.main` on a data folder, in its own session so a signal meant for the
    bench never reaches it; its output goes to a file (a pipe nobody drains would block it)."""

    def __init__(self, data_dir: Path, runtime: str, max_agents: int, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.chat_socket = data_dir / "cli.sock"
        command = [
            sys.executable, "-m", "actors.main",
            "--data-dir", str(data_dir), "--runtime", runtime, "--provider", "mock",
            "--max-containers", str(max_agents),
            # No agent may be stopped for idleness while the bench still counts on it.
            "--idle-timeout", "86400",
        ]  # fmt: skip
        with log_path.open("ab") as out:
            # cwd outside the repo: the host reads `.env` from its working directory.
            self.process = subprocess.Popen(
                command,
                cwd=data_dir.parent,
                env=bench_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._seen_agents: dict[tuple[int, int], ProcStat] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while READY_LINE not in self._log_text() or not self.chat_socket.exists():
            if self.process.poll() is not None:
                raise BenchError(f"the host exited with code {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"the host was not ready within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(_POLL_S)

    def agents(self) -> list[ProcStat]:
        """The host's live descendants; each one seen is remembered for the clean-up."""
        found = descendants(self.pid)
        for stat in found:
            self._seen_agents[stat.key] = stat
        return found

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"the host exited with code {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self._log_text().splitlines()[-lines:]) or "(empty log)"

    def log_count(self, needle: str) -> int:
        return sum(1 for line in self._log_text().splitlines() if needle in line)

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def terminate_timed(self, limit_s: float) -> StopOutcome:
        """SIGTERM, as a service manager stops it; how long until it exits, and who is left."""
        before = self.agents()
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout=limit_s)
            seconds: float | None = time.monotonic() - start
        except subprocess.TimeoutExpired:
            log.warning("the host did not exit within %.0f s of SIGTERM; killing it", limit_s)
            self._kill_host()
            code, seconds = None, None
        left = [stat for stat in before if still_running(stat)]
        left += [stat for stat in cwd_under(self.data_dir) if stat.key not in {s.key for s in left}]
        kill_all(left)
        return StopOutcome(seconds, code, left)

    def close(self) -> None:
        """Whatever happened: the host ends (asked first, then forced) and no agent outlives it."""
        if self.process.poll() is None:
            self.agents()  # the last look at its children before they lose their parent
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=CLEANUP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("the host ignored SIGTERM for %.0f s; killing it", CLEANUP_GRACE_S)
                self._kill_host()
        killed = kill_all(list(self._seen_agents.values()) + cwd_under(self.data_dir))
        if killed:
            log.warning("killed %d process(es) left behind by the host: %s", len(killed), [s.pid for s in killed])

    def _kill_host(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
