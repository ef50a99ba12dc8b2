from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from protocol.logs import AGENT_FORMAT, HOST_FORMAT, level_name, setup_logging


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
        root.handlers = saved
        root.setLevel(level)


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
