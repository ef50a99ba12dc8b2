"""Smoke test: the host benchmark's quick mode runs end to end, passes its own checks (nothing
lost, nothing stored twice, no agent left after a stop) and writes every row to JSON and a
PNG. It asserts no speed: figures are for the benchmark to report, not for a timed test."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_host.py"
# The quick mode takes about 25 s on a busy two-core machine; this only bounds a hang.
RUN_TIMEOUT_S = 120
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SAMPLED = {
    "a.host_warm",
    "a.poll_1s_latency",
    "a.poll_10ms_latency",
    "c.agent_cpu",
    "d.cold_process",
    "rt.host_cold",
    "rt.host_warm",
    "rt.container_cold",
    "rt.container_events",
    "rt.container_poll",
    "rt.floor_file",
    "rt.floor_sqlite",
    "rt.sqlite_commit",
}
VALUED = {
    "a.poll_1s_cpu",
    "a.poll_10ms_cpu",
    "b.ingest_acked",
    "b.ingest_replied",
    "b.ceiling_each",
    "b.ceiling_grouped",
    "b.lost",
    "b.duplicated",
    "c.host_cpu",
    "c.agents_cpu_total",
    "e.stop_s",
    "e.leftover_agents",
}
SKIPPED_IN_QUICK = {"d.cold_docker", "d.warm_docker", "d.warm_docker_during_start", "e.stop_docker_s"}


def _run_quick(out: Path) -> tuple[int, str, str]:
    # As a person runs it: a file, in its own process; on a hang it gets SIGTERM first, so
    # its clean-up stops the host and the agents it started.
    child = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = child.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=30)
        pytest.fail(f"the quick bench did not finish within {RUN_TIMEOUT_S} s:\n{stdout}\n{stderr}")
    return child.returncode, stdout, stderr


def _check_row(row: dict[str, Any]) -> None:
    assert row["label"] and row["unit"], row
    if row["id"] in SAMPLED:
        assert row["n"] >= 1 and len(row["samples"]) == row["n"], row
        assert row["min"] <= row["median"] <= row["p99"] <= row["max"], row
    else:
        assert math.isfinite(row["value"]) and row["value"] >= 0, row


def test_the_quick_benchmark_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results"
    code, stdout, stderr = _run_quick(out)
    assert code == 0, f"exit {code}\n{stdout}\n{stderr}"

    document = json.loads((out / "bench.json").read_text())
    rows = {row["id"]: row for row in document["rows"]}
    assert set(rows) == SAMPLED | VALUED | SKIPPED_IN_QUICK, sorted(rows)
    for row_id in SAMPLED | VALUED:
        assert "skipped" not in rows[row_id], rows[row_id]
        _check_row(rows[row_id])
    for row_id in SKIPPED_IN_QUICK:
        assert rows[row_id]["skipped"], rows[row_id]
    assert rows["b.lost"]["value"] == 0 and rows["b.duplicated"]["value"] == 0
    assert rows["e.leftover_agents"]["value"] == 0
    assert document["checks"]["ingest_stored_rows"] == document["sizes"]["messages"]
    assert document["errors"] == [] and document["failed_checks"] == []

    machine = document["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"] and machine["python"], machine
    assert machine["disk"]["fs"], machine

    assert (out / "bench.png").read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC
    assert "median" in stdout and "a.host_warm" in stdout, stdout
