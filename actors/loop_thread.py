"""An asyncio server run in a thread of its own, for the parts of the host built on aiohttp
(the webhook endpoint, the control page): nothing they do blocks an actor, and an actor
never waits on their loop beyond start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

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


class AppSite:
    """An aiohttp application listening on `host:port`, its two steps to hand a LoopThread:
    `serve` sets it up (and leaves nothing behind when it cannot listen), `shutdown` tears
    it down. `port` is the one listened on (the system's choice when 0 was asked)."""

    def __init__(
        self, make_app: Callable[[], web.Application], host: str, port: int, *, shutdown_timeout_s: float = 60.0
    ) -> None:
        self._make_app = make_app
        self._host = host
        self._port = port
        self._shutdown_timeout_s = shutdown_timeout_s
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def serve(self) -> None:
        runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=self._shutdown_timeout_s)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
