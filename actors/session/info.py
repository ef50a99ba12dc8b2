"""What a SessionActor is given: who the session is, how it behaves, and what it needs of the
credential proxy. Plain data, so the pieces the actor calls can take it without the actor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from actors.runtime.base import AgentLimits, AgentUser
from protocol.layout import SessionLayout
from protocol.logs import session_tag


@dataclass(frozen=True)
class SessionSettings:
    timezone: str = "UTC"
    idle_timeout_s: float = 1800.0
    stale_heartbeat_s: float = 30.0
    claim_ceiling_s: float = 1800.0
    # An agent with nothing claimed must take due work within this; else it is half-dead.
    unclaimed_deadline_s: float = 60.0
    retry_base_s: float = 5.0
    max_tries: int = 5
    # A platform that is down or refuses for a while (5xx, 429, a lost connection) is tried
    # again, waiting twice as long each time up to a minute, for about a day: a reply is
    # never lost to an outage. What the platform refuses for good fails at once.
    delivery_retry_base_s: float = 2.0
    delivery_max_backoff_s: float = 60.0
    delivery_max_attempts: int = 1450
    # How fast an agent's messages go out: a burst, then a steady pace; faster ones wait.
    send_per_minute: float = 120.0
    send_burst: int = 60
    # How long the host waits for a stopping agent before it kills it. The runner is told to
    # finish a turn in flight within a little less (`stop_grace_s`), and then to leave it
    # claimed for the next start.
    stop_timeout_s: float = 35.0

    @property
    def stop_grace_s(self) -> float:
        return max(self.stop_timeout_s - 5.0, self.stop_timeout_s / 2)

    # Settings handed to the runner as they are (provider, model, assistant name, ...).
    agent_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    agent_group: str
    layout: SessionLayout
    agent_dir: Path
    global_dir: Path | None = None
    # Who the agent runs as (None: the host's uid) and what it may use (None: the runtime's
    # defaults); the Supervisor fills both in from the agent group.
    user: AgentUser | None = None
    limits: AgentLimits | None = None
    # The agent group's own model (None: the host's HUTCH_MODEL in `agent_env`). Read when
    # the session starts: a group's model change stops its sessions (`RestartGroupAgents`).
    model: str | None = None

    @property
    def tag(self) -> str:
        """`[main/1a2b3c4d]`: how the host's log lines name this session (protocol.logs)."""
        return session_tag(self.session_id, self.agent_group)


class ProxySockets(Protocol):
    """What the session needs of the credential proxy (see actors/credentials.py)."""

    def open_socket(
        self, session_id: str, agent_group: str, socket_path: Path, owner: AgentUser | None = None
    ) -> None: ...

    def close_socket(self, session_id: str) -> None: ...
