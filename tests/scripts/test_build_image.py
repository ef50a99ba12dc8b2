"""scripts/build_image.sh as `make run` and `make image` call it: each step with its time,
and, for `make run` (`--for-run`), one plain line on why agents run unisolated when there is
no engine, never a failure and never an engine installed or started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actors.runtime.docker import DockerRuntime
from actors.runtime.image import inspect_image

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_image.sh"

pytestmark = pytest.mark.timeout(60)

STEP = re.compile(r"^\[(\d)/4\] (.+?) \.\.\. (\d+\.\d) s \((.+)\)$")


def build(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("HUTCH_", "DOCKER_"))}
    # The wheels' interpreter: this one (the venv's), whatever PATH says.
    env.update(PYTHON=sys.executable, HUTCH_IMAGE_CACHE=str(tmp_path / "cache"), **settings)
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=50, check=False)


def test_make_run_without_an_engine_says_agents_run_unisolated_and_goes_on(tmp_path: Path) -> None:
    endpoint = f"unix://{tmp_path / 'no-engine.sock'}"

    done = build(tmp_path, "--for-run", DOCKER_HOST=endpoint, HUTCH_RUNTIME="auto")

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    step = STEP.match(lines[0])
    assert step is not None, lines
    assert step.group(2) == f"engine {endpoint}"
    assert step.group(4) == "failed"
    assert lines[1].startswith(f"build_image: no Docker engine reachable at {endpoint} (")
    assert lines[1].endswith(
        "): agents run as processes, unisolated; `make image` after starting one "
        "(scripts/ensure_docker.sh installs and starts one, as root)"
    )
    assert len(lines) == 2
    assert not (tmp_path / "cache").exists()  # nothing was built, installed or started


def test_make_image_without_an_engine_fails(tmp_path: Path) -> None:
    done = build(tmp_path, DOCKER_HOST=f"unix://{tmp_path / 'no-engine.sock'}")
    assert done.returncode == 1
    assert "build_image: error: no Docker engine reachable at" in done.stderr


def test_make_run_with_the_process_runtime_builds_nothing(tmp_path: Path) -> None:
    done = build(tmp_path, "--for-run", DOCKER_HOST=f"unix://{tmp_path / 'no-engine.sock'}", HUTCH_RUNTIME="process")
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "build_image: HUTCH_RUNTIME=process: no agent image needed; agents run as processes, unisolated"
    ]


def test_make_run_with_docker_asked_for_says_the_host_will_not_start(tmp_path: Path) -> None:
    done = build(tmp_path, "--for-run", DOCKER_HOST=f"unix://{tmp_path / 'no-engine.sock'}", HUTCH_RUNTIME="docker")
    assert done.returncode == 0
    assert "HUTCH_RUNTIME=docker, so the host will not start without an engine and an image" in done.stderr


@pytest.mark.docker
def test_a_current_image_is_confirmed_in_four_timed_steps(tmp_path: Path) -> None:
    """Only where the image is already this code's: the test must not rebuild the image other
    tests use. The wheels go to a cache of the test's own, so that step builds them."""
    if DockerRuntime.available() is not None:
        pytest.skip(DockerRuntime.available() or "")
    status = inspect_image()
    if status.state != "current":
        pytest.skip(f"the image is {status.state}: `make image` first")

    done = build(tmp_path)

    assert done.returncode == 0, done.stderr
    steps = [STEP.match(line) for line in done.stderr.splitlines()]
    timed = [(int(step.group(1)), step.group(2), step.group(4)) for step in steps if step is not None]
    assert [(number, name.split(" ")[0]) for number, name, _ in timed if number != 3] == [
        (1, "engine"),
        (2, "base"),
        (4, "agent"),
    ]
    assert timed[-1][2] == f"current, source {status.wanted}"
    assert done.stderr.splitlines()[-1].startswith("build_image: hutch-agent:latest ready in ")
