"""The host's settings: environment (or a `.env` file), overridden by command-line flags."""

from __future__ import annotations

import argparse
import difflib
import functools
import io
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from dotenv.parser import Original, parse_stream

from actors.data_folder import DataFolder
from actors.runtime.base import AgentLimits
from actors.store.agent_uids import UidRange
from actors.store.messaging_groups import UNKNOWN_SENDER_POLICIES
from protocol.envnum import EnvNumberError, env_number, env_whole_number
from protocol.logs import level_name
from protocol.models import DEFAULT_MODEL

RUNTIMES = ("process", "docker", "auto")
PROVIDERS = ("claude", "mock")


class ConfigError(ValueError):
    """A setting that is wrong; the message names it."""


@dataclass(frozen=True)
class HostConfig(DataFolder):
    data_dir: Path = Path("data")
    runtime: str = "auto"
    provider: str = "claude"
    model: str = DEFAULT_MODEL
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
    # The control page on 127.0.0.1 at this port (a token printed at start); None: off.
    control_port: int | None = None
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
    """Flags beat the environment, the environment beats `.env`, and `.env` beats defaults.

    Strict: a `.env` line that is not KEY=VALUE, and a HUTCH_* name the host does not read
    (in `.env` or the environment), is a ConfigError saying where it is."""
    dotenv = _read_dotenv(DOTENV)
    environment = os.environ if env is None else env
    values = _Reads({**dotenv.values, **environment})
    try:
        config = _from_env(values)
    except EnvNumberError as exc:
        raise ConfigError(str(exc)) from None
    _refuse_unknown(dotenv, environment, values.names)
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
            stop_grace_s=_stop_grace(env, defaults.stop_grace_s),
            agent_uids=_uid_range(env, defaults.agent_uids),
            agent_limits=_agent_limits(env, defaults.agent_limits),
            telegram_owner=(env.get("HUTCH_TELEGRAM_OWNER") or "").strip() or None,
            discord_owner=(env.get("HUTCH_DISCORD_OWNER") or "").strip() or None,
            unknown_senders=env.get("HUTCH_UNKNOWN_SENDERS") or defaults.unknown_senders,
            webhook_port=_port(env, "HUTCH_WEBHOOK_PORT"),
            control_port=_port(env, "HUTCH_CONTROL_PORT"),
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


# -- strictness: what the host reads, and nothing else ------------------------------------

DOTENV: Final = Path(".env")

# The host's own names start so; one it does not read is a typo or a stale line.
_OURS: Final = "HUTCH_"

# HUTCH_* names that other programs read and the host never does. A shell that starts an
# agent runner by hand or runs the scripts may hold them, so the host's environment may too;
# `.env` is read by the host alone, so there they would reach nothing and are refused.
OTHER_PROGRAMS_KEYS: Final[Mapping[str, str]] = {
    **dict.fromkeys(
        (
            "HUTCH_SESSION_DIR",
            "HUTCH_AGENT_DIR",
            "HUTCH_GLOBAL_DIR",
            "HUTCH_PROXY_SOCKET",
            "HUTCH_HEARTBEAT_INTERVAL",
            "HUTCH_SAFETY_INTERVAL",
            "HUTCH_QUESTION_TIMEOUT",
            "HUTCH_STALL_TIMEOUT",
        ),
        "the agent runner (container_runner), from the environment the host starts it with",
    ),
    "HUTCH_IMAGE_CACHE": "scripts/build_image.sh, from its environment",
    "HUTCH_DEBIAN_MIRROR": "scripts/build_image.sh, from its environment",
    "HUTCH_DOCKERD_LOG": "scripts/ensure_docker.sh, from its environment",
    "HUTCH_CHROMIUM_LOG": "scripts/ensure_chromium.sh, from its environment",
}

# A malformed line is quoted in the error; a value under one of these names is not.
_SECRET_NAME: Final = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
_QUOTED_CHARS: Final = 80


