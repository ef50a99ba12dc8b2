"""A session folder as `prepare_session_folder` leaves it: the host's root shared read-only
with the agent's group, `out/` and the workspace the agent's, the DBs in place, and nothing
an agent planted followed."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from actors.ownership import AGENT_OWN, SHARED_PASS, SHARED_READ, SHARED_STICKY
from actors.runtime.base import AgentUser
from actors.session.folder import prepare_session_folder
from protocol.layout import SessionLayout, UnsafePathError

pytestmark = pytest.mark.timeout(20)

AGENT = AgentUser(1_000_321, 1_000_321)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another uid needs root")


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    return names


@needs_root
def test_the_folder_is_laid_out_and_owned_as_the_architecture_says(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "sessions" / "family" / "s1")
    agent_dir = tmp_path / "groups" / "family"

    device = prepare_session_folder(layout, agent_dir, AGENT)

    host = os.geteuid()
    assert device == os.stat(layout.root).st_dev
    assert owner_and_mode(layout.root.parent) == (host, AGENT.gid, SHARED_PASS)
    assert owner_and_mode(layout.root) == (host, AGENT.gid, SHARED_READ)
    assert owner_and_mode(layout.root / "inbox") == (host, AGENT.gid, SHARED_READ)
    assert owner_and_mode(layout.out) == (host, AGENT.gid, SHARED_STICKY)
    assert owner_and_mode(layout.out / "outbox") == (AGENT.uid, AGENT.gid, AGENT_OWN)
    assert owner_and_mode(agent_dir) == (AGENT.uid, AGENT.gid, AGENT_OWN)
    assert owner_and_mode(layout.inbound_db)[0] == host
    # The agent writes outbound.db through its group; the host keeps it, so the agent cannot
    # remove it or put anything in its place.
    assert owner_and_mode(layout.outbound_db) == (host, AGENT.gid, 0o660)
    assert "messages_out" in tables(layout.outbound_db) and "messages_in" in tables(layout.inbound_db)
    assert not (layout.root / ".outbound.db.new").exists()


def test_a_second_start_keeps_the_agents_outbound_db(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "s1")
    prepare_session_folder(layout, tmp_path / "agent", None)
    with sqlite3.connect(layout.outbound_db) as conn:
        conn.execute("CREATE TABLE kept (x)")
    conn.close()
    prepare_session_folder(layout, tmp_path / "agent", None)
    assert "kept" in tables(layout.outbound_db)


@pytest.mark.parametrize("target_exists", [False, True])
def test_a_link_planted_as_outbound_db_is_moved_aside_not_followed(tmp_path: Path, target_exists: bool) -> None:
    layout = SessionLayout(tmp_path / "s1")
    layout.out.mkdir(parents=True)
    target = tmp_path / "host-file"
    if target_exists:
        target.write_text("the host's")
        os.chmod(target, 0o600)
    layout.outbound_db.symlink_to(target)

    prepare_session_folder(layout, tmp_path / "agent", AGENT if os.geteuid() == 0 else None)

    if target_exists:
        assert target.read_text() == "the host's" and owner_and_mode(target) == (0, 0, 0o600)
    else:
        assert not target.exists(), "the host made a file where the agent's link pointed"
    assert not layout.outbound_db.is_symlink() and "messages_out" in tables(layout.outbound_db)
    assert [p.name for p in layout.out.glob("outbound.db.refused-*")]


@needs_root
def test_a_hard_link_planted_as_outbound_db_is_not_handed_to_the_group(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "s1")
    layout.out.mkdir(parents=True)
    host_file = tmp_path / "passwd"
    host_file.write_text("root:x:0:0")
    os.chmod(host_file, 0o644)
    os.link(host_file, layout.outbound_db)

    prepare_session_folder(layout, tmp_path / "agent", AGENT)

    assert owner_and_mode(host_file) == (0, 0, 0o644), "the host file was given to the agent's group"
    assert host_file.read_text() == "root:x:0:0"
    assert "messages_out" in tables(layout.outbound_db)


@needs_root
def test_what_an_agent_of_another_uid_left_in_out_becomes_this_ones(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "s1")
    prepare_session_folder(layout, tmp_path / "agent", None)  # as an agent run as root left it
    layout.heartbeat.write_text("")
    (layout.out / "outbound.db-journal").write_bytes(b"")
    (layout.out / "outbox" / "m1").mkdir()

    prepare_session_folder(layout, tmp_path / "agent", AGENT)

    for path in (layout.heartbeat, layout.out / "outbound.db-journal", layout.out / "outbox" / "m1"):
        assert owner_and_mode(path)[:2] == (AGENT.uid, AGENT.gid), path
    assert owner_and_mode(layout.outbound_db)[:2] == (os.geteuid(), AGENT.gid)


def test_a_link_in_place_of_inbound_db_stops_the_session_and_is_not_followed(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "s1")
    layout.root.mkdir(parents=True)
    other = tmp_path / "other-inbound.db"
    layout.inbound_db.symlink_to(other)
    with pytest.raises(UnsafePathError, match="not a regular file"):
        prepare_session_folder(layout, tmp_path / "agent", None)
    assert not other.exists()


def test_a_link_in_place_of_out_is_moved_aside_and_its_target_untouched(tmp_path: Path) -> None:
    layout = SessionLayout(tmp_path / "s1")
    layout.root.mkdir(parents=True)
    elsewhere = tmp_path / "host-folder"
    elsewhere.mkdir()
    layout.out.symlink_to(elsewhere, target_is_directory=True)

    prepare_session_folder(layout, tmp_path / "agent", AGENT if os.geteuid() == 0 else None)

    assert list(elsewhere.iterdir()) == [], "the host made folders or files through the agent's link"
    assert layout.out.is_dir() and not layout.out.is_symlink()
    assert "messages_out" in tables(layout.outbound_db)
    assert [p.name for p in layout.root.glob("out.refused-*")]
