"""Smoke test: the round-trip benchmark runs end to end and prints every row. It asserts no
figures: speed is for the benchmark to report, not for a timed test to judge."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_roundtrip.py"

ROWS = {
    "(a) host round trip, cold start (agent starts)": 1,
    "(a) host round trip, warm agent: socket -> reply on socket": 3,
    "(b) container cold start: spawn -> reply row": 1,
    "(b) container: insert -> reply row, waiter on events": 3,
    "(c) container: same, waiter polls outbound.db every 10 ms": 3,
    "(c) floor: file write -> watchdog event": 3,
    "(c) floor: SQLite insert+commit -> event for the commit": 3,
    "(c) SQLite insert+commit alone, no waiting (FULL)": 3,
}

NUMBER = r"\d+\.\d{2}"


def test_the_benchmark_prints_every_row() -> None:
    # As a person runs it: a file, not a module, in its own process (its agents are children).
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "3"], capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^machine: .+, \d+ CPUs, ", out, re.MULTILINE), out
    assert re.search(r"^python [\d.]+, SQLite [\d.]+, watchdog ", out, re.MULTILINE), out
    assert re.search(r"^case +n +median ms +p99 ms$", out, re.MULTILINE), out
    for label, count in ROWS.items():
        row = rf"^{re.escape(label)} +{count} +({NUMBER}) +({NUMBER})$"
        match = re.search(row, out, re.MULTILINE)
        assert match is not None, f"no row {label!r} in:\n{out}"
        median, p99 = (float(value) for value in match.groups())
        assert 0 <= median <= p99
    assert re.search(r"^\(b\) replies found only by the .+ re-check \(a lost event\): \d+$", out, re.MULTILINE), out
