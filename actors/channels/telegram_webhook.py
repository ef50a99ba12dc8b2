"""The HTTP side of the Telegram channel's webhook mode: the small aiohttp server Telegram's
requests reach (through a reverse proxy that terminates HTTPS).

It runs on the channel's own event loop (see `telegram.py`) and knows nothing of Telegram's
updates beyond their being JSON objects with an `update_id`: each request it accepts is
handed to `take`, and the answer says whether Telegram may forget the update. What it
refuses, nothing is handed over for:

- anything but POST: 405;
- a missing or wrong `X-Telegram-Bot-Api-Secret-Token` (the secret setWebhook was given;
  compared in constant time, before the body is read): 401;
- a body over `MAX_UPDATE_BYTES` (from Content-Length before reading, and again while
  reading): 413;
- not a JSON object with an integer `update_id`: 400;
- more than `MAX_CONCURRENT` requests at once: 503. setWebhook tells Telegram to open at
  most that many connections, and a slot is free again before its answer is sent, so
  Telegram itself never meets this; whatever else holds the secret cannot pile up work.

Any path is served: a reverse proxy may forward the public URL's path as it is or strip it,
and the secret is what authenticates a request.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

log = logging.getLogger(__name__)

SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"
# An update is a few kilobytes at most (a 4096-character text and its entities).
MAX_UPDATE_BYTES: Final = 1024 * 1024
MAX_CONCURRENT: Final = 8
# How long stopping lets requests in flight finish (they end within a fraction of a second
# once the channel is closing: see `telegram._settle`) before they are cut.
_SHUTDOWN_S: Final = 1.0

# Handles one update; True once Telegram may forget it (answered 200), False when Telegram
# should send it again (answered 503).
Take = Callable[[dict[str, Any]], Awaitable[bool]]


class WebhookServer:
    """Listens on `listen` (host, port; port 0: one the system picks, then `port`)."""

    def __init__(self, listen: tuple[str, int], secret: str, take: Take) -> None:
        self._host, self._requested_port = listen
        self._secret = secret.encode()
        self._take = take
        self._busy = 0  # requests being handled; touched on the loop only
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int | None:
        """The port listened on, once started."""
        return self._port

    async def start(self) -> None:
        """Listen; OSError when the address cannot be had."""
        app = web.Application(client_max_size=MAX_UPDATE_BYTES)
        app.router.add_route("*", "/{path:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_S)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return _answer(405, "only POST")
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("telegram: refused a webhook request without the right secret")
            return _answer(401, "wrong secret")
        if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
            return _answer(413, f"at most {MAX_UPDATE_BYTES} bytes")
        if self._busy >= MAX_CONCURRENT:
            log.warning("telegram: %d webhook requests at once already; refusing another", self._busy)
            return _answer(503, "busy; send it again")
        self._busy += 1
        try:
            return await self._take_request(request)
        finally:
            self._busy -= 1

    async def _take_request(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(413, f"at most {MAX_UPDATE_BYTES} bytes")
        update: Any = None
        with contextlib.suppress(ValueError):  # UnicodeDecodeError is one
            update = json.loads(body)
        if not isinstance(update, dict) or type(update.get("update_id")) is not int:
            return _answer(400, "not a Telegram update")
        if await self._take(update):
            return web.Response(status=200)
        return _answer(503, "not stored; send it again")


def _answer(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
