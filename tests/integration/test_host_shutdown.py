"""SIGTERM in the middle of work, then a restart: nothing acknowledged is lost."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.chat_client import ChatClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]


class HostProcess:
    """`python -m actors.main` as a person runs it; ready once it prints that it runs."""

    def __init__(self, data_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "HUTCH_"))}
        env.update(HUTCH_DATA_DIR=str(data_dir), HUTCH_RUNTIME="process", HUTCH_PROVIDER="mock")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "actors.main"], cwd=REPO, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.log: list[str] = []
        ready: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.process.stdout, ready), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, None), daemon=True).start()
        assert "hutch is running" in ready.get(timeout=60)

    def _pump(self, stream: Any, ready: queue.Queue[str] | None) -> None:
        for line in stream:
            self.log.append(line)
            if ready is not None and "hutch is running" in line:
                ready.put(line)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


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
