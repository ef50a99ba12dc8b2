"""A fake Telegram Bot API on 127.0.0.1, for driving the real python-telegram-bot client.

    POST|GET /bot<token>/<method>      -> {"ok": true, "result": ...} or an error body
    GET      /file/bot<token>/<path>   -> a file's bytes

It runs aiohttp on a loop in a thread of its own. getUpdates is real long polling: it
answers as soon as a test pushes an update, or empty when its timeout runs out; its offset
confirms (drops) the updates before it, as Telegram's does. Every call is recorded with its
parameters and uploaded files (and the failure it was answered with, if one was injected);
`wait_until` waits for any condition on the record. A test can make the next N calls of a
method fail (flood control, a 5xx, a refusal, or "can't parse entities" only for a given
parse_mode). `FakeTelegram(port=...)` listens on a port chosen beforehand, so a client can
be pointed at a server that is not up yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

_T = TypeVar("_T")

TOKEN = "123456:TEST-fake-token"
BOT_ID = 4242
BOT_USERNAME = "hutch_bot"
BOT_USER: dict[str, Any] = {"id": BOT_ID, "is_bot": True, "first_name": "Hutch", "username": BOT_USERNAME}
# Telegram refuses getFile for anything bigger: a bot may download up to 20 MB.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024

# Parameters PTB sends as JSON text; decoded in the record so tests compare structures.
_JSON_FIELDS = frozenset({"reply_markup", "reaction", "allowed_updates", "entities", "caption_entities"})


def user(user_id: int, first_name: str, last_name: str | None = None, username: str | None = None) -> dict[str, Any]:
    person: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    if last_name:
        person["last_name"] = last_name
    if username:
        person["username"] = username
    return person


def private_chat(person: dict[str, Any]) -> dict[str, Any]:
    chat = {"id": person["id"], "type": "private", "first_name": person["first_name"]}
    if "last_name" in person:
        chat["last_name"] = person["last_name"]
    return chat


def group_chat(chat_id: int, title: str, *, forum: bool = False) -> dict[str, Any]:
    chat: dict[str, Any] = {"id": chat_id, "type": "supergroup", "title": title}
    if forum:
        chat["is_forum"] = True
    return chat


def mention(text: str, handle: str, kind: str = "mention") -> dict[str, Any]:
    """The entity Telegram attaches to `handle` in `text` (offsets in UTF-16 units)."""
    start = text.index(handle)
    offset = len(text[:start].encode("utf-16-le")) // 2
    return {"type": kind, "offset": offset, "length": len(handle.encode("utf-16-le")) // 2}


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


@dataclass(frozen=True)
class ApiCall:
    method: str
    params: dict[str, Any]
    files: dict[str, Upload] = field(default_factory=dict)
    # The injected failure this call was answered with; None when it was served.
    failure: Failure | None = None
    # When it came (time.monotonic()).
    at: float = field(default_factory=time.monotonic, compare=False)


@dataclass(frozen=True)
class Failure:
    """What a failing call answers. Build it with the class methods."""

    status: int
    description: str
    retry_after: int | None = None

    @classmethod
    def flood(cls, retry_after: int) -> Failure:
        return cls(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    @classmethod
    def server_error(cls, status: int = 502) -> Failure:
        return cls(status, "Bad Gateway" if status == 502 else "Internal Server Error")

    @classmethod
    def bad_request(cls, description: str) -> Failure:
        return cls(400, f"Bad Request: {description}")

    @classmethod
    def forbidden(cls, description: str = "bot was blocked by the user") -> Failure:
        return cls(403, f"Forbidden: {description}")

    @classmethod
    def unparsable(cls) -> Failure:
        return cls.bad_request("can't parse entities: Can't find end tag corresponding to start tag \"b\"")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


@dataclass
class _Injected:
    failure: Failure
    remaining: int
    parse_mode: str | None
    skip: int


@dataclass(frozen=True)
class _StoredFile:
    path: str
    data: bytes
    size: int


class FakeTelegram:
    def __init__(self, token: str = TOKEN, *, port: int = 0) -> None:
        """`port`: where to listen (0: any free port, known once started)."""
        self.token = token
        self._lock = threading.Condition()
        self._calls: list[ApiCall] = []
        self._failures: dict[str, list[_Injected]] = {}
        self._floods: dict[str, float] = {}  # method -> until when (time.monotonic()) it is flooded
        self._updates: list[dict[str, Any]] = []
        self._files: dict[str, _StoredFile] = {}
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._file_ids = itertools.count(1)
        self._confirmed = 0
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._closing = False
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeTelegram:
        """Serve; after a `stop()`, serve again on the same port with the same record (a
        Telegram that was down for a while)."""
        self._ready.clear()
        self._closing = False
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="fake-telegram", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the fake Telegram server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._shut)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/file/bot"

    # -- what happened -----------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[ApiCall]:
        with self._lock:
            return [call for call in self._calls if method is None or call.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[ApiCall]:
        """Block until `count` calls of `method` were received."""
        with self._lock:
            done = self._lock.wait_for(lambda: len(self.calls(method)) >= count, timeout)
            found = self.calls(method)
        if not done:
            raise AssertionError(f"expected {count} {method} call(s), got {len(found)}: {self.calls()}")
        return found

    def wait_until(self, check: Callable[[], _T | None], timeout: float = 5.0) -> _T:
        """Block until `check()` (called under the record's lock, e.g. looking at `calls()`)
        returns something truthy, and return it; AssertionError after `timeout`."""
        found: list[_T] = []

        def done() -> bool:
            result = check()
            if result:
                found.append(result)
                return True
            return False

        with self._lock:
            if not self._lock.wait_for(done, timeout):
                raise AssertionError(f"condition not met within {timeout}s; calls: {self._calls}")
        return found[0]

    @property
    def confirmed_offset(self) -> int:
        """The highest offset a getUpdates confirmed."""
        with self._lock:
            return self._confirmed

    # -- what happens next -------------------------------------------------------------------

    def fail(
        self, method: str, failure: Failure, *, times: int = 1, parse_mode: str | None = None, skip: int = 0
    ) -> None:
        """After `skip` calls of `method` (with that parse_mode, if given) go through, the
        next `times` answer `failure`."""
        with self._lock:
            self._failures.setdefault(method, []).append(_Injected(failure, times, parse_mode, skip))

    def flood_for(self, method: str, seconds: float) -> None:
        """For the next `seconds`, every call of `method` answers flood control with the time
        left (rounded up), as Telegram keeps answering a flooded chat."""
        with self._lock:
            self._floods[method] = time.monotonic() + seconds

    def add_file(self, data: bytes, *, path: str | None = None, size: int | None = None) -> str:
        """Store a file people "sent"; returns its file_id. `size` overrides what it reports."""
        number = next(self._file_ids)
        file_id = f"file-{number}"
        with self._lock:
            self._files[file_id] = _StoredFile(
                path or f"files/file_{number}", data, len(data) if size is None else size
            )
        return file_id

    def push_update(self, payload: dict[str, Any]) -> int:
        """Queue an update (its update_id is added); a waiting getUpdates answers at once."""
        update_id = next(self._update_ids)
        with self._lock:
            self._updates.append({"update_id": update_id, **payload})
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._poke)
        return update_id

    def message(
        self,
        chat: dict[str, Any],
        sender: dict[str, Any],
        *,
        text: str | None = None,
        caption: str | None = None,
        entities: list[dict[str, Any]] | None = None,
        reply_to: dict[str, Any] | None = None,
        topic: int | None = None,
        **content: Any,
    ) -> dict[str, Any]:
        """A message as Telegram describes it; `topic` puts it in a forum topic."""
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": sender,
        }
        if text is not None:
            message["text"] = text
        if caption is not None:
            message["caption"] = caption
        if entities:
            message["entities" if text is not None else "caption_entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if topic is not None:
            message["message_thread_id"] = topic
            message["is_topic_message"] = True
        message.update(content)
        return message

    def push_message(self, chat: dict[str, Any], sender: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        message = self.message(chat, sender, **kwargs)
        self.push_update({"message": message})
        return message

    def push_text(self, chat: dict[str, Any], sender: dict[str, Any], text: str, **kwargs: Any) -> dict[str, Any]:
        return self.push_message(chat, sender, text=text, **kwargs)

    def push_photo(
        self, chat: dict[str, Any], sender: dict[str, Any], data: bytes, *, caption: str | None = None
    ) -> dict[str, Any]:
        """A photo in two sizes; the bigger one carries `data`."""
        small = self.add_file(b"thumbnail", path="photos/small.jpg")
        big = self.add_file(data, path="photos/big.jpg")
        sizes = [
            {"file_id": small, "file_unique_id": f"u-{small}", "width": 90, "height": 60, "file_size": 9},
            {"file_id": big, "file_unique_id": f"u-{big}", "width": 1280, "height": 853, "file_size": len(data)},
        ]
        return self.push_message(chat, sender, caption=caption, photo=sizes)

    def push_document(
        self,
        chat: dict[str, Any],
        sender: dict[str, Any],
        data: bytes,
        file_name: str,
        *,
        caption: str | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        file_id = self.add_file(data, path=f"documents/{file_id_safe(file_name)}", size=size)
        document = {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "file_name": file_name,
            "file_size": len(data) if size is None else size,
        }
        return self.push_message(chat, sender, caption=caption, document=document)

    def push_voice(self, chat: dict[str, Any], sender: dict[str, Any], data: bytes) -> dict[str, Any]:
        file_id = self.add_file(data, path="voice/file_1.oga")
        voice = {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "duration": 2,
            "mime_type": "audio/ogg",
            "file_size": len(data),
        }
        return self.push_message(chat, sender, voice=voice)

    def push_callback(
        self,
        chat: dict[str, Any],
        sender: dict[str, Any],
        data: str,
        *,
        message_id: int = 1,
        topic: int | None = None,
    ) -> str:
        """A press on an inline button of the bot's message `message_id`; returns the query id."""
        query_id = f"cbq-{next(self._update_ids)}"
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": BOT_USER,
            "text": "?",
        }
        if topic is not None:
            message["message_thread_id"] = topic
            message["is_topic_message"] = True
        self.push_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": sender,
                    "chat_instance": "ci-1",
                    "data": data,
                    "message": message,
                }
            }
        )
        return query_id

    # -- the server --------------------------------------------------------------------------

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.*}", self._file)
        # No access log: its lines would carry the token.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()
            sock.close()

    def _shut(self) -> None:
        self._closing = True
        self._poke()
        if self._stopping is not None:
            self._stopping.set()

    def _poke(self) -> None:
        """Wake every waiting getUpdates (runs on the server's loop)."""
        if self._wake is not None:
            self._wake.set()
            self._wake = asyncio.Event()

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        try:
            params, files = await _read_params(request)
        except ConnectionResetError as exc:  # the client went away mid-request (a stopping adapter)
            raise web.HTTPBadRequest() from exc
        with self._lock:
            failure = self._take_failure(method, params)
            self._calls.append(ApiCall(method, params, files, failure))
            self._lock.notify_all()
        if failure is not None:
            return web.json_response(failure.body(), status=failure.status)
        try:
            result = await self._answer(method, params, files)
        except _RefusalError as refusal:
            return web.json_response(refusal.failure.body(), status=refusal.failure.status)
        return web.json_response({"ok": True, "result": result})

    def _take_failure(self, method: str, params: dict[str, Any]) -> Failure | None:
        left = self._floods.get(method, 0.0) - time.monotonic()
        if left > 0:
            return Failure.flood(max(1, math.ceil(left)))
        for injected in self._failures.get(method, []):
            if injected.remaining > 0 and injected.parse_mode in (None, params.get("parse_mode")):
                if injected.skip > 0:
                    injected.skip -= 1
                    return None
                injected.remaining -= 1
                return injected.failure
        return None

    async def _answer(self, method: str, params: dict[str, Any], files: dict[str, Upload]) -> Any:
        match method:
            case "getMe":
                return BOT_USER
            case "getUpdates":
                return await self._get_updates(params)
            case "deleteWebhook" | "setMessageReaction" | "sendChatAction" | "answerCallbackQuery":
                return True
            case "setWebhook":  # recorded like every call (url, secret_token, ...); nothing is posted
                return True
            case "sendMessage":
                return self._sent(params, text=params.get("text", ""))
            case "sendDocument":
                upload = files.get("document", Upload("document", b""))
                document = {"file_id": "sent-doc", "file_unique_id": "sent-doc", "file_name": upload.name}
                return self._sent(params, document=document)
            case "sendPhoto":
                photo = [{"file_id": "sent-photo", "file_unique_id": "sent-photo", "width": 1, "height": 1}]
                return self._sent(params, photo=photo)
            case "editMessageText":
                return {**self._sent(params, text=params.get("text", "")), "message_id": int(params["message_id"])}
            case "editMessageCaption":
                return {**self._sent(params), "message_id": int(params["message_id"])}
            case "getFile":
                return self._get_file(params.get("file_id", ""))
        raise _RefusalError(Failure(404, "Not Found"))

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(params.get("timeout") or 0)
        while True:
            wake = self._wake
            with self._lock:
                if offset:
                    self._updates = [update for update in self._updates if update["update_id"] >= offset]
                    self._confirmed = max(self._confirmed, offset)
                ready = self._updates[:limit]
            remaining = deadline - loop.time()
            if ready or self._closing or remaining <= 0 or wake is None:
                return ready
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)

    def _sent(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "title": "chat"},
            "from": BOT_USER,
            **content,
        }
        if "caption" in params:
            message["caption"] = params["caption"]
        if "message_thread_id" in params:
            message["message_thread_id"] = int(params["message_thread_id"])
            message["is_topic_message"] = True
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        return message

    def _get_file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise _RefusalError(Failure.bad_request("invalid file_id"))
        if stored.size > MAX_DOWNLOAD_BYTES:
            raise _RefusalError(Failure.bad_request("file is too big"))
        return {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "file_size": stored.size,
            "file_path": stored.path,
        }

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        with self._lock:
            found = next((stored.data for stored in self._files.values() if stored.path == path), None)
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found)


class _RefusalError(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.description)
        self.failure = failure


def file_id_safe(name: str) -> str:
    """A name usable in a fake file path (the sender's name may hold anything)."""
    return "".join(char if char.isalnum() or char in "._-" else "_" for char in name) or "file"


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, Upload]]:
    params: dict[str, Any] = dict(request.query)
    files: dict[str, Upload] = {}
    if request.method == "POST":
        if request.content_type == "application/json":
            params.update(await request.json())
        else:
            form = await request.post()  # urlencoded and multipart alike
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = Upload(value.filename, value.file.read())
                else:
                    params[key] = value
    for key in _JSON_FIELDS & params.keys():
        if isinstance(params[key], str):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(params[key])
    return params, files
