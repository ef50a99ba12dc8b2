"""Webhooks into agents: `POST /hooks/<route>` on 127.0.0.1, signed as GitHub signs
(`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body with the route's secret>`).

The route names its agent group (`webhook_routes` in the central DB, made with `hutch hooks`)
and is looked up per request, so a route made or removed counts from the next one. A request
is answered only after its row is committed (202), or refused with nothing written:

- anything but POST: 405; an unknown route: 404; a bad or missing signature: 401;
- a body past `MAX_BODY_BYTES` as sent (decided from Content-Length before the body is read,
  and again while reading), or past the protocol's cap once stored: 413. The row holds the
  body as JSON (a JSON body parsed and written compactly, any other as a JSON string, where
  quotes, backslashes, control characters and bytes that are not UTF-8 take more room), and
  a row is at most `MAX_CONTENT_BYTES` (256 KiB): sending it again cannot help;
- JSON nested deeper than `MAX_JSON_DEPTH`: 400;
- a host that cannot take it now (shutting down, its database busy, no answer within 15 s):
  503, which a sender may retry.

The server is aiohttp on an event loop in a thread of its own; nothing it does blocks an
actor. Webhooks have no conversation to answer into: what an agent says back to a webhook
turn is logged, not sent.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import pykka
from aiohttp import web

from actors.channels.base import Card, ChannelError, InboundWebhook, OnEvent
from actors.inbound_router import RoutingError
from actors.loop_thread import AppSite, LoopThread
from actors.store.db import StoreError
from actors.store.webhook_routes import WebhookRoute
from protocol.content import MAX_CONTENT_BYTES, ContentError, WebhookIn, encode_content
from protocol.json_depth import nests_deeper
from protocol.rows import Routing

log = logging.getLogger("hutch.webhook")

SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
# The payload is stored as a row: it must fit the protocol's cap with room for the envelope.
# What is stored can be larger than what was sent (see the module's text), so the stored
# form is measured too.
MAX_BODY_BYTES: Final = MAX_CONTENT_BYTES - 4096
# Far deeper than any sender's payload; deep enough nesting makes a decoder recurse past
# Python's limit (RecursionError), here or in the agent that reads the row.
MAX_JSON_DEPTH: Final = 64
# The event name headers of the senders people use most; the first one present is kept.
_EVENT_HEADERS: Final = ("X-GitHub-Event", "X-Gitlab-Event", "X-Event-Key", "X-Hook-Event")
_STORE_TIMEOUT_S: Final = 15.0
_START_TIMEOUT_S: Final = 10.0

RouteLookup = Callable[[str], WebhookRoute | None]


def signature(secret: str, body: bytes) -> str:
    """The header value a sender puts on `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    """Receives webhooks; `lookup` finds a route (and its secret) by name."""

    channel_type: Final = "webhook"

    def __init__(self, lookup: RouteLookup, *, host: str = "127.0.0.1", port: int = 8787) -> None:
        self._lookup = lookup
        self._host = host
        self._port = port
        self._on_event: OnEvent | None = None
        self._site = AppSite(self._app, host, port)
        self._server: LoopThread | None = None

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset()

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system when 0 was asked)."""
        if self._site.port is None:
            raise ChannelError("the webhook endpoint is not running")
        return self._site.port

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, on_event: OnEvent) -> None:
        self._on_event = on_event
        server = LoopThread("webhook", self._site.serve, self._site.shutdown)
        try:
            server.start(_START_TIMEOUT_S)
        except TimeoutError:
            raise ChannelError("the webhook endpoint did not start", retryable=False) from None
        except Exception as exc:
            where = f"{self._host}:{self._port}"
            raise ChannelError(f"cannot listen for webhooks on {where}: {exc}", retryable=False) from exc
        self._server = server
        log.info("webhooks: listening on http://%s:%d/hooks/<route>", self._host, self.port)

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/hooks/{route}", self._handle)
        return app

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(_START_TIMEOUT_S)

    # --- requests ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        route_name = request.match_info["route"]
        if request.method != "POST":
            return _answer(405, "only POST")
        route = self._lookup(route_name)
        if route is None:
            return _answer(404, "no such route")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _answer(413, f"at most {MAX_BODY_BYTES} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(413, f"at most {MAX_BODY_BYTES} bytes")
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(given.encode(), signature(route.secret, body).encode()):
            log.warning("webhooks: refused a badly signed request for route %r", route_name)
            return _answer(401, "bad signature")
        try:
            payload = _payload(request, body)
        except _NotTakenError as exc:
            log.warning("webhooks: refused a body for route %r: %s", route_name, exc)
            return _answer(400, str(exc))
        event = InboundWebhook(route=route_name, payload=payload, event=_event_name(request))
        stored_size = len(encode_content(WebhookIn(source=route_name, payload=payload, event=event.event)).encode())
        if stored_size > MAX_CONTENT_BYTES:
            why = f"the body is {stored_size} bytes once stored, more than {MAX_CONTENT_BYTES}"
            log.warning("webhooks: refused a body for route %r: %s", route_name, why)
            return _answer(413, why)
        return await self._hand_over(event)

    async def _hand_over(self, event: InboundWebhook) -> web.Response:
        assert self._on_event is not None
        stored = self._on_event(event)
        # pykka's future only blocks; a pool thread waits on it (the pool is bounded).
        wait = functools.partial(stored.get, timeout=_STORE_TIMEOUT_S)
        try:
            row = await asyncio.get_running_loop().run_in_executor(None, wait)
        except pykka.Timeout:
            log.warning("webhooks: %r not taken: the host did not store it within %g s", event.route, _STORE_TIMEOUT_S)
            return _answer(503, "the host did not take it in time; send it again")
        except ContentError as exc:  # measured above already; the session's own check agrees
            log.warning("webhooks: %r not taken: %s", event.route, exc)
            return _answer(413, f"not taken: {exc}")
        except RoutingError as exc:
            if self._lookup(event.route) is None:  # removed since it was looked up
                return _answer(404, "no such route")
            log.warning("webhooks: %r not taken: %s", event.route, exc)
            return _answer(503, f"not taken now: {exc}")
        except (pykka.ActorDeadError, StoreError, sqlite3.Error, OSError) as exc:
            # A session stopping, the database busy or the disk full: the next try can work.
            log.warning("webhooks: %r not taken now: %s", event.route, exc)
            return _answer(503, f"not taken now, send it again: {exc}")
        except Exception:
            log.exception("webhooks: %r not taken", event.route)
            return _answer(500, "the host failed to store it")
        row_id = getattr(row, "id", None)
        return web.json_response({"status": "accepted", "id": row_id}, status=202)

    # --- sends: a webhook has nobody to answer ----------------------------------------------

    def send_text(self, to: Routing, text: str, files: tuple[Path, ...] = ()) -> str | None:
        log.info("webhooks: the agent answered route %r: %s", to.platform_id, text[:500])
        return None

    def edit_text(self, to: Routing, platform_message_id: str, text: str) -> None:
        raise ChannelError("webhooks cannot edit", retryable=False)

    def add_reaction(self, to: Routing, platform_message_id: str, emoji: str) -> None:
        raise ChannelError("webhooks cannot react", retryable=False)

    def ask_question(self, to: Routing, question_id: str, question: str, options: tuple[str, ...]) -> str | None:
        raise ChannelError("nobody is there to answer a question on a webhook", retryable=False)

    def send_card(self, to: Routing, card: Card) -> str | None:
        return self.send_text(to, f"{card.title}: {card.text}")

    def show_typing(self, to: Routing) -> None:
        return None


class _NotTakenError(ValueError):
    """A body that will not be taken however often it is sent (400)."""


def _payload(request: web.Request, body: bytes) -> Any:
    """JSON when it is JSON, else the text; _NotTakenError for JSON nested too deep."""
    if request.content_type == "application/json" or body[:1] in (b"{", b"["):
        if nests_deeper(body, MAX_JSON_DEPTH):
            raise _NotTakenError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            return json.loads(body)
        except RecursionError:  # nests_deeper should have said so; never a 500
            raise _NotTakenError("JSON nested too deep") from None
        except ValueError:
            pass
    return body.decode("utf-8", errors="replace")


def _event_name(request: web.Request) -> str | None:
    for header in _EVENT_HEADERS:
        value = request.headers.get(header)
        if value:
            return value[:100]
    return None


def _answer(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
