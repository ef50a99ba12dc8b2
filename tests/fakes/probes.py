"""Small probes shared by tests: a state store in memory, an exit-code recorder for runtime
handles, and a log handler that fires on a line."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any


class MemoryState:
    """A StateStore (container_runner.providers.base) kept in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def load(self, key: str) -> str | None:
        return self.values.get(key)

    def save(self, key: str, value: str) -> None:
        self.values[key] = value

    def stage(self, key: str, value: str) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class Exits:
    """Records on_exit calls; `wait()` returns the first code."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self._done = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self._done.set()

    def wait(self, timeout: float = 60) -> int:
        assert self._done.wait(timeout), "on_exit was not called"
        return self.codes[0]


class LineWaiter(logging.Handler):
    """Fires when a log line containing `needle` is emitted."""

    def __init__(self, needle: str, timeout: float = 60) -> None:
        super().__init__()
        self.needle = needle
        self.timeout = timeout
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()

    def wait(self) -> None:
        assert self.seen.wait(self.timeout), f"never logged {self.needle!r}"


def poll(
    what: str,
    check: Callable[[], Any],
    timeout_s: float,
    interval_s: float = 0.02,
    error: type[AssertionError] = AssertionError,
) -> Any:
    """Bounded poll of real state where no event exists: `check()`'s first truthy value, or
    `error` naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
