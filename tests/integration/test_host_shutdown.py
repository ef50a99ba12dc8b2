"""SIGTERM in the middle of work, then a restart: nothing acknowledged is lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.chat_client import ChatClient
from tests.fakes.host_process import HostProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]


def _drain(client: ChatClient) -> list[dict[str, Any]]:
    messages = []
    while not client.messages.empty():
        messages.append(client.messages.get_nowait())
    return messages


def test_sigterm_mid_turn_then_restart_loses_nothing(data_dir: Path) -> None:
    host = HostProcess(data_dir)
    try:
        client = ChatClient(data_dir / "cli.sock")
        assert client.send('mid-turn\n!tool bash {"command": "sleep 2"}')["type"] == "ack"
        assert host.terminate() == 0
        before = _drain(client)
        client.close()
    finally:
        host.kill()
    assert "supervisor stopped" in "".join(host.log)

    host = HostProcess(data_dir)
    try:
        client = ChatClient(data_dir / "cli.sock")
        after: list[dict[str, Any]] = []
        if not any("mid-turn" in m.get("text", "") for m in before):
            after.append(client.next_message(timeout=60))
        client.send("are you back?")
        after.append(client.next_message(timeout=60))
        after += _drain(client)
        client.close()
        assert host.terminate() == 0
    finally:
        host.kill()
    answers = [m for m in before + after if m.get("text", "").startswith("mock: mid-turn")]
    assert len(answers) == 1, before + after
    assert any(m.get("text", "").startswith("mock: are you back?") for m in after)
