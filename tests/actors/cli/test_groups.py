"""`hutch groups add` and `hutch groups set` with a group's own limits, no host running: the
limits land in the group's row, `default` gives one back to the host's, and a bad value is
one line with nothing changed (tests/integration/test_cli_control.py has them against a host)."""

from __future__ import annotations

import os

import pytest

from actors.store import agent_groups
from actors.store.agent_groups import AgentGroup
from tests.actors.cli.conftest import Folder, hutch, one_error_line

pytestmark = pytest.mark.timeout(60)


def ok(data: Folder, *args: str) -> str:
    result = hutch(*args, "--data-dir", str(data.path))
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(data: Folder, *args: str) -> str:
    return one_error_line(hutch(*args, "--data-dir", str(data.path)))


def _group(data: Folder, name: str) -> AgentGroup:
    group = agent_groups.get_by_name(data.store, name)
    assert group is not None
    return group


def _limits(group: AgentGroup) -> tuple[float | None, int | None, int | None, int | None]:
    return group.cpus, group.memory_mb, group.pids, group.shm_mb


def test_add_takes_the_groups_own_limits(data: Folder) -> None:
    said = ok(data, "groups", "add", "helper", "--cpus", "0.5", "--memory-mb", "300", "--pids", "64", "--shm-mb", "2")
    assert "its agents may use cpus 0.5, memory 300 MB, pids 64, /dev/shm 2 MB" in said
    assert _limits(_group(data, "helper")) == (0.5, 300, 64, 2)
    ok(data, "groups", "add", "plain")
    assert _limits(_group(data, "plain")) == (None, None, None, None)  # the host's


def test_set_changes_the_limits_given_and_default_clears_one(data: Folder) -> None:
    said = ok(data, "groups", "set", "main", "--cpus", "0.5", "--memory-mb", "300")
    assert said.strip() == "agent group 'main': its agents may use cpus 0.5, memory 300 MB"
    assert _limits(_group(data, "main")) == (0.5, 300, None, None)
    said = ok(data, "groups", "set", "main", "--memory-mb", "default", "--pids", "64", "--model", "claude-opus-5-5")
    assert "uses claude-opus-5-5; its agents may use memory the host's (HUTCH_AGENT_MEMORY_MB), pids 64" in said
    group = _group(data, "main")
    assert (group.model, *_limits(group)) == ("claude-opus-5-5", 0.5, None, 64, None)
    listed = ok(data, "groups", "list")
    assert "0.5 *" in listed and "64 *" in listed


def test_set_with_only_a_model_still_works(data: Folder) -> None:
    assert ok(data, "groups", "set", "main", "--model", "claude-opus-5-5").strip() == (
        "agent group 'main' uses claude-opus-5-5"
    )


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("set", "main"), "hutch: nothing to change: give --model or a limit (--cpus, --memory-mb, --pids, --shm-mb)"),
        (("set", "main", "--pids", "1.5"), "hutch: --pids '1.5': give a whole number, or `default` for the host's"),
        (("set", "main", "--cpus", "lots"), "hutch: --cpus 'lots': give a number, or `default` for the host's"),
        (("set", "main", "--memory-mb", "32"), "hutch: memory_mb 32: give a whole number from 64 to 1048576 MB"),
        (("set", "main", "--shm-mb", "0"), "Docker reads 0 as its own 64 MB"),
        (("set", "main", "--pids", "8"), "hutch: pids 8: give a whole number from 16 to 4194304"),
        (("set", "main", "--cpus", "0"), "give a share of this machine's CPUs from 0.01"),
        (("set", "main", "--cpus", str((os.cpu_count() or 1) + 1)), "(Docker refuses more)"),
        (("set", "main", "--cpus", "nan"), "give a share of this machine's CPUs"),
        (("set", "main", "--cpus", "1", "--model", "gpt-5"), "is not a Claude model id"),
        (("add", "helper", "--memory-mb", "10"), "hutch: memory_mb 10: give a whole number from 64"),
    ],
)
def test_a_bad_limit_is_one_line_and_changes_nothing(data: Folder, args: tuple[str, ...], why: str) -> None:
    before = agent_groups.list_all(data.store)
    assert why in refused(data, "groups", *args)
    assert agent_groups.list_all(data.store) == before
