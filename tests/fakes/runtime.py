"""A fake AgentRuntime: nothing runs, the test decides when and how an agent ends.

`stop()` ends the agent with 0 and `kill()` with -9, both calling `on_exit` at once (on the
caller's thread, as if the exit had been confirmed immediately); `crash(code)` plays an agent
that died on its own and calls `on_exit` from another thread, as a real runtime's watcher
does. `on_exit` is called at most once per handle, whatever happens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from actors.runtime.base import AgentSpec, RuntimeStartError


class FakeHandle:
    def __init__(self, spec: AgentSpec, on_exit: Callable[[int], None], ident: str) -> None:
        self.spec = spec
        self._on_exit = on_exit
        self._ident = ident
        self._lock = threading.Lock()
        self.exit_code: int | None = None
        self.stop_calls = 0
        self.kill_calls = 0

    @property
    def ident(self) -> str:
        return self._ident

    def alive(self) -> bool:
        with self._lock:
            return self.exit_code is None

    def stop(self, timeout_s: float = 10) -> int | None:
        with self._lock:
            self.stop_calls += 1
        self._exit(0)
        return self.exit_code

    def kill(self) -> None:
        with self._lock:
            self.kill_calls += 1
        self._exit(-9)

    def crash(self, code: int) -> None:
        """The agent dies by itself; returns once `on_exit` has been called (from another thread)."""
        thread = threading.Thread(target=self._exit, args=(code,), name=f"crash-{self._ident}")
        thread.start()
        thread.join(timeout=10)

    def _exit(self, code: int) -> None:
        with self._lock:
            if self.exit_code is not None:
                return
            self.exit_code = code
        self._on_exit(code)


class FakeRuntime:
    """Records every spec it is asked to start and hands out `FakeHandle`s.

    `fail_next_start` makes the next `start` raise `RuntimeStartError`; `on_start`, if set,
    is called with the spec before the handle is made (e.g. to look at the session folder).
    """

    name = "fake"
    isolates = True

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.specs: list[AgentSpec] = []
        self.handles: list[FakeHandle] = []
        self.fail_next_start = False
        self.failed_starts = 0
        self.on_start: Callable[[AgentSpec], None] | None = None

    def cleanup_orphans(self) -> list[str]:
        return []

    def start(self, spec: AgentSpec, on_exit: Callable[[int], None]) -> FakeHandle:
        with self._changed:
            if self.fail_next_start:
                self.fail_next_start = False
                self.failed_starts += 1
                raise RuntimeStartError(f"fake runtime refused to start {spec.tag}")
            hook = self.on_start
        if hook is not None:
            hook(spec)  # outside the lock: a hook may hang, as a slow engine does, for one session only
        with self._changed:
            handle = FakeHandle(spec, on_exit, f"fake-{len(self.handles) + 1}")
            self.specs.append(spec)
            self.handles.append(handle)
            self._changed.notify_all()
            return handle

    def wait_for_starts(self, count: int, timeout: float = 10) -> list[FakeHandle]:
        """Block until at least `count` agents have been started; returns all handles."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.handles) >= count, timeout):
                raise TimeoutError(f"{len(self.handles)} agent(s) started, expected {count}")
            return list(self.handles)

    def handles_of(self, session_id: str) -> list[FakeHandle]:
        with self._changed:
            return [handle for handle in self.handles if handle.spec.session_id == session_id]
