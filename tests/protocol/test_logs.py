from __future__ import annotations

import logging
import os
import re
import stat
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pykka
import pytest

import protocol.logs
from protocol.logs import (
    AGENT_FORMAT,
    HOST_FORMAT,
    RECORD_START,
    AgentOutput,
    SessionFormatter,
    level_name,
    rotated_files,
    session_context,
    session_pattern,
    session_tag,
    setup_logging,
    tag_thread,
)


@pytest.mark.parametrize(("given", "name"), [("debug", "DEBUG"), ("Info", "INFO"), (" WARNING ", "WARNING")])
def test_level_names_in_any_case(given: str, name: str) -> None:
    assert level_name(given) == name


@pytest.mark.parametrize("given", ["loud", "", "5", "NOTSET1"])
def test_anything_else_is_not_a_level(given: str) -> None:
    with pytest.raises(ValueError, match="is not a log level"):
        level_name(given)


@contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without pytest's capture handlers (added around each test's body,
    so a fixture cannot remove them), restored afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield root
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers = saved
        root.setLevel(level)
        logging.captureWarnings(False)


def _line(root: logging.Logger) -> str:
    record = logging.LogRecord("container_runner.inbox", logging.WARNING, __file__, 1, "late by %d s", (3,), None)
    return root.handlers[0].format(record)


def test_the_agent_format_has_no_time_of_its_own() -> None:
    with bare_root() as root:
        setup_logging("warning", AGENT_FORMAT)
        (handler,) = root.handlers
        assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
        assert root.level == logging.WARNING
        assert _line(root) == "WARNING container_runner.inbox: late by 3 s"


def test_the_host_format_starts_with_the_time() -> None:
    with bare_root() as root:
        setup_logging("DEBUG", HOST_FORMAT)
        assert root.level == logging.DEBUG
        line = _line(root)
    assert line.endswith(" WARNING container_runner.inbox: late by 3 s")
    assert line[:4].isdigit()  # the year of asctime


def test_a_bad_level_configures_nothing() -> None:
    with bare_root() as root:
        with pytest.raises(ValueError):
            setup_logging("loud", AGENT_FORMAT)
        assert root.handlers == []


# -- the session's tag --------------------------------------------------------------------------


def _session_id() -> str:
    return uuid.uuid4().hex


def test_a_tag_names_the_group_and_the_short_id_and_is_remembered() -> None:
    session_id = _session_id()
    assert session_tag(session_id) == f"[{session_id[:8]}]"  # not met yet: the id alone
    assert session_tag(session_id, "family") == f"[family/{session_id[:8]}]"
    # Code that knows only the id (the Supervisor's, the delivery's) names it the same way.
    assert session_tag(session_id) == f"[family/{session_id[:8]}]"


def test_the_pattern_finds_the_sessions_tag_with_or_without_its_group() -> None:
    session_id = _session_id()
    short = session_id[:8]
    pattern = session_pattern(session_id, "main")
    assert pattern.search(f"2026-01-01 10:00:00,000 INFO    hutch.session: [main/{short}] session started")
    assert pattern.search(f"... hutch.supervisor: [{short}] session failed")
    assert not pattern.search(f"... hutch.session: [work/{short}] session started")
    assert not pattern.search(f"... hutch.session: [main/{short}0] session started")
    assert not pattern.search(f"... hutch.session: started {short}")
    assert session_pattern(session_id).search(f"x: [work/{short}] y")


