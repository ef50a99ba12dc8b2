"""`hutch onboard`: asked or given as flags, each answer checked against fake servers on
loopback (the key with one count_tokens, the Telegram token with getMe, the Discord token
with users/@me, the engine for `docker`), then written to `.env` with mode 0600, keeping
what the file held and replacing a key only when the person agrees (or `--force`)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import typer
from dotenv import dotenv_values
from typer.testing import CliRunner, Result

from actors.cli.app import ReportingGroup
from actors.cli.onboard import onboard, write_env
from tests.fakes import fake_discord, fake_telegram
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply
from tests.fakes.fake_telegram import FakeTelegram

pytestmark = pytest.mark.timeout(60)

KEY = "sk-ant-test-0123456789abcdef"

app = typer.Typer(cls=ReportingGroup)


@app.callback()
def _root() -> None:
    """A root of our own: app.py registers onboard for real."""


app.command("onboard")(onboard)


@pytest.fixture
def endpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: FakeMessagesAPI, telegram: FakeTelegram) -> None:
    """Where the checks go: the fakes, and an engine socket nobody listens on."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
    monkeypatch.setenv("HUTCH_TELEGRAM_BASE_URL", telegram.base_url)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")


def run_onboard(*args: str, answers: str | None = None) -> Result:
    return CliRunner().invoke(app, ["onboard", *args], input=answers)


def written(path: Path = Path(".env")) -> dict[str, str | None]:
    return dict(dotenv_values(path))


