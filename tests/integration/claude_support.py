"""A whole host with the claude provider, its agents reaching the fake Messages API through
the host's own credential proxy: what the tests of the model path share."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from actors.config import HostConfig
from actors.host import Host, session_settings, start_host
from actors.runtime.base import AgentRuntime
from tests.fakes.fake_messages_api import FakeMessagesAPI

# What the proxy sends upstream; an agent never sees it.
REAL_KEY = "sk-test-real-key"


@contextmanager
def claude_host(
    data_dir: Path, runtime: AgentRuntime, api: FakeMessagesAPI, *, model: str | None = None, **settings: Any
) -> Iterator[Host]:
    """`model`: the host's default (HostConfig's when None); `settings` change the
    sessions' (a short `retry_base_s`, say). No proxy is handed in: start_host builds the
    credential proxy itself, as it does for provider "claude"."""
    config = HostConfig(
        data_dir=data_dir,
        runtime="process",
        provider="claude",
        api_key=REAL_KEY,
        base_url=api.base_url,
        idle_timeout_s=60,
        sweep_interval_s=3600,
    )
    if model is not None:
        config = dataclasses.replace(config, model=model)
    chosen = dataclasses.replace(session_settings(config, "claude"), **{"stop_timeout_s": 5.0, **settings})
    started = start_host(config, runtime=runtime, settings=chosen)
    try:
        yield started
    finally:
        started.stop()
