from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.runtime.docker import DockerRuntime
from tests.attacks.hostile import ATTACKER, BYSTANDER, AttackRun

# Every attack runs against each runtime unless a test names one: "as a writer into the
# session folder" (process) and "as the container's user" (docker).
DOCKER = pytest.param("docker", marks=pytest.mark.docker, id="docker")
RUNTIMES = ["process", DOCKER]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Unix socket paths must stay short: pytest's tmp_path can be too long for cli.sock.
    with tempfile.TemporaryDirectory(prefix="hutch-attack-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.fixture
def host_files() -> Iterator[Path]:
    """Stands in for the host's own files (/etc and the like) that an agent must never reach;
    on the data folder's file system, so a hard link to one can be made."""
    with tempfile.TemporaryDirectory(prefix="hutch-host-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def docker_client(runtime: str) -> Iterator[Any]:
    if runtime != "docker":
        yield None
        return
    reason = DockerRuntime.available()
    if reason is not None:
        pytest.skip(f"the Docker runtime's attacks need an engine and the agent image: {reason}")
    import docker

    client = docker.from_env()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def attack(data_dir: Path, runtime: str, docker_client: Any) -> Iterator[AttackRun]:
    """A host with two live sessions, each answered once: the attacker's and a bystander's."""
    run = AttackRun(data_dir, runtime, docker_client)
    try:
        run.start()
        run.ask(ATTACKER, "hello")
        run.ask(BYSTANDER, "hello")
        yield run
    finally:
        run.close()
