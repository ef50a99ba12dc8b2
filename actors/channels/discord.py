"""Discord: a bot account talking through discord.py (gateway for events, REST for sends).

Threads and loops. discord.py is asyncio throughout, and the host is threads. The client
runs in a thread of its own (`discord-<n>`) with its own event loop, for as long as the
channel is started; nothing else ever runs on that loop. `start()` starts the thread and
waits until the gateway said READY (or the client failed, or `ready_timeout_s` passed), so
a bad token or an unreachable Discord is an error the host sees at once. Sends come from
the host's delivery thread: each is a coroutine handed to the client's loop with
`asyncio.run_coroutine_threadsafe` and waited for within `send_timeout_s`. `stop()` closes
the client from outside, and the loop's thread ends with it.

Inbound. Every message not written by a bot (the assistant itself included) or a webhook
becomes an `InboundChat`; a button click on one of our questions becomes an
`InboundAnswer`. Handling them never holds up the loop: discord.py runs each event as a
task of its own, attachments download in those tasks while other events go on, and a
chat's events are still handed to the host in the order Discord sent them (each waits for
the one before it in the same channel). `on_event` returns the host's future at once; one
watcher thread waits on those futures, only to log a refusal, to delete what the host did
not take of the downloaded files, and to show a click's choice once the host took it.
Downloads go to `download_dir/<32 hex>/<name>`; the folder is the channel's own (`start()`
deletes such folders a crashed run left); on the data folder's file system, the host's move
of a file into the inbox is a rename.

Button clicks. A click is acknowledged at once without changing its message (a deferred
update). Only once the host stored the answer (its future resolves with the row, not None)
is the message rewritten to show the choice in place of the buttons; a click the host drops
(a stranger's) or refuses (a question no longer open) leaves the message and its buttons to
the people who may still answer.

Retries. discord.py retries by itself: a 429 is waited out and tried again (only when it
comes through Discord's proxy, with `Via`: a bare 429 is a Cloudflare ban and fails at
once), and 500/502/504/524 are tried five times, sleeping 1, 3, 5, 7 and 9 s after them
(25 s, inside the default 30 s send timeout; other 5xx fail at once). Rate limits
longer than 30 s (discord.py's smallest `max_ratelimit_timeout`) fail at once instead, so
a delivery thread is never parked for minutes: the host retries later with its own
backoff. What discord.py gives up on becomes `ChannelError`: retryable for rate limits,
5xx, connection errors and timeouts; not retryable for 404, 403 and any other 4xx (a
missing channel or message, a missing permission, a refused payload), with Discord's own
message. A send made of several messages (long text, more files than one message holds)
that fails halfway is tried again by the host: that try (the same channel, text and files)
goes on from the first message not yet accepted, so none is shown twice (`SentParts`: kept
in memory, so a retry after a restart sends it whole again: delivery is at least once).

Endpoints. discord.py keeps its REST base (`discord.http.Route.BASE`) and gateway URL
(`DiscordWebSocket.DEFAULT_GATEWAY`) in class attributes, so they are settings of the
whole process: `api_base` and `gateway_url` (for tests and self-hosted proxies) are
applied at `start()` (`None` means Discord's own), and Discord's own are put back when the
last started channel stops. That is acceptable because a host runs one Discord channel (one
bot); a second channel started at the same time with other endpoints is refused rather
than silently sending to the first one's server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import logging
import queue
import re
import shutil
import stat
import threading
import uuid
import warnings
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pykka
import yarl

from actors.channels.base import (
    CARD,
    EDIT,
    FILES,
    QUESTION,
    REACTION,
    TYPING,
    Admits,
    Card,
    ChannelError,
    InboundAnswer,
    InboundChat,
    InboundEvent,
    IncomingFile,
    OnEvent,
    SentParts,
    Stored,
    admit_all,
    send_key,
)
from protocol.rows import Routing

with warnings.catch_warnings():
    # discord.player imports audioop, deprecated since Python 3.11; we use no voice.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    import discord.gateway
    import discord.http

log = logging.getLogger(__name__)


class _ReconnectInOneLine(logging.Filter):
    """discord.py logs each gateway reconnect as an ERROR with a traceback of some 60 lines
    (`Attempting a reconnect in ...`): an outage it recovers from on its own. One warning
    line with the reason says the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Attempting a reconnect") and record.exc_info:
            error = record.exc_info[1]
            record.msg = f"discord: the gateway connection dropped ({type(error).__name__}: {error}); {record.msg}"
            record.msg = record.msg.replace("Attempting a reconnect", "reconnecting")
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("discord.client").addFilter(_ReconnectInOneLine())

CHANNEL_TYPE = "discord"
# Discord's limits (https://discord.com/developers/docs/resources/message). The API counts
# characters as code points (it is Python), so `len` measures what Discord measures.
MAX_MESSAGE_CHARS = 2000
MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_FILES_PER_MESSAGE = 10
MAX_BUTTONS = 25
BUTTONS_PER_ROW = 5
MAX_CUSTOM_ID_CHARS = 100
MAX_BUTTON_LABEL_CHARS = 80
MAX_EMBED_TITLE_CHARS = 256
MAX_EMBED_DESCRIPTION_CHARS = 4096
MAX_EMBED_FIELDS = 25
MAX_EMBED_FIELD_NAME_CHARS = 256
MAX_EMBED_FIELD_VALUE_CHARS = 1024
MAX_EMBED_TOTAL_CHARS = 6000
# A button's custom_id: "q:<question id>:<option index>".
QUESTION_PREFIX = "q:"

