"""`hutch doctor`: every check answers with a verdict and a fix, against fake servers on
loopback driving the real clients (the anthropic SDK, python-telegram-bot, plain HTTP for
Discord); a refusal or an unreachable server is a verdict, never a traceback, and no secret
is ever printed."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from actors.cli.app import ReportingGroup
from actors.cli.doctor import (
    DISK_FAIL_BYTES,
    DISK_WARN_BYTES,
    Check,
    check_data_folder,
    check_disk,
    check_inotify,
    doctor,
    run_checks,
)
from actors.config import load_config
from actors.data_lock import DataFolderLock
from actors.runtime.docker import DockerRuntime
from actors.runtime.image import inspect_image
from protocol.models import DEFAULT_MODEL
from tests.fakes import fake_discord, fake_telegram
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply
from tests.fakes.fake_telegram import FakeTelegram

pytestmark = pytest.mark.timeout(60)

KEY = "sk-ant-test-0123456789abcdef"

app = typer.Typer(cls=ReportingGroup)


@app.callback()
def _root() -> None:
    """A root of our own: app.py registers doctor for real."""


app.command("doctor")(doctor)


def run_doctor(data_dir: Path, env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, ["doctor", "--data-dir", str(data_dir), "--timeout", "5", *args], env=env)


def rows(data_dir: Path, env: dict[str, str]) -> dict[str, Check]:
    config = load_config(["--data-dir", str(data_dir)], env=env)
    return {check.name: check for check in run_checks(config, timeout=5)}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The docker SDK reads DOCKER_HOST from the process's environment, not from `env`."""
    endpoint = f"unix://{tmp_path / 'no-engine.sock'}"
    monkeypatch.setenv("DOCKER_HOST", endpoint)
    return endpoint


@pytest.fixture
def env(no_engine: str, api: FakeMessagesAPI, telegram: FakeTelegram, discord: FakeDiscord) -> dict[str, str]:
    """A configuration that is right in every way the fakes can tell, with no engine."""
    return {
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": api.base_url,
        "TELEGRAM_BOT_TOKEN": fake_telegram.TOKEN,
        "HUTCH_TELEGRAM_BASE_URL": telegram.base_url,
        "HUTCH_TELEGRAM_OWNER": "42",
        "DISCORD_BOT_TOKEN": fake_discord.TOKEN,
        "HUTCH_DISCORD_API_BASE": discord.api_base,
        "HUTCH_DISCORD_OWNER": "100000000000000042",
        "DOCKER_HOST": no_engine,
    }


def _no_secret_in(result: Result, *secrets: str) -> None:
    assert "Traceback" not in result.output
    for secret in secrets:
        assert secret not in result.output


# -- the key and the channels' tokens --------------------------------------------------------


def test_a_good_key_and_good_tokens_pass_with_one_cheap_request_each(
    tmp_path: Path, env: dict[str, str], api: FakeMessagesAPI, telegram: FakeTelegram, discord: FakeDiscord
) -> None:
    result = run_doctor(tmp_path / "data", env)

    assert result.exit_code == 0, result.output
    found = rows(tmp_path / "data", env)
    assert found["model key"].verdict == "ok"
    assert found["model key"].detail == f"accepted by {api.base_url} (model {DEFAULT_MODEL})"
    assert found["telegram token"].verdict == "ok"
    assert found["telegram token"].subject == fake_telegram.BOT_USERNAME
    assert "@hutch_bot" in found["telegram token"].detail
    assert "owner 42" in found["telegram token"].detail
    assert found["discord token"].verdict == "ok"
    assert found["discord token"].subject == "hutch"
    # The key's one request is count_tokens, which costs nothing, with the key as the SDK sends it.
    counted = [request for request in api.requests if request.path.startswith("/v1/messages/count_tokens")]
    assert counted and all(request.headers["x-api-key"] == KEY for request in counted)
    assert not [request for request in api.requests if request.path == "/v1/messages"]
    assert telegram.calls("getMe")
    assert discord.calls_to("GET", "/users/@me")
    for name in ("model key", "telegram token", "discord token", "data folder", "disk space", "inotify limits"):
        assert name in result.stdout
    _no_secret_in(result, KEY, fake_telegram.TOKEN, fake_discord.TOKEN)