class _Reads(Mapping[str, str]):
    """The settings as `_from_env` sees them, noting every name it asks for (`get` and `in`
    go through `__getitem__`): what it asks for is, by definition, what the host reads."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values
        self.names: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@functools.cache
def host_keys() -> frozenset[str]:
    """Every variable the host reads (HUTCH_*, TZ, ANTHROPIC_*, the channels' tokens): the
    names `_from_env` asks for, so a line added there is known here with nothing else to edit."""
    reads = _Reads({})
    _from_env(reads)
    return frozenset(reads.names)


@dataclass(frozen=True)
class _Dotenv:
    path: Path
    values: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # the line that last set each name


def _read_dotenv(path: Path) -> _Dotenv:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _Dotenv(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines: dict[str, int] = {}
    # python-dotenv skips a line it cannot parse with at most a warning; its own parser says
    # which. CRLF is made LF first: the parser counts a CRLF's LF as a line of its own.
    for binding in parse_stream(io.StringIO(text.replace("\r\n", "\n"))):
        number, line = _first_line(binding.original)
        if binding.error or (binding.key is not None and binding.value is None):
            raise ConfigError(f"{path} line {number}: cannot parse {_quoted(line)!r} (expected KEY=VALUE)")
        if binding.key is not None:
            lines[binding.key] = number
    # The values as dotenv_values gives them (quotes, escapes, ${VAR} expansion).
    values = {key: value for key, value in dotenv_values(stream=io.StringIO(text)).items() if value is not None}
    return _Dotenv(path, values, lines)


def _first_line(original: Original) -> tuple[int, str]:
    """The number and text of a binding's first non-blank line (a binding's text starts with
    the blank lines before it)."""
    for offset, line in enumerate(original.string.splitlines()):
        if line.strip():
            return original.line + offset, line.strip()
    return original.line, ""


def _quoted(line: str) -> str:
    name, equals, _ = line.partition("=")
    if equals and _SECRET_NAME.search(name):
        line = f"{name}=..."
    return line if len(line) <= _QUOTED_CHARS else f"{line[:_QUOTED_CHARS]}..."


def _refuse_unknown(dotenv: _Dotenv, environment: Mapping[str, str], read: set[str]) -> None:
    # `read` adds what this run asked for to `host_keys()`: a name read only when another
    # setting is given is known too.
    known = host_keys() | read
    for key, number in dotenv.lines.items():
        if _is_ours(key) and key not in known:
            raise ConfigError(f"{dotenv.path} line {number}: {_unknown(key)}")
    for key in sorted(environment):
        if _is_ours(key) and key not in known and key not in OTHER_PROGRAMS_KEYS:
            raise ConfigError(_unknown(key, " in the environment"))


def _is_ours(key: str) -> bool:
    return key.upper().startswith(_OURS)


def _unknown(key: str, where: str = "") -> str:
    if key in OTHER_PROGRAMS_KEYS:
        return f"{key} is read by {OTHER_PROGRAMS_KEYS[key]}, not by the host: .env does not reach it"
    return f"unknown setting {key}{where} ({_did_you_mean(key)})"


def _did_you_mean(key: str) -> str:
    # Compared without the shared prefix, which would make every HUTCH_ name look alike; the
    # names without it are candidates too (HUTCH_TELEGRAM_TOKEN: TELEGRAM_BOT_TOKEN).
    by_stem = {name.removeprefix(_OURS): name for name in host_keys()}
    guess = difflib.get_close_matches(key.upper().removeprefix(_OURS), list(by_stem), n=1)
    return f"did you mean {by_stem[guess[0]]}?" if guess else "README.md's Configuration lists the settings"


# A stop that waits longer than this is a host that does not stop: service managers give up
# long before (systemd's default is 90 s).
MAX_STOP_GRACE_S = 600.0


def _stop_grace(env: Mapping[str, str], default: float) -> float:
    grace = env_number(env, "HUTCH_STOP_GRACE", default, positive=True)
    if grace > MAX_STOP_GRACE_S:
        raise ConfigError(f"HUTCH_STOP_GRACE={env['HUTCH_STOP_GRACE']!r}: at most {MAX_STOP_GRACE_S:g} seconds")
    return grace
