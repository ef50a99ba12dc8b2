"""What goes wrong is said in one line on stderr with a non-zero exit, never a traceback, and
a command pointed at the wrong place creates nothing there."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.store.db import MIGRATIONS, open_store
from tests.actors.cli.conftest import Folder, hutch, one_error_line

pytestmark = pytest.mark.timeout(60)

COMMANDS: list[tuple[str, ...]] = [
    ("groups", "list"),
    ("sessions", "list"),
    ("sessions", "show", "abc"),
    ("senders", "pending"),
    ("senders", "approve", "ABCDEF"),
    ("senders", "refuse", "ABCDEF"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_missing_data_folder_says_where_and_how(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "nowhere"
    line = one_error_line(hutch(*command, "--data-dir", str(missing)))
    assert line == f"hutch: no data folder at {missing} (HUTCH_DATA_DIR or --data-dir names it; `hutch run` makes it)"
    assert not missing.exists()


def test_the_data_folder_comes_from_the_environment_too(tmp_path: Path) -> None:
    missing = tmp_path / "from-env"
    line = one_error_line(hutch("groups", "list", env={"HUTCH_DATA_DIR": str(missing)}))
    assert line.startswith(f"hutch: no data folder at {missing} ")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_folder_without_a_central_db_is_left_empty(tmp_path: Path, command: tuple[str, ...]) -> None:
    line = one_error_line(hutch(*command, "--data-dir", str(tmp_path)))
    assert line == (
        f"hutch: no central DB at {tmp_path / 'hutch.db'}: the host has not run with this data folder yet (`hutch run`)"
    )
    assert not (tmp_path / "hutch.db").exists()


def test_a_central_db_from_a_newer_hutch_is_not_touched(data: Folder) -> None:
    known = MIGRATIONS[-1].version
    with data.store.transaction() as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')", (known + 1,))
    line = one_error_line(hutch("groups", "list", "--data-dir", str(data.path)))
    assert line == (
        f"hutch: {data.path / 'hutch.db'} is at schema version {known + 1}, newer than this hutch's {known}: "
        "upgrade hutch"
    )


def test_an_older_central_db_is_left_for_the_host_to_migrate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("actors.store.db.MIGRATIONS", MIGRATIONS[:-1])
    with open_store(tmp_path / "hutch.db"):
        pass
    monkeypatch.undo()
    line = one_error_line(hutch("senders", "pending", "--data-dir", str(tmp_path)))
    assert line.endswith(f"is at schema version {MIGRATIONS[-2].version}, this hutch's is {MIGRATIONS[-1].version}: "
                         "start the host once to update it")  # fmt: skip


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "hutch.db").write_text("not a database, just text that is long enough to look like a header")
    line = one_error_line(hutch("groups", "list", "--data-dir", str(tmp_path)))
    assert line.startswith(
        f"hutch: {tmp_path / 'hutch.db'} cannot be read as a hutch central DB (file is not a database"
    )
