from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from container_runner.tools.base import ToolBox, ToolCall, ToolError
from container_runner.tools.workspace import BashTool, TextEditorTool, workspace_tools

# --- bash -----------------------------------------------------------------------------------


def test_bash_runs_in_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "marker.txt").write_text("here")
    outcome = BashTool(tmp_path).run({"command": "pwd -P; cat marker.txt"})
    assert not outcome.is_error
    assert outcome.content.splitlines() == [str(tmp_path.resolve()), "here"]


def test_bash_reports_a_nonzero_exit_code_as_an_error_with_the_output(tmp_path: Path) -> None:
    outcome = BashTool(tmp_path).run({"command": "echo partial; exit 3"})
    assert outcome.is_error
    assert "partial" in outcome.content
    assert "exit code 3" in outcome.content


def test_bash_success_without_output_says_so(tmp_path: Path) -> None:
    outcome = BashTool(tmp_path).run({"command": "true"})
    assert not outcome.is_error
    assert outcome.content == "(no output)"


def test_bash_includes_stderr(tmp_path: Path) -> None:
    outcome = BashTool(tmp_path).run({"command": "echo out; echo err >&2"})
    assert outcome.content.splitlines() == ["out", "err"]


def test_bash_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    outcome = BashTool(tmp_path, timeout_s=0.5).run({"command": "echo $$; sleep 30 & sleep 30"})
    assert outcome.is_error
    assert "timed out after 0.5 s" in outcome.content
    group = int(outcome.content.splitlines()[1])  # the output so far: the shell's pid, which leads the group
    assert _members_after_the_kill(group) == []


def _members_after_the_kill(group: int, bound_s: float = 10.0) -> list[int]:
    """A SIGKILL is delivered to a group asynchronously: under load a member can still be
    running the moment the tool returns. Wait, within a bound, until none is left."""
    deadline = time.monotonic() + bound_s
    while (members := _live_members(group)) and time.monotonic() < deadline:
        time.sleep(0.02)  # no event tells us another process has died; the bound keeps this finite
    return members


