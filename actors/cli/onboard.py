"""`hutch onboard`: a first start. It asks for the model key, a channel's token and its
owner's platform id, and the runtime; checks each answer as `hutch doctor` would (one free
request with the key, getMe with the token, the engine for `docker`); and writes `.env`.

The same answers can be given as flags, and `--non-interactive` asks nothing (for scripts).
`.env` keeps every line it had that was not answered; a key that holds another value is
replaced only after a confirmation (or with `--force`), and the file is written whole, at
once, with mode 0600 (it holds secrets).

Nothing is read through the host's configuration loader: onboarding is what a person does
when that configuration is missing or wrong. The endpoints the checks use (ANTHROPIC_BASE_URL,
HUTCH_TELEGRAM_BASE_URL, HUTCH_DISCORD_API_BASE) and the model come from the environment,
then the `.env` being written, then the host's defaults, as the host reads them.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final

import typer
from dotenv import dotenv_values

from actors.cli.common import CliError, Runtime, console
from actors.cli.doctor import (
    DEFAULT_TIMEOUT_S,
    Check,
    check_api_key,
    check_discord_token,
    check_engine,
    check_telegram_token,
)
from actors.config import HostConfig

_DEFAULTS: Final = HostConfig()

API_KEY: Final = "ANTHROPIC_API_KEY"
TELEGRAM_TOKEN: Final = "TELEGRAM_BOT_TOKEN"
TELEGRAM_OWNER: Final = "HUTCH_TELEGRAM_OWNER"
DISCORD_TOKEN: Final = "DISCORD_BOT_TOKEN"
DISCORD_OWNER: Final = "HUTCH_DISCORD_OWNER"
RUNTIME: Final = "HUTCH_RUNTIME"
SECRETS: Final = frozenset({API_KEY, TELEGRAM_TOKEN, DISCORD_TOKEN})

CHANNELS: Final = ("telegram", "discord", "none")
_ASSIGNMENT: Final = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_PLAIN_VALUE: Final = re.compile(r"^[A-Za-z0-9_:.,/+@%=-]*$")


@dataclass
class Answers:
    """What will be written, in order, and how each answer was checked."""

    values: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)


def onboard(
    api_key: Annotated[
        str | None,
        typer.Option(
            help="The Anthropic API key (ANTHROPIC_API_KEY); `ps` shows flags, the prompt hides it.", show_default=False
        ),
    ] = None,
    telegram_token: Annotated[
        str | None,
        typer.Option(help="The Telegram bot's token from @BotFather (TELEGRAM_BOT_TOKEN).", show_default=False),
    ] = None,
    telegram_owner: Annotated[
        str | None, typer.Option(help="Your Telegram user id, digits (HUTCH_TELEGRAM_OWNER).", show_default=False)
    ] = None,
    discord_token: Annotated[
        str | None, typer.Option(help="The Discord bot's token (DISCORD_BOT_TOKEN).", show_default=False)
    ] = None,
    discord_owner: Annotated[
        str | None, typer.Option(help="Your Discord user id, digits (HUTCH_DISCORD_OWNER).", show_default=False)
    ] = None,
    runtime: Annotated[Runtime | None, typer.Option(help="How agents run (HUTCH_RUNTIME).", show_default=False)] = None,
    env_file: Annotated[Path, typer.Option(metavar="PATH", help="The file to write.")] = Path(".env"),
    non_interactive: Annotated[
        bool, typer.Option("--non-interactive", help="Ask nothing: only the flags' answers are checked and written.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace keys the file already holds with other values.")
    ] = False,
    skip_checks: Annotated[
        bool, typer.Option("--skip-checks", help="Write the answers without checking them (no network).")
    ] = False,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", min=0.1, help="How long each check may take.")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """A first start: the model key, a channel's token, your id there and the runtime.

    Each answer is checked, then written to .env (mode 0600).

    Interactive unless --non-interactive; flags given are taken as answers either way. A key
    .env already holds with another value is replaced only when you confirm (or --force).
    """
    existing = _read_env(env_file)
    settings = {**existing, **os.environ}
    given = {
        API_KEY: api_key,
        TELEGRAM_TOKEN: telegram_token,
        TELEGRAM_OWNER: telegram_owner,
        DISCORD_TOKEN: discord_token,
        DISCORD_OWNER: discord_owner,
        RUNTIME: None if runtime is None else runtime.value,
    }
    checker = Checker(settings, timeout, skip=skip_checks)
    answers = _from_flags(given, checker) if non_interactive else _ask(given, checker, env_file)
    failed = [check for check in answers.checks if check.verdict == "fail"]
    if failed:
        raise CliError(
            "; ".join(f"{check.name}: {check.detail}" for check in failed) + f" (nothing written to {env_file})"
        )
    if not answers.values:
        console().print(f"nothing to write: {env_file} is unchanged")
        return
    wanted = _confirmed(answers.values, existing, env_file, force=force, interactive=not non_interactive)
    write_env(env_file, wanted)
    _report(env_file, wanted, answers)


# -- checking ---------------------------------------------------------------------------------


class Checker:
    """`hutch doctor`'s checks, against the endpoints the host would use."""

    def __init__(self, settings: Mapping[str, str], timeout: float, *, skip: bool) -> None:
        self._settings = settings
        self._timeout = timeout
        self.skip = skip

    def _setting(self, name: str, default: str | None) -> str | None:
        return self._settings.get(name) or default

    def api_key(self, key: str) -> Check:
        if self.skip:
            return Check("model key", "ok", "not checked (--skip-checks)")
        return check_api_key(
            key,
            self._setting("ANTHROPIC_BASE_URL", _DEFAULTS.base_url) or _DEFAULTS.base_url,
            self._setting("HUTCH_MODEL", _DEFAULTS.model) or _DEFAULTS.model,
            self._timeout,
        )

    def telegram(self, token: str) -> Check:
        if self.skip:
            return Check("telegram token", "ok", "not checked (--skip-checks)")
        base = self._setting("HUTCH_TELEGRAM_BASE_URL", _DEFAULTS.telegram_base_url) or _DEFAULTS.telegram_base_url
        return check_telegram_token(token, base, self._timeout)

    def discord(self, token: str) -> Check:
        if self.skip:
            return Check("discord token", "ok", "not checked (--skip-checks)")
        return check_discord_token(token, self._setting("HUTCH_DISCORD_API_BASE", None), self._timeout)

    def runtime(self, wanted: str) -> Check:
        if self.skip or wanted == "process":
            return Check("runtime", "ok", wanted)
        from actors.runtime.image import inspect_image

        status = inspect_image(timeout=self._timeout)
        if wanted == "auto":
            now = "Docker containers" if status.state in {"current", "unknown"} else f"processes ({status.problem})"
            return Check("runtime", "ok", f"auto: agents would run in {now}", status.fix if status.problem else "")
        engine = check_engine(wanted, status)
        if engine.verdict != "ok":
            return Check("runtime", engine.verdict, engine.detail, engine.fix)
        if status.state != "current":
            return Check("runtime", "warn", f"docker: {status.problem}", status.fix)
        return Check("runtime", "ok", f"docker: {engine.detail}, image current")


