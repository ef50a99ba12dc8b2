"""The container's settings, all from the environment the host (or a developer) sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(ValueError):
    """A setting that is missing or wrong; the message names the variable."""


@dataclass(frozen=True)
class RunnerConfig:
    session_dir: Path
    agent_dir: Path
    global_dir: Path | None = None
    provider: str = "mock"
    model: str = "claude-sonnet-4-5"
    proxy_socket: Path | None = None
    base_url: str | None = None
    assistant_name: str = "Assistant"
    admin_user_id: str | None = None
    timezone: str = "UTC"
    heartbeat_interval_s: float = 5.0
    safety_interval_s: float = 30.0
    question_timeout_s: float = 300.0
    stall_timeout_s: float = 60.0
    stop_timeout_s: float = 20.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunnerConfig:
        env = os.environ if env is None else env
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
            admin_user_id=env.get("HUTCH_ADMIN_USER_ID") or None,
            timezone=zone,
            heartbeat_interval_s=_seconds(env, "HUTCH_HEARTBEAT_INTERVAL", cls.heartbeat_interval_s),
            safety_interval_s=_seconds(env, "HUTCH_SAFETY_INTERVAL", cls.safety_interval_s),
            question_timeout_s=_seconds(env, "HUTCH_QUESTION_TIMEOUT", cls.question_timeout_s),
            stall_timeout_s=_seconds(env, "HUTCH_STALL_TIMEOUT", cls.stall_timeout_s),
        )


def _required_path(env: Mapping[str, str], name: str) -> Path:
    value = env.get(name)
    if not value:
        raise ConfigError(f"{name} is not set")
    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"{name}={value!r} is not a folder")
    return path


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from exc
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value
