from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import DUPLICATES_PROPERTY

# (test id, what it reported), in the order the tests ran.
_duplicates: list[tuple[str, dict[str, Any]]] = []


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Unix socket paths must stay short: pytest's tmp_path can be too long for cli.sock.
    with tempfile.TemporaryDirectory(prefix="hutch-fault-", dir="/tmp") as folder:
        yield Path(folder)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == DUPLICATES_PROPERTY and isinstance(value, dict):
            _duplicates.append((report.nodeid, value))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Every fault test's count of answers shown again (delivery is at least once: only a
    kill between a channel's send and the host's record of it may repeat a reply)."""
    if not _duplicates:
        return
    terminalreporter.section("fault suite: duplicates (send-then-record window)")
    total = 0
    for nodeid, value in _duplicates:
        total += int(value["duplicates"])
        terminalreporter.write_line(
            f"{nodeid}: {value['marker']!r} answered {value['answers']} time(s), {value['duplicates']} duplicate(s)"
        )
    terminalreporter.write_line(f"total duplicates: {total}")
