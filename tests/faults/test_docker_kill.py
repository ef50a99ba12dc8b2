"""`docker kill` an agent's container in the middle of a turn, on the real Docker runtime.

The host runs as in test_kills.py (`python -m actors.main`, mock provider), but with
HUTCH_RUNTIME=docker: its agents run in containers of the hutch-agent image, which share
nothing with the host but the session folder. A container killed by the engine is not the
host's child, so the host learns of its end only from the engine; this checks that it then
starts the agent again and that the message is answered once.

Skipped, with the reason, when no engine answers or the image is missing
(`DockerRuntime.available()`, the rule the host itself uses; scripts/ensure_docker.sh starts
an engine and builds the image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.runtime.docker import DockerRuntime
from tests.faults.harness import FaultRun, docker_containers, finish, poll, processing_claims, session_layouts

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.timeout(240)]

SLEEP_S = 3
TOOL_TURN = f'!tool bash {{"command": "sleep {SLEEP_S}"}}'
# A first container start may pull nothing but still takes a few seconds on a cold engine.
START_TIMEOUT_S = 60.0


@pytest.fixture
def docker_engine() -> None:
    reason = DockerRuntime.available()
    if reason is not None:
        pytest.skip(reason)


def _running(data_dir: Path, session_id: str) -> list[Any]:
    return [container for container in docker_containers(data_dir, session_id) if container.status == "running"]


def _runs_the_tool(container: Any) -> bool:
    """`sleep` is among the container's processes (`docker top`): the turn is in its tool."""
    processes = container.top().get("Processes") or []
    return any(f"sleep {SLEEP_S}" in " ".join(process) for process in processes)


def _gone(data_dir: Path, container_id: str) -> bool:
    """Ended: removed by the host's waiter, or at least no longer running."""
    return all(
        container.status != "running" for container in docker_containers(data_dir) if container.id == container_id
    )


@pytest.mark.usefixtures("docker_engine")
def test_container_killed_mid_turn(data_dir: Path) -> None:
    """The engine SIGKILLs the agent's container while its bash tool runs (its claim is on
    disk, its turn unfinished): the host notices from the engine, starts a new container on
    its own, and the message is answered exactly once; every DB is intact."""
    with FaultRun(data_dir, runtime="docker") as run:
        run.send(f"container killed mid turn\n{TOOL_TURN}")
        poll("the container's claim", lambda: processing_claims(data_dir), timeout_s=START_TIMEOUT_S)
        session_id = session_layouts(data_dir)[0].root.name
        containers = _running(data_dir, session_id)
        assert len(containers) == 1, containers
        killed = containers[0]
        poll("the bash tool to run", lambda: _runs_the_tool(killed))
        killed.kill()  # `docker kill`: SIGKILL
        poll(f"container {killed.short_id} to end", lambda: _gone(data_dir, killed.id))
        # Nothing but the killed container writes the claim's end: still open, so it was mid-turn.
        assert processing_claims(data_dir) == 1, run.summary()

        run.await_answer("container killed mid turn")
        restarted = poll(
            "a new container for the session",
            lambda: [container for container in _running(data_dir, session_id) if container.id != killed.id],
        )
        print(f"container {killed.short_id} killed; {restarted[0].short_id} answered")
        finish(run, "container killed mid turn")
