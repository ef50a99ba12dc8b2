"""The embedding example runs as a user would run it: a SessionActor without the host,
a real agent process (mock provider), real file events, replies printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.timeout(120), pytest.mark.integration]


def test_the_example_gets_a_reply_to_each_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "embed_session.py"), "--dir", str(tmp_path), "hello", "and again"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line[:2] in {"> ", "< "}]
    assert lines == [
        "> hello   (stored as seq 2)",
        "< mock: hello",
        "> and again   (stored as seq 4)",  # the reply between them took 3: parity keeps them apart
        "< mock: and again",
    ]
    assert (tmp_path / "session" / "inbound.db").exists()
