"""The aiohttp parts' thread: start returns once serving, or raises what stopped it; stop
runs the shutdown step in the loop's own thread and is harmless twice."""

from __future__ import annotations

import asyncio
import threading

import pytest

from actors.loop_thread import LoopThread

pytestmark = pytest.mark.timeout(20)


def test_serve_then_shutdown_run_in_the_loops_thread() -> None:
    seen: list[tuple[str, str]] = []

    async def serve() -> None:
        seen.append(("serve", threading.current_thread().name))

    async def shutdown() -> None:
        seen.append(("shutdown", threading.current_thread().name))

    server = LoopThread("test-loop", serve, shutdown)
    server.start(5)
    assert seen == [("serve", "test-loop")]
    server.stop(5)
    assert seen == [("serve", "test-loop"), ("shutdown", "test-loop")]
    server.stop(5)  # twice is harmless


def test_a_failing_serve_is_raised_by_start_and_nothing_keeps_running() -> None:
    async def serve() -> None:
        raise OSError("address in use")

    async def shutdown() -> None:
        raise AssertionError("never served, so never shut down")

    server = LoopThread("test-loop-fails", serve, shutdown)
    with pytest.raises(OSError, match="address in use"):
        server.start(5)
    assert not any(thread.name == "test-loop-fails" for thread in threading.enumerate())


def test_a_serve_that_hangs_is_a_timeout() -> None:
    release = threading.Event()

    async def serve() -> None:
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)

    async def shutdown() -> None:
        return None

    server = LoopThread("test-loop-hangs", serve, shutdown)
    with pytest.raises(TimeoutError, match=r"did not start within 0\.2 s"):
        server.start(0.2)
    release.set()


def test_an_app_site_serves_on_the_port_chosen_and_leaves_nothing_when_it_cannot_listen() -> None:
    from aiohttp import web

    from actors.loop_thread import AppSite

    first = AppSite(web.Application, "127.0.0.1", 0)
    server = LoopThread("site", first.serve, first.shutdown)
    server.start(5)
    try:
        assert first.port is not None and first.port > 0
        taken = AppSite(web.Application, "127.0.0.1", first.port)
        with pytest.raises(OSError):
            LoopThread("taken", taken.serve, taken.shutdown).start(5)
        assert taken.port is None
    finally:
        server.stop(5)
