"""Session-folder paths. The container writes inside this folder, so every name taken from it
is untrusted (docs/ARCHITECTURE.md, invariant 6): message ids become folder names, files are taken only by
basename, never through a symlink, never from outside the message's outbox."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import protocol.layout as layout_module
from protocol.layout import (
    HEARTBEAT,
    INBOUND_DB,
    OUT_DIR,
    OUTBOUND_DB,
    PROXY_SOCKET,
    SessionLayout,
    UnsafePathError,
    check_agent_file,
    check_message_id,
    move_into_out,
)


@pytest.mark.parametrize("message_id", ["m1", "A-b_9", "x" * 64, "0", "-", "_"])
def test_check_message_id_accepts_the_safe_alphabet(message_id: str) -> None:
    assert check_message_id(message_id) == message_id


@pytest.mark.parametrize(
    "message_id",
    ["", "x" * 65, "../x", "a/b", ".", "..", "a b", "a.b", "a\x00b", "é", "m1\n", "/abs", "a\\b"],
)
def test_check_message_id_refuses_anything_else(message_id: str) -> None:
    with pytest.raises(UnsafePathError):
        check_message_id(message_id)


def test_unsafe_path_error_is_a_value_error() -> None:
    assert issubclass(UnsafePathError, ValueError)


def test_session_layout_paths(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path)
    assert layout.inbound_db == tmp_path / INBOUND_DB == tmp_path / "inbound.db"
    # The host's files in the folder itself; the agent's in `out/`, the one place it writes.
    assert layout.out == tmp_path / OUT_DIR == tmp_path / "out"
    assert layout.outbound_db == tmp_path / "out" / OUTBOUND_DB == tmp_path / "out" / "outbound.db"
    assert layout.heartbeat == tmp_path / "out" / HEARTBEAT == tmp_path / "out" / ".heartbeat"
    assert layout.proxy_socket == tmp_path / PROXY_SOCKET
    # Each journal sits beside its DB: both folders are mounted whole, never a lone file.
    assert layout.inbound_db.parent == tmp_path
    assert layout.outbound_db.parent == layout.out
    assert layout.inbox("m1") == tmp_path / "inbox" / "m1"
    assert layout.outbox("m1") == tmp_path / "out" / "outbox" / "m1"


@pytest.mark.parametrize("message_id", ["../x", "a/b", ""])
def test_inbox_and_outbox_refuse_unsafe_ids(tmp_path: Path, message_id: str) -> None:
    layout = SessionLayout(tmp_path)
    with pytest.raises(UnsafePathError):
        layout.inbox(message_id)
    with pytest.raises(UnsafePathError):
        layout.outbox(message_id)


def test_create_makes_the_folders_and_can_run_again(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "sessions" / "s1")
    layout.create()
    layout.create()
    assert (layout.root / "inbox").is_dir()
    assert (layout.out / "outbox").is_dir()


def _session_with_file(tmp_path: Path) -> SessionLayout:
    layout = SessionLayout(tmp_path / "session")
    layout.create()
    layout.outbox("m1").mkdir()
    (layout.outbox("m1") / "report.pdf").write_bytes(b"%PDF")
    return layout


def test_a_file_to_send_is_copied_into_the_hosts_sent_folder(tmp_path: Path) -> None:
    layout = _session_with_file(tmp_path)
    copy = layout.take_outbox_file("m1", "report.pdf")
    assert copy == layout.sent("m1") / "report.pdf"
    assert copy.read_bytes() == b"%PDF"
    # Whatever the agent does to its own file now, the copy is what was checked.
    (layout.outbox("m1") / "report.pdf").unlink()
    (layout.outbox("m1") / "report.pdf").symlink_to("/etc/passwd")
    assert copy.read_bytes() == b"%PDF"


def test_a_file_swapped_for_a_link_is_refused_at_the_next_take(tmp_path: Path) -> None:
    layout = _session_with_file(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("key")
    (layout.outbox("m1") / "report.pdf").unlink()
    (layout.outbox("m1") / "report.pdf").symlink_to(secret)
    with pytest.raises(UnsafePathError, match="is a symlink"):
        layout.take_outbox_file("m1", "report.pdf")


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", "/etc/passwd", "a\x00b", "./report.pdf"])
def test_anything_but_a_basename_is_refused(tmp_path: Path, name: str) -> None:
    layout = _session_with_file(tmp_path)
    with pytest.raises(UnsafePathError, match="plain basename"):
        layout.take_outbox_file("m1", name)


@pytest.mark.parametrize("kind", ["outside", "inside", "dangling"])
def test_a_link_is_never_followed_wherever_it_points(tmp_path: Path, kind: str) -> None:
    # A target inside could be swapped between check and use; no link is ever followed.
    layout = _session_with_file(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("key")
    target = {"outside": secret, "inside": layout.outbox("m1") / "report.pdf", "dangling": tmp_path / "nowhere"}[kind]
    (layout.outbox("m1") / "alias").symlink_to(target)
    with pytest.raises(UnsafePathError, match="'alias' is a symlink"):
        layout.take_outbox_file("m1", "alias")
    assert not (layout.sent("m1") / "alias").exists()


def test_a_missing_file_or_a_folder_is_refused(tmp_path: Path) -> None:
    layout = _session_with_file(tmp_path)
    (layout.outbox("m1") / "folder").mkdir()
    with pytest.raises(UnsafePathError, match="cannot be opened safely"):
        layout.take_outbox_file("m1", "missing.pdf")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        layout.take_outbox_file("m1", "folder")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    # Reading a FIFO the agent made would block the host forever.
    layout = _session_with_file(tmp_path)
    os.mkfifo(layout.outbox("m1") / "pipe")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        layout.take_outbox_file("m1", "pipe")


def test_an_unsafe_message_id_is_refused(tmp_path: Path) -> None:
    layout = _session_with_file(tmp_path)
    with pytest.raises(UnsafePathError):
        layout.take_outbox_file("../outbox/m1", "report.pdf")


def test_a_message_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    # The agent owns outbox/<id>/: pointed at a host folder, it would make the host send
    # its own files to the chat.
    layout = _session_with_file(tmp_path)
    host_secrets = tmp_path / "host-secrets"
    host_secrets.mkdir()
    (host_secrets / "id_rsa").write_text("key")
    layout.outbox("m2").symlink_to(host_secrets, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="folder 'm2' is a symlink"):
        layout.take_outbox_file("m2", "id_rsa")


def test_an_outbox_that_is_a_link_is_refused(tmp_path: Path) -> None:
    layout = _session_with_file(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "m1").mkdir(parents=True)
    (elsewhere / "m1" / "id_rsa").write_text("key")
    (layout.out / "outbox").rename(layout.out / "outbox.old")
    (layout.out / "outbox").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="folder 'outbox' is a symlink"):
        layout.take_outbox_file("m1", "id_rsa")


def test_the_root_path_may_go_through_a_link(tmp_path: Path) -> None:
    # The host's own path to the session may go through a symlink (a data dir moved to
    # another disk); only what lies below the root is the agent's.
    layout = _session_with_file(tmp_path)
    alias = tmp_path / "alias"
    alias.symlink_to(layout.root, target_is_directory=True)
    assert SessionLayout(alias).take_outbox_file("m1", "report.pdf").read_bytes() == b"%PDF"


def test_a_hard_link_to_a_host_file_is_refused(tmp_path: Path) -> None:
    # A hard link is a regular file inside the folder by every path check: only its link
    # count gives away that it is also the host's /etc/passwd (here: a stand-in).
    layout = _session_with_file(tmp_path)
    host_file = tmp_path / "passwd"
    host_file.write_text("root:x:0:0")
    os.link(host_file, layout.outbox("m1") / "passwd")
    with pytest.raises(UnsafePathError, match="2 links"):
        layout.take_outbox_file("m1", "passwd")
    assert not (layout.sent("m1") / "passwd").exists()


def test_a_file_over_the_cap_is_refused_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = _session_with_file(tmp_path)
    monkeypatch.setattr(layout_module, "MAX_OUTBOX_FILE_BYTES", 1024)
    with (layout.outbox("m1") / "huge.bin").open("wb") as sparse:
        sparse.truncate(2 * 1024**3)  # 2 GB that take no room: the size is what counts
    with pytest.raises(UnsafePathError, match="more than 1024"):
        layout.take_outbox_file("m1", "huge.bin")
    assert layout.take_outbox_file("m1", "report.pdf").name == "report.pdf"  # small ones still go


def test_a_session_folder_of_the_earlier_layout_moves_into_out(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "s")
    layout.root.mkdir()
    (layout.root / "outbound.db").write_text("rows")
    (layout.root / ".heartbeat").write_text("")
    (layout.root / "outbox" / "m1").mkdir(parents=True)
    (layout.root / "inbound.db").write_text("the host's")

    assert move_into_out(layout) == ["outbound.db", ".heartbeat", "outbox"]
    assert layout.outbound_db.read_text() == "rows"
    assert layout.outbox("m1").is_dir()
    assert (layout.root / "inbound.db").read_text() == "the host's"
    assert move_into_out(layout) == []  # once moved, nothing more to do


def test_the_host_refuses_an_agent_file_that_is_a_link_or_a_second_link(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "s")
    layout.create()
    device = os.stat(layout.root).st_dev
    host_file = tmp_path / "hutch.db"
    host_file.write_text("the host's own")
    layout.outbound_db.symlink_to(host_file)
    with pytest.raises(UnsafePathError, match="is a symlink"):
        check_agent_file(layout.outbound_db, device, 1024)
    layout.outbound_db.unlink()
    os.link(host_file, layout.outbound_db)
    with pytest.raises(UnsafePathError, match="2 links"):
        check_agent_file(layout.outbound_db, device, 1024)


def test_the_host_refuses_an_agent_file_below_a_link_in_place_of_out(tmp_path: Path) -> None:
    # O_NOFOLLOW guards only the last step: a link in place of out/ would be followed.
    layout = SessionLayout(tmp_path / "s")
    layout.create()
    device = os.stat(layout.root).st_dev
    elsewhere = tmp_path / "other-session-out"
    elsewhere.mkdir()
    (elsewhere / "outbound.db").write_text("another session's rows")
    layout.out.rename(tmp_path / "moved-out")
    layout.out.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="'out' is a symlink"):
        check_agent_file(layout.outbound_db, device, 1024)