def _live_members(group: int) -> list[int]:
    """Processes of a process group that are neither gone nor zombies, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == group and state not in {"Z", "X"}:
            members.append(int(entry.name))
    return members


def test_bash_output_over_the_cap_is_cut_in_the_middle(tmp_path: Path) -> None:
    command = "printf 'START'; head -c 1000 /dev/zero | tr '\\0' x; printf 'END'"
    outcome = BashTool(tmp_path, output_cap=100).run({"command": command})
    assert outcome.content.startswith("START")
    assert outcome.content.endswith("END")
    assert "[... 908 characters left out ...]" in outcome.content
    assert outcome.content.count("x") == 100 - len("START") - len("END")


def test_bash_output_far_over_the_cap_counts_every_character_left_out(tmp_path: Path) -> None:
    outcome = BashTool(tmp_path, output_cap=10).run({"command": "head -c 100000 /dev/zero | tr '\\0' y"})
    assert "[... 99990 characters left out ...]" in outcome.content
    assert outcome.content.count("y") == 10


def test_bash_restart_is_accepted(tmp_path: Path) -> None:
    outcome = BashTool(tmp_path).run({"restart": True})
    assert not outcome.is_error
    assert "restarted" in outcome.content


def test_bash_requires_a_command(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="command"):
        BashTool(tmp_path).run({})


def test_no_shell_state_carries_over(tmp_path: Path) -> None:
    tool = BashTool(tmp_path)
    tool.run({"command": "cd /; export HUTCH_TEST_VAR=1"})
    assert tool.run({"command": "pwd; echo ${HUTCH_TEST_VAR:-unset}"}).content.splitlines()[1] == "unset"


# --- text editor: view ----------------------------------------------------------------------


def _editor(tmp_path: Path) -> TextEditorTool:
    return TextEditorTool(tmp_path)


def test_view_numbers_lines(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")
    outcome = _editor(tmp_path).run({"command": "view", "path": "a.txt"})
    assert outcome.content == "     1\tone\n     2\ttwo\n     3\tthree"


def test_view_range_with_minus_one_meaning_the_end(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\nfour")
    editor = _editor(tmp_path)
    assert (
        editor.run({"command": "view", "path": "a.txt", "view_range": [2, 3]}).content == "     2\ttwo\n     3\tthree"
    )
    assert (
        editor.run({"command": "view", "path": "a.txt", "view_range": [3, -1]}).content == "     3\tthree\n     4\tfour"
    )


@pytest.mark.parametrize("view_range", [[0, 2], [5, 6], [3, 2], [1], ["1", "2"]])
def test_view_range_out_of_bounds_or_malformed_is_an_error(tmp_path: Path, view_range: list[object]) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")
    with pytest.raises(ToolError, match="view_range"):
        _editor(tmp_path).run({"command": "view", "path": "a.txt", "view_range": view_range})


def test_view_directory_lists_two_levels_without_hidden(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg" / "deep").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "deep" / "too_deep.py").write_text("")
    (tmp_path / "src" / "main.py").write_text("")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("")
    (tmp_path / ".env").write_text("")
    (tmp_path / "README.md").write_text("")
    outcome = _editor(tmp_path).run({"command": "view", "path": "."})
    assert outcome.content.splitlines()[1:] == ["README.md", "src/", "src/main.py", "src/pkg/"]


def test_view_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "image.bin").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    with pytest.raises(ToolError, match="not a UTF-8 text file"):
        _editor(tmp_path).run({"command": "view", "path": "image.bin"})


def test_view_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="does not exist"):
        _editor(tmp_path).run({"command": "view", "path": "nope.txt"})


def test_view_refuses_files_over_the_size_limit(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x" * 101)
    with pytest.raises(ToolError, match="limit"):
        TextEditorTool(tmp_path, max_file_bytes=100).run({"command": "view", "path": "big.txt"})


# --- text editor: create, str_replace, insert -----------------------------------------------


def test_create_writes_the_file_and_its_parent_directories(tmp_path: Path) -> None:
    outcome = _editor(tmp_path).run({"command": "create", "path": "new/dir/file.py", "file_text": "print(1)\n"})
    assert not outcome.is_error
    assert (tmp_path / "new" / "dir" / "file.py").read_text() == "print(1)\n"


def test_create_accepts_an_absolute_path_inside_the_workspace(tmp_path: Path) -> None:
    target = tmp_path / "abs.txt"
    _editor(tmp_path).run({"command": "create", "path": str(target), "file_text": "hi"})
    assert target.read_text() == "hi"


def test_str_replace_replaces_a_unique_occurrence(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\ny = 2\n")
    outcome = _editor(tmp_path).run({"command": "str_replace", "path": "a.py", "old_str": "y = 2", "new_str": "y = 3"})
    assert not outcome.is_error
    assert "     2\ty = 3" in outcome.content
    assert (tmp_path / "a.py").read_text() == "x = 1\ny = 3\n"


def test_str_replace_new_str_defaults_to_deleting(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("keep drop keep")
    _editor(tmp_path).run({"command": "str_replace", "path": "a.py", "old_str": " drop"})
    assert (tmp_path / "a.py").read_text() == "keep keep"


def test_str_replace_with_no_occurrence_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    with pytest.raises(ToolError, match="0 occurrences"):
        _editor(tmp_path).run({"command": "str_replace", "path": "a.py", "old_str": "y", "new_str": "z"})


def test_str_replace_with_two_occurrences_is_an_error_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\nx = 1\n")
    with pytest.raises(ToolError, match=r"occurs 2 times .*lines 1, 2"):
        _editor(tmp_path).run({"command": "str_replace", "path": "a.py", "old_str": "x = 1", "new_str": "x = 2"})
    assert (tmp_path / "a.py").read_text() == "x = 1\nx = 1\n"


def test_insert_at_the_top(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    _editor(tmp_path).run({"command": "insert", "path": "a.txt", "insert_line": 0, "insert_text": "zero"})
    assert (tmp_path / "a.txt").read_text() == "zero\none\ntwo\n"


def test_insert_at_the_end(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    _editor(tmp_path).run({"command": "insert", "path": "a.txt", "insert_line": 2, "insert_text": "three\n"})
    assert (tmp_path / "a.txt").read_text() == "one\ntwo\nthree\n"


def test_insert_after_a_last_line_without_newline(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo")
    _editor(tmp_path).run({"command": "insert", "path": "a.txt", "insert_line": 2, "insert_text": "three"})
    assert (tmp_path / "a.txt").read_text() == "one\ntwo\nthree\n"


def test_insert_accepts_new_str_from_older_schemas(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    _editor(tmp_path).run({"command": "insert", "path": "a.txt", "insert_line": 1, "new_str": "middle"})
    assert (tmp_path / "a.txt").read_text() == "one\nmiddle\ntwo\n"


def test_insert_past_the_end_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\n")
    with pytest.raises(ToolError, match="out of range"):
        _editor(tmp_path).run({"command": "insert", "path": "a.txt", "insert_line": 2, "insert_text": "x"})


def test_unknown_command_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="unknown command 'undo_edit'"):
        _editor(tmp_path).run({"command": "undo_edit", "path": "a.txt"})


# --- text editor: staying inside the workspace ----------------------------------------------


def test_relative_escape_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with pytest.raises(ToolError, match="outside the workspace"):
        _editor(workspace).run({"command": "create", "path": "../x", "file_text": "escaped"})
    assert not (tmp_path / "x").exists()


def test_absolute_path_outside_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    with pytest.raises(ToolError, match="outside the workspace"):
        _editor(workspace).run({"command": "view", "path": str(tmp_path / "secret.txt")})


def test_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file.txt").write_text("original")
    (workspace / "link").symlink_to(outside)
    editor = _editor(workspace)
    with pytest.raises(ToolError, match="outside the workspace"):
        editor.run({"command": "str_replace", "path": "link/file.txt", "old_str": "original", "new_str": "changed"})
    with pytest.raises(ToolError, match="outside the workspace"):
        editor.run({"command": "create", "path": "link/new.txt", "file_text": "x"})
    assert (outside / "file.txt").read_text() == "original"
    assert not (outside / "new.txt").exists()


def test_dangling_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "trap").symlink_to(tmp_path / "not_yet")
    with pytest.raises(ToolError, match="outside the workspace"):
        _editor(workspace).run({"command": "create", "path": "trap", "file_text": "x"})
    assert not (tmp_path / "not_yet").exists()


def test_symlinked_workspace_still_accepts_its_own_paths(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    _editor(alias).run({"command": "create", "path": str(alias / "a.txt"), "file_text": "ok"})
    assert (real / "a.txt").read_text() == "ok"


# --- definitions and wiring -----------------------------------------------------------------


def test_definitions_use_the_anthropic_tool_types(tmp_path: Path) -> None:
    assert BashTool(tmp_path).definition() == {"type": "bash_20250124", "name": "bash"}
    assert TextEditorTool(tmp_path).definition() == {
        "type": "text_editor_20250728",
        "name": "str_replace_based_edit_tool",
    }


def test_workspace_tools_work_through_a_toolbox(tmp_path: Path) -> None:
    box = ToolBox(workspace_tools(tmp_path))
    assert box.names() == ["bash", "str_replace_based_edit_tool"]
    created = box.run(
        ToolCall("1", "str_replace_based_edit_tool", {"command": "create", "path": "f.txt", "file_text": "hi"})
    )
    assert not created.is_error
    assert box.run(ToolCall("2", "bash", {"command": "cat f.txt"})).content == "hi"
    refused = box.run(ToolCall("3", "str_replace_based_edit_tool", {"command": "view", "path": "/etc/passwd"}))
    assert refused.is_error
    assert os.fspath(tmp_path.resolve()) in refused.content
