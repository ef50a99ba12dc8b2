from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.config import HostConfig
from actors.host import Host, session_settings, start_host
from actors.runtime.base import AgentHandle, AgentSpec
from actors.runtime.process import ProcessRuntime


class RecordingProcessRuntime(ProcessRuntime):
    """The real process runtime; it also remembers its handles so a test can kill an agent."""

    def __init__(self) -> None:
        super().__init__()
        self.handles: list[AgentHandle] = []

    def start(self, spec: AgentSpec, on_exit: Any) -> AgentHandle:
        handle = super().start(spec, on_exit)
        self.handles.append(handle)
        return handle


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Unix socket paths must stay short: pytest's tmp_path can be too long for cli.sock.
    with tempfile.TemporaryDirectory(prefix="hutch-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.fixture
def host_config(data_dir: Path) -> HostConfig:
    return HostConfig(data_dir=data_dir, runtime="process", provider="mock", idle_timeout_s=60, sweep_interval_s=3600)


@pytest.fixture
def runtime() -> RecordingProcessRuntime:
    return RecordingProcessRuntime()


@pytest.fixture
def host(host_config: HostConfig, runtime: RecordingProcessRuntime) -> Iterator[Host]:
    settings = dataclasses.replace(session_settings(host_config, "mock"), retry_base_s=0.2, stop_timeout_s=5)
    started = start_host(host_config, runtime=runtime, settings=settings)
    try:
        yield started
    finally:
        started.stop()