def mode(path: Path = Path(".env")) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def one_error_line(result: Result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- interactive ------------------------------------------------------------------------------


@pytest.mark.usefixtures("endpoints")
def test_interactive_asks_checks_and_writes_env_with_mode_0600(api: FakeMessagesAPI, telegram: FakeTelegram) -> None:
    result = run_onboard(answers=f"{KEY}\ntelegram\n{fake_telegram.TOKEN}\n42\nauto\n")

    assert result.exit_code == 0, result.output
    assert written() == {
        "ANTHROPIC_API_KEY": KEY,
        "TELEGRAM_BOT_TOKEN": fake_telegram.TOKEN,
        "HUTCH_TELEGRAM_OWNER": "42",
        "HUTCH_RUNTIME": "auto",
    }
    assert mode() == 0o600
    # Each answer was checked: the key with one free request, the token with getMe (which
    # named the bot), and auto said what it would do on this machine now.
    assert [request.path for request in api.requests] == ["/v1/messages/count_tokens"]
    assert telegram.calls("getMe")
    assert "the bot is @hutch_bot" in result.stdout
    assert "auto: agents would run in processes (no Docker engine reachable" in result.stdout
    assert "write to @hutch_bot" in result.stdout
    # Hidden input: neither secret is echoed.
    assert KEY not in result.output
    assert fake_telegram.TOKEN not in result.output


@pytest.mark.usefixtures("endpoints")
def test_a_refused_key_is_asked_again_and_a_bad_owner_id_too(api: FakeMessagesAPI) -> None:
    api.enqueue(FakeReply.error(401, "invalid x-api-key"))

    result = run_onboard(answers=f"sk-wrong-key-000\n{KEY}\ntelegram\n{fake_telegram.TOKEN}\n@me\n42\nprocess\n")

    assert result.exit_code == 0, result.output
    assert "invalid x-api-key" in result.stdout
    assert "try again" in result.stdout
    assert "'@me' is not a user id: digits only" in result.stdout
    assert written()["ANTHROPIC_API_KEY"] == KEY
    assert written()["HUTCH_TELEGRAM_OWNER"] == "42"
    assert written()["HUTCH_RUNTIME"] == "process"


@pytest.mark.usefixtures("endpoints")
def test_interactive_skips_what_is_left_empty_and_keeps_the_rest_of_the_file() -> None:
    Path(".env").write_text("# mine\nHUTCH_MODEL=claude-opus-4\nTZ=Europe/Paris\n")
    Path(".env").chmod(0o644)

    result = run_onboard(answers="\nnone\n\n")

    assert result.exit_code == 0, result.output
    assert Path(".env").read_text() == "# mine\nHUTCH_MODEL=claude-opus-4\nTZ=Europe/Paris\nHUTCH_RUNTIME=auto\n"
    assert mode() == 0o600


@pytest.mark.usefixtures("endpoints")
def test_replacing_a_key_needs_a_yes() -> None:
    Path(".env").write_text("ANTHROPIC_API_KEY=sk-old-key-000\nHUTCH_RUNTIME=process\n")

    declined = run_onboard("--api-key", KEY, "--runtime", "auto", answers="none\nn\ny\n")

    assert declined.exit_code == 0, declined.output
    assert "already sets ANTHROPIC_API_KEY to another value; replace it?" in declined.stdout
    assert written() == {"ANTHROPIC_API_KEY": "sk-old-key-000", "HUTCH_RUNTIME": "auto"}

    accepted = run_onboard("--api-key", KEY, answers="none\nauto\ny\n")

    assert accepted.exit_code == 0, accepted.output
    assert written() == {"ANTHROPIC_API_KEY": KEY, "HUTCH_RUNTIME": "auto"}


# -- non-interactive --------------------------------------------------------------------------


@pytest.mark.usefixtures("endpoints")
def test_flags_alone_for_scripts(tmp_path: Path, telegram: FakeTelegram) -> None:
    target = tmp_path / "conf" / "hutch.env"
    target.parent.mkdir()
    target.write_text("HUTCH_LOG_LEVEL=DEBUG\n")

    result = run_onboard(
        "--non-interactive",
        f"--env-file={target}",
        f"--api-key={KEY}",
        f"--telegram-token={fake_telegram.TOKEN}",
        "--telegram-owner=42",
        "--runtime=process",
    )

    assert result.exit_code == 0, result.output
    assert written(target) == {
        "HUTCH_LOG_LEVEL": "DEBUG",
        "ANTHROPIC_API_KEY": KEY,
        "TELEGRAM_BOT_TOKEN": fake_telegram.TOKEN,
        "HUTCH_TELEGRAM_OWNER": "42",
        "HUTCH_RUNTIME": "process",
    }
    assert mode(target) == 0o600
    assert telegram.calls("getMe")
    assert not Path(".env").exists()
    # Nothing in the target's folder but the file: the temporary one took its place.
    assert [path.name for path in target.parent.iterdir()] == ["hutch.env"]


@pytest.mark.usefixtures("endpoints")
def test_a_key_already_set_is_refused_without_force_and_nothing_is_written() -> None:
    Path(".env").write_text("ANTHROPIC_API_KEY=sk-old-key-000\n")
    Path(".env").chmod(0o640)

    refused = run_onboard("--non-interactive", f"--api-key={KEY}", "--telegram-owner=42")

    line = one_error_line(refused)
    assert "already sets ANTHROPIC_API_KEY to other values; --force replaces them (nothing written)" in line
    assert Path(".env").read_text() == "ANTHROPIC_API_KEY=sk-old-key-000\n"
    assert mode() == 0o640

    forced = run_onboard("--non-interactive", f"--api-key={KEY}", "--force")

    assert forced.exit_code == 0, forced.output
    assert written() == {"ANTHROPIC_API_KEY": KEY}
    assert mode() == 0o600


@pytest.mark.usefixtures("endpoints")
def test_the_same_value_again_is_no_overwrite() -> None:
    Path(".env").write_text(f"ANTHROPIC_API_KEY={KEY}\n")
    result = run_onboard("--non-interactive", f"--api-key={KEY}")
    assert result.exit_code == 0, result.output
    assert written() == {"ANTHROPIC_API_KEY": KEY}


@pytest.mark.usefixtures("endpoints")
def test_a_failed_check_writes_nothing_and_says_why_in_one_line(api: FakeMessagesAPI) -> None:
    api.enqueue(FakeReply.error(401, "invalid x-api-key"))
    wrong_token = "999999:not-the-fake-token"

    result = run_onboard("--non-interactive", f"--api-key={KEY}", f"--telegram-token={wrong_token}")

    line = one_error_line(result)
    assert "model key: refused by" in line
    assert "invalid x-api-key" in line
    assert "telegram token: refused by" in line
    assert "nothing written to .env" in line
    assert wrong_token not in result.output
    assert KEY not in result.output
    assert not Path(".env").exists()


@pytest.mark.usefixtures("endpoints")
def test_an_owner_id_must_be_digits() -> None:
    result = run_onboard("--non-interactive", "--telegram-owner=@ada")
    assert "HUTCH_TELEGRAM_OWNER: '@ada' is not a user id: digits only" in one_error_line(result)
    assert not Path(".env").exists()


@pytest.mark.usefixtures("endpoints")
def test_docker_without_an_engine_is_refused_unless_checks_are_skipped(api: FakeMessagesAPI) -> None:
    refused = run_onboard("--non-interactive", "--runtime=docker")
    assert "runtime: no Docker engine reachable at unix://" in one_error_line(refused)
    assert not Path(".env").exists()

    skipped = run_onboard("--non-interactive", "--runtime=docker", f"--api-key={KEY}", "--skip-checks")
    assert skipped.exit_code == 0, skipped.output
    assert written() == {"HUTCH_RUNTIME": "docker", "ANTHROPIC_API_KEY": KEY}
    assert not api.requests  # --skip-checks: nothing asked of any server


def test_a_discord_token_is_checked_against_the_configured_api(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDiscord() as discord:
        monkeypatch.setenv("HUTCH_DISCORD_API_BASE", discord.api_base)
        good = run_onboard(
            "--non-interactive", f"--discord-token={fake_discord.TOKEN}", "--discord-owner=100000000000000042"
        )
        bad = run_onboard("--non-interactive", "--discord-token=wrong-token-000", "--force")
    assert good.exit_code == 0, good.output
    assert written() == {"DISCORD_BOT_TOKEN": fake_discord.TOKEN, "HUTCH_DISCORD_OWNER": "100000000000000042"}
    assert "discord token: refused by" in one_error_line(bad)


# -- the file ---------------------------------------------------------------------------------


def test_write_env_replaces_in_place_quotes_what_needs_it_and_follows_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.env"
    real.write_text("export A=1\n# note\nB=2\nA=3")
    link = tmp_path / ".env"
    link.symlink_to(real)

    write_env(link, {"A": "x", "C": 'two words "quoted"'})

    assert link.is_symlink()
    assert real.read_text() == 'A=x\n# note\nB=2\nA=x\nC="two words \\"quoted\\""\n'
    assert dotenv_values(link) == {"A": "x", "B": "2", "C": 'two words "quoted"'}
    assert mode(real) == 0o600
