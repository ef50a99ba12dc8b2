"""The spec a session hands its runtime: folders and HUTCH_* settings, no credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.session.info import SessionInfo, SessionSettings
from actors.session.spec import agent_spec
from protocol.layout import SessionLayout

pytestmark = pytest.mark.timeout(30)


def info(tmp_path: Path, global_dir: Path | None = None) -> SessionInfo:
    return SessionInfo(
        session_id="s-0123456789",
        agent_group="family",
        layout=SessionLayout(tmp_path / "session"),
        agent_dir=tmp_path / "groups" / "family",
        global_dir=global_dir,
    )


def test_the_spec_names_the_folders_and_passes_the_agent_settings_through(tmp_path: Path) -> None:
    session = info(tmp_path)
    settings = SessionSettings(timezone="Europe/Berlin", agent_env={"HUTCH_PROVIDER": "mock", "TZ": "ignored"})

    spec = agent_spec(session, settings, None)

    assert (spec.session_id, spec.agent_group) == ("s-0123456789", "family")
    assert (spec.session_dir, spec.agent_dir, spec.global_dir) == (session.layout.root, session.agent_dir, None)
    assert spec.env == {
        "HUTCH_PROVIDER": "mock",
        "HUTCH_SESSION_DIR": str(session.layout.root),
        "HUTCH_AGENT_DIR": str(session.agent_dir),
        "TZ": "Europe/Berlin",
        "HUTCH_STOP_GRACE": "30",  # the turn in flight gets this long; the host waits 5 s more
    }


def test_optional_folders_and_proxy_socket_are_named_when_there(tmp_path: Path) -> None:
    session = info(tmp_path, global_dir=tmp_path / "global")

    spec = agent_spec(session, SessionSettings(), session.layout.proxy_socket)

    assert spec.global_dir == tmp_path / "global"
    assert spec.env["HUTCH_GLOBAL_DIR"] == str(tmp_path / "global")
    assert spec.env["HUTCH_PROXY_SOCKET"] == str(session.layout.proxy_socket)
