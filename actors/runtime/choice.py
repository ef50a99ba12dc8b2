"""Which runtime the host uses for what the configuration asks (`HUTCH_RUNTIME`), given what
the engine says about the agent image: one rule, for the host's start and `hutch doctor`.

`auto` means isolation where it can be had: Docker when an engine answers and its image is
this code's; otherwise the process runtime, and the host says why in one warning. An image
built from other sources counts as absent for `auto`: its runner may not speak this host's
protocol. `docker` asked for explicitly is used with a stale image (with a warning), and is
an error without an engine or an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from actors.runtime.image import ImageStatus

UNISOLATED = "agents run as plain child processes of the host, unisolated"


@dataclass(frozen=True)
class RuntimeChoice:
    """`runtime` None: the host cannot run as configured, and `error` says why."""

    runtime: Literal["docker", "process"] | None
    warning: str | None = None
    note: str | None = None
    error: str | None = None


def decide_runtime(wanted: str, status: ImageStatus | None) -> RuntimeChoice:
    """`status` may be None only for `process`, which needs no engine."""
    if wanted == "process" or status is None:
        return RuntimeChoice("process", warning=f"runtime process (HUTCH_RUNTIME=process): {UNISOLATED}")
    state = status.state
    if state == "current":
        return RuntimeChoice("docker", note=f"runtime {wanted}: agents run in containers of {status.image}")
    if state == "unknown":
        return RuntimeChoice("docker", note=f"runtime {wanted}: {status.problem}; using it")
    if wanted == "docker":
        if state == "stale":
            return RuntimeChoice(
                "docker", warning=f"runtime docker: {status.problem}; agents run its older runner ({status.fix})"
            )
        return RuntimeChoice(None, error=f"HUTCH_RUNTIME=docker but {status.problem} ({status.fix})")
    return RuntimeChoice(
        "process", warning=f"runtime auto: {UNISOLATED}, because {status.problem}; for isolation: {status.fix}"
    )