def test_a_refused_key_fails_with_the_apis_own_words_and_the_fix(
    tmp_path: Path, env: dict[str, str], api: FakeMessagesAPI
) -> None:
    api.enqueue(FakeReply.error(401, "invalid x-api-key"))

    result = run_doctor(tmp_path / "data", env)

    assert result.exit_code == 1, result.output
    assert "invalid x-api-key" in result.stdout
    assert "hutch onboard" in result.stdout
    _no_secret_in(result, KEY)


def test_an_unknown_model_is_told_as_such(tmp_path: Path, env: dict[str, str], api: FakeMessagesAPI) -> None:
    api.enqueue(FakeReply.error(404, "model: claude-nonesuch"))
    check = rows(tmp_path / "data", {**env, "HUTCH_MODEL": "claude-nonesuch"})["model key"]
    assert check.verdict == "fail"
    assert "does not know the model claude-nonesuch: model: claude-nonesuch" in check.detail
    assert "HUTCH_MODEL" in check.fix


def test_an_unreachable_api_is_a_verdict_not_a_traceback(tmp_path: Path, env: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{_closed_port()}"
    result = run_doctor(tmp_path / "data", {**env, "ANTHROPIC_BASE_URL": base})
    assert result.exit_code == 1
    check = rows(tmp_path / "data", {**env, "ANTHROPIC_BASE_URL": base})["model key"]
    assert check.verdict == "fail"
    assert check.detail.startswith(f"cannot reach {base}")
    _no_secret_in(result, KEY)


def test_no_key_is_a_warning_that_the_mock_provider_answers(tmp_path: Path, env: dict[str, str]) -> None:
    without = {name: value for name, value in env.items() if name != "ANTHROPIC_API_KEY"}
    check = rows(tmp_path / "data", without)["model key"]
    assert check.verdict == "warn"
    assert "mock provider" in check.detail


def test_a_wrong_telegram_token_fails_without_showing_it(tmp_path: Path, env: dict[str, str]) -> None:
    wrong = "999999:not-the-fake-token"
    result = run_doctor(tmp_path / "data", {**env, "TELEGRAM_BOT_TOKEN": wrong})

    assert result.exit_code == 1, result.output
    check = rows(tmp_path / "data", {**env, "TELEGRAM_BOT_TOKEN": wrong})["telegram token"]
    assert check.verdict == "fail"
    assert "refused" in check.detail
    assert "@BotFather" in check.fix
    _no_secret_in(result, wrong)


def test_a_wrong_discord_token_fails_without_showing_it(tmp_path: Path, env: dict[str, str]) -> None:
    wrong = "not-the-fake-discord-token"
    result = run_doctor(tmp_path / "data", {**env, "DISCORD_BOT_TOKEN": wrong})

    assert result.exit_code == 1, result.output
    check = rows(tmp_path / "data", {**env, "DISCORD_BOT_TOKEN": wrong})["discord token"]
    assert check.verdict == "fail"
    assert "401" in check.detail
    _no_secret_in(result, wrong)


def test_a_channel_without_an_owner_is_a_warning(tmp_path: Path, env: dict[str, str]) -> None:
    without = {name: value for name, value in env.items() if name != "HUTCH_TELEGRAM_OWNER"}
    check = rows(tmp_path / "data", without)["telegram token"]
    assert check.verdict == "warn"
    assert "HUTCH_TELEGRAM_OWNER" in check.fix


def test_channels_not_configured_are_ok_and_not_asked(tmp_path: Path, no_engine: str, telegram: FakeTelegram) -> None:
    found = rows(tmp_path / "data", {})
    assert found["telegram token"].verdict == "ok"
    assert "TELEGRAM_BOT_TOKEN not set" in found["telegram token"].detail
    assert found["discord token"].verdict == "ok"
    assert not telegram.calls()


def test_a_bad_setting_is_a_failed_row(tmp_path: Path) -> None:
    result = run_doctor(tmp_path / "data", {"HUTCH_RUNTIME": "podman"})
    assert result.exit_code == 1
    assert "configuration" in result.stdout
    assert "HUTCH_RUNTIME" in result.stdout
    assert "Traceback" not in result.output


# -- Docker -----------------------------------------------------------------------------------


def test_no_engine_warns_under_auto_and_says_agents_run_unisolated(tmp_path: Path, env: dict[str, str]) -> None:
    found = rows(tmp_path / "data", env)
    assert found["docker engine"].verdict == "warn"
    assert found["docker engine"].detail.startswith(f"no Docker engine reachable at {env['DOCKER_HOST']}")
    assert "scripts/ensure_docker.sh" in found["docker engine"].fix
    assert found["runtime"].verdict == "warn"
    assert "unisolated" in found["runtime"].detail
    assert found["agent image"].detail.endswith("not checked (no engine)")


def test_no_engine_fails_when_docker_is_asked_for(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_doctor(tmp_path / "data", {**env, "HUTCH_RUNTIME": "docker"})
    assert result.exit_code == 1
    found = rows(tmp_path / "data", {**env, "HUTCH_RUNTIME": "docker"})
    assert found["docker engine"].verdict == "fail"
    assert found["runtime"].verdict == "fail"
    assert found["runtime"].detail.startswith("HUTCH_RUNTIME=docker but no Docker engine reachable")


def test_the_process_runtime_warns_once_and_needs_no_engine(tmp_path: Path, env: dict[str, str]) -> None:
    found = rows(tmp_path / "data", {**env, "HUTCH_RUNTIME": "process"})
    assert found["runtime"].verdict == "warn"
    assert found["docker engine"].verdict == "ok"
    assert "not used" in found["docker engine"].detail


@pytest.mark.docker
def test_with_an_engine_the_image_row_agrees_with_the_engine(tmp_path: Path) -> None:
    if DockerRuntime.available() is not None:
        pytest.skip(DockerRuntime.available() or "")
    status = inspect_image()
    found = rows(tmp_path / "data", {})
    assert found["docker engine"].verdict == "ok"
    assert status.engine_version and status.engine_version in found["docker engine"].detail
    expected = {"current": "ok", "stale": "warn", "unknown": "warn", "missing": "warn"}[status.state]
    assert found["agent image"].verdict == expected
    assert found["runtime"].verdict == expected


# -- this machine ---------------------------------------------------------------------------


def test_the_data_folder_names_the_host_that_holds_it(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    assert check_data_folder(folder).detail == f"{folder} is writable; no host holds it"

    held = DataFolderLock.acquire(folder)
    try:
        check = check_data_folder(folder)
    finally:
        held.release()
    assert check.verdict == "ok"
    assert f"held by a running host, pid {os.getpid()}" in check.detail
    assert "python" in check.detail  # the holder's command line, from /proc
    assert sorted(path.name for path in folder.iterdir()) == ["hutch.lock"]  # the probe file is gone


def test_a_data_folder_yet_to_be_made_is_fine_where_it_can_be_made(tmp_path: Path) -> None:
    check = check_data_folder(tmp_path / "new" / "data")
    assert check.verdict == "ok"
    assert "does not exist yet" in check.detail
    assert not (tmp_path / "new").exists()


def test_a_data_folder_that_is_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    assert check_data_folder(tmp_path / "data").verdict == "fail"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_an_unwritable_data_folder_fails_with_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o500)
    try:
        check = check_data_folder(folder)
    finally:
        folder.chmod(0o700)
    assert check.verdict == "fail"
    assert "HUTCH_DATA_DIR" in check.fix


def test_an_inotify_limit_too_low_warns_with_the_sysctl_that_raises_it(tmp_path: Path) -> None:
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    assert check_inotify(5, limit).verdict == "ok"
    low = check_inotify(200, limit)
    assert low.verdict == "warn"
    assert low.fix.startswith("sysctl -w fs.inotify.max_user_instances=208")


def test_disk_space_has_two_thresholds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_disk(tmp_path).verdict in {"ok", "warn", "fail"}

    def usage_with(free: int) -> Any:
        return lambda _: SimpleNamespace(total=100 << 30, used=(100 << 30) - free, free=free)

    monkeypatch.setattr(shutil, "disk_usage", usage_with(DISK_WARN_BYTES * 2))
    assert check_disk(tmp_path).verdict == "ok"
    monkeypatch.setattr(shutil, "disk_usage", usage_with(DISK_WARN_BYTES - 1))
    assert check_disk(tmp_path).verdict == "warn"
    monkeypatch.setattr(shutil, "disk_usage", usage_with(DISK_FAIL_BYTES - 1))
    failed = check_disk(tmp_path)
    assert failed.verdict == "fail"
    assert "df -h" in failed.fix
