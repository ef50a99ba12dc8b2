"""The host's settings: environment (or a `.env` file), overridden by command-line flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from actors.data_folder import DataFolder
from actors.runtime.base import AgentLimits
from actors.store.agent_uids import UidRange
from actors.store.messaging_groups import UNKNOWN_SENDER_POLICIES
from protocol.envnum import EnvNumberError, env_number, env_whole_number
from protocol.logs import level_name

RUNTIMES = ("process", "docker", "auto")
PROVIDERS = ("claude", "mock")


class ConfigError(ValueError):
    """A setting that is wrong; the message names it."""


@dataclass(frozen=True)
class HostConfig(DataFolder):
    data_dir: Path = Path("data")
    runtime: str = "auto"
    provider: str = "claude"
    model: str = "claude-sonnet-4-5"
    idle_timeout_s: float = 1800.0
    max_containers: int = 5
    timezone: str = "UTC"
    log_level: str = "INFO"
    api_key: str | None = field(default=None, repr=False)
    base_url: str = "https://api.anthropic.com"
    assistant_name: str = "Assistant"
    sweep_interval_s: float = 30.0
    # How long a stopping agent may take to finish a turn in flight (SIGTERM, idle, restart).
    stop_grace_s: float = 30.0
    # Used only when the host runs as root: each agent group's agents get a uid from here.
    agent_uids: UidRange = field(default_factory=lambda: UidRange(1_000_000, 1_099_999))
    # Every agent group's limits unless it has its own (agent_groups' columns).
    agent_limits: AgentLimits = field(default_factory=AgentLimits)
    # Each channel's owner, by the platform's user id; strangers meet the chat's policy.
    telegram_owner: str | None = None
    discord_owner: str | None = None
    unknown_senders: str = "drop"
    # Webhooks into agents on 127.0.0.1 at this port; None: no endpoint.
    webhook_port: int | None = None
    # Channels: on when their token is set. The base URLs are for tests and self-hosted servers.
    telegram_bot_token: str | None = field(default=None, repr=False)
    telegram_base_url: str = "https://api.telegram.org/bot"
    # Webhook mode: Telegram posts to this public HTTPS URL, forwarded to 127.0.0.1:<port>.
    telegram_webhook_url: str | None = None
    telegram_webhook_port: int = 8443
    discord_bot_token: str | None = field(default=None, repr=False)
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None

    @property
    def owners(self) -> dict[str, str]:
        found = {"telegram": self.telegram_owner, "discord": self.discord_owner}
        return {channel: owner for channel, owner in found.items() if owner}


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> HostConfig:
    """Flags beat the environment, the environment beats `.env`, and `.env` beats defaults."""
    values: dict[str, str] = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    values.update(os.environ if env is None else env)
    try:
        config = _from_env(values)
    except EnvNumberError as exc:
        raise ConfigError(str(exc)) from None
    return _apply_flags(config, _parser().parse_args(argv))


def _from_env(env: Mapping[str, str]) -> HostConfig:
    defaults = HostConfig()
    return _checked(
        HostConfig(
            data_dir=Path(env.get("HUTCH_DATA_DIR") or defaults.data_dir),
            runtime=env.get("HUTCH_RUNTIME") or defaults.runtime,
            provider=env.get("HUTCH_PROVIDER") or defaults.provider,
            model=env.get("HUTCH_MODEL") or defaults.model,
            idle_timeout_s=env_number(env, "HUTCH_IDLE_TIMEOUT", defaults.idle_timeout_s, positive=True),
            max_containers=env_whole_number(env, "HUTCH_MAX_CONTAINERS", defaults.max_containers, minimum=1),
            timezone=env.get("TZ") or defaults.timezone,
            log_level=(env.get("HUTCH_LOG_LEVEL") or defaults.log_level).upper(),
            api_key=env.get("ANTHROPIC_API_KEY") or None,
            base_url=env.get("ANTHROPIC_BASE_URL") or defaults.base_url,
            assistant_name=env.get("HUTCH_ASSISTANT_NAME") or defaults.assistant_name,
            sweep_interval_s=env_number(env, "HUTCH_SWEEP_INTERVAL", defaults.sweep_interval_s, positive=True),
            stop_grace_s=env_number(env, "HUTCH_STOP_GRACE", defaults.stop_grace_s, positive=True),
            agent_uids=_uid_range(env, defaults.agent_uids),
            agent_limits=_agent_limits(env, defaults.agent_limits),
            telegram_owner=(env.get("HUTCH_TELEGRAM_OWNER") or "").strip() or None,
            discord_owner=(env.get("HUTCH_DISCORD_OWNER") or "").strip() or None,
            unknown_senders=env.get("HUTCH_UNKNOWN_SENDERS") or defaults.unknown_senders,
            webhook_port=_port(env, "HUTCH_WEBHOOK_PORT"),
            telegram_bot_token=env.get("TELEGRAM_BOT_TOKEN") or None,
            telegram_base_url=env.get("HUTCH_TELEGRAM_BASE_URL") or defaults.telegram_base_url,
            telegram_webhook_url=env.get("HUTCH_TELEGRAM_WEBHOOK_URL") or None,
            telegram_webhook_port=_port(env, "HUTCH_TELEGRAM_WEBHOOK_PORT") or defaults.telegram_webhook_port,
            discord_bot_token=env.get("DISCORD_BOT_TOKEN") or None,
            discord_api_base=env.get("HUTCH_DISCORD_API_BASE") or None,
            discord_gateway_url=env.get("HUTCH_DISCORD_GATEWAY_URL") or None,
        )
    )


def _port(env: Mapping[str, str], name: str) -> int | None:
    if not env.get(name):
        return None
    port = env_whole_number(env, name, 0, minimum=0)
    if port > 65535:
        raise ConfigError(f"{name}={port}: a port is at most 65535")
    return port


def _uid_range(env: Mapping[str, str], default: UidRange) -> UidRange:
    text = env.get("HUTCH_AGENT_UIDS")
    if not text:
        return default
    try:
        return UidRange.parse(text)
    except ValueError as exc:
        raise ConfigError(f"HUTCH_AGENT_UIDS: {exc}") from None


def _agent_limits(env: Mapping[str, str], default: AgentLimits) -> AgentLimits:
    # The minimums are AgentLimits' own, checked here so the error names the variable.
    cpus = env_number(env, "HUTCH_AGENT_CPUS", default.cpus, positive=True)
    try:
        return AgentLimits(
            cpus=cpus,
            memory_mb=env_whole_number(env, "HUTCH_AGENT_MEMORY_MB", default.memory_mb, minimum=64),
            pids=env_whole_number(env, "HUTCH_AGENT_PIDS", default.pids, minimum=16),
            shm_mb=env_whole_number(env, "HUTCH_AGENT_SHM_MB", default.shm_mb, minimum=1),
        )
    except EnvNumberError:
        raise
    except ValueError as exc:  # only the upper bound on cpus is left to AgentLimits
        raise ConfigError(f"HUTCH_AGENT_CPUS={cpus:g}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m actors.main", description="Run the hutch host.")
    parser.add_argument("--data-dir", type=Path, help="where everything is kept (HUTCH_DATA_DIR)")
    parser.add_argument("--runtime", choices=RUNTIMES, help="how agents run (HUTCH_RUNTIME)")
    parser.add_argument("--provider", choices=PROVIDERS, help="the model provider (HUTCH_PROVIDER)")
    parser.add_argument("--model", help="the Claude model (HUTCH_MODEL)")
    parser.add_argument("--idle-timeout", type=float, help="seconds before an idle agent stops (HUTCH_IDLE_TIMEOUT)")
    parser.add_argument("--max-containers", type=int, help="agents running at once (HUTCH_MAX_CONTAINERS)")
    parser.add_argument("--timezone", help="the users' time zone (TZ)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ... (HUTCH_LOG_LEVEL)")
    return parser


def _apply_flags(config: HostConfig, flags: argparse.Namespace) -> HostConfig:
    changes = {
        "data_dir": flags.data_dir,
        "runtime": flags.runtime,
        "provider": flags.provider,
        "model": flags.model,
        "idle_timeout_s": flags.idle_timeout,
        "max_containers": flags.max_containers,
        "timezone": flags.timezone,
        "log_level": flags.log_level.upper() if flags.log_level else None,
    }
    return _checked(replace(config, **{key: value for key, value in changes.items() if value is not None}))


def _checked(config: HostConfig) -> HostConfig:
    if config.runtime not in RUNTIMES:
        raise ConfigError(f"HUTCH_RUNTIME={config.runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if config.provider not in PROVIDERS:
        raise ConfigError(f"HUTCH_PROVIDER={config.provider!r}: expected one of {', '.join(PROVIDERS)}")
    if config.unknown_senders not in UNKNOWN_SENDER_POLICIES:
        raise ConfigError(
            f"HUTCH_UNKNOWN_SENDERS={config.unknown_senders!r}: expected one of {', '.join(UNKNOWN_SENDER_POLICIES)}"
        )
    if config.telegram_webhook_url is not None and not config.telegram_webhook_url.startswith("https://"):
        raise ConfigError(
            f"HUTCH_TELEGRAM_WEBHOOK_URL={config.telegram_webhook_url!r}: Telegram posts only to https:// URLs"
        )
    if config.max_containers < 1:
        raise ConfigError(f"HUTCH_MAX_CONTAINERS={config.max_containers}: must be at least 1")
    if config.idle_timeout_s <= 0:
        raise ConfigError(f"HUTCH_IDLE_TIMEOUT={config.idle_timeout_s}: must be positive")
    if config.sweep_interval_s <= 0:  # the sweep's ticker would spin without pause
        raise ConfigError(f"HUTCH_SWEEP_INTERVAL={config.sweep_interval_s}: must be positive")
    try:
        level_name(config.log_level)
    except ValueError:
        raise ConfigError(
            f"HUTCH_LOG_LEVEL={config.log_level!r}: expected DEBUG, INFO, WARNING, ERROR or CRITICAL"
        ) from None
    try:
        ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"TZ={config.timezone!r} is not a known time zone") from None
    return config
