"""The container's settings, all from the environment the host (or a developer) sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol.envnum import EnvNumberError, env_number
from protocol.logs import level_name
from protocol.models import DEFAULT_MODEL


class ConfigError(ValueError):
    """A setting that is missing or wrong; the message names the variable."""


@dataclass(frozen=True)
class RunnerConfig:
    session_dir: Path
    agent_dir: Path
    global_dir: Path | None = None
    provider: str = "mock"
    model: str = DEFAULT_MODEL
    proxy_socket: Path | None = None
    base_url: str | None = None
    assistant_name: str = "Assistant"
    timezone: str = "UTC"
    heartbeat_interval_s: float = 5.0
    safety_interval_s: float = 30.0
    question_timeout_s: float = 300.0
    stall_timeout_s: float = 60.0
    # How long a SIGTERM lets the turn in flight finish; past it the turn is left claimed
    # and the next start runs it again.
    stop_grace_s: float = 30.0
    stop_timeout_s: float = 20.0
    # How long the host lets the agent idle before it stops it (the host's default): past
    # the cache's 5 minutes, the stable prompt prefix is cached for an hour.
    idle_timeout_s: float = 1800.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunnerConfig:
        try:
            return cls._from_env(os.environ if env is None else env)
        except EnvNumberError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def _from_env(cls, env: Mapping[str, str]) -> RunnerConfig:
        session_dir = _required_path(env, "HUTCH_SESSION_DIR")
        agent_dir = _required_path(env, "HUTCH_AGENT_DIR")
        provider = env.get("HUTCH_PROVIDER", "mock")
        if provider not in {"mock", "claude"}:
            raise ConfigError(f"HUTCH_PROVIDER={provider!r}: expected 'claude' or 'mock'")
        zone = env.get("TZ") or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"TZ={zone!r} is not a known time zone") from exc
        socket = env.get("HUTCH_PROXY_SOCKET")
        global_dir = env.get("HUTCH_GLOBAL_DIR")
        return cls(
            session_dir=session_dir,
            agent_dir=agent_dir,
            global_dir=Path(global_dir) if global_dir else None,
            provider=provider,
            model=env.get("HUTCH_MODEL") or cls.model,
            proxy_socket=Path(socket) if socket else None,
            base_url=env.get("ANTHROPIC_BASE_URL") or None,
            assistant_name=env.get("HUTCH_ASSISTANT_NAME") or cls.assistant_name,
            timezone=zone,
            heartbeat_interval_s=env_number(env, "HUTCH_HEARTBEAT_INTERVAL", cls.heartbeat_interval_s, positive=True),
            safety_interval_s=env_number(env, "HUTCH_SAFETY_INTERVAL", cls.safety_interval_s, positive=True),
            question_timeout_s=env_number(env, "HUTCH_QUESTION_TIMEOUT", cls.question_timeout_s, positive=True),
            stall_timeout_s=env_number(env, "HUTCH_STALL_TIMEOUT", cls.stall_timeout_s, positive=True),
            stop_grace_s=env_number(env, "HUTCH_STOP_GRACE", cls.stop_grace_s, positive=True),
            idle_timeout_s=env_number(env, "HUTCH_IDLE_TIMEOUT", cls.idle_timeout_s, positive=True),
            log_level=_log_level(env),
        )


def _required_path(env: Mapping[str, str], name: str) -> Path:
    value = env.get(name)
    if not value:
        raise ConfigError(f"{name} is not set")
    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"{name}={value!r} is not a folder")
    return path


def _log_level(env: Mapping[str, str]) -> str:
    raw = env.get("HUTCH_LOG_LEVEL") or RunnerConfig.log_level
    try:
        return level_name(raw)
    except ValueError:
        raise ConfigError(f"HUTCH_LOG_LEVEL={raw!r}: expected DEBUG, INFO, WARNING, ERROR or CRITICAL") from None