class Lines(logging.Handler):
    """The host's lines, formatted as its handlers format them, in the thread that logs."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(SessionFormatter("%(name)s: %(session_tag)s%(message)s"))
        self.lines: list[str] = []
        self.logged = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.logged:
            self.lines.append(self.format(record))
            self.logged.notify_all()


@pytest.fixture
def lines() -> Iterator[Lines]:
    logger = logging.getLogger("test.logs")
    handler = Lines()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_a_threads_tag_goes_on_every_line_it_logs_once(lines: Lines) -> None:
    log = logging.getLogger("test.logs")

    def serve() -> None:
        tag_thread("[main/1a2b3c4d]")
        log.info("from code that knows no session")
        log.info("%s already tagged", "[main/1a2b3c4d]")
        log.info("about another", extra={"session": "[work/99999999]"})

    worker = threading.Thread(target=serve)
    worker.start()
    worker.join()
    log.info("from a thread of no session")
    assert lines.lines == [
        "test.logs: [main/1a2b3c4d] from code that knows no session",
        "test.logs: [main/1a2b3c4d] already tagged",
        "test.logs: [work/99999999] about another",
        "test.logs: from a thread of no session",
    ]


def test_a_session_context_tags_only_its_block(lines: Lines) -> None:
    log = logging.getLogger("test.logs")
    with session_context("[main/1a2b3c4d]"):
        log.info("inside")
        with session_context("[work/99999999]"):
            log.info("nested")
        log.info("inside again")
    log.info("outside")
    assert lines.lines == [
        "test.logs: [main/1a2b3c4d] inside",
        "test.logs: [work/99999999] nested",
        "test.logs: [main/1a2b3c4d] inside again",
        "test.logs: outside",
    ]


class _Tagged(pykka.ThreadingActor):
    """Tags its thread at start, as the SessionActor does."""

    def __init__(self, tag: str | None) -> None:
        super().__init__()
        self._tag = tag

    def on_start(self) -> None:
        if self._tag is not None:
            tag_thread(self._tag)

    def on_receive(self, message: Any) -> Any:
        logging.getLogger("test.logs").info("handled %s", message)
        return None


def test_a_pykka_actor_that_tags_its_thread_at_start_tags_every_message_it_handles(lines: Lines) -> None:
    session = _Tagged.start("[main/1a2b3c4d]")
    other = _Tagged.start(None)
    try:
        for n in range(3):
            session.ask(f"s{n}")
            other.ask(f"o{n}")
    finally:
        session.stop()
        other.stop()
    assert sorted(lines.lines) == sorted(
        [f"test.logs: [main/1a2b3c4d] handled s{n}" for n in range(3)] + [f"test.logs: handled o{n}" for n in range(3)]
    )


# -- an agent's lines ---------------------------------------------------------------------------


def test_agent_lines_are_logged_at_their_own_level_without_repeating_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hutch.agent")
    output = AgentOutput("[main/1a2b3c4d]")
    for line in [
        "plain output before any record",
        "WARNING container_runner.inbox: late by 3 s",
        "ERROR container_runner: turn failed",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "DEBUG pykka: Starting OutboxActor",
        "ERROR: not a record of ours, printed at the level before it",
    ]:
        output.line(line)
    got = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "hutch.agent"]
    tag = "[main/1a2b3c4d]"
    assert got == [
        ("INFO", f"{tag} plain output before any record"),
        ("WARNING", f"{tag} container_runner.inbox: late by 3 s"),
        ("ERROR", f"{tag} container_runner: turn failed"),
        ("ERROR", f"{tag} Traceback (most recent call last):"),
        ("ERROR", f'{tag}   File "x.py", line 1, in <module>'),
        ("DEBUG", f"{tag} pykka: Starting OutboxActor"),
        ("DEBUG", f"{tag} ERROR: not a record of ours, printed at the level before it"),
    ]


def test_a_relayed_agent_line_has_one_time_and_one_level() -> None:
    """The agent's line as it prints it, and as the host's file shows it again."""
    with bare_root() as root:
        setup_logging("DEBUG", AGENT_FORMAT)
        agent_line = _line(root)
    captured: list[str] = []
    with bare_root() as root:
        setup_logging("DEBUG", HOST_FORMAT)
        root.handlers[0].emit = lambda record: captured.append(root.handlers[0].format(record))  # type: ignore[method-assign]
        AgentOutput("[main/1a2b3c4d]").line(agent_line)
    (line,) = captured
    assert RECORD_START.match(line)
    assert line.endswith(" WARNING hutch.agent: [main/1a2b3c4d] container_runner.inbox: late by 3 s")
    assert len(re.findall(r"\d\d:\d\d:\d\d", line)) == 1
    assert sum(line.count(f" {level} ") for level in ("DEBUG", "INFO", "WARNING", "ERROR")) == 1


# -- the host's log file ------------------------------------------------------------------------


def _file_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_the_host_logs_to_a_private_file_besides_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "data" / "logs" / "hutch.log"
    (tmp_path / "data").mkdir()
    with bare_root():
        setup_logging("INFO", HOST_FORMAT, log_file)
        with session_context(session_tag(_session_id(), "main")):
            logging.getLogger("hutch.session").info("session started")
        logging.getLogger("hutch").debug("below the level")
        logging.getLogger("hutch").info("two\nlines")
    stderr = capsys.readouterr().err.splitlines()
    assert _file_lines(log_file) == stderr
    assert len(stderr) == 3
    assert RECORD_START.match(stderr[0]) and " INFO    hutch.session: [main/" in stderr[0]
    assert stderr[2] == "lines"  # a record's second line: no time of its own, no second one
    assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(log_file.parent).st_mode) == 0o700


def test_the_file_rotates_and_keeps_its_backups_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol.logs, "LOG_FILE_BYTES", 2000)
    log_file = tmp_path / "logs" / "hutch.log"
    with bare_root() as root:
        setup_logging("INFO", HOST_FORMAT, log_file)
        root.handlers[0].setLevel(logging.CRITICAL)  # stderr: not the point here
        for n in range(200):
            logging.getLogger("hutch").info("line %03d %s", n, "x" * 40)
    files = [path for path in rotated_files(log_file) if path.exists()]
    assert files == rotated_files(log_file)  # the current file and all five backups
    assert not log_file.with_name("hutch.log.6").exists()
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert path.stat().st_size <= 2000
    assert _file_lines(log_file)[-1].endswith("line 199 " + "x" * 40)
    assert _file_lines(files[1])[-1] < _file_lines(log_file)[0]


def test_an_existing_file_is_appended_and_made_private(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "hutch.log"
    log_file.parent.mkdir(mode=0o755)
    log_file.write_text("an older host's line\n")
    log_file.chmod(0o644)
    with bare_root():
        setup_logging("INFO", HOST_FORMAT, log_file)
        logging.getLogger("hutch").info("a new line")
    assert _file_lines(log_file)[0] == "an older host's line"
    assert _file_lines(log_file)[1].endswith("hutch: a new line")
    assert stat.S_IMODE(os.stat(log_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(log_file.parent).st_mode) == 0o700


REFUSED = {
    "symlink": "Too many levels of symbolic links",
    "hardlink": "is not a plain file of its own: not writing the log there",
    "fifo": "No such device or address",
    "folder link": "Not a directory",
}


@pytest.mark.parametrize("planted", list(REFUSED))
def test_nothing_planted_at_the_files_place_is_written_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    victim = target / "victim"
    victim.write_text("untouched\n")
    logs = tmp_path / "data" / "logs"
    (tmp_path / "data").mkdir()
    if planted == "folder link":
        logs.symlink_to(target, target_is_directory=True)
        log_file = logs / "victim"
    else:
        logs.mkdir()
        log_file = logs / "hutch.log"
        if planted == "symlink":
            log_file.symlink_to(victim)
        elif planted == "hardlink":
            os.link(victim, log_file)
        else:
            os.mkfifo(log_file)
    with bare_root():
        setup_logging("INFO", HOST_FORMAT, log_file)
        logging.getLogger("hutch").info("still logged")
        logging.getLogger("hutch").info("and again")
    assert victim.read_text() == "untouched\n"
    stderr = capsys.readouterr().err.splitlines()
    assert stderr[0].endswith("hutch: still logged")
    assert f"hutch: cannot write the log file {log_file} (" in stderr[1]
    assert stderr[1].endswith(f"{REFUSED[planted]}): logging to stderr only")
    assert stderr[2].endswith("hutch: and again")  # and said once
    assert len(stderr) == 3


def test_a_log_file_that_cannot_be_made_leaves_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "logs").write_text("a file where the folder should be")
    with bare_root():
        setup_logging("INFO", HOST_FORMAT, tmp_path / "logs" / "hutch.log")
        logging.getLogger("hutch").info("a line")
    stderr = capsys.readouterr().err
    assert "hutch: a line" in stderr
    assert "(Not a directory): logging to stderr only" in stderr


def test_nothing_is_made_before_the_first_line(tmp_path: Path) -> None:
    """A second host stops at the data folder's lock before it logs: it must leave the
    first host's folder as it found it."""
    log_file = tmp_path / "logs" / "hutch.log"
    with bare_root():
        setup_logging("INFO", HOST_FORMAT, log_file)
        assert not log_file.parent.exists()
        logging.getLogger("hutch").info("the first line")
        assert _file_lines(log_file)[0].endswith("hutch: the first line")


def test_the_agent_writes_no_file_and_a_configured_root_is_left_alone(tmp_path: Path) -> None:
    with bare_root() as root:
        setup_logging("INFO", AGENT_FORMAT)
        assert [type(handler) for handler in root.handlers] == [logging.StreamHandler]
        setup_logging("INFO", HOST_FORMAT, tmp_path / "logs" / "hutch.log")  # configured already
        assert len(root.handlers) == 1
    assert not (tmp_path / "logs").exists()
