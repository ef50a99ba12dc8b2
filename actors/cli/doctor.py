"""`hutch doctor`: the checks a person would otherwise make by hand, each with a verdict and
the command that fixes it.

Every check answers, whatever goes wrong: a network check has a short timeout, and an
exception is a `fail` with its first line, never a traceback. The checks run at once, so the
slowest one (a timeout) is all the command waits for. Secrets are never shown: a token or
key that an error message repeats is replaced before it is printed.

`hutch onboard` checks its answers with the same functions (`check_api_key`,
`check_telegram_token`, `check_discord_token`, `check_engine`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import typer
from rich.table import Table

from actors.cli.common import CliError, DataDirOption, HostFlags, console, host_state, load, one_line
from actors.config import HostConfig
from actors.inotify_limits import LIMIT_FILE, inotify_shortfall
from actors.runtime.choice import decide_runtime
from actors.runtime.image import ImageStatus, inspect_image

Verdict = Literal["ok", "warn", "fail"]

DEFAULT_TIMEOUT_S: Final = 5.0
DISCORD_API_BASE: Final = "https://discord.com/api/v10"
# Below these the host and its agents are about to fail writes (SQLite, files people send).
DISK_WARN_BYTES: Final = 1 << 30
DISK_FAIL_BYTES: Final = 200 << 20

_ONBOARD = "hutch onboard"
_SCRUB_MIN = 8
# Why `auto` gives up isolation, in a few words: the rows below say the rest.
_CAUSES: Final = {
    "no-engine": "no Docker engine reachable",
    "missing": "the agent image is not built",
    "stale": "the agent image is stale",
}
_COLOURS: Final = {"ok": "green", "warn": "yellow", "fail": "bold red"}


@dataclass(frozen=True)
class Check:
    """One row: what was checked, the verdict, what was found, and what fixes it.
    `subject` is what the check learnt about the thing checked (a bot's @name)."""

    name: str
    verdict: Verdict
    detail: str
    fix: str = ""
    subject: str | None = None


def doctor(
    data_dir: DataDirOption = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", min=0.1, help="How long each network check may take.")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """Check this machine and configuration: engine, image, inotify, data folder, key, channel tokens, disk.

    Each row has a verdict (ok, warn, fail) and, where something is wrong, the command that
    fixes it. Exits 1 when any check fails.
    """
    try:
        config: HostConfig | None = load(HostFlags(data_dir=data_dir))
    except CliError as exc:
        config = None
        checks = [Check("configuration", "fail", str(exc), "fix that setting in .env or the environment")]
    if config is not None:
        checks = run_checks(config, timeout)
    show(checks)
    if any(check.verdict == "fail" for check in checks):
        raise typer.Exit(1)


def run_checks(config: HostConfig, timeout: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    """Every check, in a fixed order, made at once."""
    groups: list[tuple[str, Callable[[], list[Check]]]] = [
        ("docker", lambda: docker_checks(config, timeout)),
        ("inotify limits", lambda: [check_inotify(config.max_containers)]),
        ("data folder", lambda: [check_data_folder(config.data_dir)]),
        ("disk space", lambda: [check_disk(config.data_dir)]),
        ("model key", lambda: [key_check(config, timeout)]),
        (
            "telegram token",
            lambda: [
                check_telegram(config.telegram_bot_token, config.telegram_base_url, config.telegram_owner, timeout)
            ],
        ),
        (
            "discord token",
            lambda: [check_discord(config.discord_bot_token, config.discord_api_base, config.discord_owner, timeout)],
        ),
    ]
    secrets = [config.api_key, config.telegram_bot_token, config.discord_bot_token]
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        futures = [pool.submit(_guarded, name, make, secrets) for name, make in groups]
        return [check for future in futures for check in future.result()]


def _guarded(name: str, make: Callable[[], list[Check]], secrets: list[str | None]) -> list[Check]:
    try:
        found = make()
    except Exception as exc:  # a check that breaks is a verdict too
        found = [Check(name, "fail", f"the check itself failed: {one_line(exc)}")]
    return [_scrubbed(check, secrets) for check in found]


def _scrubbed(check: Check, secrets: list[str | None]) -> Check:
    detail = check.detail
    for secret in secrets:
        # A secret of a few characters would blank out ordinary words, and no real key or
        # token is that short; the checks scrub their own error texts of any length.
        if secret and len(secret) >= _SCRUB_MIN:
            detail = detail.replace(secret, "<secret>")
    return Check(check.name, check.verdict, detail, check.fix, check.subject)


def show(checks: list[Check]) -> None:
    table = Table(title="hutch doctor", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("fix", overflow="fold")
    for check in checks:
        colour = _COLOURS[check.verdict]
        table.add_row(check.name, f"[{colour}]{check.verdict}[/{colour}]", check.detail, check.fix)
    out = console()
    out.print(table)
    counts = {verdict: sum(1 for check in checks if check.verdict == verdict) for verdict in _COLOURS}
    out.print(", ".join(f"{count} {verdict}" for verdict, count in counts.items()))


# -- Docker -----------------------------------------------------------------------------------


def docker_checks(config: HostConfig, timeout: float = DEFAULT_TIMEOUT_S) -> list[Check]:
    """The runtime the host would take now, the engine, and the agent image."""
    status = inspect_image(timeout=timeout)
    return [
        check_runtime(config.runtime, status),
        check_engine(config.runtime, status),
        check_image(config.runtime, status),
    ]


def check_runtime(wanted: str, status: ImageStatus) -> Check:
    choice = decide_runtime(wanted, status)
    if choice.runtime is None:
        return Check("runtime", "fail", choice.error or "", status.fix)
    if choice.runtime == "docker":
        if choice.warning:
            return Check("runtime", "warn", f"{wanted}: agents run the stale image's older runner", status.fix)
        return Check("runtime", "ok", f"{wanted}: agents run isolated, in containers of {status.image}")
    if wanted == "process":
        return Check(
            "runtime",
            "warn",
            "process (HUTCH_RUNTIME=process): agents run unisolated",
            "HUTCH_RUNTIME=auto, then make image",
        )
    cause = _CAUSES.get(status.state, status.problem)
    return Check("runtime", "warn", f"auto: agents run as processes, unisolated: {cause}", status.fix)


def check_engine(wanted: str, status: ImageStatus) -> Check:
    """Reachable or not; not reachable fails only where the host then cannot start."""
    if status.engine_error is None:
        return Check(
            "docker engine", "ok", f"Docker {status.engine_version or '(version unknown)'} at {status.endpoint}"
        )
    verdict: Verdict = "fail" if wanted == "docker" else "ok" if wanted == "process" else "warn"
    detail = status.problem or ""
    if wanted == "process":
        detail += " (not used: HUTCH_RUNTIME=process)"
    return Check("docker engine", verdict, detail, "" if wanted == "process" else status.fix)


def check_image(wanted: str, status: ImageStatus) -> Check:
    if status.engine_error is not None:
        verdict: Verdict = "ok" if wanted == "process" else "warn"
        return Check("agent image", verdict, f"{status.image}: not checked (no engine)")
    match status.state:
        case "current":
            return Check("agent image", "ok", f"{status.image}, built from this code ({status.wanted})")
        case "missing":
            verdict = "fail" if wanted == "docker" else "ok" if wanted == "process" else "warn"
        case _:
            verdict = "ok" if wanted == "process" else "warn"
    detail = status.problem or ""
    if wanted == "process":
        detail += " (not used: HUTCH_RUNTIME=process)"
    return Check("agent image", verdict, detail, status.fix)


# -- this machine ---------------------------------------------------------------------------


def check_inotify(max_agents: int, limit_file: Path = LIMIT_FILE) -> Check:
    shortfall = inotify_shortfall(max_agents, limit_file)
    if shortfall is not None:
        wanted = re.search(r"sysctl (fs\.inotify\.max_user_instances=\d+)", shortfall)
        fix = f"sysctl -w {wanted.group(1)} (as root; a file in /etc/sysctl.d/ keeps it)" if wanted else ""
        return Check("inotify limits", "warn", shortfall, fix)
    try:
        limit = limit_file.read_text().strip()
    except OSError:
        return Check("inotify limits", "ok", f"{limit_file} not readable: nothing to check on this system")
    return Check("inotify limits", "ok", f"max_user_instances {limit}: enough for {max_agents} agents and the host")


def check_data_folder(data_dir: Path) -> Check:
    """Writable (a file is made and removed, as the host would), and which host holds it."""
    folder = data_dir.absolute()
    fix_owner = f"chown -R {_user()} {folder}, or HUTCH_DATA_DIR=<a folder of yours>"
    if not folder.exists():
        parent = _existing_ancestor(folder)
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return Check("data folder", "ok", f"{folder} does not exist yet: the host makes it at its first start")
        return Check(
            "data folder", "fail", f"{folder} does not exist, and {parent} is not writable to make it", fix_owner
        )
    if not folder.is_dir():
        return Check("data folder", "fail", f"{folder} is not a folder", "HUTCH_DATA_DIR=<a folder>")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".doctor-")
    except OSError as exc:
        return Check("data folder", "fail", f"{folder} is not writable ({one_line(exc)})", fix_owner)
    os.close(fd)
    os.unlink(probe)
    state = host_state(folder)
    if state.up:
        held = f"held by a running host, pid {state.pid or 'unknown'}{_command_of(state.pid)}"
    else:
        held = "no host holds it"
    return Check("data folder", "ok", f"{folder} is writable; {held}")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _command_of(pid: str | None) -> str:
    if not pid or not pid.isdigit():
        return ""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    command = " ".join(word.decode(errors="replace") for word in words if word)
    return f" ({command[:80]})" if command else ""


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_disk(data_dir: Path) -> Check:
    where = _existing_ancestor(data_dir.absolute())
    usage = shutil.disk_usage(where)
    detail = f"{_size(usage.free)} free of {_size(usage.total)} where the data folder is ({where})"
    fix = f"free space on that disk (df -h {where}); docker image prune removes old agent images"
    if usage.free < DISK_FAIL_BYTES:
        return Check("disk space", "fail", detail, fix)
    if usage.free < DISK_WARN_BYTES:
        return Check("disk space", "warn", detail, fix)
    return Check("disk space", "ok", detail)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"


# -- the model API ----------------------------------------------------------------------------


def key_check(config: HostConfig, timeout: float = DEFAULT_TIMEOUT_S) -> Check:
    if config.provider == "mock":
        return Check("model key", "ok", "not needed: HUTCH_PROVIDER=mock")
    if not config.api_key:
        return Check(
            "model key",
            "warn",
            "ANTHROPIC_API_KEY is not set: the host uses the mock provider (canned replies)",
            f"{_ONBOARD} (or ANTHROPIC_API_KEY=... in .env)",
        )
    return check_api_key(config.api_key, config.base_url, config.model, timeout)


def check_api_key(key: str, base_url: str, model: str, timeout: float = DEFAULT_TIMEOUT_S) -> Check:
    """One free request (count_tokens) with the key, against `base_url`, for `model`."""
    import anthropic

    name = "model key"
    fix_key = f"a key from console.anthropic.com: {_ONBOARD} (or ANTHROPIC_API_KEY=... in .env)"
    client = anthropic.Anthropic(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
    try:
        client.messages.count_tokens(
            model=model,
            messages=[{"role": "user", "content": "hello"}],
            # As the credential proxy presents the key upstream (x-api-key), not as this SDK
            # would (a Bearer header): the check is of what the host will send.
            extra_headers={"x-api-key": key, "Authorization": anthropic.omit},
        )
    except anthropic.AuthenticationError as exc:
        return Check(name, "fail", f"refused by {base_url}: {_api_message(exc)}", fix_key)
    except anthropic.PermissionDeniedError as exc:
        return Check(name, "fail", f"not allowed by {base_url}: {_api_message(exc)}", fix_key)
    except anthropic.NotFoundError as exc:
        return Check(
            name,
            "fail",
            f"{base_url} does not know the model {model}: {_api_message(exc)}",
            "HUTCH_MODEL=<a model your key may use>, or ANTHROPIC_BASE_URL=<the API's address>",
        )
    except anthropic.RateLimitError as exc:
        return Check(name, "warn", f"accepted, but rate limited now: {_api_message(exc)}")
    except anthropic.APIStatusError as exc:
        if exc.status_code >= 500:
            return Check(name, "warn", f"{base_url} answered {exc.status_code}: {_api_message(exc)}; try again later")
        return Check(name, "fail", f"{base_url} answered {exc.status_code}: {_api_message(exc)}", fix_key)
    except anthropic.APITimeoutError:
        return Check(
            name, "fail", f"no answer from {base_url} within {timeout:g} s", "check the network, or ANTHROPIC_BASE_URL"
        )
    except anthropic.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        return Check(
            name, "fail", f"cannot reach {base_url}: {one_line(cause)}", "check the network, or ANTHROPIC_BASE_URL"
        )
    finally:
        client.close()
    return Check(name, "ok", f"accepted by {base_url} (model {model})")


def _api_message(exc: Any) -> str:
    """The API's own words (`error.message` of its body), else the SDK's."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return one_line(exc)


# -- channels -------------------------------------------------------------------------------


def check_telegram(token: str | None, base_url: str, owner: str | None, timeout: float = DEFAULT_TIMEOUT_S) -> Check:
    """The channel as configured: off, or its token (`check_telegram_token`) and its owner."""
    if not token:
        return Check("telegram token", "ok", "channel off (TELEGRAM_BOT_TOKEN not set)")
    return _with_owner(check_telegram_token(token, base_url, timeout), "HUTCH_TELEGRAM_OWNER", owner)


def check_telegram_token(token: str, base_url: str, timeout: float = DEFAULT_TIMEOUT_S) -> Check:
    """getMe through python-telegram-bot, as the channel starts; `subject` is the bot's @name."""
    from telegram.error import InvalidToken, TelegramError, TimedOut

    name = "telegram token"

    fix_token = f"a token from @BotFather: {_ONBOARD} (or TELEGRAM_BOT_TOKEN=... in .env)"
    try:
        bot_name = asyncio.run(asyncio.wait_for(_telegram_get_me(token, base_url, timeout), timeout * 2))
    except InvalidToken:
        # PTB's own text may repeat the token; this one does not.
        return Check(name, "fail", f"refused by {_no_token(base_url)} (getMe: Unauthorized)", fix_token)
    except (TimedOut, TimeoutError):
        return Check(name, "fail", f"no answer from {_no_token(base_url)} within {timeout:g} s", "check the network")
    except TelegramError as exc:
        return Check(name, "fail", f"getMe failed: {_scrub(one_line(exc), token)}", "check the network, or the token")
    return Check(name, "ok", f"the bot is @{bot_name}", subject=bot_name)


async def _telegram_get_me(token: str, base_url: str, timeout: float) -> str:
    from telegram import Bot
    from telegram.request import HTTPXRequest

    def request() -> HTTPXRequest:
        return HTTPXRequest(
            connection_pool_size=1,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            pool_timeout=timeout,
        )

    bot = Bot(token, base_url=base_url, request=request(), get_updates_request=request())
    async with bot:  # initialize() is getMe
        return str(bot.username)


def check_discord(
    token: str | None, api_base: str | None, owner: str | None, timeout: float = DEFAULT_TIMEOUT_S
) -> Check:
    """The channel as configured: off, or its token (`check_discord_token`) and its owner."""
    if not token:
        return Check("discord token", "ok", "channel off (DISCORD_BOT_TOKEN not set)")
    return _with_owner(check_discord_token(token, api_base, timeout), "HUTCH_DISCORD_OWNER", owner)


def check_discord_token(token: str, api_base: str | None, timeout: float = DEFAULT_TIMEOUT_S) -> Check:
    """GET /users/@me with the bot token, as discord.py's login does; `subject` is the bot's name."""
    name = "discord token"
    base = (api_base or DISCORD_API_BASE).rstrip("/")
    fix_token = f"the bot's token from discord.com/developers: {_ONBOARD} (or DISCORD_BOT_TOKEN=... in .env)"
    request = urllib.request.Request(
        f"{base}/users/@me",
        headers={
            "Authorization": f"Bot {token}",
            "User-Agent": "DiscordBot (https://github.com/hutch, 1) hutch-doctor",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            me = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return Check(name, "fail", f"refused by {base} (users/@me: 401 Unauthorized)", fix_token)
        return Check(
            name,
            "fail",
            f"{base} answered {exc.code} {exc.reason}",
            "check DISCORD_BOT_TOKEN and HUTCH_DISCORD_API_BASE",
        )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Check(
            name,
            "fail",
            f"cannot reach {base}: {_scrub(str(reason), token)}",
            "check the network, or HUTCH_DISCORD_API_BASE",
        )
    bot_name = str(me.get("username") or me.get("id") or "?") if isinstance(me, dict) else "?"
    return Check(name, "ok", f"the bot is {bot_name}", subject=bot_name)


def _with_owner(check: Check, variable: str, owner: str | None) -> Check:
    """A channel without an owner runs, but nobody can wire a chat or approve a stranger."""
    if check.verdict == "fail":
        return check
    if not owner:
        return Check(
            check.name,
            "warn",
            f"{check.detail}; no {variable}: nobody's direct chat is wired and nobody approves strangers",
            f"{_ONBOARD} (or {variable}=<your user id> in .env)",
            check.subject,
        )
    if not owner.isdigit():
        return Check(
            check.name,
            "fail",
            f"{check.detail}; {variable}={owner!r} is not a user id (digits)",
            f"{variable}=<digits>",
        )
    return Check(check.name, check.verdict, f"{check.detail}, owner {owner}", check.fix, check.subject)


def _no_token(base_url: str) -> str:
    # Telegram's base URL gets the token appended; shown bare.
    return base_url.rstrip("/")


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "<secret>") if secret else text