def owner_problem(value: str) -> str | None:
    """A platform user id is digits (Telegram's and Discord's both)."""
    return None if value.isdigit() else f"{value!r} is not a user id: digits only"


# -- asking -----------------------------------------------------------------------------------


def _from_flags(given: Mapping[str, str | None], checker: Checker) -> Answers:
    answers = Answers()
    for key, raw in given.items():
        if raw is None:
            continue
        value = raw.strip()
        answers.values[key] = value
        if key in {TELEGRAM_OWNER, DISCORD_OWNER}:
            problem = owner_problem(value)
            if problem is not None:
                answers.checks.append(Check(key, "fail", problem))
        elif key == API_KEY:
            answers.checks.append(checker.api_key(value))
        elif key == TELEGRAM_TOKEN:
            answers.checks.append(checker.telegram(value))
        elif key == DISCORD_TOKEN:
            answers.checks.append(checker.discord(value))
        elif key == RUNTIME:
            answers.checks.append(checker.runtime(value))
    return answers


def _ask(given: Mapping[str, str | None], checker: Checker, env_file: Path) -> Answers:
    out = console()
    out.print(f"hutch onboard: three questions, each answer checked, then written to {env_file.absolute()}.")
    answers = Answers()

    out.print("\n[bold]1/3 The model key[/bold] (console.anthropic.com; without one the host uses canned replies)")
    key = given[API_KEY]
    if key:
        answers.checks.append(_said(checker.api_key(key)))
    else:
        key = _ask_checked(answers, f"Anthropic API key ({_skip(API_KEY, env_file)})", checker.api_key, secret=True)
    if key:
        answers.values[API_KEY] = key

    out.print("\n[bold]2/3 A channel[/bold] (the local chat, `hutch chat`, is always there)")
    channel = _channel_from(given) or _ask_choice("Channel", CHANNELS, "telegram")
    if channel == "telegram":
        _ask_channel(
            answers,
            given,
            env_file,
            TELEGRAM_TOKEN,
            TELEGRAM_OWNER,
            checker.telegram,
            "Telegram",
            "@userinfobot tells it",
        )
    elif channel == "discord":
        _ask_channel(
            answers,
            given,
            env_file,
            DISCORD_TOKEN,
            DISCORD_OWNER,
            checker.discord,
            "Discord",
            "Developer Mode on, then right-click your name: Copy User ID",
        )

    out.print("\n[bold]3/3 The runtime[/bold] (auto: Docker when an engine and the image are there, else processes)")
    runtime = given[RUNTIME]
    if runtime is not None:
        answers.checks.append(_said(checker.runtime(runtime)))
    while runtime is None:
        runtime = _ask_choice("Runtime", tuple(item.value for item in Runtime), "auto")
        check = _said(checker.runtime(runtime))
        if check.verdict == "fail":
            console().print("  choose another")
            runtime = None
        else:
            answers.checks.append(check)
    answers.values[RUNTIME] = runtime
    return answers