# Discord's own default is one heartbeat round in about 41 s; a first READY takes a few
# round trips. Past this the host hears that Discord is unreachable and may try again.
DEFAULT_READY_TIMEOUT_S = 30.0
# discord.py waits out a rate limit up to this long inside a send; 30 s is its minimum.
_MAX_RATELIMIT_WAIT_S = 30.0
_STOP_TIMEOUT_S = 5.0
# The host commits a message within milliseconds; a future still open after this is
# stuck, and its files are left where they are rather than deleted under a late commit.
_STORE_TIMEOUT_S = 60.0
_DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=30, sock_read=60)
_DOWNLOAD_CHUNK = 64 * 1024
_MAX_FILE_NAME_CHARS = 200
# A message's download folder: uuid4().hex, so nothing else in the folder is mistaken for one.
_DOWNLOAD_FOLDER = re.compile(r"[0-9a-f]{32}")
# Channels looked up over REST (a thread the gateway never announced), by id.
_MAX_REMEMBERED_PLACES = 1024
# Gateway close codes after which connecting again cannot help (bad token, intents, ...).
_FATAL_CLOSE_CODES = frozenset({4004, 4010, 4011, 4012, 4013, 4014})

_T = TypeVar("_T")

# -- process-wide endpoints ------------------------------------------------------------

_LIBRARY_API_BASE = discord.http.Route.BASE
_LIBRARY_GATEWAY = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
_endpoints_lock = threading.Lock()
# Started channels and the endpoints they set; see the module docstring.
_endpoint_users: dict[int, tuple[str, yarl.URL]] = {}


def _claim_endpoints(owner: object, api_base: str | None, gateway_url: str | None) -> None:
    wanted = (api_base.rstrip("/") if api_base else _LIBRARY_API_BASE, yarl.URL(gateway_url or str(_LIBRARY_GATEWAY)))
    with _endpoints_lock:
        others = {endpoints for user, endpoints in _endpoint_users.items() if user != id(owner)}
        if others and others != {wanted}:
            raise ChannelError(
                "another Discord channel runs in this process with other endpoints; discord.py's "
                "API and gateway URLs are process-wide, so only one set can be in use",
                retryable=False,
            )
        _endpoint_users[id(owner)] = wanted
        discord.http.Route.BASE = wanted[0]
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = wanted[1]


def _release_endpoints(owner: object) -> None:
    with _endpoints_lock:
        _endpoint_users.pop(id(owner), None)
        if not _endpoint_users:
            discord.http.Route.BASE = _LIBRARY_API_BASE
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = _LIBRARY_GATEWAY


# discord.py warns once per process that voice needs extra libraries; a text bot never
# uses voice, so the warning would only be noise in the host's log.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False


# -- the adapter -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """Where a Discord channel puts a conversation, in the host's terms."""

    platform_id: str
    thread_id: str | None
    chat_name: str | None
    is_dm: bool


@dataclass
class _Run:
    """One start(): its thread, and once the thread has them, its loop and client."""

    on_event: OnEvent
    number: int
    settled: threading.Event = field(default_factory=threading.Event)  # ready, or ended
    ready: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    client: _Bot | None = None
    failure: BaseException | None = None
    thread: threading.Thread | None = None
    watcher: _StoreWatcher | None = None


_run_numbers = itertools.count(1)


