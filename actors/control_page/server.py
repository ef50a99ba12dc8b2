"""The control page: aiohttp on 127.0.0.1, on an event loop in a thread of its own (as the
webhook channel runs), so nothing it does blocks an actor.

Reads are its own, read-only (`reads`); every change is one control operation handed to
the injected `execute` (the host's control actor), called in a worker thread with a
timeout, and its reply shown as a flash line. The page never writes a database.

Bounds: request bodies of `MAX_BODY_BYTES`, at most `MAX_EVENT_CLIENTS` live update streams
at once (more are refused with 503 and fall back to polling), one snapshot of the DBs per
`update_interval_s` however many pages are open, form fields of a few hundred characters,
and the rows and text `reads` caps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aiohttp import web
from markupsafe import Markup

from actors.channels.base import ChannelError
from actors.control.requests import ChangeTask, DecidePairing, Reply, Request, TaskVerb
from actors.control_page.auth import Auth
from actors.control_page.chart import build_chart
from actors.control_page.reads import Snapshot, Sources, UsageSource, read_snapshot
from actors.control_page.templates import ENVIRONMENT, SCRIPT, SECTIONS, STYLE
from actors.loop_thread import AppSite, LoopThread
from protocol.timeutil import utc_now

if TYPE_CHECKING:
    from actors.config import HostConfig

log = logging.getLogger("hutch.control_page")

Execute = Callable[[Request], Reply]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY_BYTES: Final = 16 * 1024
MAX_EVENT_CLIENTS: Final = 8
MAX_FIELD: Final = 256
# Flash lines waiting for their page, one per browser session; the oldest is dropped.
MAX_FLASHES: Final = 64
EXECUTE_TIMEOUT_S: Final = 20.0
_START_TIMEOUT_S: Final = 10.0
_STOP_TIMEOUT_S: Final = 10.0
_LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "[::1]"})
_TASK_VERBS: Final[Mapping[str, TaskVerb]] = {"pause": "pause", "resume": "resume", "cancel": "cancel"}
_DECISIONS: Final = {"approve": True, "refuse": False}

# Nothing but this origin's own files: no inline script or style, no framing, no fetches
# elsewhere; an injected element would find nothing to load and nowhere to post.
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The first address carries the token: no Referer leaves the page. Not no-referrer, under
    # which a browser sends `Origin: null` with the page's own forms.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class ControlPageError(ChannelError):
    """The page cannot serve (its port taken, say). A ChannelError that retrying cannot fix,
    so the host's start reports it in one line as it does a channel's."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class Flash:
    ok: bool
    message: str


