"""The contract between the host and whatever starts a session's agent.

A runtime turns an `AgentSpec` into a running `python -m container_runner` (a Docker
container in production, a plain child process in development) and reports its end once.
The host never talks to the agent through the runtime: the two sides meet only in the
session folder's SQLite files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec


class AgentUser(msgspec.Struct, frozen=True):
    """The uid and gid an agent runs as (docs/ARCHITECTURE.md, "Who an agent runs as")."""

    uid: int
    gid: int

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"


class AgentLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one agent may use. A container runtime enforces all of it; the process runtime,
    which isolates nothing, none."""

    cpus: float = 1.0
    memory_mb: int = 2048
    pids: int = 512
    # /dev/shm is writable even in a read-only container, so it is bounded like /tmp.
    shm_mb: int = 16

    def __post_init__(self) -> None:
        if not (0 < self.cpus <= 1024):
            raise ValueError(f"cpus={self.cpus}: expected a share of a CPU above zero, at most 1024")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb={self.memory_mb}: an agent needs at least 64 MB")
        if self.pids < 16:
            raise ValueError(f"pids={self.pids}: an agent needs at least 16 processes")
        if self.shm_mb < 1:
            raise ValueError(f"shm_mb={self.shm_mb}: at least 1 MB (Docker reads 0 as its 64 MB default)")


class AgentSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a runtime needs to start one session's agent.

    `env` holds the HUTCH_* settings the host computed for the runner (HUTCH_SESSION_DIR,
    HUTCH_AGENT_DIR, HUTCH_PROVIDER, ...). A runtime passes them through and may rewrite the
    paths in them to where it mounts the folders; it never adds credentials.
    """

    session_id: str
    agent_group: str
    session_dir: Path
    agent_dir: Path
    global_dir: Path | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    # None: the host's own uid and gid (a host not run as root has no other to give).
    user: AgentUser | None = None
    # None: the runtime's defaults.
    limits: AgentLimits | None = None

    @property
    def tag(self) -> str:
        """Short label for log lines: the agent group and the session id's first characters."""
        return f"{self.agent_group}/{self.session_id[:8]}"


class RuntimeStartError(Exception):
    """The agent could not be started (no interpreter, no image, engine unreachable, ...)."""


class AgentHandle(Protocol):
    """One running agent. Safe to use from any thread."""

    @property
    def ident(self) -> str:
        """The process id or container id, for logs and orphan clean-up."""
        ...

    def alive(self) -> bool: ...

    def stop(self, timeout_s: float = 10) -> int | None:
        """Ask the agent to end (SIGTERM), force it (SIGKILL) after `timeout_s`.

        Returns the exit code, or None when even the forced end could not be confirmed.
        """
        ...

    def kill(self) -> None:
        """Force the agent to end now; do not wait for it."""
        ...


class AgentRuntime(Protocol):
    """Starts agents. `isolates` tells whether the agent is fenced off from the host
    (a container) or shares its filesystem and user (a child process)."""

    @property
    def name(self) -> str: ...

    @property
    def isolates(self) -> bool: ...

    def cleanup_orphans(self) -> list[str]:
        """End the agents an earlier host of this data folder left running; returns their ids.
        Called once at start, under the data folder's lock."""
        ...

    def start(self, spec: AgentSpec, on_exit: Callable[[int], None]) -> AgentHandle:
        """Start the agent and return at once.

        `on_exit` is called exactly once, from a background thread, with the exit code when
        the agent ends for any reason, `stop()` and `kill()` included. Raises
        `RuntimeStartError` when the agent cannot be started; `on_exit` is then never called.
        """
        ...