class DiscordChannel:
    """The `ChannelAdapter` for a Discord bot (guild channels, threads and DMs)."""

    def __init__(
        self,
        token: str,
        *,
        download_dir: Path,
        api_base: str | None = None,
        gateway_url: str | None = None,
        send_timeout_s: float = 30,
        ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
        admits: Admits = admit_all,
    ) -> None:
        """`admits` is asked before a message's attachments are fetched (base.Admits)."""
        self._token = token
        self._admits = admits
        self._download_dir = Path(download_dir)
        self._api_base = api_base
        self._gateway_url = gateway_url
        self._send_timeout_s = send_timeout_s
        self._ready_timeout_s = ready_timeout_s
        # start() and stop() one at a time; sends only read `_run` (one reference, swapped whole).
        self._lifecycle = threading.Lock()
        self._run: _Run | None = None
        # What multi-part sends that failed halfway got accepted, for the host's next try.
        self._sent_parts = SentParts()

    @property
    def channel_type(self) -> str:
        return CHANNEL_TYPE

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({FILES, EDIT, REACTION, QUESTION, CARD, TYPING})

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, on_event: OnEvent) -> None:
        with self._lifecycle:
            if self._run is not None:
                if not self._run.ended.is_set():
                    return
                self._end(self._run)  # the client died on its own; start afresh
                self._run = None
            self._download_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            _remove_leftovers(self._download_dir)
            _claim_endpoints(self, self._api_base, self._gateway_url)
            run = _Run(on_event=on_event, number=next(_run_numbers))
            run.watcher = _StoreWatcher(f"discord-{run.number}-stored")
            run.thread = threading.Thread(target=self._serve, args=(run,), name=f"discord-{run.number}", daemon=True)
            run.thread.start()
            run.settled.wait(self._ready_timeout_s)
            if not run.ready.is_set():
                failure = run.failure
                self._end(run)
                if failure is None:
                    raise ChannelError(
                        f"Discord did not become ready within {self._ready_timeout_s:.0f}s", retryable=True
                    )
                raise _start_error(failure) from failure
            self._run = run
        log.info("discord: connected as %s", run.client.user if run.client else "?")

    def stop(self) -> None:
        with self._lifecycle:
            run, self._run = self._run, None
            if run is not None:
                self._end(run)
                log.info("discord: stopped")

    def _end(self, run: _Run) -> None:
        run.stopping.set()
        loop, client = run.loop, run.client
        if loop is not None and client is not None and not run.ended.is_set():
            try:
                asyncio.run_coroutine_threadsafe(client.close(), loop).result(_STOP_TIMEOUT_S)
            except (RuntimeError, TimeoutError, concurrent.futures.CancelledError) as exc:
                # The loop closed meanwhile (nothing left to close) or close() hangs; the
                # thread is a daemon and is waited for below either way.
                log.debug("discord: closing the client: %r", exc)
        if run.thread is not None:
            run.thread.join(_STOP_TIMEOUT_S)
            if run.thread.is_alive():
                log.warning("discord: %s did not finish within %.0fs", run.thread.name, _STOP_TIMEOUT_S)
        if run.watcher is not None:
            run.watcher.close()
        _release_endpoints(self)

    def _serve(self, run: _Run) -> None:
        try:
            asyncio.run(self._main(run))
        except Exception as exc:
            run.failure = exc
        finally:
            if run.ready.is_set() and not run.stopping.is_set():
                # Connection trouble discord.py rides out itself; this is the end of it (the
                # token revoked, an intent withdrawn): nothing works until a start().
                log.error("discord: the client stopped; sends fail until the channel is started again: %r",
                          run.failure)  # fmt: skip
            run.ended.set()
            run.settled.set()

    async def _main(self, run: _Run) -> None:
        run.loop = asyncio.get_running_loop()
        assert run.watcher is not None
        client = _Bot(run, run.watcher, self._download_dir, self._admits)
        run.client = client
        async with client:
            await client.start(self._token)

    # -- sends -------------------------------------------------------------------------

    def send_text(self, to: Routing, text: str, files: tuple[Path, ...] = ()) -> str | None:
        channel_id = _channel_id(to)
        paths = _checked_files(files)
        if not text.strip() and not paths:
            raise ChannelError("nothing to send: no text and no files", retryable=False)
        steps = _steps(text, paths)
        key = send_key(to, "text", text, *(str(path) for path in files))
        return self._call(
            f"send to channel {channel_id}",
            lambda bot: self._resumed(key, lambda taken: _send_text(bot, channel_id, steps, taken)),
        )

    def edit_text(self, to: Routing, platform_message_id: str, text: str) -> None:
        channel_id, message_id = _channel_id(to), _message_id(platform_message_id)
        if not text.strip():
            raise ChannelError("cannot edit a message to nothing", retryable=False)
        # An edit rewrites one message; what does not fit in it is cut rather than lost
        # with the whole edit.
        content = _clip(text, MAX_MESSAGE_CHARS)

        async def edit(bot: _Bot) -> None:
            await bot.get_partial_messageable(channel_id).get_partial_message(message_id).edit(content=content)

        self._call(f"edit message {message_id}", edit)

    def add_reaction(self, to: Routing, platform_message_id: str, emoji: str) -> None:
        channel_id, message_id = _channel_id(to), _message_id(platform_message_id)

        async def react(bot: _Bot) -> None:
            await bot.get_partial_messageable(channel_id).get_partial_message(message_id).add_reaction(emoji)

        self._call(f"react to message {message_id}", react)

    def ask_question(self, to: Routing, question_id: str, question: str, options: tuple[str, ...]) -> str | None:
        channel_id = _channel_id(to)
        custom_ids = [f"{QUESTION_PREFIX}{question_id}:{index}" for index in range(len(options))]
        if not options or len(options) > MAX_BUTTONS or any(len(c) > MAX_CUSTOM_ID_CHARS for c in custom_ids):
            # No buttons can carry it: the person answers by writing the option instead.
            numbered = "\n".join(f"{index}. {option}" for index, option in enumerate(options, 1))
            return self.send_text(to, f"{question}\n{numbered}".strip())
        buttons = list(zip(custom_ids, options, strict=True))
        key = send_key(to, "question", question_id, question, *options)
        return self._call(
            f"ask in channel {channel_id}",
            lambda bot: self._resumed(key, lambda taken: _ask(bot, channel_id, question, buttons, taken)),
        )

    def send_card(self, to: Routing, card: Card) -> str | None:
        channel_id = _channel_id(to)

        async def send(bot: _Bot) -> str:
            message = await bot.get_partial_messageable(channel_id).send(embed=_embed(card))
            return str(message.id)

        return self._call(f"send a card to channel {channel_id}", send)

    def show_typing(self, to: Routing) -> None:
        channel_id = _channel_id(to)

        async def typing(bot: _Bot) -> None:
            # Awaiting the context manager posts one typing notice (shown ~10 s) and
            # returns; the host says it again while a turn runs.
            await bot.get_partial_messageable(channel_id).typing()

        self._call(f"show typing in channel {channel_id}", typing)

    async def _resumed(self, key: str, send: Callable[[list[str]], Coroutine[Any, Any, _T]]) -> _T:
        """`send(taken)` resumed where an earlier try of the same send stopped (SentParts)."""
        return await self._sent_parts.resume(key, send, _retried)

    def _call(self, what: str, make: Callable[[_Bot], Coroutine[Any, Any, _T]]) -> _T:
        """Run `make(client)` on the client's loop and wait for it within the send timeout."""
        run = self._run
        loop, client = (run.loop, run.client) if run is not None else (None, None)
        if run is None or loop is None or client is None or run.ended.is_set():
            raise ChannelError("the Discord client is not running", retryable=True)
        if threading.current_thread() is run.thread:
            # Waiting here for the loop this thread runs would hang until the timeout.
            raise RuntimeError("a Discord send was made from the client's own thread (from on_event?)")
        coroutine = make(client)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError as exc:  # the loop closed since the check above
            coroutine.close()
            raise ChannelError(f"discord: {what}: the client is shutting down", retryable=True) from exc
        try:
            return future.result(timeout=self._send_timeout_s)
        except TimeoutError as exc:
            if future.done():  # the call's own timeout (aiohttp's), not ours
                raise ChannelError(f"discord: {what}: timed out", retryable=True) from exc
            future.cancel()
            raise ChannelError(
                f"discord: {what}: no answer within {self._send_timeout_s:.0f}s", retryable=True
            ) from exc
        except Exception as exc:
            mapped = _send_error(exc, what)
            if mapped is None:
                raise
            if mapped is not exc:
                raise mapped from exc
            raise


