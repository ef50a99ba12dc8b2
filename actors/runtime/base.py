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
