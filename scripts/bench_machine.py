"""Shared by the benchmarks: what they say about the machine they ran on, and how they
summarise samples."""

from __future__ import annotations

import math
import platform
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