# -- sending (on the client's loop) ------------------------------------------------------


def _retried(exc: BaseException) -> bool:
    """Whether the host tries a send again after `exc`: an exception not known here is an
    adapter bug to the host, which tries again."""
    mapped = _send_error(exc, "send")
    return mapped is None or mapped.retryable


def _steps(text: str, files: Sequence[tuple[Path, int]]) -> list[tuple[str | None, list[Path]]]:
    """The messages a send is made of, in order: the text's parts, the files riding with the
    last one (so they follow what introduces them), and what does not fit in it on its own."""
    steps: list[tuple[str | None, list[Path]]] = [(part, []) for part in split_message(text)]
    groups = _file_groups(files)
    if steps and groups:
        steps[-1] = (steps[-1][0], groups.pop(0))
    steps.extend((None, group) for group in groups)
    return steps


async def _send_text(
    bot: _Bot, channel_id: int, steps: Sequence[tuple[str | None, list[Path]]], taken: list[str]
) -> str | None:
    """Send the steps not yet in `taken` (the ids of those accepted, in order), adding each
    one's id as it is accepted; the first message's id is the send's."""
    channel = bot.get_partial_messageable(channel_id)
    for content, paths in steps[len(taken) :]:
        taken.append(await _send_one(channel, content, paths))
    return taken[0] if taken else None


async def _send_one(channel: discord.PartialMessageable, content: str | None, paths: Sequence[Path]) -> str:
    if not paths:
        return str((await channel.send(content)).id)
    opened: list[discord.File] = []
    try:
        for path in paths:
            opened.append(discord.File(path, filename=path.name))
    except OSError as exc:
        for file in opened:
            file.close()
        raise ChannelError(f"cannot read {path.name}: {exc.strerror or exc}", retryable=False) from exc
    # send() closes the files, whatever happens.
    return str((await channel.send(content, files=opened)).id)


