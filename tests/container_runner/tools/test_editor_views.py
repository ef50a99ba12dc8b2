"""The text editor's views are capped: a big file is read a window at a time (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from container_runner.tools.workspace import TextEditorTool

pytestmark = pytest.mark.timeout(30)


def test_a_view_shows_whole_lines_up_to_the_cap_and_says_where_the_rest_is(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"line {n}\n" for n in range(1, 20_001)))
    editor = TextEditorTool(tmp_path, view_cap=1_000)

    shown = editor.run({"command": "view", "path": "big.txt"}).content

    assert len(shown) < 1_300
    lines = shown.splitlines()
    assert lines[0] == "     1\tline 1"
    last_number = int(lines[-2].split("\t")[0])
    assert lines[-1].startswith(f"[lines 1-{last_number} of 20000 shown: a view shows at most 1000 characters")
    assert f"view_range [{last_number + 1}, {last_number + 201}]" in lines[-1]


def test_a_view_range_reads_further_and_is_capped_too(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"line {n}\n" for n in range(1, 20_001)))
    editor = TextEditorTool(tmp_path, view_cap=1_000)

    window = editor.run({"command": "view", "path": "big.txt", "view_range": [15_000, 15_004]}).content
    assert window.splitlines() == [f" {n}\tline {n}" for n in range(15_000, 15_005)]

    long_window = editor.run({"command": "view", "path": "big.txt", "view_range": [100, -1]}).content
    assert long_window.startswith("   100\tline 100") and len(long_window) < 1_300


def test_one_line_longer_than_a_view_is_cut(tmp_path: Path) -> None:
    (tmp_path / "minified.js").write_text("x" * 50_000 + "\nsecond\n")
    editor = TextEditorTool(tmp_path, view_cap=2_000)

    shown = editor.run({"command": "view", "path": "minified.js"}).content

    assert len(shown) < 2_400
    assert "line 1 cut: 50007 characters" in shown
    assert "view_range [2, 2]" in shown


def test_the_default_cap_matches_bash_and_small_files_are_whole(tmp_path: Path) -> None:
    (tmp_path / "small.txt").write_text("a\nb\n")
    (tmp_path / "large.txt").write_text("y" * 79 + "\n" * 1 + ("z" * 79 + "\n") * 10_000)  # 800 kB
    editor = TextEditorTool(tmp_path)

    assert editor.run({"command": "view", "path": "small.txt"}).content == "     1\ta\n     2\tb"
    large = editor.run({"command": "view", "path": "large.txt"}).content
    assert 25_000 < len(large) <= 30_500


def test_an_edit_snippet_of_a_huge_insertion_is_capped(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("start\n")
    editor = TextEditorTool(tmp_path, view_cap=1_000)

    said = editor.run(
        {"command": "insert", "path": "notes.txt", "insert_line": 1, "insert_text": "w\n" * 5_000}
    ).content

    assert said.startswith("inserted after line 1 of notes.txt") and len(said) < 1_100
    assert (tmp_path / "notes.txt").read_text().count("w\n") == 5_000
