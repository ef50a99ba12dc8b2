"""`hutch groups list`, `hutch sessions list` and `hutch sessions show`: what hutch.db and the
sessions' inbound.db hold, read without the host."""

from __future__ import annotations

import pytest

from actors.store import agent_groups, sessions
from protocol.models import DEFAULT_MODEL
from tests.actors.cli.conftest import Folder, hutch, one_error_line

pytestmark = pytest.mark.timeout(60)


def _table_rows(output: str) -> list[list[str]]:
    """The cells of each body row of a rich table (rows drawn with │)."""
    return [[cell.strip() for cell in line.strip("│ ").split("│")] for line in output.splitlines() if "│" in line]


def test_groups_list_shows_folder_model_and_limits_own_or_default(data: Folder) -> None:
    own = agent_groups.create(data.store, name="work", folder="work", model="claude-opus-4")
    agent_groups.update(data.store, own.id, memory_mb=4096, cpus=2.5)
    result = hutch("groups", "list", "--data-dir", str(data.path))
    assert result.exit_code == 0, result.output
    rows = _table_rows(result.stdout)
    assert ["main", "main", DEFAULT_MODEL, "1", "2048 MB", "512", "16 MB", "2"] in rows
    assert ["work", "work", "claude-opus-4 *", "2.5 *", "4096 MB *", "512", "16 MB", "0"] in rows


def test_groups_list_uses_the_configured_defaults(data: Folder) -> None:
    env = {"HUTCH_MODEL": "claude-haiku-4", "HUTCH_AGENT_PIDS": "64"}
    rows = _table_rows(hutch("groups", "list", "--data-dir", str(data.path), env=env).stdout)
    assert ["main", "main", "claude-haiku-4", "1", "2048 MB", "64", "16 MB", "2"] in rows


def test_sessions_list_shows_chat_status_and_pending_rows(data: Folder) -> None:
    sessions.close(data.store, data.family.id)
    result = hutch("sessions", "list", "--data-dir", str(data.path))
    assert result.exit_code == 0, result.output
    rows = {row[0]: row for row in _table_rows(result.stdout)}
    local = rows[data.local.id[:8]]
    assert local[1:4] == ["main", "cli:local (local chat)", "active"]
    assert local[5] == "3 (1 later)"
    family = rows[data.family.id[:8]]
    assert family[1:4] == ["main", "telegram:-100 (family)", "closed"]
    assert family[5] == "-"  # no inbound.db yet
    active = hutch("sessions", "list", "--active", "--data-dir", str(data.path)).stdout
    assert data.local.id[:8] in active
    assert data.family.id[:8] not in active


def test_sessions_list_names_webhook_and_agent_shared_sessions(data: Folder) -> None:
    hook = sessions.create(
        data.store, agent_group_id=data.main.id, session_key=sessions.webhook_session_key(data.main.id, "ci")
    )
    shared = sessions.create(
        data.store,
        agent_group_id=data.main.id,
        session_key=sessions.session_key("agent-shared", agent_group_id=data.main.id),
    )
    rows = {row[0]: row for row in _table_rows(hutch("sessions", "list", "--data-dir", str(data.path)).stdout)}
    assert rows[hook.id[:8]][2] == "webhook route ci"
    assert rows[shared.id[:8]][2] == "every chat wired to the group"


def test_an_empty_list_says_so(data: Folder) -> None:
    for session in (data.local, data.family):
        sessions.delete(data.store, session.id)
    result = hutch("sessions", "list", "--data-dir", str(data.path))
    assert (result.exit_code, result.stdout.strip()) == (0, "no sessions yet")


@pytest.mark.parametrize("given", ["full", "prefix"])
def test_sessions_show_by_id_or_unique_prefix(data: Folder, given: str) -> None:
    wanted = data.local.id if given == "full" else data.local.id[:5]
    result = hutch("sessions", "show", wanted, "--data-dir", str(data.path))
    assert result.exit_code == 0, result.output
    rows = {row[0]: row[1] for row in _table_rows(result.stdout)}
    assert rows["chat"] == "cli:local (local chat)"
    assert rows["inbound rows"] == "1 completed, 3 pending; of the pending, 2 due now, 1 later"
    assert rows["folder"] == str(data.layout(data.local, data.main).root)
    assert rows["agent heartbeat"].startswith("none")


def test_sessions_show_reads_the_agents_heartbeat(data: Folder) -> None:
    layout = data.layout(data.local, data.main)
    layout.heartbeat.touch()
    result = hutch("sessions", "show", data.local.id, "--data-dir", str(data.path))
    rows = {row[0]: row[1] for row in _table_rows(result.stdout)}
    assert rows["agent heartbeat"].endswith("s ago")


def test_an_unknown_session_is_one_line(data: Folder) -> None:
    line = one_error_line(hutch("sessions", "show", "nope", "--data-dir", str(data.path)))
    assert line == "hutch: no session 'nope' (`hutch sessions list` shows them)"


def test_an_ambiguous_prefix_asks_for_more(data: Folder) -> None:
    for suffix in ("1", "2"):
        sessions.create(data.store, agent_group_id=data.main.id, session_key=f"k{suffix}", id=f"abc{suffix}")
    line = one_error_line(hutch("sessions", "show", "abc", "--data-dir", str(data.path)))
    assert line == "hutch: 2 sessions start with 'abc': give more of the id"
    assert hutch("sessions", "show", "abc2", "--data-dir", str(data.path)).exit_code == 0
