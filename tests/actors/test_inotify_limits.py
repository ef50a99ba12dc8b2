"""The host warns at start when inotify instances are too few for its agents."""

from __future__ import annotations

from pathlib import Path

from actors.inotify_limits import inotify_shortfall


def test_enough_instances_say_nothing_and_too_few_say_how_to_fix_it(tmp_path: Path) -> None:
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    assert inotify_shortfall(5, limit) is None
    warning = inotify_shortfall(200, limit)
    assert warning is not None
    assert "is 128" in warning and "sysctl fs.inotify.max_user_instances=208" in warning


def test_an_unreadable_limit_says_nothing(tmp_path: Path) -> None:
    assert inotify_shortfall(5, tmp_path / "missing") is None
    (tmp_path / "garbage").write_text("lots")
    assert inotify_shortfall(5, tmp_path / "garbage") is None