class ControlPage:
    """`start()` serves until `stop()`. `execute` runs one control operation and returns its
    reply (it may block: it is called in a worker thread); `sources` says what to read."""

    def __init__(
        self,
        sources: Sources,
        execute: Execute,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auth: Auth | None = None,
        update_interval_s: float = 2.0,
        execute_timeout_s: float = EXECUTE_TIMEOUT_S,
        max_event_clients: int = MAX_EVENT_CLIENTS,
    ) -> None:
        self._sources = sources
        self._execute = execute
        self._host = host
        self._port = port
        self.auth = auth or Auth()
        self._interval_s = update_interval_s
        self._execute_timeout_s = execute_timeout_s
        self._max_event_clients = max_event_clients
        self._event_clients = 0
        self._flashes: OrderedDict[str, Flash] = OrderedDict()
        self._snapshot: tuple[float, Snapshot] | None = None
        self._snapshot_lock: asyncio.Lock | None = None
        self._stopping: asyncio.Event | None = None
        # Reads and control operations wait in pools of their own, so a slow operation
        # never holds up a render, and neither can take more threads than this.
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="control-page-read")
        self._operations = ThreadPoolExecutor(2, thread_name_prefix="control-page-op")
        self._site = AppSite(self.app, host, port, shutdown_timeout_s=1.0)
        self._server: LoopThread | None = None

    @classmethod
    def for_host(
        cls,
        config: HostConfig,
        execute: Execute,
        *,
        live_sessions: Callable[[], Collection[str]] | None = None,
        usage: UsageSource | None = None,
    ) -> ControlPage:
        """The page of a host run with `config` (its port: `config.control_port`)."""
        sources = Sources(
            central_db=config.central_db,
            sessions_dir=config.sessions_dir,
            timezone=config.timezone,
            live_sessions=live_sessions,
            usage=usage,
        )
        return cls(sources, execute, port=config.control_port or 0)

    @property
    def port(self) -> int:
        if self._site.port is None:
            raise ControlPageError("the control page is not running")
        return self._site.port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/"

    @property
    def login_url(self) -> str:
        """The address the host prints: opening it logs in."""
        return f"{self.url}?token={self.auth.token}"

    @staticmethod
    def cookie_name(request: web.Request) -> str:
        """Cookies do not tell ports apart: two hosts' pages on one machine must not
        overwrite each other's."""
        return f"hutch_control_{request.url.port}"

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        server = LoopThread("control-page", self._site.serve, self._site.shutdown)
        try:
            server.start(_START_TIMEOUT_S)
        except TimeoutError:
            raise ControlPageError("the control page did not start") from None
        except Exception as exc:
            raise ControlPageError(
                f"cannot serve the control page on {self._host}:{self._port} (HUTCH_CONTROL_PORT): {exc}"
            ) from exc
        self._server = server
        log.info("control page: listening on %s", self.url)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(_STOP_TIMEOUT_S)
        # A control operation still in flight finishes in the host; nobody waits for it here.
        self._operations.shutdown(wait=False, cancel_futures=True)
        self._readers.shutdown(wait=False, cancel_futures=True)

    # --- the application --------------------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application (tests serve it with aiohttp's test server)."""
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/login", self._login_form)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_get("/fragments", self._fragments_json)
        app.router.add_get("/events", self._events)
        app.router.add_post("/tasks", self._change_task)
        app.router.add_post("/senders", self._decide_sender)
        app.router.add_get("/static/page.js", self._static(SCRIPT, "text/javascript"))
        app.router.add_get("/static/page.css", self._static(STYLE, "text/css"))
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        # Made on the loop that serves (a test's loop, or the page's own thread's).
        self._snapshot_lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    async def _on_shutdown(self, app: web.Application) -> None:
        if self._stopping is not None:
            self._stopping.set()  # ends every update stream at once

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # A page on another site that resolves its own name to 127.0.0.1 (DNS rebinding)
        # would send its own Host: refused before anything is read.
        if _host_name(request.host) not in _LOOPBACK_NAMES:
            return _with_headers(web.Response(status=421, text="this page answers to 127.0.0.1 only"))
        if request.method == "POST" and not self._same_origin(request):
            return _with_headers(web.Response(status=403, text="a form from another origin"))
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own: no route, a body past the cap, ...
            response = web.Response(status=exc.status, text=exc.text or exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        return _with_headers(response)

    def _same_origin(self, request: web.Request) -> bool:
        # Browsers send Origin with every POST (and Sec-Fetch-Site, the newer ones); a request
        # without them is no browser's cross-site form, and still needs the CSRF token.
        origin = request.headers.get("Origin")
        site = request.headers.get("Sec-Fetch-Site")
        return (origin is None or origin == f"{request.scheme}://{request.host}") and site in (None, "same-origin")

    # --- authentication -----------------------------------------------------------------------

    def _session(self, request: web.Request) -> str | None:
        return self.auth.session_of(request.cookies.get(self.cookie_name(request)))

    def _logged_in(self, request: web.Request) -> web.Response:
        response = _redirect("/")
        response.set_cookie(
            self.cookie_name(request), self.auth.new_cookie(), httponly=True, samesite="Strict", path="/", secure=False
        )
        return response

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is not None:
            return _redirect("/")
        return _html(ENVIRONMENT.get_template("login.html").render(error=None))

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = form.get("token")
        if isinstance(token, str) and self.auth.token_matches(token.strip()):
            return self._logged_in(request)
        log.warning("control page: refused a login with a wrong token")
        return _html(ENVIRONMENT.get_template("login.html").render(error="That is not the token."), status=401)

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session = await self._checked_post(request)
        if isinstance(session, web.StreamResponse):
            return session
        response = _redirect("/login")
        response.del_cookie(self.cookie_name(request), path="/")
        return response

    async def _checked_post(self, request: web.Request) -> str | web.StreamResponse:
        """The session of a POST with a good cookie and that session's CSRF token."""
        session = self._session(request)
        if session is None:
            return web.Response(status=401, text="log in first")
        form = await request.post()
        given = form.get("csrf")
        if not isinstance(given, str) or not self.auth.csrf_matches(session, given):
            log.warning("control page: refused a form without this session's CSRF token")
            return web.Response(status=403, text="this form is stale or not this page's: reload the page")
        return session

    # --- pages --------------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.StreamResponse:
        if "token" in request.query:
            if self.auth.token_matches(request.query["token"]):
                return self._logged_in(request)  # and the token leaves the address bar
            log.warning("control page: refused a login with a wrong token")
            page = ENVIRONMENT.get_template("login.html").render(error="That is not the token.")
            return _html(page, status=401)
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        fragments = await self._fragments(session)
        page = ENVIRONMENT.get_template("page.html").render(
            # Our own templates' output, escaped when it was rendered.
            fragments={name: Markup(html) for name, html in fragments.items()},
            csrf=self.auth.csrf_token(session),
            flash=self._flashes.pop(session, None),
            rendered=utc_now().strftime("%H:%M:%S UTC"),
        )
        return _html(page)

    async def _fragments_json(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return web.Response(status=401, text="log in first")
        return web.json_response(await self._fragments(session))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: every `update_interval_s`, the sections that changed."""
        session = self._session(request)
        if session is None:
            return web.Response(status=401, text="log in first")
        if self._event_clients >= self._max_event_clients:
            return web.Response(status=503, text="too many pages open; this one polls instead")
        assert self._stopping is not None
        self._event_clients += 1
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **_SECURITY_HEADERS})
            await response.prepare(request)
            await response.write(b"retry: 3000\n\n")
            sent: dict[str, str] = {}
            while not self._stopping.is_set():
                fragments = await self._fragments(session)
                changed = {name: html for name, html in fragments.items() if sent.get(name) != html}
                if changed:
                    await response.write(f"event: update\ndata: {json.dumps(changed)}\n\n".encode())
                    sent.update(changed)
                else:
                    await response.write(b": nothing new\n\n")  # finds a closed connection
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._interval_s)
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        finally:
            self._event_clients -= 1
        return response

    async def _fragments(self, session: str) -> dict[str, str]:
        snapshot = await self._current_snapshot()
        csrf = self.auth.csrf_token(session)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, _render_fragments, snapshot, csrf)

    async def _current_snapshot(self) -> Snapshot:
        """One read of the DBs per interval, shared by every page open."""
        assert self._snapshot_lock is not None
        async with self._snapshot_lock:
            cached = self._snapshot
            if cached is not None and time.monotonic() - cached[0] < self._interval_s * 0.75:
                return cached[1]
            loop = asyncio.get_running_loop()
            snapshot = await loop.run_in_executor(self._readers, read_snapshot, self._sources, utc_now())
            self._snapshot = (time.monotonic(), snapshot)
            return snapshot

    # --- changes ------------------------------------------------------------------------------

    async def _change_task(self, request: web.Request) -> web.StreamResponse:
        session = await self._checked_post(request)
        if isinstance(session, web.StreamResponse):
            return session
        form = await request.post()
        verb = _TASK_VERBS.get(_field(form, "verb") or "")
        task = _field(form, "task")
        if verb is None or not task:
            return web.Response(status=400, text="a task change needs a verb (pause, resume, cancel) and a task")
        return await self._run(session, ChangeTask(verb=verb, task=task, session=_field(form, "session")))

    async def _decide_sender(self, request: web.Request) -> web.StreamResponse:
        session = await self._checked_post(request)
        if isinstance(session, web.StreamResponse):
            return session
        form = await request.post()
        approve = _DECISIONS.get(_field(form, "decision") or "")
        code = _field(form, "code")
        if approve is None or not code:
            return web.Response(status=400, text="a decision needs a code and approve or refuse")
        return await self._run(session, DecidePairing(code=code, approve=approve))

    async def _run(self, session: str, operation: Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        try:
            reply = await asyncio.wait_for(
                loop.run_in_executor(self._operations, self._execute, operation), self._execute_timeout_s
            )
        except TimeoutError:
            reply = Reply(ok=False, message="the host did not answer in time; look again in a moment")
        except Exception as exc:
            log.exception("control page: %s failed", type(operation).__name__)
            reply = Reply(ok=False, message=f"failed: {exc}")
        log.info("control page: %s -> %s", operation, reply.message)
        self._flash(session, Flash(reply.ok, reply.message))
        self._snapshot = None  # the next page shows the change
        return _redirect("/")

    def _flash(self, session: str, flash: Flash) -> None:
        self._flashes.pop(session, None)
        self._flashes[session] = flash
        while len(self._flashes) > MAX_FLASHES:
            self._flashes.popitem(last=False)

    @staticmethod
    def _static(body: str, content_type: str) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            return web.Response(text=body, content_type=content_type)

        return serve


def _render_fragments(snapshot: Snapshot, csrf: str) -> dict[str, str]:
    today = utc_now().date()
    context = {"snapshot": snapshot, "csrf": csrf, "chart": build_chart(snapshot.usage, today)}
    return {name: ENVIRONMENT.get_template(f"{name}.html").render(context) for name in SECTIONS}


def _field(form: Mapping[str, object], name: str) -> str | None:
    """A form field's text; None when it is missing, empty, a file or past `MAX_FIELD`."""
    value = form.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if 0 < len(value) <= MAX_FIELD else None


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def _redirect(target: str) -> web.Response:
    return web.Response(status=303, headers={"Location": target})


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _with_headers(response: web.StreamResponse) -> web.StreamResponse:
    if not response.prepared:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response
