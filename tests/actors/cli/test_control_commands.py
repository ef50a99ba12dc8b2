"""The changing subcommands with no host running: carried out by the command itself,
holding the data folder's lock, with the same operations a running host uses
(tests/integration/test_cli_control.py has them against a real host)."""

from __future__ import annotations

import socket

import pytest

from actors.data_lock import DataFolderLock
from actors.session.system_actions import apply_action
from actors.store import agent_groups, members, messaging_group_agents, messaging_groups, pairing_requests
from protocol.content import ScheduleTask
from protocol.db import read_transaction, write_transaction
from protocol.rows import Routing
from tests.actors.cli.conftest import Folder, hutch, one_error_line

pytestmark = pytest.mark.timeout(60)


def ok(data: Folder, *args: str, answers: str | None = None) -> str:
    result = hutch(*args, "--data-dir", str(data.path), answers=answers)
    assert result.exit_code == 0, result.output
    return result.stdout


def _schedule(data: Folder, task_id: str) -> None:
    layout = data.layout(data.local, data.main)
    action = ScheduleTask(task_id=task_id, prompt=f"water {task_id}", process_after="2030-01-01T09:00:00.000000Z")
    with write_transaction(layout.inbound_db) as conn:
        apply_action(conn, action, Routing(), requested_by=1)


def _task_status(data: Folder, task_id: str) -> str:
    with read_transaction(data.layout(data.local, data.main).inbound_db) as conn:
        return str(conn.execute("SELECT status FROM messages_in WHERE id = ?", (task_id,)).fetchone()[0])


def test_tasks_are_listed_and_changed_in_the_sessions_file(data: Folder) -> None:
    _schedule(data, "tplants")
    listed = ok(data, "tasks", "list")
    assert "tplants" in listed
    assert "water tplants" in listed
    assert data.local.id[:8] in listed
    assert "now paused" in ok(data, "tasks", "pause", "tpl")
    assert _task_status(data, "tplants") == "paused"
    assert "now pending" in ok(data, "tasks", "resume", "tplants", "--session", data.local.id)
    assert "now cancelled" in ok(data, "tasks", "cancel", "tplants")
    assert ok(data, "tasks", "list").strip() == "no scheduled tasks"
    assert "tplants" in ok(data, "tasks", "list", "--all")


def test_a_task_change_that_does_not_apply_is_one_line(data: Folder) -> None:
    _schedule(data, "tplants")
    result = hutch("tasks", "resume", "tplants", "--data-dir", str(data.path))
    assert one_error_line(result) == "hutch: task tplants is scheduled: there is nothing to resume"
    assert result.exit_code == 1


def test_sessions_clear_and_stop_without_a_host(data: Folder) -> None:
    assert "when the host next runs" in ok(data, "sessions", "clear", data.local.id[:8])
    assert "no host runs" in ok(data, "sessions", "stop", data.local.id[:8])
    result = hutch("sessions", "clear", data.family.id, "--data-dir", str(data.path))
    assert "has not run yet" in one_error_line(result)


def test_groups_add_and_remove_ask_first_unless_told(data: Folder) -> None:
    assert "agent group 'helper' added" in ok(data, "groups", "add", "helper", "--model", "claude-opus-4-5")
    group = agent_groups.get_by_name(data.store, "helper")
    assert group is not None
    assert group.model == "claude-opus-4-5"
    aborted = hutch("groups", "remove", "helper", "--data-dir", str(data.path), answers="n\n")
    assert aborted.exit_code == 1
    assert agent_groups.get_by_name(data.store, "helper") is not None
    assert "removed" in ok(data, "groups", "remove", "helper", answers="y\n")
    assert agent_groups.get_by_name(data.store, "helper") is None


def test_wire_and_unwire_with_every_option(data: Folder) -> None:
    said = ok(
        data, "wire", "discord:77", "main", "--mode", "per-thread", "--trigger", "mention-sticky",
        "--untriggered", "drop", "--unknown-senders", "pair",
    )  # fmt: skip
    assert said.startswith("discord:77 wired to 'main': sessions per-thread, trigger mention-sticky")
    chat = messaging_groups.get_by_platform(data.store, "discord", "77")
    assert chat is not None
    (wiring,) = messaging_group_agents.wirings_for(data.store, chat.id)
    assert (wiring.session_mode, wiring.trigger_rule, wiring.untriggered) == ("per-thread", "mention-sticky", "drop")
    assert chat.unknown_senders == "pair"
    assert chat.is_group  # a Discord id does not say DM or server channel: the safe side
    assert "unwired" in ok(data, "unwire", "discord:77", "main")
    assert messaging_group_agents.wirings_for(data.store, chat.id) == []


def test_a_bad_mode_is_refused_by_the_command_line(data: Folder) -> None:
    result = hutch("wire", "discord:77", "main", "--mode", "sometimes", "--data-dir", str(data.path))
    assert result.exit_code == 2
    assert messaging_groups.get_by_platform(data.store, "discord", "77") is None


def test_senders_allow_and_block(data: Folder) -> None:
    chat = messaging_groups.get_by_platform(data.store, "telegram", "-100")
    assert chat is not None
    assert "as admin" in ok(data, "senders", "allow", "telegram:-100", "u1", "--role", "admin", "--name", "Ann")
    assert members.role_of(data.store, chat.id, "u1") == "admin"
    assert "is blocked" in ok(data, "senders", "block", "telegram:-100", "u1")
    assert members.role_of(data.store, chat.id, "u1") is None
    assert pairing_requests.was_refused(data.store, chat.id, "u1")


def test_while_a_host_holds_the_folder_without_answering_the_command_says_so(data: Folder) -> None:
    lock = DataFolderLock.acquire(data.path)
    try:
        result = hutch("groups", "add", "helper", "--data-dir", str(data.path))
        line = one_error_line(result)
        assert "control socket" in line
        assert "does not answer" in line
        assert agent_groups.get_by_name(data.store, "helper") is None  # nothing written behind the host's back
    finally:
        lock.release()


def test_a_dead_socket_file_is_not_mistaken_for_a_host(data: Folder) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(data.path / "control.sock"))  # left by a killed host: nobody listens
    assert "added" in ok(data, "groups", "add", "helper")  # no host holds the lock: done here
