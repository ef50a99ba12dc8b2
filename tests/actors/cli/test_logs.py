"""`hutch logs`: the last lines of the host's log file, one session's, and following the file
as the host writes and rotates it; and what a real host writes there."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import typer
from typer.testing import CliRunner, Result

from actors.cli.app import ReportingGroup
from actors.cli.logs import DEFAULT_LINES, Follower, logs
from actors.config import load_config
from actors.store import sessions
from actors.store.db import open_store
from protocol.logs import RECORD_START
from tests.actors.cli.conftest import Folder, one_error_line
from tests.fakes.chat_client import ChatClient
from tests.fakes.host_process import HostProcess

pytestmark = pytest.mark.timeout(60)

WAIT = 20
REPO = Path(__file__).resolve().parents[3]

# The command as the `hutch` app will hold it, without registering it there.
cli = typer.Typer(cls=ReportingGroup)
cli.command("logs")(logs)


@cli.callback()
def _root() -> None:
    """A group of its own, so `logs` is a subcommand as it is under `hutch`."""


def hutch_logs(*args: str) -> Result:
    return CliRunner().invoke(cli, ["logs", *args])


def record(second: int, message: str, name: str = "hutch", level: str = "INFO") -> str:
    return f"2026-01-02 10:{second // 60:02d}:{second % 60:02d},000 {level:<7} {name}: {message}\n"


def log_file(data: Folder) -> Path:
    return load_config(["--data-dir", str(data.path)], env={}).log_file


def write_log(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def append(path: Path, text: str) -> None:
    with path.open("a") as file:
        file.write(text)


def tag(data: Folder, session: sessions.Session) -> str:
    return f"[{data.main.folder}/{session.id[:8]}]"


# -- the last lines ------------------------------------------------------------------------------


def test_the_last_lines_fifty_unless_told(data: Folder) -> None:
    path = log_file(data)
    write_log(path, "".join(record(n, f"line {n}") for n in range(80)))

    result = hutch_logs("--data-dir", str(data.path), "-n", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout == "".join(record(n, f"line {n}") for n in range(77, 80))

    result = hutch_logs("--data-dir", str(data.path))
    assert result.stdout == "".join(record(n, f"line {n}") for n in range(80 - DEFAULT_LINES, 80))


def test_a_traceback_comes_and_counts_with_its_line(data: Folder) -> None:
    failed = record(2, "stopping the channel failed", level="ERROR") + "Traceback (most recent call last):\n  boom\n"
    write_log(log_file(data), record(1, "before") + failed)
    result = hutch_logs("--data-dir", str(data.path), "--lines", "1")
    assert result.stdout == failed


def test_older_lines_come_from_the_rotated_files_in_order(data: Folder) -> None:
    path = log_file(data)
    write_log(path.with_name("hutch.log.2"), record(1, "oldest"))
    write_log(path.with_name("hutch.log.1"), record(2, "older") + record(3, "old"))
    write_log(path, record(4, "new"))
    result = hutch_logs("--data-dir", str(data.path), "-n", "3")
    assert result.stdout == record(2, "older") + record(3, "old") + record(4, "new")


def test_one_sessions_lines_by_an_id_prefix(data: Folder) -> None:
    local, family = tag(data, data.local), tag(data, data.family)
    failed = record(5, f"{local} session failed: boom", "hutch.session", "ERROR") + "Traceback ...\n  boom\n"
    write_log(
        log_file(data),
        record(1, "host started")
        + record(2, f"{local} session started", "hutch.session")
        + record(3, f"{family} session started", "hutch.session")
        + record(4, f"{local} container_runner: runner started", "hutch.agent")
        + failed
        + record(6, f"{family} agent exited with code 0", "hutch.runtime.process")
        + record(7, f"[{data.local.id[:8]}] session failed (boom); restarting it from disk", "hutch.supervisor"),
    )
    result = hutch_logs("--data-dir", str(data.path), "--session", data.local.id[:6])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        record(2, f"{local} session started", "hutch.session")
        + record(4, f"{local} container_runner: runner started", "hutch.agent")
        + failed
        + record(7, f"[{data.local.id[:8]}] session failed (boom); restarting it from disk", "hutch.supervisor")
    )
    result = hutch_logs("--data-dir", str(data.path), "--session", data.family.id, "-n", "1")
    assert result.stdout == record(6, f"{family} agent exited with code 0", "hutch.runtime.process")


def test_a_missing_log_file_is_one_line(data: Folder) -> None:
    line = one_error_line(hutch_logs("--data-dir", str(data.path)))
    assert line == f"hutch: no log file at {log_file(data)}: the host writes it while it runs (`hutch run`)"


def test_an_unknown_session_is_one_line(data: Folder) -> None:
    write_log(log_file(data), record(1, "host started"))
    line = one_error_line(hutch_logs("--data-dir", str(data.path), "--session", "zzzz"))
    assert "no session 'zzzz'" in line


# -- following --------------------------------------------------------------------------------


class Following:
    """A Follower in a thread of its own, looking often; what it prints, as it prints it."""

    def __init__(self, path: Path, count: int, keep: Callable[[str], bool] = lambda _line: True) -> None:
        self.printed: queue.Queue[str] = queue.Queue()
        self._follower = Follower(path, keep, self.printed.put)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follower.run, args=(count, self._stop, 0.02), daemon=True)
        self._thread.start()

    def next(self) -> str:
        return self.printed.get(timeout=WAIT)

    def lines(self, count: int) -> str:
        """The next `count` lines printed, however they were grouped."""
        text = ""
        while text.count("\n") < count:
            text += self.next()
        return text

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self._follower.close()


@pytest.fixture
def following() -> Iterator[list[Following]]:
    started: list[Following] = []
    yield started
    for one in started:
        one.stop()


def test_follow_prints_the_tail_then_each_line_appended(tmp_path: Path, following: list[Following]) -> None:
    path = tmp_path / "logs" / "hutch.log"
    write_log(path, "".join(record(n, f"line {n}") for n in range(5)))
    follow = Following(path, count=2)
    following.append(follow)
    assert follow.lines(2) == record(3, "line 3") + record(4, "line 4")

    append(path, record(5, "appended"))
    assert follow.lines(1) == record(5, "appended")
    # A line the host has half written is printed once it is whole.
    append(path, record(6, "half")[:20])
    append(path, record(6, "half")[20:] + "  and its traceback\n")
    assert follow.lines(2) == record(6, "half") + "  and its traceback\n"


def test_follow_goes_on_across_rotation(tmp_path: Path, following: list[Following]) -> None:
    path = tmp_path / "logs" / "hutch.log"
    write_log(path, record(1, "first"))
    follow = Following(path, count=10)
    following.append(follow)
    assert follow.lines(1) == record(1, "first")

    # What RotatingFileHandler does: the last line in the old file, the file renamed aside,
    # a new one begun.
    append(path, record(2, "last in the old file"))
    path.rename(path.with_name("hutch.log.1"))
    write_log(path, record(3, "first in the new file"))
    assert follow.lines(2) == record(2, "last in the old file") + record(3, "first in the new file")

    append(path, record(4, "and on"))
    assert follow.lines(1) == record(4, "and on")


def test_follow_reads_a_file_cut_short_from_its_start(tmp_path: Path, following: list[Following]) -> None:
    path = tmp_path / "logs" / "hutch.log"
    write_log(path, "".join(record(n, f"a long line {n}") for n in range(5)))
    follow = Following(path, count=1)
    following.append(follow)
    assert follow.lines(1) == record(4, "a long line 4")  # started: what comes next is new
    append(path, record(5, "seen"))
    assert follow.lines(1) == record(5, "seen")
    path.write_text(record(6, "after truncation"))
    assert follow.lines(1) == record(6, "after truncation")


def test_follow_waits_for_a_file_that_is_not_there_yet(tmp_path: Path, following: list[Following]) -> None:
    path = tmp_path / "logs" / "hutch.log"
    follow = Following(path, count=5)
    following.append(follow)
    write_log(path, record(1, "the host began") + record(2, "and went on"))
    assert follow.lines(2) == record(1, "the host began") + record(2, "and went on")


def test_follow_keeps_one_sessions_lines_with_their_tracebacks(tmp_path: Path, following: list[Following]) -> None:
    path = tmp_path / "logs" / "hutch.log"
    write_log(path, record(1, "[main/aaaaaaaa] started"))
    follow = Following(path, count=5, keep=lambda line: "[main/aaaaaaaa]" in line)
    following.append(follow)
    assert follow.lines(1) == record(1, "[main/aaaaaaaa] started")
    append(path, record(2, "[main/bbbbbbbb] failed") + "Traceback of b\n")
    append(path, record(3, "[main/aaaaaaaa] failed") + "Traceback of a\n")
    assert follow.lines(2) == record(3, "[main/aaaaaaaa] failed") + "Traceback of a\n"


def _read_lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_the_command_follows_until_ctrl_c(data: Folder) -> None:
    """`hutch logs -f` as a person runs it: the tail, a line as it is written, and Ctrl-C
    ends it quietly."""
    path = log_file(data)
    write_log(path, record(1, "one") + record(2, "two"))
    program = "import typer; from actors.cli.logs import logs; typer.run(logs)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
    process = subprocess.Popen(
        [sys.executable, "-c", program, "--data-dir", str(data.path), "-f", "-n", "1"],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    printed: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_read_lines, args=(process.stdout, printed), daemon=True).start()
    try:
        assert printed.get(timeout=WAIT) == record(2, "two")
        append(path, record(3, "three"))
        assert printed.get(timeout=WAIT) == record(3, "three")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    assert process.stderr.read() == ""


# -- what the host writes ----------------------------------------------------------------------

_TIME = re.compile(r"\d\d:\d\d:\d\d")


def test_a_host_writes_its_log_file_one_time_per_line_and_the_session_tag_on_its_lines(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    host = HostProcess(data_dir)
    try:
        client = ChatClient(data_dir / "cli.sock")
        try:
            assert client.send("hello")["type"] == "ack"
            assert "hello" in client.next_message()["text"]
        finally:
            client.close()
    finally:
        assert host.terminate() == 0
    config = load_config(["--data-dir", str(data_dir)], env={})
    path = config.log_file
    assert path.stat().st_mode & 0o777 == 0o600
    lines = path.read_text().splitlines()
    # The same lines the host printed on stderr (and nothing but: the ready line is stdout's).
    assert [line for line in lines if line + "\n" in host.log] == lines

    for line in lines:
        assert RECORD_START.match(line), line
        assert len(_TIME.findall(line)) == 1, line
    with open_store(config.central_db) as store:
        (session,) = sessions.list_all(store)
    short = session.id[:8]
    about = [line for line in lines if short in line]
    assert about, lines
    for line in about:
        assert re.search(rf"^\S+ \S+ \S+ +[\w.]+: \[main/{short}\] ", line), line
    messages = [line.split(": ", 1)[1] for line in about]
    assert f"[main/{short}] session started" in messages
    assert any(message.startswith(f"[main/{short}] container_runner: runner started") for message in messages)
    assert f"[main/{short}] the agent's process exited with code 0" in messages

    # And `hutch logs --session` finds exactly those.
    result = hutch_logs("--data-dir", str(data_dir), "--session", short, "-n", "1000")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == about