async def _ask(bot: _Bot, channel_id: int, question: str, buttons: Sequence[tuple[str, str]], taken: list[str]) -> str:
    """The question's text (its parts not yet in `taken`), the last part with the buttons."""
    channel = bot.get_partial_messageable(channel_id)
    parts = split_message(question)
    if len(taken) >= max(1, len(parts)):
        return taken[0]  # all of it accepted by an earlier try
    for part in parts[len(taken) : -1]:
        taken.append(str((await channel.send(part)).id))
    # Built here, on the client's loop: a View made elsewhere has no loop to finish on.
    view = discord.ui.View(timeout=None)
    for index, (custom_id, option) in enumerate(buttons):
        label = _clip(option.strip() or str(index + 1), MAX_BUTTON_LABEL_CHARS)
        view.add_item(discord.ui.Button(label=label, custom_id=custom_id, row=index // BUTTONS_PER_ROW))
    # Clicks are read from the raw interaction (_Bot.on_interaction), which also works for
    # questions asked before a restart. A finished view is not kept in discord.py's view
    # store, where every question would otherwise stay for the life of the process.
    view.stop()
    message = await channel.send(parts[-1] if parts else None, view=view)
    taken.append(str(message.id))
    return taken[0]


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """`text` in pieces of at most `limit` characters, in order, cut at paragraph breaks
    where it can, then at line breaks, then at spaces, then anywhere. Blank lines at a cut
    are dropped (a leading indent is kept), and so are blank pieces: Discord refuses an
    empty message."""
    pieces = (piece.rstrip().lstrip("\n") for piece in _split(text, limit, ("\n\n", "\n", " ")))
    return [piece for piece in pieces if piece]


def _split(text: str, limit: int, separators: tuple[str, ...]) -> list[str]:
    if len(text) <= limit:
        return [text]
    if not separators:
        return [text[start : start + limit] for start in range(0, len(text), limit)]
    separator, finer = separators[0], separators[1:]
    pieces: list[str] = []
    current: str | None = None
    for part in text.split(separator):
        if current is not None and len(current) + len(separator) + len(part) <= limit:
            current += separator + part
            continue
        if current is not None:
            pieces.append(current)  # the separator between two messages is dropped
        if len(part) <= limit:
            current = part
        else:
            *whole, current = _split(part, limit, finer)
            pieces.extend(whole)
    if current is not None:
        pieces.append(current)
    return pieces


def _file_groups(files: Sequence[tuple[Path, int]]) -> list[list[Path]]:
    """Files in send order, packed into messages of at most 10 files and 25 MB."""
    groups: list[list[Path]] = []
    size = 0
    for path, file_size in files:
        if not groups or len(groups[-1]) >= MAX_FILES_PER_MESSAGE or size + file_size > MAX_FILE_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += file_size
    return groups


def _embed(card: Card) -> discord.Embed:
    """The card as an embed, clipped to Discord's limits (fields beyond them are dropped)."""
    title = _clip(card.title, MAX_EMBED_TITLE_CHARS)
    fields = [
        # Discord refuses an empty field name or value; a zero-width space shows as nothing.
        (_clip(name, MAX_EMBED_FIELD_NAME_CHARS) or "\u200b", _clip(value, MAX_EMBED_FIELD_VALUE_CHARS) or "\u200b")
        for name, value in card.fields[:MAX_EMBED_FIELDS]
    ]
    while fields and len(title) + sum(len(n) + len(v) for n, v in fields) > MAX_EMBED_TOTAL_CHARS:
        fields.pop()
    room = MAX_EMBED_TOTAL_CHARS - len(title) - sum(len(n) + len(v) for n, v in fields)
    description = _clip(card.text, min(MAX_EMBED_DESCRIPTION_CHARS, room))
    embed = discord.Embed(title=title or None, description=description or None)
    for name, value in fields:
        embed.add_field(name=name, value=value, inline=False)
    return embed


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…" if limit > 0 else ""


def _channel_id(to: Routing) -> int:
    """The channel a send goes to: the thread when there is one (a thread is a channel of
    its own to Discord), else the chat."""
    raw = to.thread_id or to.platform_id
    if raw is None or not raw.isdigit():
        raise ChannelError(f"{raw!r} is not a Discord channel id", retryable=False)
    return int(raw)


def _message_id(raw: str) -> int:
    if not raw.isdigit():
        raise ChannelError(f"{raw!r} is not a Discord message id", retryable=False)
    return int(raw)


def _checked_files(files: tuple[Path, ...]) -> list[tuple[Path, int]]:
    """Each file with its size, checked here in the caller's thread so that a file that
    can never go is refused for good before anything is sent."""
    checked: list[tuple[Path, int]] = []
    for raw in files:
        path = Path(raw)
        try:
            info = path.stat()
        except OSError as exc:
            raise ChannelError(f"cannot send {path.name}: {exc.strerror or exc}", retryable=False) from exc
        if not stat.S_ISREG(info.st_mode):
            raise ChannelError(f"cannot send {path.name}: not a regular file", retryable=False)
        if info.st_size > MAX_FILE_BYTES:
            raise ChannelError(
                f"cannot send {path.name}: {_megabytes(info.st_size)} is more than Discord's "
                f"{_megabytes(MAX_FILE_BYTES)} per file",
                retryable=False,
            )
        checked.append((path, info.st_size))
    return checked


def _send_error(exc: BaseException, what: str) -> ChannelError | None:
    """What a failed call means for the host; None for an exception we do not know (the
    DeliveryActor logs it as an adapter bug and retries)."""
    if isinstance(exc, ChannelError):
        return exc
    if isinstance(exc, discord.NotFound | discord.Forbidden):
        return ChannelError(f"discord: {what}: {exc}", retryable=False)
    if isinstance(exc, discord.RateLimited):
        return ChannelError(
            f"discord: {what}: rate limited for {exc.retry_after:.0f}s", retryable=True, retry_after_s=exc.retry_after
        )
    if isinstance(exc, discord.HTTPException):
        # 429 here is one discord.py would not wait out (no `Via`: Cloudflare's ban).
        retryable = exc.status >= 500 or exc.status in {408, 429}
        return ChannelError(f"discord: {what}: {exc}", retryable=retryable)
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return ChannelError(f"discord: {what}: {type(exc).__name__}: {exc}", retryable=True)
    if isinstance(exc, concurrent.futures.CancelledError | asyncio.CancelledError):
        return ChannelError(f"discord: {what}: the client stopped", retryable=True)
    return None


def _start_error(exc: BaseException) -> ChannelError:
    if isinstance(exc, discord.LoginFailure):
        return ChannelError(f"Discord refused the bot token: {exc}", retryable=False)
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return ChannelError(
            "Discord refused the Message Content intent: enable it for the bot in the Developer Portal",
            retryable=False,
        )
    if isinstance(exc, discord.ConnectionClosed) and exc.code in _FATAL_CLOSE_CODES:
        return ChannelError(f"Discord closed the gateway: {exc}", retryable=False)
    mapped = _send_error(exc, "connect")
    if mapped is not None:
        return mapped
    # An unreachable gateway ends discord.py's first connect with an AttributeError raised
    # while handling the connection error (it has no socket to resume): name the cause.
    cause = exc.__cause__ or exc.__context__
    mapped = _send_error(cause, "connect to the gateway") if cause is not None else None
    if mapped is not None:
        return ChannelError(str(mapped), retryable=True)
    return ChannelError(f"discord: connect: {type(exc).__name__}: {exc}", retryable=True)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


# -- the client (runs on its own loop) ---------------------------------------------------


class _Bot(discord.Client):
    """discord.py's client with our event handlers; everything here runs on its loop."""

    def __init__(self, run: _Run, watcher: _StoreWatcher, download_dir: Path, admits: Admits) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channel and thread names, and thread parents
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = True  # privileged: enabled per bot in the Developer Portal
        super().__init__(
            intents=intents,
            max_ratelimit_timeout=_MAX_RATELIMIT_WAIT_S,
            # The agent is untrusted: what it writes may name people, never @everyone or a role.
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True, replied_user=True),
        )
        self._run = run
        self._watcher = watcher
        self._download_dir = download_dir
        self._admits = admits
        self._downloads: aiohttp.ClientSession | None = None
        # Per channel, the event handed over last: the next one in that channel waits for it.
        self._tails: dict[int, asyncio.Future[None]] = {}
        self._places: dict[int, _Place] = {}

    async def setup_hook(self) -> None:
        self._downloads = aiohttp.ClientSession(timeout=_DOWNLOAD_TIMEOUT)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self._downloads is not None:
                await self._downloads.close()

    async def on_connect(self) -> None:
        # Dispatched on READY, before discord.py waits for every guild to stream in (its
        # on_ready comes seconds later): the gateway is up and sends work from here on.
        self._run.ready.set()
        self._run.settled.set()

    # -- inbound ----------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        author = message.author
        if author.bot or message.webhook_id is not None or (self.user is not None and author.id == self.user.id):
            return  # a bot's (ours included) or an integration's: answering could loop
        if message.is_system():
            return  # "joined", "pinned", thread created: nothing anyone said
        await self._in_order(message.channel.id, self._chat_event(message))

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is not discord.InteractionType.component or interaction.data is None:
            return
        parsed = _parse_custom_id(str(interaction.data.get("custom_id", "")))
        if parsed is None:
            return  # not one of our question buttons
        question_id, index = parsed
        await self._in_order(interaction.channel_id or 0, self._answer_event(interaction, question_id, index))

    async def _in_order(self, channel_id: int, prepare: Coroutine[Any, Any, _Prepared | None]) -> None:
        """Prepare the event (downloads included) alongside earlier ones, then hand it over
        after the one before it in the same channel."""
        # This runs up to the first await in the order discord.py dispatched the events.
        previous = self._tails.get(channel_id)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[channel_id] = mine
        prepared: _Prepared | None = None
        try:
            try:
                prepared = await prepare
            except Exception:
                log.exception("discord: could not read an event in channel %s", channel_id)
            if previous is not None:
                # Shielded: cancelling this task (the client closing) must not cancel the
                # earlier event's marker under it.
                await asyncio.shield(previous)
            handing, prepared = prepared, None
            if handing is not None:
                self._hand_over(handing)
        finally:
            if prepared is not None and prepared.folder is not None:
                shutil.rmtree(prepared.folder, ignore_errors=True)  # cancelled before handing over
            if not mine.done():
                mine.set_result(None)
            if self._tails.get(channel_id) is mine:
                del self._tails[channel_id]

    def _hand_over(self, prepared: _Prepared) -> None:
        try:
            stored = self._run.on_event(prepared.event)
        except Exception:  # the contract says it never raises; the files must not leak if it does
            log.exception("discord: the host failed to take %s", prepared.what)
            if prepared.folder is not None:
                shutil.rmtree(prepared.folder, ignore_errors=True)
            return
        taken = prepared.when_taken
        then = None if taken is None else functools.partial(self._soon, taken)
        self._watcher.watch(stored, prepared.folder, prepared.what, then)

    def _soon(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """From another thread: run `make()` on the client's loop, not waiting for it (it
        logs its own failures); nothing once the client is closing."""
        loop = self._run.loop
        if loop is None or self.is_closed():
            return
        coroutine = make()
        try:
            asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # the loop closed meanwhile
            coroutine.close()

    async def _chat_event(self, message: discord.Message) -> _Prepared | None:
        place = await self._place(message.channel, message.author.display_name)
        notes: list[str] = []
        files: list[IncomingFile] = []
        folder: Path | None = None
        if message.attachments and not self._admits(CHANNEL_TYPE, place.platform_id, str(message.author.id)):
            # Someone the host will not let through: their files are not worth a download.
            notes.extend(f"(a file, not fetched: {attachment.filename[:200]})" for attachment in message.attachments)
        elif message.attachments:
            folder = self._download_dir / uuid.uuid4().hex
            folder.mkdir(mode=0o700, parents=True)
            try:
                files, notes = await self._download_all(message.attachments, folder)
            except BaseException:  # cancelled (the client closing) or a bug: leave nothing behind
                shutil.rmtree(folder, ignore_errors=True)
                raise
        notes.extend(f"[sticker: {sticker.name}]" for sticker in message.stickers)
        text = "\n".join(part for part in (message.content, *notes) if part)
        if not text.strip() and not files:
            # An embed-only message, or the Message Content intent is off for this bot.
            log.debug("discord: message %s has nothing to pass on", message.id)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            return None
        event = InboundChat(
            channel_type=CHANNEL_TYPE,
            platform_id=place.platform_id,
            thread_id=place.thread_id,
            text=text,
            sender=message.author.display_name,
            sender_id=str(message.author.id),
            platform_message_id=str(message.id),
            chat_name=place.chat_name,
            is_group=not place.is_dm,
            mentions_assistant=place.is_dm or self._addressed(message),
            files=tuple(files),
        )
        return _Prepared(event, folder, f"message {message.id}")

    async def _answer_event(self, interaction: discord.Interaction, question_id: str, index: int) -> _Prepared:
        # Acknowledged first (Discord shows "interaction failed" after 3 s without an answer),
        # leaving the message as it is: whether the click counts is the host's to say (a
        # stranger's, or one on a question no longer open, does not).
        await _acknowledge(interaction)
        user = interaction.user
        channel: object = interaction.channel
        if channel is None:
            channel = self.get_partial_messageable(interaction.channel_id or 0, guild_id=interaction.guild_id)
        place = await self._place(channel, user.display_name)
        event = InboundAnswer(
            channel_type=CHANNEL_TYPE,
            platform_id=place.platform_id,
            thread_id=place.thread_id,
            question_id=question_id,
            option_index=index,
            sender=user.display_name,
            sender_id=str(user.id),
        )
        what = f"the answer to {question_id!r} by {user.id}"
        return _Prepared(event, None, what, when_taken=functools.partial(_show_choice, interaction, index))

    def _addressed(self, message: discord.Message) -> bool:
        """Whether the message speaks to the assistant: a mention of it (or of its own
        role, which Discord's autocomplete offers under the bot's name), or a reply to it."""
        me = self.user
        if me is None:
            return False
        if any(user.id == me.id for user in message.mentions):
            return True
        own_role = message.guild.self_role if message.guild is not None else None
        if own_role is not None and any(role.id == own_role.id for role in message.role_mentions):
            return True
        replied = message.reference.resolved if message.reference is not None else None
        return isinstance(replied, discord.Message) and replied.author.id == me.id

    async def _place(self, channel: object, person: str) -> _Place:
        """Where `channel` puts the conversation; a channel the gateway never told us about
        (a thread created while we were away) is looked up once over REST."""
        if isinstance(channel, discord.DMChannel):
            return _Place(str(channel.id), None, person, is_dm=True)
        if isinstance(channel, discord.Thread):
            parent = channel.parent
            return _Place(str(channel.parent_id), str(channel.id), parent.name if parent else None, is_dm=False)
        if isinstance(channel, discord.abc.GuildChannel | discord.GroupChannel):
            return _Place(str(channel.id), None, channel.name, is_dm=False)
        channel_id = getattr(channel, "id", 0)
        known = self._places.get(channel_id)
        if known is not None:
            return known
        try:
            fetched = await self.fetch_channel(channel_id)
        except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("discord: cannot look up channel %s, taking it as a plain channel: %s", channel_id, exc)
            return _Place(str(channel_id), None, None, is_dm=False)
        place = await self._place(fetched, person)
        if len(self._places) >= _MAX_REMEMBERED_PLACES:
            self._places.clear()
        self._places[channel_id] = place
        return place

    async def _download_all(
        self, attachments: Sequence[discord.Attachment], folder: Path
    ) -> tuple[list[IncomingFile], list[str]]:
        files: list[IncomingFile] = []
        notes: list[str] = []
        taken: set[str] = set()
        for attachment in attachments:
            name = _unique_name(_safe_name(attachment.filename), taken)
            if attachment.size > MAX_FILE_BYTES:
                log.info("discord: attachment %s (%d bytes) is over the size cap", attachment.id, attachment.size)
                notes.append(f"[attachment {name} not received: {_megabytes(attachment.size)}, over the 25 MB cap]")
                continue
            path = folder / name
            try:
                await self._download(attachment.url, path)
            except _TooLargeError:
                log.info("discord: attachment %s is over the size cap once downloaded", attachment.id)
                notes.append(f"[attachment {name} not received: over the 25 MB cap]")
                continue
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                path.unlink(missing_ok=True)
                log.warning("discord: cannot download attachment %s: %r", attachment.id, exc)
                notes.append(f"[attachment {name} could not be downloaded]")
                continue
            files.append(IncomingFile(name, str(path)))
        return files, notes

    async def _download(self, url: str, path: Path) -> None:
        """Stream `url` into `path`, stopping past the cap whatever size Discord announced."""
        assert self._downloads is not None
        if yarl.URL(url).scheme not in {"http", "https"}:
            raise aiohttp.InvalidURL(url)
        async with self._downloads.get(url) as response:
            response.raise_for_status()
            received = 0
            with path.open("xb") as out:  # the folder is new: never replace anything
                async for chunk in response.content.iter_chunked(_DOWNLOAD_CHUNK):
                    received += len(chunk)
                    if received > MAX_FILE_BYTES:
                        out.close()
                        path.unlink(missing_ok=True)
                        raise _TooLargeError
                    out.write(chunk)


class _TooLargeError(Exception):
    pass


@dataclass(frozen=True)
class _Prepared:
    event: InboundEvent
    folder: Path | None  # the downloads' folder, ours until the host has taken the files
    what: str  # for the log
    # Run on the client's loop once the host took the event (stored it, rather than dropped
    # or refused it): a click's message then shows the choice.
    when_taken: Callable[[], Coroutine[Any, Any, None]] | None = None


async def _acknowledge(interaction: discord.Interaction) -> None:
    """Answer the click without changing its message (a deferred update): the buttons stay
    for whoever may still answer until the host has taken an answer."""
    try:
        await interaction.response.defer()
    except discord.HTTPException as exc:
        message = interaction.message
        log.warning("discord: could not acknowledge a click on %s: %s", message.id if message else "?", exc)


async def _show_choice(interaction: discord.Interaction, index: int) -> None:
    """The host took the answer: show the choice in place of the buttons, so nobody clicks
    again."""
    message = interaction.message
    if message is None:
        return
    label = _button_label(message, interaction.data.get("custom_id") if interaction.data else None)
    choice = f"→ **{label or index + 1}** ({interaction.user.display_name})"
    content = f"{message.content}\n\n{choice}" if message.content else choice
    try:
        await message.edit(content=_clip(content, MAX_MESSAGE_CHARS), view=None)
    except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.warning("discord: could not show the choice on %s: %s", message.id, exc)


def _button_label(message: discord.Message | None, custom_id: object) -> str | None:
    for row in message.components if message is not None else ():
        if isinstance(row, discord.ActionRow):
            for child in row.children:
                if isinstance(child, discord.Button) and child.custom_id == custom_id:
                    return child.label
    return None


def _parse_custom_id(custom_id: str) -> tuple[str, int] | None:
    if not custom_id.startswith(QUESTION_PREFIX):
        return None
    question_id, _, index = custom_id[len(QUESTION_PREFIX) :].rpartition(":")
    if not question_id or not index.isdigit() or int(index) >= MAX_BUTTONS:
        return None
    return question_id, int(index)


def _remove_leftovers(download_dir: Path) -> None:
    """Delete the download folders an earlier run left behind (it ended before the host
    took them): with the client not yet started, none of them is in use."""
    for entry in download_dir.iterdir():
        if _DOWNLOAD_FOLDER.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            log.info("discord: removing the leftover download folder %s", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _safe_name(name: str) -> str:
    """A plain file name from what the sender's client called the file."""
    base = Path(name.replace("\\", "/").replace("\0", "")).name.strip()
    if base in {"", ".", ".."}:
        return "file"
    if len(base) > _MAX_FILE_NAME_CHARS:
        suffix = Path(base).suffix[:20]
        base = base[: _MAX_FILE_NAME_CHARS - len(suffix)] + suffix
    return base


def _unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name (2)`, ... when the message already has a file of that name: the
    host files them side by side under their names."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        path = Path(name)
        candidate = f"{path.stem} ({number}){path.suffix}"
    taken.add(candidate)
    return candidate


# -- the host's answers ------------------------------------------------------------------


@dataclass(frozen=True)
class _Watched:
    stored: Stored
    folder: Path | None
    what: str
    taken: Callable[[], None] | None = None  # called once the host stored the event


class _StoreWatcher:
    """Waits, on a thread of its own, for the host to store each event handed over: the
    client's loop must not block on it, and someone must clean up the downloads the host
    did not take (it moves what it takes)."""

    def __init__(self, name: str) -> None:
        self._queue: queue.Queue[_Watched | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def watch(self, stored: Stored, folder: Path | None, what: str, taken: Callable[[], None] | None = None) -> None:
        """Wait for `stored`; then delete `folder`, and, if the host stored the event (it did
        not drop it: the future's value is not None), call `taken()`."""
        self._queue.put(_Watched(stored, folder, what, taken))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(_STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("discord: still waiting for the host to store a message; not waiting longer")

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            stored: Any = None
            try:
                stored = item.stored.get(timeout=_STORE_TIMEOUT_S)
            except Exception as exc:
                if isinstance(exc, pykka.Timeout):  # the host may still commit it and move the files
                    log.error("discord: the host has not stored %s after %.0fs", item.what, _STORE_TIMEOUT_S)
                    continue
                log.warning("discord: the host did not take %s: %s", item.what, exc)
            if item.folder is not None:
                shutil.rmtree(item.folder, ignore_errors=True)
            if stored is not None and item.taken is not None:
                try:
                    item.taken()
                except Exception:  # this thread must go on for every other event
                    log.exception("discord: acting on %s once stored failed", item.what)
