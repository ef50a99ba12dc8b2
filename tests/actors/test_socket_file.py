"""One set of rules for a socket file: never followed, a folder refused, a stale socket
replaced; foreign things replaced only where the caller's place is everyone's (a session
folder the agent writes), refused where they may be somebody's (the data folder)."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.socket_file import SocketPathError, clear_for_bind, identity, remove_if_ours

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def folder() -> Iterator[Path]:
    # sun_path is short: pytest's tmp_path can be too long for a socket.
    with tempfile.TemporaryDirectory(prefix="sf-", dir="/tmp") as name:
        yield Path(name)


def _listening(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    return server


def _stale(path: Path) -> None:
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))
    left.close()  # the file stays; nobody listens


@pytest.mark.parametrize("replace_foreign", [True, False])
def test_a_stale_socket_is_removed_and_a_folder_refused(folder: Path, replace_foreign: bool) -> None:
    _stale(folder / "s.sock")
    clear_for_bind(folder / "s.sock", replace_foreign=replace_foreign)
    assert not (folder / "s.sock").exists()

    (folder / "d.sock").mkdir()
    with pytest.raises(SocketPathError, match="folder"):
        clear_for_bind(folder / "d.sock", replace_foreign=replace_foreign)


def test_in_someone_elses_place_a_file_or_a_live_socket_is_refused(folder: Path) -> None:
    (folder / "f.sock").write_text("a person's file")
    with pytest.raises(SocketPathError, match="not a socket"):
        clear_for_bind(folder / "f.sock", replace_foreign=False)
    with _listening(folder / "l.sock"):
        with pytest.raises(SocketPathError, match="already listens"):
            clear_for_bind(folder / "l.sock", replace_foreign=False)
        assert (folder / "l.sock").exists()


def test_in_the_agents_place_whatever_is_in_the_way_goes_and_no_link_is_followed(folder: Path) -> None:
    target = folder / "host-file"
    target.write_text("must survive")
    (folder / "link.sock").symlink_to(target)
    clear_for_bind(folder / "link.sock", replace_foreign=True)
    assert not (folder / "link.sock").is_symlink()
    assert target.read_text() == "must survive"

    with _listening(folder / "l.sock"):
        clear_for_bind(folder / "l.sock", replace_foreign=True)
        assert not (folder / "l.sock").exists()


def test_only_our_own_socket_file_is_removed(folder: Path) -> None:
    path = folder / "s.sock"
    with _listening(path):
        ours = identity(path)
    path.rename(folder / "moved.sock")  # kept, so its inode cannot be handed out again
    with _listening(path):  # a later owner's file at the same path
        remove_if_ours(path, ours)
        assert path.exists()
        remove_if_ours(path, identity(path))
        assert not path.exists()
