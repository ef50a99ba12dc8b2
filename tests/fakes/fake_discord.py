"""A fake Discord, REST API and gateway, on 127.0.0.1 (aiohttp, in a thread of its own).

Tests point the real discord.py at it (`DiscordChannel(api_base=fake.api_base,
gateway_url=fake.gateway_url)`), so login, the gateway handshake, heartbeats, events and
every REST call go through the library's own code. What it knows:

- gateway `/gateway`: HELLO, IDENTIFY (token checked: a wrong one is closed with 4004),
  READY, GUILD_CREATE (a guild with the text channel "general" and its thread "plans",
  and a role managed by the bot), heartbeat ACKs, RESUME; `dispatch()` pushes any event,
  `click()` an INTERACTION_CREATE for a button of a message the bot sent;
- REST under `/api/v10`: users/@me, oauth2/applications/@me, GET channels/{id}, POST
  channels/{id}/messages (JSON or multipart), PATCH a message, PUT a reaction, POST typing,
  POST interactions/{id}/{token}/callback; the bot token is checked (401 otherwise); an
  edit (a PATCH, or a callback of type 7 updating the clicked message) changes `messages`;
- `/files/{id}/{name}`: attachments registered with `attachment()`.

Every REST call is recorded (`calls`, `wait_for_calls`, `wait_until`), with the status of
the failure it was answered with if one was injected; `fail_next` makes the next N calls of
a route (or the next N after some go through) fail with any status, body and headers
(`rate_limit_next`: a 429 as Discord sends it), and `stall_next` keeps the next one
unanswered until the test lets it go. `add_channel` makes another channel known (a second
person's DM), and `FakeDiscord(port=...)` listens on a port chosen beforehand, so a client
can be pointed at a server not up yet.

discord.py decodes a body only when its Content-Type is exactly `application/json`
(aiohttp's `json_response` adds a charset), so every JSON answer is built by `_json`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

_T = TypeVar("_T")

TOKEN = "fake-token"
# Snowflake-sized ids (17 to 20 digits), as discord.py's mention patterns expect.
BOT_ID = "100000000000000001"
APP_ID = BOT_ID
GUILD_ID = "300000000000000001"
BOT_ROLE_ID = "300000000000000002"
CHANNEL_ID = "400000000000000001"
THREAD_ID = "410000000000000001"
# A thread the gateway never announces: the client has to look it up over REST.
HIDDEN_THREAD_ID = "420000000000000001"
DM_CHANNEL_ID = "490000000000000001"

Json = dict[str, Any]


def user(user_id: str, username: str, global_name: str | None = None, *, bot: bool = False) -> Json:
    return {"id": user_id, "username": username, "discriminator": "0", "global_name": global_name, "avatar": None,
            "bot": bot}  # fmt: skip


BOT = user(BOT_ID, "hutch", bot=True)
ALICE = user("200000000000000001", "alice", "Alice")
OTHER_BOT = user("250000000000000001", "otherbot", bot=True)

_APPLICATION: Json = {"id": APP_ID, "name": "hutch", "description": "", "icon": None, "bot_public": False,
                      "bot_require_code_grant": False, "owner": ALICE, "verify_key": "00", "flags": 0}  # fmt: skip

_ids = itertools.count(900_000_000_000_000_000)


def next_id() -> str:
    return str(next(_ids))


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class RestCall:
    method: str
    path: str  # below /api/v10, without the query
    query: dict[str, str]
    body: Any  # the JSON body, or a multipart request's payload_json
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # form field -> (filename, content)
    failed_with: int | None = None  # the status of the failure injected for this call; None: served
    at: float = field(default_factory=time.monotonic, compare=False)  # when it came


@dataclass
class _Failure:
    status: int
    body: Any
    headers: dict[str, str]
    after: int = 0  # calls still to go through before this one fails


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json", **(headers or {})}
    )


def text_channel() -> Json:
    return {"id": CHANNEL_ID, "type": 0, "name": "general", "position": 0, "permission_overwrites": [],
            "guild_id": GUILD_ID, "nsfw": False, "parent_id": None}  # fmt: skip


def thread(thread_id: str = THREAD_ID, name: str = "plans") -> Json:
    return {
        "id": thread_id, "guild_id": GUILD_ID, "parent_id": CHANNEL_ID, "owner_id": ALICE["id"], "name": name,
        "type": 11, "last_message_id": None, "message_count": 0, "member_count": 1, "rate_limit_per_user": 0,
        "flags": 0,
        "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "archive_timestamp": now(),
                            "locked": False},
    }  # fmt: skip


def dm_channel(channel_id: str = DM_CHANNEL_ID, recipient: Json = ALICE) -> Json:
    return {"id": channel_id, "type": 1, "recipients": [recipient], "last_message_id": None}


def _guild() -> Json:
    return {
        "id": GUILD_ID, "name": "Fake Guild", "owner_id": ALICE["id"], "unavailable": False, "member_count": 2,
        "roles": [
            {"id": GUILD_ID, "name": "@everyone", "permissions": "0", "position": 0, "color": 0, "hoist": False,
             "managed": False, "mentionable": False, "flags": 0},
            {"id": BOT_ROLE_ID, "name": "hutch", "permissions": "0", "position": 1, "color": 0, "hoist": False,
             "managed": True, "mentionable": True, "flags": 0, "tags": {"bot_id": BOT_ID}},
        ],
        "emojis": [], "stickers": [], "features": [], "members": [], "presences": [], "voice_states": [],
        "threads": [thread()], "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        "channels": [text_channel()],
    }  # fmt: skip


def message(
    content: str,
    *,
    channel_id: str = CHANNEL_ID,
    in_guild: bool = True,
    author: Json = ALICE,
    nick: str | None = None,
    mentions: Iterable[Json] = (),
    mention_roles: Iterable[str] = (),
    attachments: Iterable[Json] = (),
    reply_to: Json | None = None,
    message_id: str | None = None,
    **extra: Any,
) -> Json:
    """A MESSAGE_CREATE payload (and what the REST API answers for a message)."""
    data: Json = {
        "id": message_id or next_id(), "channel_id": channel_id, "author": author, "content": content,
        "timestamp": now(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
        "mentions": list(mentions), "mention_roles": list(mention_roles), "attachments": list(attachments),
        "embeds": [], "pinned": False, "type": 0, "components": [], **extra,
    }  # fmt: skip
    if in_guild:
        data["guild_id"] = GUILD_ID
        if not author.get("bot"):
            data["member"] = {"roles": [], "joined_at": now(), "nick": nick, "deaf": False, "mute": False, "flags": 0}
    if reply_to is not None:
        data["type"] = 19
        data["message_reference"] = {"message_id": reply_to["id"], "channel_id": reply_to["channel_id"]}
        data["referenced_message"] = reply_to
    return data


class FakeDiscord:
    def __init__(self, *, token: str = TOKEN, heartbeat_ms: int = 1000, ready: bool = True, port: int = 0) -> None:
        """`ready=False`: the gateway takes IDENTIFY and never answers it. `port`: where to
        listen (0: any free port, known once started)."""
        self.token = token
        self.ready = ready
        self.heartbeat_ms = heartbeat_ms
        self.port = port
        self.identified = threading.Event()
        self.disconnected = threading.Event()
        self.identify: Json | None = None
        self.heartbeats = 0
        self.heartbeat_seen = threading.Event()
        self.messages: dict[str, Json] = {}  # what the bot sent, by id, as it is now (edits applied)
        self._clicked: dict[str, str] = {}  # interaction id -> the message clicked
        self._changed = threading.Condition()
        self._calls: list[RestCall] = []
        self._failures: dict[tuple[str, str], list[_Failure]] = {}
        self._stalls: dict[tuple[str, str], threading.Event] = {}
        self._files: dict[str, tuple[bytes, threading.Event | None]] = {}
        # The attachment ids downloaded, in order.
        self.fetched: list[str] = []
        self._channels: dict[str, Json] = {
            CHANNEL_ID: text_channel(),
            THREAD_ID: thread(),
            HIDDEN_THREAD_ID: thread(HIDDEN_THREAD_ID, "late"),
            DM_CHANNEL_ID: dm_channel(),
        }
        self._ws: web.WebSocketResponse | None = None
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="fake-discord", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeDiscord:
        """Serve; after a `stop()`, serve again on the same port with the same record (a
        Discord that was down for a while)."""
        if self._thread.ident is not None:  # served before
            self._started.clear()
            self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="fake-discord", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the fake Discord did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.ident is not None:  # started
            self._thread.join(10)

    def __enter__(self) -> FakeDiscord:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- playing Discord -------------------------------------------------------------------

    def dispatch(self, event: str, data: Json) -> None:
        """Push a gateway event to the identified client; returns once it is on the wire."""
        if not self.identified.wait(10):
            raise AssertionError("no client identified on the gateway")
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._dispatch(event, data), self._loop).result(10)

    def attachment(
        self, name: str, content: bytes, *, size: int | None = None, hold: threading.Event | None = None
    ) -> Json:
        """An attachment served by this fake; `size` is what Discord claims (default: the
        truth); with `hold`, its download waits until that event is set."""
        attachment_id = next_id()
        self._files[attachment_id] = (content, hold)
        url = f"{self.url}/files/{attachment_id}/{name}"
        return {"id": attachment_id, "filename": name, "size": len(content) if size is None else size, "url": url,
                "proxy_url": url}  # fmt: skip

    def click(self, message_id: str, custom_id: str, *, user: Json = ALICE) -> str:
        """Someone clicks the button `custom_id` on a message the bot sent; returns the
        interaction's id (its callback is `/interactions/<id>/<token>/callback`)."""
        sent = self.messages[message_id]
        channel = self._channels[sent["channel_id"]]
        interaction_id = next_id()
        data: Json = {
            "id": interaction_id, "application_id": APP_ID, "type": 3, "token": f"token-{interaction_id}",
            "version": 1, "channel_id": channel["id"], "channel": channel, "message": sent,
            "data": {"custom_id": custom_id, "component_type": 2}, "locale": "en-US", "app_permissions": "0",
            "entitlements": [], "attachment_size_limit": 25 * 1024 * 1024, "authorizing_integration_owners": {},
        }  # fmt: skip
        with self._changed:
            self._clicked[interaction_id] = message_id
        if "guild_id" in channel:
            data["guild_id"] = GUILD_ID
            data["guild_locale"] = "en-US"
            data["member"] = {"user": user, "roles": [], "joined_at": now(), "deaf": False, "mute": False,
                              "flags": 0, "permissions": "0"}  # fmt: skip
        else:
            data["user"] = user
        self.dispatch("INTERACTION_CREATE", data)
        return interaction_id

    def fail_next(
        self, method: str, path: str, status: int, body: Any = None, *, headers: dict[str, str] | None = None,
        times: int = 1, after: int = 0,
    ) -> None:  # fmt: skip
        """The next `times` calls of `method path` (e.g. "POST", "/channels/4000/messages")
        answer `status` with `body` (JSON; a str is sent as text) and `headers`; with
        `after`, only once that many calls of it went through first."""
        if body is None:
            body = {"message": f"{status}: injected", "code": 0}
        failures = [_Failure(status, body, headers or {}, after if n == 0 else 0) for n in range(times)]
        with self._changed:
            self._failures.setdefault((method, path), []).extend(failures)

    def stall_next(self, method: str, path: str, release: threading.Event) -> None:
        """The next call of `method path` gets no answer until `release` is set."""
        with self._changed:
            self._stalls[(method, path)] = release

    def rate_limit_next(self, method: str, path: str, retry_after: float = 0.05) -> None:
        """A 429 as Discord sends it (through its proxy, hence `Via`), which discord.py waits out."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        self.fail_next(method, path, 429, body, headers={"Via": "1.1 google"})

    def add_channel(self, channel: Json) -> None:
        """Make a channel known to the REST API (e.g. `dm_channel(id, person)`)."""
        with self._changed:
            self._channels[channel["id"]] = channel

    # -- what the client did ---------------------------------------------------------------

    @property
    def calls(self) -> list[RestCall]:
        with self._changed:
            return list(self._calls)

    def calls_to(self, method: str, path: str) -> list[RestCall]:
        return [call for call in self.calls if call.method == method and call.path == path]

    def wait_until(self, check: Callable[[], _T | None], timeout: float = 10) -> _T:
        """Block until `check()` (called under the record's lock, e.g. looking at `calls` or
        `messages`) returns something truthy, and return it; AssertionError after `timeout`."""
        found: list[_T] = []

        def done() -> bool:
            result = check()
            if result:
                found.append(result)
                return True
            return False

        with self._changed:
            if not self._changed.wait_for(done, timeout=timeout):
                seen = [(c.method, c.path, c.failed_with) for c in self._calls]
                raise AssertionError(f"condition not met within {timeout}s; calls: {seen}")
        return found[0]

    def wait_for_calls(self, method: str, path: str, count: int = 1, timeout: float = 10) -> list[RestCall]:
        """Block until `count` calls of `method path` were made; a path ending in "/" matches
        every path below it."""

        def matching() -> list[RestCall]:
            return [c for c in self._calls if c.method == method and _matches(c.path, path)]

        with self._changed:
            if not self._changed.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                seen = [(c.method, c.path) for c in self._calls]
                raise AssertionError(f"expected {count} call(s) of {method} {path}; calls: {seen}")
            return matching()

    # -- the server ------------------------------------------------------------------------

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/files/{id}/{name}", self._file)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        app.on_shutdown.append(self._going_down)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _going_down(self, _: web.Application) -> None:
        """Close the gateway as a server going down does, once nothing listens any more (a
        client reconnecting at once must not reach this server again); a handler left open
        would hold up the cleanup until aiohttp's shutdown timeout."""
        if self._ws is not None:
            await self._ws.close(code=WSCloseCode.GOING_AWAY, message=b"going down")

    async def _file(self, request: web.Request) -> web.Response:
        self.fetched.append(request.match_info["id"])
        found = self._files.get(request.match_info["id"])
        if found is None:
            return web.Response(status=404)
        content, hold = found
        if hold is not None:
            await asyncio.to_thread(hold.wait, 10)
        return web.Response(body=content, content_type="application/octet-stream")

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body: Any = None
        files: dict[str, tuple[str, bytes]] = {}
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            body = json.loads(str(form["payload_json"]))
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    files[name] = (value.filename, value.file.read())
        elif request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw else None
        with self._changed:
            queued = self._failures.get((request.method, path))
            failure = None
            if queued and queued[0].after > 0:
                queued[0].after -= 1
            elif queued:
                failure = queued.pop(0)
            stall = self._stalls.pop((request.method, path), None)
            call = RestCall(request.method, path, dict(request.query), body, files,
                            failure.status if failure is not None else None)  # fmt: skip
            self._calls.append(call)
            self._changed.notify_all()
        if stall is not None:
            await asyncio.to_thread(stall.wait, 10)
        if failure is not None:
            if isinstance(failure.body, str):
                return web.Response(text=failure.body, status=failure.status, headers=failure.headers)
            return _json(failure.body, failure.status, failure.headers)
        if not path.startswith("/interactions/") and request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, 401)
        return self._answer(call)

    def _answer(self, call: RestCall) -> web.Response:
        parts = call.path.strip("/").split("/")
        match call.method, parts:
            case "GET", ["users", "@me"]:
                return _json(BOT)
            case "GET", ["oauth2", "applications", "@me"]:
                return _json(_APPLICATION)
            case "GET", ["channels", channel_id] if channel_id in self._channels:
                return _json(self._channels[channel_id])
            case "POST", ["channels", channel_id, "messages"] if channel_id in self._channels:
                return _json(self._create_message(channel_id, call))
            case "PATCH", ["channels", channel_id, "messages", message_id] if channel_id in self._channels:
                return _json(self._edit_message(message_id, call.body or {}, channel_id))
            case "PUT", ["channels", channel_id, "messages", _, "reactions", _, "@me"] if channel_id in self._channels:
                return web.Response(status=204)
            case "POST", ["channels", channel_id, "typing"] if channel_id in self._channels:
                return web.Response(status=204)
            case "POST", ["interactions", interaction_id, _, "callback"]:
                body = call.body or {}
                clicked = self._clicked.get(interaction_id)
                if body.get("type") == 7 and clicked is not None:  # UPDATE_MESSAGE: the clicked one
                    self._edit_message(clicked, body.get("data") or {})
                return _json({"interaction": {"id": interaction_id, "type": 3, "response_message_loading": False,
                                              "response_message_ephemeral": False}})  # fmt: skip
            case _, ["channels", *_]:
                return _json({"message": "Unknown Channel", "code": 10003}, 404)
        return _json({"message": "404: Not Found", "code": 0}, 404)

    def _edit_message(self, message_id: str, changes: Json, channel_id: str | None = None) -> Json:
        """A message with `changes` applied; one the bot sent is kept so (`messages`)."""
        with self._changed:
            known = self.messages.get(message_id)
            base = known if known is not None else message("", channel_id=channel_id or CHANNEL_ID, author=BOT)
            edited = {**base, **changes, "id": message_id, "edited_timestamp": now()}
            if known is not None:
                self.messages[message_id] = edited
                self._changed.notify_all()
        return edited

    def _create_message(self, channel_id: str, call: RestCall) -> Json:
        payload: Json = call.body or {}
        attachments = [
            {"id": next_id(), "filename": filename, "size": len(content), "url": f"{self.url}/x", "proxy_url": ""}
            for filename, content in call.files.values()
        ]
        in_guild = "guild_id" in self._channels[channel_id]
        sent = message(payload.get("content") or "", channel_id=channel_id, in_guild=in_guild, author=BOT,
                       attachments=attachments, components=payload.get("components", []),
                       embeds=payload.get("embeds", []))  # fmt: skip
        with self._changed:
            self.messages[sent["id"]] = sent
            self._changed.notify_all()
        return sent

    async def _dispatch(self, event: str, data: Json) -> None:
        self._seq += 1
        await self._send({"op": 0, "t": event, "s": self._seq, "d": data})

    async def _send(self, frame: Json) -> None:
        # Text frames: the client's zlib stream is only for binary ones.
        if self._ws is not None:
            await self._ws.send_str(json.dumps(frame))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        self.disconnected.clear()
        await self._send({"op": 10, "d": {"heartbeat_interval": self.heartbeat_ms}})
        handlers: dict[int, Callable[[Json], Any]] = {1: self._on_heartbeat, 2: self._on_identify, 6: self._on_resume}
        try:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                decoded = json.loads(frame.data)
                handler = handlers.get(decoded.get("op"))
                if handler is not None:
                    await handler(decoded.get("d") or {})
        finally:
            self._ws = None
            self.identified.clear()
            self.disconnected.set()
        return ws

    async def _on_heartbeat(self, _: Json) -> None:
        self.heartbeats += 1
        self.heartbeat_seen.set()
        await self._send({"op": 11})

    async def _on_identify(self, data: Json) -> None:
        self.identify = data
        if data.get("token") != self.token:
            assert self._ws is not None
            await self._ws.close(code=4004, message=b"Authentication failed.")
            return
        if not self.ready:
            return
        await self._dispatch("READY", {
            "v": 10, "user": BOT, "guilds": [{"id": GUILD_ID, "unavailable": True}], "session_id": "session-1",
            "resume_gateway_url": self.gateway_url, "application": {"id": APP_ID, "flags": 0},
        })  # fmt: skip
        await self._dispatch("GUILD_CREATE", _guild())
        self.identified.set()

    async def _on_resume(self, _: Json) -> None:
        await self._dispatch("RESUMED", {})
        self.identified.set()


def _matches(path: str, pattern: str) -> bool:
    return path.startswith(pattern) if pattern.endswith("/") else path == pattern
