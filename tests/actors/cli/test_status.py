"""`hutch status`: up or down from the data folder's lock, what is configured, the live agents
and the queued work, with the host running or not, touching nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.cli.status import gather
from actors.config import load_config
from actors.data_lock import DataFolderLock
from actors.host import INSTALLATION_FILE
from protocol.timeutil import utc_now
from tests.actors.cli.conftest import Folder, hutch

pytestmark = pytest.mark.timeout(60)


def _rows(data_dir: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    config = load_config(["--data-dir", str(data_dir)], env=env or {})
    return dict(gather(config, utc_now()).rows)


def test_down_when_no_host_holds_the_lock(data: Folder) -> None:
    result = hutch("status", "--data-dir", str(data.path))
    assert result.exit_code == 0, result.output
    rows = _rows(data.path)
    assert rows["host"] == "down"
    assert rows["data folder"] == str(data.path)
    assert rows["queued work"] == "3 pending in 1 session: 2 due now, 1 later"
    assert rows["sessions"] == "2 active, 0 closed"
    assert rows["agent groups"] == "1 (main)"
    assert "queued work" in result.stdout
    assert data.local.id[:8] in result.stdout


def test_up_with_the_holders_pid_while_the_lock_is_held(data: Folder) -> None:
    held = DataFolderLock.acquire(data.path)
    try:
        assert _rows(data.path)["host"] == f"up (pid {os.getpid()})"
        result = hutch("status", "--data-dir", str(data.path))
    finally:
        held.release()
    assert result.exit_code == 0
    assert f"up (pid {os.getpid()})" in result.stdout
    assert _rows(data.path)["host"] == "down"


def test_looking_does_not_take_the_lock_from_a_host_starting_meanwhile(data: Folder) -> None:
    """The look is a shared lock, dropped at once: a host can take the folder right after."""
    _rows(data.path)
    DataFolderLock.acquire(data.path).release()


def test_a_missing_data_folder_is_reported_and_left_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = hutch("status", "--data-dir", str(missing))
    assert result.exit_code == 0, result.output
    rows = _rows(missing)
    assert rows["host"] == "down"
    assert rows["data folder"].startswith(f"{missing} does not exist")
    assert not missing.exists()


def test_a_data_folder_the_host_never_ran_in_is_left_as_it_was(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rows = _rows(empty)
    assert rows["host"] == "down"
    assert rows["central DB"].startswith("no central DB at")
    assert list(empty.iterdir()) == []


def test_channels_are_shown_without_their_tokens(data: Folder) -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": "123:tg-secret-token",
        "HUTCH_TELEGRAM_OWNER": "42",
        "DISCORD_BOT_TOKEN": "dc-secret-token",
        "HUTCH_WEBHOOK_PORT": "8088",
        "ANTHROPIC_API_KEY": "sk-secret-key",
    }
    rows = _rows(data.path, env)
    assert rows["channel local chat"] == f"on: {data.path / 'cli.sock'}"
    assert rows["channel telegram"] == "on: long polling, owner 42"
    assert rows["channel discord"] == "on, no owner set"
    assert rows["channel webhooks"] == "on: 127.0.0.1:8088, 0 routes"
    assert rows["provider"] == "claude"
    result = hutch("status", "--data-dir", str(data.path), env=env)
    assert result.exit_code == 0
    for secret in env.values():
        if "secret" in secret:
            assert secret not in result.output


def test_the_control_page_row_names_the_port_never_the_token(data: Folder) -> None:
    assert _rows(data.path)["control page"] == "off (HUTCH_CONTROL_PORT not set)"
    shown = _rows(data.path, {"HUTCH_CONTROL_PORT": "8766"})["control page"]
    assert shown == "on: http://127.0.0.1:8766/ (the login token is in the host's output)"


def test_without_a_key_the_provider_row_says_the_host_uses_mock(data: Folder) -> None:
    assert _rows(data.path)["provider"] == "claude (no ANTHROPIC_API_KEY: the host uses mock)"
    assert _rows(data.path, {"HUTCH_PROVIDER": "mock"})["provider"] == "mock"


@pytest.fixture
def agent(data: Folder) -> Iterator[subprocess.Popen[bytes]]:
    """A process that looks like one of the host's agents to `agents_in`: the runner's name
    on its command line, a session folder of this data folder in its environment."""
    env = {**os.environ, "HUTCH_SESSION_DIR": str(data.layout(data.local, data.main).root)}
    command = [sys.executable, "-c", "import sys; sys.stdin.read()", "container_runner"]
    proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE)
    yield proc
    proc.communicate(timeout=20)


def test_live_process_agents_are_counted(data: Folder, agent: subprocess.Popen[bytes]) -> None:
    assert _rows(data.path)["agents (process)"] == "1 live"


def test_docker_is_not_asked_for_a_folder_that_never_used_it(data: Folder) -> None:
    assert _rows(data.path)["agents (docker)"] == "not checked (no agent of this data folder has run in Docker)"


def test_an_engine_that_does_not_answer_is_reported_not_waited_for(
    data: Folder, monkeypatch: pytest.MonkeyPatch
) -> None:
    (data.path / INSTALLATION_FILE).write_text("abc123\n")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{data.path}/no-engine.sock")
    assert _rows(data.path)["agents (docker)"].startswith("not checked (")


def test_an_unreadable_session_db_is_reported_and_the_others_still_counted(data: Folder) -> None:
    family = data.layout(data.family, data.main)
    family.create()
    family.inbound_db.write_text("not a database")
    rows = _rows(data.path)
    assert rows["queued work"] == "3 pending in 1 session: 2 due now, 1 later; the inbound.db of 1 session unreadable"
