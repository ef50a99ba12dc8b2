"""Smoke test: the channel benchmark runs end to end, through the fake Telegram and Discord
servers, and prints every row. It asserts no figures: speed is for the benchmark to report,
not for a timed test to judge."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_channels.py"

ROWS = (
    "(a) baseline: the local chat socket",
    "(b) Telegram, long polling",
    "(c) Discord, gateway and REST",
)


def test_the_benchmark_prints_every_row(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "3", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"^machine: .+, \d+ CPUs, ", done.stdout, re.MULTILINE), done.stdout
    for label in ROWS:
        row = rf"^{re.escape(label)} +3 +\d+\.\d{{2}} +\d+\.\d{{2}}$"
        assert re.search(row, done.stdout, re.MULTILINE), done.stdout
