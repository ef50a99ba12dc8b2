"""Shared by the benchmarks: what they say about the machine they ran on, and how they
summarise samples."""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import statistics
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name: platform.processor() is often empty on Linux, /proc/cpuinfo has it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest rank: a value that was measured, never an interpolation."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def print_table(heading: str, rows: list[tuple[str, list[float]]]) -> None:
    """The machine, then one line per row: its samples' count, median and p99 (ms)."""
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}")
    print(f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    width = max(len(label) for label, _ in rows)
    print(f"{heading:<{width}}  {'n':>4}  {'median ms':>10}  {'p99 ms':>10}")
    for label, samples in rows:
        median, p99 = statistics.median(samples), percentile(samples, 0.99)
        print(f"{label:<{width}}  {len(samples):>4}  {median:>10.2f}  {p99:>10.2f}")
