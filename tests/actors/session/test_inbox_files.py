"""Files that came with an inbound message land in `inbox/<id>/` by basename, never through
a symlink the container planted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from actors.session.inbox_files import take_files
from protocol.layout import SessionLayout, UnsafePathError

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def layout(tmp_path: Path) -> SessionLayout:
    session = SessionLayout(tmp_path / "session")
    session.create()
    return session


def upload(tmp_path: Path, name: str, data: bytes = b"data") -> str:
    path = tmp_path / "uploads" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def test_files_move_in_under_their_basenames(layout: SessionLayout, tmp_path: Path) -> None:
    names = take_files(layout, "m1", (("../../etc/photo.jpg", upload(tmp_path, "a")), ("", upload(tmp_path, "b"))))

    assert names == ["photo.jpg", "file"]
    assert (layout.inbox("m1") / "photo.jpg").read_bytes() == b"data"
    assert (layout.inbox("m1") / "file").exists()
    assert not Path(tmp_path / "uploads" / "a").exists()


def test_a_symlinked_message_folder_is_refused(layout: SessionLayout, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    layout.inbox("m1").parent.mkdir(parents=True, exist_ok=True)
    layout.inbox("m1").symlink_to(elsewhere, target_is_directory=True)

    with pytest.raises(UnsafePathError):
        take_files(layout, "m1", (("photo.jpg", upload(tmp_path, "a")),))
    assert list(elsewhere.iterdir()) == []


def test_a_symlink_in_the_way_is_replaced_not_followed(layout: SessionLayout, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("keep")
    folder = layout.inbox("m1")
    folder.mkdir(parents=True)
    (folder / "photo.jpg").symlink_to(secret)

    take_files(layout, "m1", (("photo.jpg", upload(tmp_path, "a", b"new")),))

    assert secret.read_text() == "keep"
    assert not (folder / "photo.jpg").is_symlink()
    assert (folder / "photo.jpg").read_bytes() == b"new"


def test_a_file_the_channel_made_private_is_readable_by_the_agent(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "session")
    layout.create()
    temporary = tmp_path / "download.bin"
    temporary.write_bytes(b"photo")
    os.chmod(temporary, 0o600)  # as tempfile.mkstemp makes it
    (name,) = take_files(layout, "m1", (("photo.jpg", str(temporary)),))
    assert stat.S_IMODE(os.stat(layout.inbox("m1") / name).st_mode) == 0o644
