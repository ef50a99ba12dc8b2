"""A data folder the host cannot make or write is one line naming HUTCH_DATA_DIR, the path
and why, and a non-zero exit: through `actors.main.main`, `hutch run` and `python -m
actors.main`, never a traceback."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.config import HostConfig
from actors.data_folder import DataFolderUnusable, make_data_folder
from actors.data_lock import LOCK_FILE
from actors.host import start_host
from actors.main import main

pytestmark = pytest.mark.timeout(60)

NOBODY = 65534


@pytest.fixture(autouse=True)
def _no_settings_of_the_developer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No `.env` and no HUTCH_* from outside: only what a test gives."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for name in list(os.environ):
        if name.startswith(("HUTCH_", "ANTHROPIC_")):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A data folder that cannot be made: a regular file stands where a folder must be."""
    (tmp_path / "file").write_text("not a folder\n")
    return tmp_path / "file" / "data"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HUTCH_", "ANTHROPIC_"))}


def test_a_file_in_the_way_is_one_line_naming_the_setting(blocked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(blocked), "--provider", "mock", "--runtime", "process"])

    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        f"hutch: cannot use the data folder {blocked} (HUTCH_DATA_DIR or --data-dir): "
        f"{blocked.parent} is a file, not a folder\n"
    )
    assert not blocked.exists()


def test_the_data_folder_itself_a_file_is_named_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.write_text("")
    monkeypatch.setenv("HUTCH_DATA_DIR", str(data))

    assert main([]) == 1
    assert capsys.readouterr().err == (
        f"hutch: cannot use the data folder {data} (HUTCH_DATA_DIR or --data-dir): {data} is a file, not a folder\n"
    )


def test_a_link_to_nothing_is_not_a_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.symlink_to(tmp_path / "gone")

    with pytest.raises(DataFolderUnusable, match=f"{data} is not a folder$"):
        make_data_folder(data)


def test_a_usable_folder_is_made_with_its_parents(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b" / "data"

    make_data_folder(data)
    make_data_folder(data)  # and an existing one is fine

    assert data.is_dir()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/srv/h"),
            "permission denied on /srv/h (the host runs as uid",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/srv/h/hutch.lock"),
            "/srv/h/hutch.lock: Read-only file system",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    ],
)
def test_any_os_error_becomes_the_one_line(tmp_path: Path, error: OSError, reason: str) -> None:
    unusable = DataFolderUnusable.from_os_error(tmp_path / "data", error)

    assert reason in str(unusable)
    assert str(unusable).startswith(f"cannot use the data folder {tmp_path / 'data'} (HUTCH_DATA_DIR")
    assert "\n" not in str(unusable)


def test_start_host_says_so_when_the_lock_cannot_be_made(tmp_path: Path) -> None:
    # The folder is fine but the lock's place is taken: the host's first write fails.
    data = tmp_path / "data"
    (data / LOCK_FILE).mkdir(parents=True)

    with pytest.raises(DataFolderUnusable, match=rf"{data} \(HUTCH_DATA_DIR or --data-dir\): .*{LOCK_FILE}"):
        start_host(HostConfig(data_dir=data, runtime="process", provider="mock"))


@pytest.mark.parametrize("command", [["-m", "actors.main"], ["hutch", "run"]], ids=["python -m", "hutch run"])
def test_the_commands_print_one_line_and_no_traceback(blocked: Path, command: list[str]) -> None:
    if command[0] == "hutch":
        argv = [str(Path(sys.executable).with_name("hutch")), *command[1:]]
    else:
        argv = [sys.executable, *command]

    done = subprocess.run(
        argv,
        env={**clean_env(), "HUTCH_DATA_DIR": str(blocked), "HUTCH_PROVIDER": "mock"},
        cwd=blocked.parent.parent,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"hutch: cannot use the data folder {blocked} (HUTCH_DATA_DIR or --data-dir): "
        f"{blocked.parent} is a file, not a folder"
    ]


# setpriv, not subprocess's `user=`: the interpreter may live where only root can look (a
# pyenv under /root), and setpriv finds it before it gives up root's uid.
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def _as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_NOBODY, sys.executable, *args],
        env=clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_permission_denied_as_a_user_who_may_not_write() -> None:
    # Root's writes are never refused by modes, so the host runs as nobody here.
    if _as_nobody("-c", "import actors.main", cwd=Path("/")).returncode != 0:
        pytest.skip("this interpreter or checkout cannot be run as nobody")
    # Not tmp_path: pytest's folders above it are root's alone, and nobody must reach `owned`.
    with tempfile.TemporaryDirectory(prefix="hutch-") as folder:
        root = Path(folder)
        root.chmod(0o755)
        owned = root / "owned"
        owned.mkdir(mode=0o755)  # nobody may look in, not write

        cannot_create = _as_nobody("-m", "actors.main", "--data-dir", str(owned / "data"), cwd=root)
        cannot_write = _as_nobody("-m", "actors.main", "--data-dir", str(owned), cwd=root)

    assert cannot_create.returncode == 1
    assert cannot_create.stderr.splitlines() == [
        f"hutch: cannot use the data folder {owned / 'data'} (HUTCH_DATA_DIR or --data-dir): "
        f"permission denied on {owned / 'data'} (the host runs as uid {NOBODY})"
    ]
    assert cannot_write.returncode == 1
    assert cannot_write.stderr.splitlines() == [
        f"hutch: cannot use the data folder {owned} (HUTCH_DATA_DIR or --data-dir): uid {NOBODY} may not write in it"
    ]
