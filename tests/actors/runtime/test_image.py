"""The agent image's source hash (one definition for the build script, the host and `hutch
doctor`), what an engine says about the image, and the runtime the host takes for it: `auto`
falls back to processes, once, at WARNING, saying why."""

from __future__ import annotations

import importlib.metadata
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actors.config import HostConfig
from actors.host import choose_runtime
from actors.runtime.choice import decide_runtime
from actors.runtime.image import (
    AGENT_IMAGE,
    HOST_ONLY,
    REPO_ROOT,
    ImageStatus,
    inspect_image,
    normalised,
    pinned_requirements,
    source_hash,
)
from actors.runtime.process import ProcessRuntime

pytestmark = pytest.mark.timeout(60)

PINS = ["pykka==4.0.0"]


def _tree(root: Path) -> Path:
    (root / "agent-image").mkdir(parents=True)
    (root / "agent-image" / "Dockerfile").write_text("FROM base\n")
    for package in ("protocol", "container_runner"):
        (root / package / "__pycache__").mkdir(parents=True)
        (root / package / "__init__.py").write_text(f"# {package}\n")
        (root / package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")
    return root


# -- the hash -----------------------------------------------------------------------------------


def test_the_hash_covers_sources_dockerfile_and_requirements_and_nothing_else(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    first = source_hash(root, PINS)
    assert first is not None and len(first) == 16
    assert source_hash(root, PINS) == first

    # Compiled files and anything outside the three sources leave it alone.
    (root / "protocol" / "__pycache__" / "y.pyc").write_bytes(b"more")
    (root / "protocol" / "stray.pyc").write_bytes(b"more")
    (root / "actors").mkdir()
    (root / "actors" / "host.py").write_text("host only\n")
    assert source_hash(root, PINS) == first

    changes = {
        "a runner file": lambda: (root / "container_runner" / "__init__.py").write_text("# changed\n"),
        "a new protocol file": lambda: (root / "protocol" / "new.py").write_text(""),
        "the Dockerfile": lambda: (root / "agent-image" / "Dockerfile").write_text("FROM other\n"),
    }
    seen: set[str | None] = {first}
    for change in changes.values():
        change()
        now = source_hash(root, PINS)
        assert now not in seen
        seen.add(now)
    assert source_hash(root, ["pykka==4.0.1"]) not in seen


def test_no_dockerfile_no_hash(tmp_path: Path) -> None:
    assert source_hash(tmp_path, PINS) is None


def test_the_pinned_requirements_are_the_runners_and_what_they_need_at_the_installed_versions() -> None:
    pins = pinned_requirements()
    names = {line.split("==")[0] for line in pins}
    assert f"pykka=={importlib.metadata.version('pykka')}" in pins
    assert f"anthropic=={importlib.metadata.version('anthropic')}" in pins
    # What anthropic itself needs comes along, pinned too.
    requires = [line for line in importlib.metadata.requires("anthropic") or [] if "extra" not in line]
    anthropic_needs = {normalised(re.match(r"[A-Za-z0-9._-]+", line).group(0)) for line in requires}  # type: ignore[union-attr]
    installed = {name for name in anthropic_needs if _installed(name)}
    assert installed and installed <= names
    assert not names & HOST_ONLY
    assert [line.split("==")[0] for line in pins] == sorted(names)


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_the_build_scripts_way_in_gives_the_same_hash() -> None:
    before = source_hash()
    printed = subprocess.run(
        [sys.executable, "-m", "actors.runtime.image", "hash"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Others may edit the working tree meanwhile: the hash of before or after is the same code.
    assert printed in {before, source_hash()}
    listed = subprocess.run(
        [sys.executable, "-m", "actors.runtime.image", "requirements"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == pinned_requirements()


# -- the engine ---------------------------------------------------------------------------------


def test_an_engine_that_is_not_there_is_an_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"unix://{tmp_path / 'no-engine.sock'}"
    monkeypatch.setenv("DOCKER_HOST", endpoint)
    status = inspect_image(timeout=5)
    assert status.state == "no-engine"
    assert status.problem is not None
    assert status.problem.startswith(f"no Docker engine reachable at {endpoint} (")
    assert "ensure_docker.sh" in status.fix


def _status(**fields: object) -> ImageStatus:
    return ImageStatus("unix:///var/run/docker.sock", AGENT_IMAGE, **fields)  # type: ignore[arg-type]


NO_ENGINE = _status(engine_error="connection refused")
MISSING = _status(engine_version="28.2")
STALE = _status(engine_version="28.2", present=True, built_from="aaaa", wanted="bbbb")
CURRENT = _status(engine_version="28.2", present=True, built_from="bbbb", wanted="bbbb")
UNKNOWN = _status(engine_version="28.2", present=True, built_from="aaaa", wanted=None)


def test_states_and_their_words() -> None:
    assert [status.state for status in (NO_ENGINE, MISSING, STALE, CURRENT, UNKNOWN)] == [
        "no-engine",
        "missing",
        "stale",
        "current",
        "unknown",
    ]
    assert CURRENT.problem is None
    assert STALE.problem == "the agent image hutch-agent:latest is stale (built from aaaa, this code is bbbb)"
    assert MISSING.problem == "the agent image hutch-agent:latest is not built"
    assert STALE.fix == MISSING.fix == "make image"


@pytest.mark.parametrize("status", [NO_ENGINE, MISSING, STALE], ids=["no engine", "missing", "stale"])
def test_auto_falls_back_to_processes_saying_why(status: ImageStatus) -> None:
    choice = decide_runtime("auto", status)
    assert choice.runtime == "process"
    assert choice.warning is not None
    assert "unisolated" in choice.warning or "nothing isolated" in choice.warning
    assert status.problem is not None and status.problem in choice.warning
    assert status.fix in choice.warning


@pytest.mark.parametrize("status", [CURRENT, UNKNOWN], ids=["current", "unknown"])
def test_auto_takes_docker_when_the_image_is_there(status: ImageStatus) -> None:
    choice = decide_runtime("auto", status)
    assert choice.runtime == "docker"
    assert choice.warning is None


def test_docker_asked_for() -> None:
    assert decide_runtime("docker", CURRENT).runtime == "docker"
    stale = decide_runtime("docker", STALE)
    assert stale.runtime == "docker"
    assert stale.warning is not None and "older runner" in stale.warning
    for status in (NO_ENGINE, MISSING):
        refused = decide_runtime("docker", status)
        assert refused.runtime is None
        assert refused.error is not None and refused.error.startswith("HUTCH_RUNTIME=docker but ")


def test_process_asked_for_needs_no_engine() -> None:
    choice = decide_runtime("process", None)
    assert choice.runtime == "process"
    assert choice.warning is not None and "HUTCH_RUNTIME=process" in choice.warning


def test_the_host_says_once_at_warning_why_auto_runs_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = f"unix://{tmp_path / 'no-engine.sock'}"
    monkeypatch.setenv("DOCKER_HOST", endpoint)
    caplog.set_level(logging.INFO, logger="hutch")

    runtime = choose_runtime(HostConfig(data_dir=tmp_path / "data", runtime="auto"))

    assert isinstance(runtime, ProcessRuntime)
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    about = [message for message in warnings if "runtime auto" in message]
    assert len(about) == 1, warnings
    assert f"no Docker engine reachable at {endpoint}" in about[0]
    assert "unisolated" in about[0]


def test_the_host_refuses_docker_without_an_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    with pytest.raises(SystemExit, match="HUTCH_RUNTIME=docker but no Docker engine reachable"):
        choose_runtime(HostConfig(data_dir=tmp_path / "data", runtime="docker"))
