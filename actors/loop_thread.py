"""An asyncio server run in a thread of its own, for the parts of the host built on aiohttp
(the webhook endpoint, the control page): nothing they do blocks an actor, and an actor
never waits on their loop beyond start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable

Step = Callable[[], Awaitable[None]]


class LoopThread:
    """Runs `serve` on a new event loop in a daemon thread, then the loop until `stop`, then
    `shutdown`. `start` returns once `serve` has finished (the server listens) and raises
    what kept it from doing so; `TimeoutError` when it did not finish in time."""

    def __init__(
        self, name: str, serve: Callable[[], Awaitable[None]], shutdown: Callable[[], Awaitable[None]]
    ) -> None:
        self._name = name
        self._serve = serve
        self._shutdown = shutdown
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def start(self, timeout_s: float) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start(), which raises it
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        thread = threading.Thread(target=run, name=self._name, daemon=True)
        thread.start()
        if not ready.wait(timeout_s):
            raise TimeoutError(f"{self._name} did not start within {timeout_s:g} s")
        if failure:
            thread.join(timeout_s)
            raise failure[0]
        self._loop, self._thread = loop, thread

    def stop(self, timeout_s: float) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