def _skip(key: str, env_file: Path) -> str:
    return f"Enter keeps the one in {env_file}" if key in _read_env(env_file) else "Enter to skip"


def _channel_from(given: Mapping[str, str | None]) -> str | None:
    if given[TELEGRAM_TOKEN] or given[TELEGRAM_OWNER]:
        return "telegram"
    if given[DISCORD_TOKEN] or given[DISCORD_OWNER]:
        return "discord"
    return None


def _ask_channel(
    answers: Answers,
    given: Mapping[str, str | None],
    env_file: Path,
    token_key: str,
    owner_key: str,
    check: Callable[[str], Check],
    platform: str,
    how: str,
) -> None:
    token = given[token_key]
    if token:
        answers.checks.append(_said(check(token)))
    else:
        token = _ask_checked(answers, f"{platform} bot token ({_skip(token_key, env_file)})", check, secret=True)
    if not token:
        return
    answers.values[token_key] = token
    owner = given[owner_key]
    if owner is not None and owner_problem(owner) is not None:
        answers.checks.append(Check(owner_key, "fail", owner_problem(owner) or ""))
    while owner is None or owner_problem(owner) is not None:
        owner = typer.prompt(f"Your {platform} user id ({how})").strip()
        problem = owner_problem(owner)
        if problem is not None:
            console().print(f"  {problem}")
    answers.values[owner_key] = owner


def _ask_checked(answers: Answers, prompt: str, check: Callable[[str], Check], *, secret: bool) -> str | None:
    """Asked until an answer passes its check (kept in `answers`), or nothing is given (None)."""
    while True:
        value = str(typer.prompt(prompt, default="", show_default=False, hide_input=secret)).strip()
        if not value:
            return None
        verdict = _said(check(value))
        if verdict.verdict != "fail":
            answers.checks.append(verdict)
            return value
        console().print("  try again, or press Enter to skip")


def _ask_choice(prompt: str, choices: tuple[str, ...], default: str) -> str:
    while True:
        value = str(typer.prompt(f"{prompt} [{'/'.join(choices)}]", default=default)).strip().lower()
        if value in choices:
            return value
        console().print(f"  {value!r}: expected one of {', '.join(choices)}")


def _said(check: Check) -> Check:
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}[check.verdict]
    # doctor's fixes point at onboard itself; here the fix is the next answer.
    shown = check.fix and check.verdict != "ok" and "hutch onboard" not in check.fix
    fix = f" ({check.fix})" if shown else ""
    console().print(f"  [{colour}]{check.verdict}[/{colour}]: {check.detail}{fix}")
    return check


# -- .env ----------------------------------------------------------------------------------


def _read_env(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def _confirmed(
    values: Mapping[str, str], existing: Mapping[str, str], env_file: Path, *, force: bool, interactive: bool
) -> dict[str, str]:
    """The answers to write: a key the file holds with another value only when allowed."""
    wanted: dict[str, str] = {}
    refused: list[str] = []
    for key, value in values.items():
        if key not in existing or existing[key] == value or force:
            wanted[key] = value
        elif interactive:
            if typer.confirm(f"{env_file} already sets {key} to another value; replace it?", default=False):
                wanted[key] = value
        else:
            refused.append(key)
    if refused:
        raise CliError(
            f"{env_file} already sets {', '.join(refused)} to other values; --force replaces them (nothing written)"
        )
    return wanted


def write_env(path: Path, values: Mapping[str, str]) -> None:
    """`values` into the dotenv file at `path`: each key's lines replaced in place, new keys
    appended, every other line kept as it was. Written to a new file (mode 0600) that then
    takes the old one's place, so a crash leaves the old file or the new one, never half."""
    target = path.resolve() if path.is_symlink() else path
    lines = target.read_text().splitlines(keepends=True) if target.exists() else []
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    written: set[str] = set()
    for index, line in enumerate(lines):
        found = _ASSIGNMENT.match(line)
        if found and found.group(1) in values:
            key = found.group(1)
            lines[index] = f"{key}={_quoted(values[key])}\n"
            written.add(key)
    lines.extend(f"{key}={_quoted(value)}\n" for key, value in values.items() if key not in written)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as file:
            file.writelines(lines)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _quoted(value: str) -> str:
    if _PLAIN_VALUE.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _report(env_file: Path, written: Mapping[str, str], answers: Answers) -> None:
    out = console()
    if not written:
        out.print(f"{env_file} is unchanged")
        return
    out.print(f"wrote {env_file} (mode 0600): {', '.join(written)}")
    bots = [check.subject for check in answers.checks if check.subject]
    talk = f", or write to @{bots[0]}" if bots and TELEGRAM_TOKEN in written else ""
    out.print(f"next: make run (or hutch run), then hutch chat in another terminal{talk}; hutch doctor checks it all")
