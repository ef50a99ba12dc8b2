"""Folder ownership as root: what is given to an agent's uid, what is shared with its group,
and that a link or a hard link an agent planted never makes the host change a file outside
its folders."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest

from actors.ownership import (
    AGENT_OWN,
    HOST_ONLY,
    PASS_THROUGH,
    SHARED_READ,
    NotAFolderError,
    give_folder,
    secure_data_folder,
    share_file,
    share_with,
)
from actors.runtime.base import AgentUser

pytestmark = [
    pytest.mark.timeout(20),
    pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another uid needs root"),
]

AGENT = AgentUser(1_000_123, 1_000_123)


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_folder_given_to_an_agent_is_its_own_all_the_way_down(tmp_path: Path) -> None:
    folder = tmp_path / "groups" / "family"
    (folder / "notes" / "deep").mkdir(parents=True)
    (folder / "CLAUDE.md").write_text("memory")
    (folder / "notes" / "deep" / "a.txt").write_text("a")

    give_folder(folder, AGENT)

    for path in (folder, folder / "CLAUDE.md", folder / "notes", folder / "notes" / "deep" / "a.txt"):
        assert owner(path) == (AGENT.uid, AGENT.gid), path
    assert mode(folder) == AGENT_OWN


def test_links_planted_in_an_agent_folder_are_not_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    host_file = tmp_path / "passwd"
    host_file.write_text("root:x:0:0")
    host_dir = tmp_path / "etc"
    (host_dir / "inner").mkdir(parents=True)
    folder = tmp_path / "workspace"
    folder.mkdir()
    (folder / "to-file").symlink_to(host_file)
    (folder / "to-dir").symlink_to(host_dir)
    os.link(host_file, folder / "hard")  # the same inode as the host's file

    with caplog.at_level(logging.WARNING, logger="hutch.ownership"):
        give_folder(folder, AGENT)

    assert owner(host_file) == (0, 0), "a hard link gave the host's file away"
    assert owner(host_dir) == (0, 0) and owner(host_dir / "inner") == (0, 0), "a link was followed"
    assert owner(folder / "to-file") == (AGENT.uid, AGENT.gid)  # the link itself is the agent's
    assert "hard" in caplog.text


def test_another_file_system_below_an_agent_folder_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "workspace"
    mounted = folder / "mounted"
    mounted.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mounted)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (mounted / "theirs").write_text("x")
        give_folder(folder, AGENT)
        assert owner(mounted / "theirs") == (0, 0), "the walk crossed into another file system"
        assert owner(folder) == (AGENT.uid, AGENT.gid)
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


def test_a_folder_already_the_agents_is_not_walked(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    os.chown(folder, AGENT.uid, AGENT.gid)
    (folder / "host-made").write_text("x")

    give_folder(folder, AGENT)

    # Walking a large workspace at every start would cost; a folder that is the agent's
    # is trusted to hold the agent's files.
    assert owner(folder / "host-made") == (0, 0)


def test_a_link_in_place_of_a_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "out").symlink_to(target)
    with pytest.raises(NotAFolderError, match="not a folder"):
        give_folder(tmp_path / "out", AGENT)
    assert owner(target) == (0, 0)


def test_a_shared_folder_is_the_hosts_and_readable_by_the_group(tmp_path: Path) -> None:
    share_with(tmp_path, AGENT)
    assert owner(tmp_path) == (os.geteuid(), AGENT.gid)
    assert mode(tmp_path) == SHARED_READ


def test_a_file_shared_with_an_agent_is_shared_without_following_a_link(tmp_path: Path) -> None:
    made = tmp_path / "outbound.db"
    made.write_bytes(b"")
    share_file(made, AGENT)
    assert owner(made) == (os.geteuid(), AGENT.gid) and mode(made) == 0o660
    host_file = tmp_path / "host"
    host_file.write_text("x")
    (tmp_path / "link").symlink_to(host_file)
    with pytest.raises(OSError):
        share_file(tmp_path / "link", AGENT)
    assert owner(host_file) == (0, 0)


def test_no_user_changes_modes_only(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    give_folder(folder, None)
    assert owner(folder) == (0, 0)
    assert mode(folder) == AGENT_OWN


@pytest.mark.parametrize(("shared", "expected"), [(True, PASS_THROUGH), (False, HOST_ONLY)])
def test_the_data_folder_lets_agents_pass_only_when_they_have_uids_of_their_own(
    tmp_path: Path, shared: bool, expected: int
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    central = data / "hutch.db"
    central.write_bytes(b"")
    os.chmod(central, 0o644)

    secure_data_folder(data, central, (data / "sessions", data / "groups"), shared=shared)

    assert mode(data) == mode(data / "sessions") == mode(data / "groups") == expected
    assert mode(central) == 0o600, "the central DB is the host's alone"
