"""The process runtime as root: each agent group's agents run as the group's own uid, the
folder permissions keep groups apart, and where the uid cannot run the agent the host says
why and runs it as its own uid. Agents here are shell one-liners: /bin/sh is reachable to
every uid, whatever Python the tests run on."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.ownership import PASS_THROUGH, secure_data_folder
from actors.runtime.base import AgentSpec, AgentUser
from actors.runtime.process import ProcessRuntime
from actors.session.folder import prepare_session_folder
from protocol.layout import SessionLayout
from tests.fakes.probes import Exits

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(os.geteuid() != 0, reason="running an agent as another uid needs root"),
]

FAMILY = AgentUser(1_000_401, 1_000_401)
WORK = AgentUser(1_000_402, 1_000_402)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder every uid can pass through to its own folders, as a host makes it (the
    pytest temp folders above tmp_path are private to root)."""
    with tempfile.TemporaryDirectory(prefix="hutch-uids-", dir="/tmp") as folder:
        data = Path(folder)
        (data / "hutch.db").write_text("the host's routing and people")  # made readable by all, as umask does
        os.chmod(data / "hutch.db", 0o644)
        secure_data_folder(data, data / "hutch.db", (data / "sessions", data / "groups"), shared=True)
        yield data


def session_of(data_dir: Path, group: str, user: AgentUser | None) -> AgentSpec:
    layout = SessionLayout(data_dir / "sessions" / group / f"{group}-session")
    agent_dir = data_dir / "groups" / group
    prepare_session_folder(layout, agent_dir, user)
    return AgentSpec(
        session_id=f"{group}-session", agent_group=group, session_dir=layout.root, agent_dir=agent_dir, user=user
    )


def run(spec: AgentSpec, script: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Run `sh -c script` as the spec's agent; its output lines."""
    caplog.set_level(logging.INFO, logger="hutch.agent")
    exits = Exits()
    ProcessRuntime(command=["/bin/sh", "-c", script]).start(spec, exits)
    assert exits.wait(20) == 0
    prefix = f"[{spec.tag}] "
    return [r.getMessage().removeprefix(prefix) for r in caplog.records if r.name == "hutch.agent"]


def test_an_agent_runs_as_its_groups_uid_with_no_other_group(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = session_of(data_dir, "family", FAMILY)
    lines = run(spec, 'echo "ids $(id -u) $(id -g) $(id -G)"; echo "home $HOME"', caplog)
    assert f"ids {FAMILY.uid} {FAMILY.gid} {FAMILY.gid}" in lines
    assert f"home {spec.agent_dir}" in lines


def test_an_agent_writes_its_own_folders_and_not_the_hosts(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = session_of(data_dir, "family", FAMILY)
    layout = SessionLayout(spec.session_dir)
    script = (
        f"touch {layout.out}/.heartbeat && echo out-ok; "
        f"touch {spec.agent_dir}/note && echo workspace-ok; "
        f"cat {layout.inbound_db} > /dev/null && echo inbound-readable; "
        f"rm -f {layout.inbound_db} 2>/dev/null || echo inbound-kept; "
        f"ln -s /etc/shadow {layout.root}/planted 2>/dev/null || echo root-closed; "
        f"cat {data_dir}/hutch.db 2>/dev/null || echo central-closed; "
        f"ls {data_dir} 2>/dev/null || echo data-unlisted; "
        f"[ -w {layout.outbound_db} ] && echo outbound-writable; "
        f"rm -f {layout.outbound_db} 2>/dev/null || echo outbound-kept; "
        f"mv {layout.outbound_db} {layout.out}/moved 2>/dev/null || echo outbound-not-moved"
    )
    lines = run(spec, script, caplog)
    expected = ["out-ok", "workspace-ok", "inbound-readable", "inbound-kept", "root-closed"]
    expected += ["outbound-writable", "outbound-kept", "outbound-not-moved"]
    assert {*expected, "central-closed", "data-unlisted"} <= set(lines), lines
    assert layout.inbound_db.is_file() and not (layout.root / "planted").exists()
    assert layout.outbound_db.is_file() and not (layout.out / "moved").exists()


def test_agents_of_different_groups_cannot_read_each_others_folders(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    family = session_of(data_dir, "family", FAMILY)
    work = session_of(data_dir, "work", WORK)
    (work.agent_dir / "secret.txt").write_text("work's secret")
    os.chown(work.agent_dir / "secret.txt", WORK.uid, WORK.gid)
    theirs = SessionLayout(work.session_dir)
    targets = {
        "their-workspace": work.agent_dir / "secret.txt",
        "their-inbound": theirs.inbound_db,
        "their-outbound": theirs.outbound_db,
        "their-sessions": work.session_dir.parent,
    }
    script = "; ".join(
        f"(cat {path} || ls {path}) >/dev/null 2>&1 && echo {name}-OPEN" for name, path in targets.items()
    )
    lines = run(family, script + "; echo done", caplog)
    assert "done" in lines
    assert not [line for line in lines if line.endswith("-OPEN")], lines


def test_a_uid_that_cannot_reach_the_folders_runs_as_the_host_and_the_host_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # tmp_path sits below folders only root may enter.
    assert os.stat(tmp_path.parent).st_mode & 0o001 == 0 or os.stat(tmp_path.parent.parent).st_mode & 0o001 == 0
    spec = session_of(tmp_path, "family", FAMILY)
    caplog.set_level(logging.WARNING, logger="hutch.runtime.process")
    lines = run(spec, 'echo "uid $(id -u)"', caplog)
    assert f"uid {os.getuid()}" in lines
    warning = [r.getMessage() for r in caplog.records if r.name == "hutch.runtime.process"]
    assert any("not their own" in line and str(FAMILY.uid) in line for line in warning), warning


def test_the_data_folder_is_passable_not_listable(data_dir: Path) -> None:
    assert os.stat(data_dir).st_mode & 0o777 == PASS_THROUGH
