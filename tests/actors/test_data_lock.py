"""One host per data folder: the second one stops at once, naming the holder, touching nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.data_lock import LOCK_FILE, DataFolderBusy, DataFolderLock

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(60)


def test_the_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    first = DataFolderLock.acquire(tmp_path)
    with pytest.raises(DataFolderBusy) as busy:
        DataFolderLock.acquire(tmp_path)
    assert busy.value.pid == str(os.getpid())
    assert str(tmp_path) in str(busy.value)
    first.release()
    DataFolderLock.acquire(tmp_path).release()  # free again once released


def test_a_link_at_the_locks_place_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not the host's")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / LOCK_FILE).symlink_to(elsewhere)
    with pytest.raises(OSError):
        DataFolderLock.acquire(folder)
    assert elsewhere.read_text() == "not the host's"


def test_a_second_host_exits_at_once_with_one_line_and_touches_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    held = DataFolderLock.acquire(data)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "HUTCH_"))}
        command = [sys.executable, "-m", "actors.main", "--data-dir", str(data), "--runtime", "process"]
        done = subprocess.run(
            [*command, "--provider", "mock"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
            check=False,
        )  # fmt: skip
    finally:
        held.release()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"hutch: {data.absolute()} is in use by another hutch host (pid {os.getpid()})"
    ]
    assert sorted(path.name for path in data.iterdir()) == [LOCK_FILE]
