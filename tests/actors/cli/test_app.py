"""The `hutch` command's root: its version, its help on every level, `run` and `chat`, and
the configuration every subcommand reads (the host's own)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import pytest
import typer

from actors.cli.app import app
from actors.cli.common import HostFlags, Provider, Runtime
from actors.config import PROVIDERS, RUNTIMES, load_config
from actors.data_lock import DataFolderLock
from tests.actors.cli.conftest import Folder, hutch, one_error_line

pytestmark = pytest.mark.timeout(60)

WAIT = 20
REPO = Path(__file__).resolve().parents[3]


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += _command_paths(sub, (*path, name))
    return found


COMMANDS = _command_paths(typer.main.get_command(app))


def test_version_is_the_installed_packages() -> None:
    result = hutch("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"hutch {version('hutch')}"


def test_the_console_script_is_hutch() -> None:
    (script,) = entry_points(group="console_scripts", name="hutch")
    assert script.value == "actors.cli:main"


def test_the_first_step_commands_are_all_there() -> None:
    assert set(COMMANDS) >= {
        (),
        ("run",),
        ("chat",),
        ("status",),
        ("groups", "list"),
        ("sessions", "list"),
        ("sessions", "show"),
        ("senders", "pending"),
        ("senders", "approve"),
        ("senders", "refuse"),
        ("hooks", "add"),
        ("hooks", "list"),
        ("hooks", "rotate"),
        ("hooks", "remove"),
    }


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "hutch")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = hutch(*path, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: hutch {' '.join(path)}".strip() in " ".join(result.stdout.split())


def test_help_shows_the_defaults_and_where_they_come_from() -> None:
    run_help = " ".join(hutch("run", "--help").stdout.split())
    assert "default: ($HUTCH_DATA_DIR, else data)" in run_help
    assert "default: ($HUTCH_RUNTIME, else auto)" in run_help
    assert "process|docker|auto" in run_help
    assert "default: local" in " ".join(hutch("chat", "--help").stdout.split())


def test_the_choices_are_the_hosts() -> None:
    assert tuple(item.value for item in Runtime) == RUNTIMES
    assert tuple(item.value for item in Provider) == PROVIDERS


def test_every_flag_reaches_the_hosts_own_parser(tmp_path: Path) -> None:
    flags = HostFlags(
        data_dir=tmp_path / "-odd",
        runtime=Runtime.PROCESS,
        provider=Provider.MOCK,
        model="m-1",
        idle_timeout=12.5,
        max_containers=3,
        timezone="Europe/Paris",
        log_level="debug",
    )
    config = load_config(flags.argv())
    seen = (config.data_dir, config.runtime, config.provider, config.model, config.idle_timeout_s)
    assert seen == (tmp_path / "-odd", "process", "mock", "m-1", 12.5)
    assert (config.max_containers, config.timezone, config.log_level) == (3, "Europe/Paris", "DEBUG")


def test_run_hands_its_flags_to_the_host_and_exits_with_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def host(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    monkeypatch.setattr("actors.main.main", host)
    result = hutch("run", "--data-dir", "d", "--runtime", "process", "--provider", "mock", "--max-containers", "2")
    assert result.exit_code == 3
    assert seen == [["--data-dir=d", "--runtime=process", "--provider=mock", "--max-containers=2"]]


def test_run_is_the_host_a_second_one_stops_naming_the_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    held = DataFolderLock.acquire(data)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "HUTCH_"))}
        done = subprocess.run(
            [sys.executable, "-m", "actors.cli", "run", "--data-dir", str(data), "--runtime", "process"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=WAIT, check=False,
        )  # fmt: skip
    finally:
        held.release()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"hutch: {data.absolute()} is in use by another hutch host (pid {os.getpid()})"
    ]


def test_a_wrong_choice_is_refused_before_the_host_starts() -> None:
    result = hutch("run", "--runtime", "vm")
    assert result.exit_code == 2
    assert "vm" in result.stderr


def test_a_bad_setting_is_one_line_as_the_host_says_it() -> None:
    result = hutch("status", env={"HUTCH_MAX_CONTAINERS": "0"})
    assert one_error_line(result) == "hutch: HUTCH_MAX_CONTAINERS='0' must be at least 1"
    assert result.exit_code == 2  # as the host exits on a bad setting


def test_dotenv_is_read_as_the_host_reads_it(data: Folder) -> None:
    Path(".env").write_text(f"HUTCH_DATA_DIR={data.path}\n")
    result = hutch("sessions", "list")
    assert result.exit_code == 0, result.output
    assert data.local.id[:8] in result.stdout


def test_chat_without_a_host_says_how_to_start_one(data: Folder) -> None:
    result = hutch("chat", "--data-dir", str(data.path))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"chat: cannot connect to {data.path / 'cli.sock'} (no socket there); is the host running? "
        "start it with `make run`"
    ]


def test_chat_talks_to_the_socket_in_the_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    received: list[dict[str, Any]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(data / "cli.sock"))
        server.listen(1)
        host = threading.Thread(target=_answer_every_line, args=(server, received), daemon=True)
        host.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
        done = subprocess.run(
            [sys.executable, "-m", "actors.cli", "chat", "--data-dir", str(data), "--name", "bob"],
            input="hello from hutch chat\n", cwd=tmp_path, env=env, capture_output=True, text=True, timeout=WAIT,
            check=False,
        )  # fmt: skip
        host.join(WAIT)
    assert done.returncode == 0, done.stderr
    assert received == [
        {"join": "local"},
        {"text": "hello from hutch chat", "sender": "bob", "chat": "local"},
    ]


def test_scripts_chat_still_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    """-S: no site-packages, so neither typer nor the installed package can be reached."""
    done = subprocess.run(
        [sys.executable, "-S", str(REPO / "scripts" / "chat.py"), "--socket", str(tmp_path / "none.sock")],
        cwd=tmp_path, capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "is the host running?" in done.stderr
    assert "Traceback" not in done.stderr


def _answer_every_line(server: socket.socket, received: list[dict[str, Any]]) -> None:
    """The host's side, as far as the client needs it: every line answered once."""
    connection, _ = server.accept()
    with connection, connection.makefile("rwb") as stream:
        for line in stream:
            message = json.loads(line)
            received.append(message)
            answer = {"type": "joined", "chat": message["join"]} if "join" in message else {"type": "ack"}
            stream.write(json.dumps(answer).encode() + b"\n")
            stream.flush()
