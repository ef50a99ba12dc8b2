"""The Telegram channel: a bot reached through the Bot API with python-telegram-bot (PTB).

Threads and the loop. `start()` makes an asyncio loop and a thread of its own ("telegram")
that runs it; PTB's `Bot` (and its httpx clients) live on that loop and nowhere else. The
host calls the send methods from its delivery thread: each hands its coroutine to the loop
with `asyncio.run_coroutine_threadsafe` and waits for it within a budget (the per-request
timeouts of PTB do the real bounding; the budget only guards against a wedged loop). So a
slow Telegram blocks that channel's delivery thread and nothing else. `stop()` cancels the
loop's main task (the long poll in flight is cut at once), confirms what was taken (or, in
webhook mode, closes the server), closes PTB's clients and joins the thread.

Receiving. One long-polling loop (`getUpdates`) written here rather than PTB's `Updater`,
because the offset is Telegram's ack: the next `getUpdates` tells Telegram to forget
everything before its offset. Each batch is turned into events (files are downloaded first)
and handed to the host, and the offset moves past the batch only once the host resolved
every `Stored` future (or refused the message, or did not answer within a minute). A host
that dies with a message unstored thus gets it again from Telegram after a restart
(at-least-once; a message stored just before a crash may come twice). The futures are
waited for on a short-lived helper thread, so the loop keeps serving sends meanwhile.
A polling error waits (RetryAfter's time, else a backoff from 1 s to 30 s) and polls again.
Files people send (a bot may fetch up to 20 MB; a bigger one becomes a note in the text) are
downloaded into `download_dir/tg-XXXX/<name>`; the host moves them into the session's inbox
before it resolves the future, and the folder is removed then (or at the next start, for
one a stopping host never took).

Webhook mode (`webhook_url` given; polling is the default). Instead of polling, `start()`
opens a small aiohttp server (`telegram_webhook.WebhookServer`) on the channel's loop at
`webhook_listen` (127.0.0.1:8443 by default: a reverse proxy terminating HTTPS at
`webhook_url` forwards there), then calls setWebhook with the URL and a secret made at
random for this start, which Telegram puts on every request it makes. A request carrying
the secret is read as the update it is and handled exactly as a polled one (the same events,
the same downloads), and answered 200 only once the host resolved its `Stored` future
(stored, or refused, as a polled batch is confirmed); when the host did not answer within a
minute, or the channel is stopping, it is answered 503 and Telegram sends it again:
at-least-once, as with polling. A request without the secret, too large, or not an update is
refused with nothing handed over (see `telegram_webhook`). Telegram opens at most
`telegram_webhook.MAX_CONCURRENT` connections at once, so, unlike a polled batch, two updates
sent close together may reach the host in either order. `stop()` closes the server and does
not call deleteWebhook: while the host is down, updates wait at Telegram (for a day at most)
and come once it is back. Starting in polling mode deletes the webhook, keeping what waits.

Sending and retries. PTB makes one attempt per call; the host owns retries, so every
failure becomes a `ChannelError`: flood control (RetryAfter, the wait in the message),
time-outs and network or 5xx errors are retryable; Telegram refusing the request
(BadRequest, e.g. "chat not found"; Forbidden, e.g. the bot was blocked; a bad token) is
not. A long text goes out in several messages (and files after it): when a later one
fails, the host's retry of the same send (the same chat, text and files) goes on from the
first message not yet accepted, so none is shown twice (`SentParts`: kept in memory, so a
retry after a restart sends it whole again). Flood control met by a later part is waited
out here (within `_MAX_INLINE_WAIT_S` in all) instead of failing the send.

Formatting. Agents write Markdown; Telegram's HTML parse mode is the target because only
`<`, `>` and `&` need escaping there (MarkdownV2 needs 18 characters escaped, context by
context). `telegram_format.markdown_to_html` is a small converter for what agents write: bold, italic,
strike, inline code, fenced code, links, headings (bold), quotes, bullets, tables
(monospace). Whatever Telegram still refuses ("can't parse entities") is sent again as the
plain text the agent wrote. Texts are split at 4096 characters (counted in UTF-16 units, as
Telegram counts) on paragraph boundaries, else lines, else spaces, else anywhere; a code
fence cut in two is closed and reopened, so each part renders on its own.

Conversation threads (`thread_id` of events and `Routing`). Two kinds, told apart by form:
- a forum topic: its `message_thread_id` in decimal, e.g. "7" (as it always was, so the
  ids already stored stay valid);
- a reply thread in a group (basic or super, including a forum's General topic): "r" and the
  id of the chain's root message in that chat, e.g. "r512".
A message of a forum topic is in the topic, whatever it replies to. Otherwise, in a group, a
message that replies to another is in the reply thread of that one: its root. What is
known is kept in memory, per chat (`_ReplyThreads`: the latest `_THREAD_MESSAGES` messages of
each of the latest `_THREAD_CHATS` chats): each message taken in a reply thread, and each
message the bot sent to one (so a reply to the bot's answer goes on in the same thread). A
reply to a message not known there (older than what is kept, or from before a restart)
takes the root Telegram names in the message (its `message_thread_id`, which in a supergroup
without topics is the top of the reply chain), and, where it names none (a basic group),
starts a thread rooted at the message replied to. A message that replies to nothing is in no
thread (None), nor is a reply in a private chat: there it is part of the one conversation.
Sends to a reply thread go as replies to its root (every message of the send, so each is in
the chain by Telegram's reckoning too), with allow_sending_without_reply, so a root deleted
since does not fail the send; sends to a topic carry its `message_thread_id`; typing in a
reply thread is shown in the chat (Telegram has no typing per reply thread). A button press
is in the thread of the question's message, when that is known.

Questions. A button's callback data is `q:<question_id>:<option index>`; Telegram allows
64 bytes, so a longer question id is replaced by `h:<hash>` and the hash -> id map is kept in
memory (the latest `_QUESTION_KEYS` questions). After a restart a button of such a question
is answered "no longer open" and reported to no one; short ids survive restarts.

Reactions. Telegram takes only its own list of emoji. A common one outside it is mapped to
the closest allowed one (✅ -> 👍, 😂 -> 🤣, ❌ -> 👎, ...); anything else is skipped with a
log line, because a wrong reaction says more than none.

The token is part of every Bot API URL, and httpx logs each request's URL at INFO: while
the channel runs, a filter on the "httpx" logger writes `<token>` in its place.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import datetime as dt
import functools
import hashlib
import html
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pykka
from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatType, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

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
    IncomingFile,
    OnEvent,
    SentParts,
    Stored,
    admit_all,
    send_key,
)
from actors.channels.telegram_format import (
    MAX_TEXT_UNITS,
    escape_markdown,
    markdown_to_html,
    reaction_for,
    split_text,
    truncate,
    units,
)
from actors.channels.telegram_webhook import MAX_CONCURRENT, WebhookServer
from protocol.rows import Routing

log = logging.getLogger(__name__)

CHANNEL_TYPE = "telegram"
DEFAULT_BASE_URL = "https://api.telegram.org/bot"

# Telegram's limits, counted as Telegram counts them (UTF-16 code units for text).
MAX_CAPTION_UNITS = 1024
MAX_CALLBACK_DATA_BYTES = 64
# A bot may download files up to 20 MB and upload up to 50 MB (photos up to 10 MB).
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024

_PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
_ALLOWED_UPDATES = ("message", "callback_query")
# The host answers once the row is committed; longer means something is stuck, and polling
# must go on for every other chat.
_STORE_TIMEOUT_S = 60.0
# How often the helper thread waiting on the host checks whether the channel is stopping.
_STORE_CHECK_S = 0.2
_JOIN_TIMEOUT_S = 5.0
# Closing steps at stop (confirming the offset, closing the HTTP clients) get this long each.
_CLOSE_STEP_S = 2.0
_POLL_BACKOFF_FIRST_S = 1.0
_POLL_BACKOFF_MAX_S = 30.0
# Long polling's HTTP read timeout is the poll timeout plus this margin.
_POLL_READ_MARGIN_S = 10.0
# Flood control waited out inside one multi-part send, in all.
_MAX_INLINE_WAIT_S = 30.0
_DOWNLOAD_ATTEMPTS = 3
# question hash -> question id, for ids too long for a button's callback data.
_QUESTION_KEYS = 4096
# message id -> the root of its reply thread: this many messages per chat, this many chats.
_THREAD_MESSAGES = 4096
_THREAD_CHATS = 512
_REPLY_THREAD_PREFIX = "r"
_DOWNLOAD_PREFIX = "tg-"
_MAX_NAME_CHARS = 200

_T = TypeVar("_T")


class TelegramChannel:
    """The `ChannelAdapter` for a Telegram bot, polling for updates, or, given `webhook_url`
    (the public HTTPS URL Telegram posts to), taking them on a local server at
    `webhook_listen` (host, port) that a reverse proxy forwards that URL to."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        base_file_url: str | None = None,
        download_dir: Path,
        bot_username: str | None = None,
        poll_timeout_s: float = 30,
        send_timeout_s: float = 30,
        webhook_url: str | None = None,
        webhook_listen: tuple[str, int] = ("127.0.0.1", 8443),
        admits: Admits = admit_all,
    ) -> None:
        """`admits` is asked before a message's file is fetched (base.Admits)."""
        self._token = token
        self._admits = admits
        self._base_url = base_url
        self._base_file_url = base_file_url if base_file_url is not None else _file_url_for(base_url)
        self._download_dir = Path(download_dir)
        self._configured_username = bot_username.lstrip("@") if bot_username else None
        self._poll_timeout_s = max(0, round(poll_timeout_s))
        self._send_timeout_s = send_timeout_s
        # Uploads of up to 50 MB need longer than a message does.
        self._media_timeout_s = max(4 * send_timeout_s, 120.0)
        self._webhook_url = webhook_url
        self._webhook_listen = webhook_listen
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._redactor = _RedactToken(token)
        # What multi-part sends that failed halfway got accepted, for the host's next try.
        self._sent_parts = SentParts()

    @property
    def channel_type(self) -> str:
        return CHANNEL_TYPE

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({FILES, EDIT, REACTION, QUESTION, CARD, TYPING})

    @property
    def bot_username(self) -> str | None:
        """The bot's username, as configured or as getMe said once started."""
        run = self._run
        if run is not None and run.username:
            return run.username
        return self._configured_username

    @property
    def webhook_port(self) -> int | None:
        """In webhook mode, the port the local server listens on (the system's choice when 0
        was asked) while the channel runs; otherwise None."""
        run = self._run
        return run.server.port if run is not None and run.server is not None else None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, on_event: OnEvent) -> None:
        with self._lock:
            if self._run is not None:
                return
            self._download_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            _clear_old_downloads(self._download_dir)
            # httpx logs each request's URL at INFO, and a Bot API URL carries the token.
            logging.getLogger("httpx").addFilter(self._redactor)
            loop = asyncio.new_event_loop()
            run = _Run(loop=loop, on_event=on_event)
            if self._webhook_url is not None:
                # Telegram allows 1-256 of [A-Za-z0-9_-]; this is 43 of them.
                run.webhook_secret = secrets.token_urlsafe(32)
            # Made before the thread runs the loop, so stop() can always cancel it.
            run.task = loop.create_task(self._main(run))
            run.thread = threading.Thread(target=_serve, args=(run,), name="telegram", daemon=True)
            run.thread.start()
            # getMe and deleteWebhook (or setWebhook), each bounded by PTB's timeouts.
            started = run.ready.wait(4 * self._send_timeout_s + 5)
            if run.error is not None or run.bot is None or not started:
                _halt(run)
                logging.getLogger("httpx").removeFilter(self._redactor)
                raise run.error or ChannelError("telegram did not start in time", retryable=True)
            self._run = run
        if run.server is None:
            log.info("telegram: polling as @%s", run.username)
        else:
            host, _ = self._webhook_listen
            where = self._redact(self._webhook_url or "")
            log.info("telegram: webhook %s, served on %s:%s, as @%s", where, host, run.server.port, run.username)

    def stop(self) -> None:
        """Stop receiving and sending, and join the channel's threads. In webhook mode the
        server closes but the webhook stays set at Telegram (no deleteWebhook), so updates
        wait there while the host is down and come when it starts again."""
        with self._lock:
            run, self._run = self._run, None
        if run is None:
            return
        _halt(run)
        logging.getLogger("httpx").removeFilter(self._redactor)
        log.info("telegram: stopped")

    # -- sends -------------------------------------------------------------------------

    def send_text(self, to: Routing, text: str, files: tuple[Path, ...] = ()) -> str | None:
        chat, place = _chat_of(to), _place_of(to)
        checked = tuple(_checked_upload(Path(path)) for path in files)
        parts = _render(text, MAX_TEXT_UNITS)
        caption: _Part | None = None
        if checked and text.strip() and units(text) <= MAX_CAPTION_UNITS:
            caption, parts = _Part(markdown_to_html(text), text), []
        if not parts and not checked:
            raise ChannelError("telegram: nothing to send (no text and no files)", retryable=False)

        async def send(run: _Run, taken: list[str]) -> str:
            await self._send_parts(run, chat, place, parts, taken)
            for index, path in enumerate(checked):
                if len(parts) + index < len(taken):
                    continue  # accepted by an earlier try of this send
                message = await self._patient(
                    bool(taken),
                    functools.partial(self._send_file, run, chat, place, path, caption if index == 0 else None),
                )
                taken.append(str(message.message_id))
            return taken[0]

        key = send_key(to, "text", text, *(str(path) for path in files))
        budget = self._budget(2 * len(parts) + 2 * len(checked), uploads=len(checked))
        return self._call(functools.partial(self._resumed, key, send), budget)

    def edit_text(self, to: Routing, platform_message_id: str, text: str) -> None:
        chat, message_id = _chat_of(to), _message_id_of(platform_message_id)
        plain = truncate(text, MAX_TEXT_UNITS)

        async def edit(run: _Run) -> None:
            await self._edit(run.bot_or_fail(), chat, message_id, _Part(markdown_to_html(plain), plain))

        self._call(edit, self._budget(4))

    def add_reaction(self, to: Routing, platform_message_id: str, emoji: str) -> None:
        chat, message_id = _chat_of(to), _message_id_of(platform_message_id)
        reaction = reaction_for(emoji)
        if reaction is None:
            # Telegram takes only its own short list; a wrong reaction says more than none.
            log.info("telegram: %r is no reaction Telegram allows; not reacting", emoji)
            return

        async def react(run: _Run) -> None:
            await run.bot_or_fail().set_message_reaction(chat, message_id, reaction=reaction)

        self._call(react, self._budget(1))

    def ask_question(self, to: Routing, question_id: str, question: str, options: tuple[str, ...]) -> str | None:
        chat, place = _chat_of(to), _place_of(to)
        if not options:
            raise ChannelError("telegram: a question needs at least one option", retryable=False)
        parts = _render(question, MAX_TEXT_UNITS) or [_Part(html.escape(question or "?"), question or "?")]

        async def ask(run: _Run, taken: list[str]) -> str:
            key = run.questions.key_for(question_id, len(options))
            keyboard = InlineKeyboardMarkup(
                [
                    [InlineKeyboardButton(option or "…", callback_data=f"{key}:{index}")]
                    for index, option in enumerate(options)
                ]
            )
            await self._send_parts(run, chat, place, parts, taken, keyboard)
            # The message with the buttons: what an edit closing the question would change.
            return taken[-1]

        key = send_key(to, "question", question_id, question, *options)
        return self._call(functools.partial(self._resumed, key, ask), self._budget(2 * len(parts)))

    def send_card(self, to: Routing, card: Card) -> str | None:
        lines = [f"**{escape_markdown(card.title)}**"]
        if card.text:
            lines.append(card.text)
        lines.extend(f"**{escape_markdown(label)}:** {escape_markdown(value)}" for label, value in card.fields)
        return self.send_text(to, "\n".join(lines))

    def show_typing(self, to: Routing) -> None:
        # Telegram shows typing per chat or per topic; a reply thread is shown in its chat.
        chat, topic = _chat_of(to), _place_of(to).topic

        async def typing(run: _Run) -> None:
            await run.bot_or_fail().send_chat_action(chat, ChatAction.TYPING, message_thread_id=topic)

        self._call(typing, self._budget(1))

    # -- the loop's side: startup and polling -------------------------------------------

    async def _main(self, run: _Run) -> None:
        try:
            bot = await self._connect(run)
        except ChannelError as exc:
            run.error = exc
            return
        except Exception as exc:
            log.exception("telegram: could not start")
            run.error = ChannelError(f"telegram: could not start: {self._redact(str(exc))}", retryable=True)
            return
        finally:
            # Set once run.bot is there, or run.error: start() looks at both.
            run.ready.set()
        try:
            if run.server is None:
                await self._poll(run, bot)
            else:
                await asyncio.Event().wait()  # the server takes updates until stop() cancels this
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the stop was taken: what follows must still be able to wait
            if run.server is None:
                await self._confirm(run, bot)
        finally:
            if run.server is not None:
                # Requests in flight are answered 503 first (the host did not store them).
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(run.server.close(), _CLOSE_STEP_S)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bot.shutdown(), _CLOSE_STEP_S)

    async def _connect(self, run: _Run) -> Bot:
        try:
            bot = Bot(
                self._token,
                base_url=self._base_url,
                base_file_url=self._base_file_url,
                request=HTTPXRequest(
                    # Sends from the host and downloads for the poller go at once.
                    connection_pool_size=8,
                    connect_timeout=self._send_timeout_s,
                    read_timeout=self._send_timeout_s,
                    write_timeout=self._send_timeout_s,
                    pool_timeout=self._send_timeout_s,
                    media_write_timeout=self._media_timeout_s,
                ),
                get_updates_request=HTTPXRequest(
                    connection_pool_size=1,
                    connect_timeout=self._send_timeout_s,
                    read_timeout=_POLL_READ_MARGIN_S,
                    write_timeout=self._send_timeout_s,
                    pool_timeout=self._send_timeout_s,
                ),
            )
        except InvalidToken as exc:
            raise ChannelError("telegram: no usable bot token", retryable=False) from exc
        try:
            await bot.initialize()  # getMe: proves the token
            # Known before any update can come in.
            run.bot_id = bot.id
            run.username = self._configured_username or bot.username
            if run.webhook_secret is None:
                # getUpdates is refused while a webhook is set; keep what is pending.
                await bot.delete_webhook(drop_pending_updates=False)
            else:
                run.server = await self._listen(run, bot, run.webhook_secret)
        except BaseException as exc:  # CancelledError included: the clients are closed either way
            with contextlib.suppress(Exception):
                await bot.shutdown()
            if isinstance(exc, InvalidToken):
                # PTB's own message repeats the token; this one must not.
                raise ChannelError("telegram rejected the bot token (getMe: Unauthorized)", retryable=False) from exc
            if isinstance(exc, TelegramError):
                raise self._channel_error(exc, "could not start") from exc
            raise
        run.bot = bot
        return bot

    async def _listen(self, run: _Run, bot: Bot, secret: str) -> WebhookServer:
        """Webhook mode: serve Telegram's requests, then tell Telegram where to send them."""
        assert self._webhook_url is not None
        server = WebhookServer(self._webhook_listen, secret, functools.partial(self._take_posted, run, bot))
        try:
            await server.start()
        except OSError as exc:
            host, port = self._webhook_listen
            raise ChannelError(
                f"telegram: cannot listen for webhook requests on {host}:{port}: {exc.strerror or exc}",
                retryable=False,
            ) from exc
        try:
            await bot.set_webhook(
                self._webhook_url,
                secret_token=secret,
                allowed_updates=_ALLOWED_UPDATES,
                max_connections=MAX_CONCURRENT,
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await server.close()
            if isinstance(exc, TelegramError) and not isinstance(exc, InvalidToken):
                raise self._channel_error(exc, "setWebhook") from exc
            raise
        return server

    async def _poll(self, run: _Run, bot: Bot) -> None:
        delay = _POLL_BACKOFF_FIRST_S
        while True:
            try:
                offset = run.offset
                updates = await bot.get_updates(
                    offset=offset, timeout=self._poll_timeout_s, allowed_updates=_ALLOWED_UPDATES
                )
                run.confirmed = offset
            except RetryAfter as exc:
                wait = _retry_seconds(exc)
                log.warning("telegram: polling under flood control; again in %.0fs", wait)
                await asyncio.sleep(wait)
                continue
            except Exception as exc:
                level = logging.ERROR if isinstance(exc, InvalidToken | Forbidden) else logging.WARNING
                log.log(level, "telegram: polling failed (%s); again in %.0fs", self._redact(str(exc)), delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, _POLL_BACKOFF_MAX_S)
                continue
            delay = _POLL_BACKOFF_FIRST_S
            if updates:
                try:
                    await self._take(run, bot, updates)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The events were handed over already; going on beats polling the batch again.
                    log.exception("telegram: handing over updates failed")
                run.offset = updates[-1].update_id + 1

    async def _confirm(self, run: _Run, bot: Bot) -> None:
        """Tell Telegram about updates taken since the last poll, so a restart does not get
        them again; anything this call returns is left for the next start."""
        if run.offset is None or run.offset == run.confirmed:
            return
        try:
            await asyncio.wait_for(
                bot.get_updates(offset=run.offset, limit=1, timeout=0, allowed_updates=_ALLOWED_UPDATES),
                _CLOSE_STEP_S,
            )
        except (TimeoutError, TelegramError) as exc:
            log.info("telegram: could not confirm the last updates (%s); they may come again", exc)

    async def _take(self, run: _Run, bot: Bot, updates: tuple[Update, ...]) -> None:
        handed: list[_Handed] = []
        for update in updates:
            item = await self._read_and_hand_over(run, bot, update)
            if item is not None:
                handed.append(item)
        if handed:
            await _settle(run, handed)

    async def _take_posted(self, run: _Run, bot: Bot, data: dict[str, Any]) -> bool:
        """Webhook mode: one update Telegram posted, taken as a polled one is. True once
        Telegram may forget it (the host stored or refused it, or it carries nothing for the
        host); False when Telegram should send it again."""
        if run.closing.is_set():
            return False  # the host would not be waited for
        try:
            update = Update.de_json(data, bot)
        except Exception:
            # As when polling: one update we cannot read must not come back forever.
            log.exception("telegram: could not read update %s", data.get("update_id"))
            return True
        item = await self._read_and_hand_over(run, bot, update)
        if item is None:
            return True
        await _settle(run, [item])
        return item.outcome not in ("timeout", "stopping")

    async def _read_and_hand_over(self, run: _Run, bot: Bot, update: Update) -> _Handed | None:
        """The update made an event (its file fetched) and handed to the host; None when it
        carries nothing for the host or cannot be read."""
        try:
            event, folders = await self._event_of(run, bot, update)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One update we cannot read must not stop every chat's messages.
            log.exception("telegram: could not read update %s", update.update_id)
            return None
        return _hand_over(run.on_event, event, folders) if event is not None else None

    async def _event_of(
        self, run: _Run, bot: Bot, update: Update
    ) -> tuple[InboundChat | InboundAnswer | None, list[Path]]:
        if update.callback_query is not None:
            return await self._answer_of(run, bot, update.callback_query), []
        if update.message is not None:
            return await self._chat_of_message(run, bot, update.message)
        return None, []

    async def _chat_of_message(self, run: _Run, bot: Bot, message: Message) -> tuple[InboundChat | None, list[Path]]:
        # Taken (and remembered) even for a message passed on to no one: a reply to it is in its thread.
        thread = run.threads.thread_of(message)
        text = message.text or message.caption or ""
        if not text and message.sticker is not None:
            text = f"(a sticker: {message.sticker.emoji or '?'})"
        files: list[IncomingFile] = []
        notes: list[str] = []
        folders: list[Path] = []
        attachment = _attachment_of(message)
        if attachment is not None and not self._admits(CHANNEL_TYPE, str(message.chat.id), _sender_of(message)[1]):
            # Someone the host will not let through: their file is not worth a download.
            notes.append(f"(a file, not fetched: {attachment.name})")
        elif attachment is not None:
            fetched = await self._download(bot, attachment)
            if isinstance(fetched, str):
                notes.append(fetched)
            else:
                files.append(fetched)
                folders.append(Path(fetched.path).parent)
        if notes:
            text = "\n".join([text, *notes]) if text else "\n".join(notes)
        if not text and not files:
            log.debug("telegram: message %s in %s carries nothing to pass on", message.message_id, message.chat.id)
            return None, []
        chat = message.chat
        sender, sender_id = _sender_of(message)
        event = InboundChat(
            channel_type=CHANNEL_TYPE,
            platform_id=str(chat.id),
            text=text,
            sender=sender,
            sender_id=sender_id,
            thread_id=thread,
            platform_message_id=str(message.message_id),
            chat_name=chat.title or chat.full_name or sender,
            is_group=chat.type in (ChatType.GROUP, ChatType.SUPERGROUP),
            mentions_assistant=_addressed(message, run.bot_id, run.username),
            files=tuple(files),
        )
        return event, folders

    async def _download(self, bot: Bot, attachment: _Attachment) -> IncomingFile | str:
        """The file saved under download_dir, or the note that stands in for it."""
        too_large = f"(a file too large to fetch: {attachment.name})"
        if attachment.size is not None and attachment.size > MAX_DOWNLOAD_BYTES:
            log.info(
                "telegram: not fetching %s: %d bytes, more than a bot may download", attachment.name, attachment.size
            )
            return too_large
        for attempt in range(1, _DOWNLOAD_ATTEMPTS + 1):
            folder: Path | None = None
            try:
                remote = await bot.get_file(attachment.file_id)
                if remote.file_size is not None and remote.file_size > MAX_DOWNLOAD_BYTES:
                    log.info("telegram: not fetching %s: %d bytes", attachment.name, remote.file_size)
                    return too_large
                folder = Path(tempfile.mkdtemp(prefix=_DOWNLOAD_PREFIX, dir=self._download_dir))
                path = folder / attachment.name
                await remote.download_to_drive(path)
                return IncomingFile(attachment.name, str(path))
            except asyncio.CancelledError:
                _remove(folder)
                raise
            except BadRequest as exc:
                _remove(folder)
                if "too big" in exc.message.lower():
                    log.info("telegram: not fetching %s: %s", attachment.name, exc.message)
                    return too_large
                log.warning("telegram: cannot fetch %s: %s", attachment.name, exc.message)
                break
            except (NetworkError, RetryAfter, OSError) as exc:
                _remove(folder)
                log.warning("telegram: fetching %s failed (attempt %d): %s", attachment.name, attempt, exc)
                if attempt < _DOWNLOAD_ATTEMPTS:
                    await asyncio.sleep(_retry_seconds(exc) if isinstance(exc, RetryAfter) else attempt)
            except TelegramError as exc:
                _remove(folder)
                log.warning("telegram: cannot fetch %s: %s", attachment.name, self._redact(str(exc)))
                break
        return f"(a file that could not be fetched: {attachment.name})"

    async def _answer_of(self, run: _Run, bot: Bot, query: CallbackQuery) -> InboundAnswer | None:
        choice = run.questions.parse(query.data or "")
        # Answered either way, so the button stops spinning.
        notice = None if choice is not None else "This question is no longer open."
        try:
            await bot.answer_callback_query(query.id, text=notice)
        except TelegramError as exc:
            log.info("telegram: could not answer a button press: %s", exc)
        if choice is None:
            log.info("telegram: a button with unknown data %r", query.data)
            return None
        message = query.message
        if message is None:
            log.info("telegram: a button press without its message; cannot tell the chat")
            return None
        user = query.from_user
        question_id, index = choice
        return InboundAnswer(
            channel_type=CHANNEL_TYPE,
            platform_id=str(message.chat.id),
            question_id=question_id,
            option_index=index,
            sender=user.full_name or user.username or str(user.id),
            sender_id=str(user.id),
            thread_id=run.threads.known_thread_of(message) if isinstance(message, Message) else None,
        )

    # -- the loop's side: sends --------------------------------------------------------

    async def _resumed(self, key: str, send: Callable[[_Run, list[str]], Awaitable[_T]], run: _Run) -> _T:
        """`send(run, taken)` resumed where an earlier try of the same send stopped (SentParts)."""
        return await self._sent_parts.resume(key, functools.partial(send, run), self._retryable)

    def _retryable(self, exc: BaseException) -> bool:
        """Whether the host tries a send again after `exc` (as `_call` will map it)."""
        if isinstance(exc, TelegramError):
            return self._channel_error(exc).retryable
        if isinstance(exc, ChannelError):
            return exc.retryable
        return True  # cancelled (a timeout, a stop), or anything else: the host tries again

    async def _send_parts(
        self,
        run: _Run,
        chat: int | str,
        place: _Place,
        parts: list[_Part],
        taken: list[str],
        keyboard: InlineKeyboardMarkup | None = None,
    ) -> None:
        """Send the parts not yet in `taken` (the ids of those accepted, in order), adding
        each one's id as it is accepted."""
        bot = run.bot_or_fail()
        for index, part in enumerate(parts):
            if index < len(taken):
                continue  # accepted by an earlier try of this send
            markup = keyboard if index == len(parts) - 1 else None
            call = functools.partial(self._send_formatted, bot, chat, place, part, markup)
            message = await self._patient(bool(taken), call)
            run.threads.sent(message, place)
            taken.append(str(message.message_id))

    async def _patient(self, after_first: bool, call: Callable[[], Awaitable[_T]]) -> _T:
        """`call()`, and once part of a send is already out, flood control waited out rather
        than failed (within `_MAX_INLINE_WAIT_S`): the rest of the send goes on at once
        instead of at the host's next try."""
        waited = 0.0
        while True:
            try:
                return await call()
            except RetryAfter as exc:
                wait = _retry_seconds(exc)
                if not after_first or waited + wait > _MAX_INLINE_WAIT_S:
                    raise
                log.info("telegram: flood control in the middle of a send; waiting %.0fs", wait)
                await asyncio.sleep(wait)
                waited += wait

    async def _send_formatted(
        self, bot: Bot, chat: int | str, place: _Place, part: _Part, markup: InlineKeyboardMarkup | None
    ) -> Message:
        try:
            return await bot.send_message(
                chat,
                part.html,
                parse_mode=ParseMode.HTML,
                message_thread_id=place.topic,
                reply_parameters=place.reply_parameters(),
                reply_markup=markup,
            )
        except BadRequest as exc:
            if not _unparsable(exc):
                raise
            log.info("telegram: markup refused (%s); sending the text plain", exc.message)
        return await bot.send_message(
            chat,
            part.plain,
            message_thread_id=place.topic,
            reply_parameters=place.reply_parameters(),
            reply_markup=markup,
        )

    async def _send_file(
        self, run: _Run, chat: int | str, place: _Place, upload: _Upload, caption: _Part | None
    ) -> Message:
        message = await self._upload(run, chat, place, upload, caption)
        run.threads.sent(message, place)
        return message

    async def _upload(
        self, run: _Run, chat: int | str, place: _Place, upload: _Upload, caption: _Part | None
    ) -> Message:
        bot = run.bot_or_fail()
        data = await asyncio.to_thread(upload.path.read_bytes)
        name = upload.path.name
        if upload.as_photo:

            async def photo(text: str | None, mode: str | None) -> Message:
                return await bot.send_photo(
                    chat,
                    data,
                    caption=text,
                    parse_mode=mode,
                    filename=name,
                    message_thread_id=place.topic,
                    reply_parameters=place.reply_parameters(),
                )

            try:
                return await _with_caption(photo, caption)
            except BadRequest as exc:
                if not any(word in exc.message.lower() for word in ("photo", "image", "dimension")):
                    raise
                log.info("telegram: %s refused as a photo (%s); sending it as a document", name, exc.message)

        async def document(text: str | None, mode: str | None) -> Message:
            return await bot.send_document(
                chat,
                data,
                caption=text,
                parse_mode=mode,
                filename=name,
                message_thread_id=place.topic,
                reply_parameters=place.reply_parameters(),
            )

        return await _with_caption(document, caption)

    async def _edit(self, bot: Bot, chat: int | str, message_id: int, part: _Part) -> None:
        try:
            await bot.edit_message_text(part.html, chat_id=chat, message_id=message_id, parse_mode=ParseMode.HTML)
            return
        except BadRequest as exc:
            if _not_modified(exc):
                return
            if "no text in the message" in exc.message.lower():
                await self._edit_caption(bot, chat, message_id, part)
                return
            if not _unparsable(exc):
                raise
            log.info("telegram: markup refused in an edit (%s); editing to plain text", exc.message)
        try:
            await bot.edit_message_text(part.plain, chat_id=chat, message_id=message_id)
        except BadRequest as exc:
            if not _not_modified(exc):
                raise

    async def _edit_caption(self, bot: Bot, chat: int | str, message_id: int, part: _Part) -> None:
        """A message sent as a file with its text as the caption is edited through the caption."""
        plain = truncate(part.plain, MAX_CAPTION_UNITS)

        async def edit(text: str | None, mode: str | None) -> Any:
            return await bot.edit_message_caption(chat_id=chat, message_id=message_id, caption=text, parse_mode=mode)

        try:
            await _with_caption(edit, _Part(markdown_to_html(plain), plain))
        except BadRequest as exc:
            if not _not_modified(exc):
                raise

    # -- the host's side: calling into the loop ---------------------------------------

    def _call(self, make: Callable[[_Run], Awaitable[_T]], budget: float) -> _T:
        run = self._run
        if run is None or run.bot is None:
            raise ChannelError("telegram: the channel is not running", retryable=True)
        if threading.current_thread() is run.thread:
            raise ChannelError("telegram: a send from the channel's own thread would wait on itself", retryable=False)

        async def call() -> _T:
            return await make(run)

        coroutine = call()
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, run.loop)
        except RuntimeError as exc:  # the loop closed under us: the channel stopped
            coroutine.close()
            raise ChannelError("telegram: the channel stopped", retryable=True) from exc
        try:
            return future.result(budget)
        except TimeoutError as exc:
            future.cancel()
            raise ChannelError(f"telegram: no answer within {budget:.0f}s", retryable=True) from exc
        except concurrent.futures.CancelledError as exc:
            raise ChannelError("telegram: the channel stopped during the send", retryable=True) from exc
        except TelegramError as exc:
            raise self._channel_error(exc) from exc

    def _budget(self, requests: int, *, uploads: int = 0) -> float:
        """How long a send may take before the host stops waiting: each request's own
        timeouts (connect, then write and read), uploads' longer writes, the flood waits a
        multi-part send takes on, and a margin."""
        inline_waits = _MAX_INLINE_WAIT_S if requests > 2 else 0.0
        return max(1, requests) * 2 * self._send_timeout_s + uploads * self._media_timeout_s + inline_waits + 5

    def _channel_error(self, exc: TelegramError, doing: str = "send failed") -> ChannelError:
        message = self._redact(exc.message)
        if isinstance(exc, RetryAfter):
            wait = _retry_seconds(exc)
            return ChannelError(
                f"telegram: flood control, retry after {wait:.0f}s ({message})", retryable=True, retry_after_s=wait
            )
        if isinstance(exc, ChatMigrated):
            return ChannelError(f"telegram: the group is now chat {exc.new_chat_id}", retryable=False)
        if isinstance(exc, InvalidToken):
            return ChannelError("telegram rejected the bot token", retryable=False)
        if isinstance(exc, Forbidden | BadRequest | EndPointNotFound):
            # Telegram refused the request itself: asking again gets the same answer.
            return ChannelError(f"telegram: {doing}: {message}", retryable=False)
        if isinstance(exc, TimedOut):
            return ChannelError(f"telegram: {doing}: timed out", retryable=True)
        # NetworkError (connection, 5xx), Conflict and anything PTB adds later.
        return ChannelError(f"telegram: {doing}: {message}", retryable=True)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<token>") if self._token else text


class _QuestionKeys:
    """The callback-data prefix of each question's buttons, and back. Used on the loop only."""

    def __init__(self) -> None:
        self._long_ids: collections.OrderedDict[str, str] = collections.OrderedDict()

    def key_for(self, question_id: str, options: int) -> str:
        key = f"q:{question_id}"
        # A colon and the largest index follow the key.
        if len(key.encode()) + 1 + len(str(max(0, options - 1))) <= MAX_CALLBACK_DATA_BYTES:
            return key
        digest = base64.urlsafe_b64encode(hashlib.sha256(question_id.encode()).digest()[:12]).decode()
        key = f"h:{digest}"
        self._long_ids[key] = question_id
        self._long_ids.move_to_end(key)
        while len(self._long_ids) > _QUESTION_KEYS:
            self._long_ids.popitem(last=False)
        return key

    def parse(self, data: str) -> tuple[str, int] | None:
        key, _, index = data.rpartition(":")
        if not index.isdigit() or not index.isascii():
            return None
        if key.startswith("q:") and len(key) > 2:
            return key[2:], int(index)
        question_id = self._long_ids.get(key)
        return (question_id, int(index)) if question_id is not None else None


class _ReplyThreads:
    """Which reply thread the messages of each group chat are in: message id -> the id of
    the thread's root, for the latest `_THREAD_MESSAGES` such messages of each of the latest
    `_THREAD_CHATS` chats. A message not here is, as far as is known, a root itself (or in no
    reply thread). Used on the loop only."""

    def __init__(self, per_chat: int = _THREAD_MESSAGES, chats: int = _THREAD_CHATS) -> None:
        self._per_chat = per_chat
        self._max_chats = chats
        self._chats: collections.OrderedDict[int, collections.OrderedDict[int, int]] = collections.OrderedDict()

    def thread_of(self, message: Message) -> str | None:
        """The thread an incoming message is in (see the module's docstring), remembered
        for the replies to come."""
        topic = _topic_of(message)
        if topic is not None:
            return topic
        reply = message.reply_to_message
        if reply is None or message.chat.type not in (ChatType.GROUP, ChatType.SUPERGROUP):
            return None
        chat = message.chat.id
        root = self._root(chat, reply.message_id)
        if root is None:
            # Telegram names the top of the reply chain in a supergroup; else the chain starts here.
            named = message.message_thread_id
            top = named if named is not None and named > 0 else reply.message_id
            known = self._root(chat, top)
            root = known if known is not None else top
            if root != reply.message_id:
                self._remember(chat, reply.message_id, root)
        self._remember(chat, message.message_id, root)
        return _reply_thread_id(root)

    def known_thread_of(self, message: Message) -> str | None:
        """The thread a message already seen or sent is in, when that is known."""
        topic = _topic_of(message)
        if topic is not None:
            return topic
        root = self._root(message.chat.id, message.message_id)
        return _reply_thread_id(root) if root is not None else None

    def sent(self, message: Message, place: _Place) -> None:
        """The bot sent `message` to `place`: a reply to it goes on in the same thread."""
        if place.root is not None:
            self._remember(message.chat.id, message.message_id, place.root)

    def _root(self, chat: int, message_id: int) -> int | None:
        known = self._chats.get(chat)
        return known.get(message_id) if known is not None else None

    def _remember(self, chat: int, message_id: int, root: int) -> None:
        known = self._chats.get(chat)
        if known is None:
            known = self._chats[chat] = collections.OrderedDict()
        self._chats.move_to_end(chat)
        while len(self._chats) > self._max_chats:
            self._chats.popitem(last=False)
        known[message_id] = root
        known.move_to_end(message_id)
        while len(known) > self._per_chat:
            known.popitem(last=False)


# -- the run: one start()'s loop, thread and state ------------------------------------------


@dataclass(eq=False)
class _Run:
    loop: asyncio.AbstractEventLoop
    on_event: OnEvent
    task: asyncio.Task[None] | None = None
    thread: threading.Thread | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    # Set by stop(); the helper thread waiting on the host watches it.
    closing: threading.Event = field(default_factory=threading.Event)
    error: ChannelError | None = None
    # Written on the loop, then only read.
    bot: Bot | None = None
    bot_id: int | None = None
    username: str | None = None
    # Loop-only state.
    offset: int | None = None  # the first update not yet handed over
    confirmed: int | None = None  # the offset Telegram was last told
    questions: _QuestionKeys = field(default_factory=_QuestionKeys)
    threads: _ReplyThreads = field(default_factory=_ReplyThreads)
    # Helper threads waiting on the host (one per polled batch, one per webhook request).
    waiters: set[threading.Thread] = field(default_factory=set)
    # Webhook mode: the secret Telegram was given for this run, and the local server.
    webhook_secret: str | None = None
    server: WebhookServer | None = None

    def bot_or_fail(self) -> Bot:
        if self.bot is None:
            raise ChannelError("telegram: the channel is not running", retryable=True)
        return self.bot


def _serve(run: _Run) -> None:
    loop = run.loop
    asyncio.set_event_loop(loop)
    try:
        if run.task is not None:
            loop.run_until_complete(run.task)
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("telegram: the channel's loop failed")
    finally:
        # Sends still queued when the loop ends fail (the host hears "stopped") rather than hang.
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        run.ready.set()


def _halt(run: _Run) -> None:
    run.closing.set()
    if run.task is not None:
        with contextlib.suppress(RuntimeError):  # the loop already ended
            run.loop.call_soon_threadsafe(run.task.cancel)
    _join(run.thread)
    # None starts once the loop has ended; each sees `closing` within _STORE_CHECK_S.
    for waiter in list(run.waiters):
        _join(waiter)


def _join(thread: threading.Thread | None) -> None:
    if thread is None or thread is threading.current_thread():
        return
    thread.join(_JOIN_TIMEOUT_S)
    if thread.is_alive():
        log.warning("telegram: %s did not finish within %.0fs", thread.name, _JOIN_TIMEOUT_S)


# -- handing events to the host --------------------------------------------------------------


@dataclass(eq=False)
class _Handed:
    stored: Stored
    what: str
    folders: list[Path]
    outcome: BaseException | str | None = None  # an exception, "timeout", "stopping", or None: stored


def _hand_over(on_event: OnEvent, event: InboundChat | InboundAnswer, folders: list[Path]) -> _Handed:
    what = f"{type(event).__name__} in {event.platform_id}"
    try:
        stored = on_event(event)
    except Exception as exc:  # the contract says it never raises; treated as a refusal if it does
        stored = pykka.ThreadingFuture()
        stored.set_exception((type(exc), exc, exc.__traceback__))
    return _Handed(stored, what, folders)


async def _settle(run: _Run, handed: list[_Handed]) -> None:
    """Wait (without holding up the loop) until the host stored or refused each event."""
    if not all(_check(item, 0) for item in handed):
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def wait() -> None:
            deadline = time.monotonic() + _STORE_TIMEOUT_S
            for item in handed:
                while not _check(item, _STORE_CHECK_S):
                    if run.closing.is_set() or time.monotonic() > deadline:
                        # One deadline for the batch: the rest are not waited for one by one.
                        reason = "stopping" if run.closing.is_set() else "timeout"
                        for rest in handed:
                            if not _check(rest, 0):
                                rest.outcome = reason
                        break
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, done)

        run.waiters.difference_update([thread for thread in run.waiters if not thread.is_alive()])
        waiter = threading.Thread(target=wait, name="telegram-stored", daemon=True)
        run.waiters.add(waiter)
        waiter.start()
        await done
    for item in handed:
        if isinstance(item.outcome, BaseException):
            log.warning("telegram: the host did not take %s: %s", item.what, item.outcome)
        elif item.outcome == "timeout":
            log.error("telegram: the host did not store %s within %.0fs; going on", item.what, _STORE_TIMEOUT_S)
            continue  # the host may still move its files
        elif item.outcome == "stopping":
            continue
        # Stored: the host moved the files into the session's inbox. Refused: nobody will.
        for folder in item.folders:
            _remove(folder)


def _check(item: _Handed, timeout: float) -> bool:
    """Whether the host has answered for the item (recording how), within `timeout`."""
    if item.outcome is not None:
        return True
    try:
        item.stored.get(timeout=timeout)
    except pykka.Timeout:
        return False
    except Exception as exc:
        item.outcome = exc
    return True


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


# -- reading messages -------------------------------------------------------------------------


class _Attachment(NamedTuple):
    file_id: str
    size: int | None
    name: str


def _attachment_of(message: Message) -> _Attachment | None:
    """The one file a message carries, with the name to save it under."""
    if message.document is not None:
        doc = message.document
        return _Attachment(doc.file_id, doc.file_size, safe_name(doc.file_name, "document"))
    if message.photo:
        largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
        return _Attachment(largest.file_id, largest.file_size, "photo.jpg")
    if message.voice is not None:
        return _Attachment(message.voice.file_id, message.voice.file_size, "voice.ogg")
    if message.audio is not None:
        audio = message.audio
        return _Attachment(audio.file_id, audio.file_size, safe_name(audio.file_name, "audio.mp3"))
    if message.video is not None:
        video = message.video
        return _Attachment(video.file_id, video.file_size, safe_name(video.file_name, "video.mp4"))
    if message.video_note is not None:
        return _Attachment(message.video_note.file_id, message.video_note.file_size, "video_note.mp4")
    return None


_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


def safe_name(name: str | None, default: str) -> str:
    """A sender's file name made a plain basename: no folders, no control characters, not
    `.` or `..`, at most `_MAX_NAME_CHARS` characters (keeping the extension)."""
    base = _UNSAFE_NAME_CHARS.sub("_", (name or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if base.strip(".") == "":
        return default
    if len(base) > _MAX_NAME_CHARS:
        stem, dot, suffix = base.rpartition(".")
        if dot and 0 < len(suffix) <= 16 and stem:
            base = stem[: _MAX_NAME_CHARS - len(suffix) - 1] + "." + suffix
        else:
            base = base[:_MAX_NAME_CHARS]
    return base


def _sender_of(message: Message) -> tuple[str, str | None]:
    user = message.from_user
    if user is not None:
        return user.full_name or user.username or str(user.id), str(user.id)
    if message.sender_chat is not None:  # an anonymous admin or a channel speaking in the group
        origin = message.sender_chat
        return origin.title or origin.full_name or str(origin.id), str(origin.id)
    return message.chat.title or str(message.chat.id), None


def _topic_of(message: Message) -> str | None:
    # Outside forum topics message_thread_id names a reply thread, which is no place to route to.
    if message.is_topic_message and message.message_thread_id is not None:
        return str(message.message_thread_id)
    return None


def _addressed(message: Message, bot_id: int | None, username: str | None) -> bool:
    if message.chat.type == ChatType.PRIVATE:
        return True
    handle = f"@{username}".lower() if username else None
    kinds: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION, MessageEntity.BOT_COMMAND]
    found = {**message.parse_entities(kinds), **message.parse_caption_entities(kinds)}
    for entity, text in found.items():
        if entity.type == MessageEntity.TEXT_MENTION:
            if entity.user is not None and entity.user.id == bot_id:
                return True
        elif handle is not None and (
            text.lower() == handle or (entity.type == MessageEntity.BOT_COMMAND and text.lower().endswith(handle))
        ):
            return True
    reply = message.reply_to_message
    # In a forum every message of a topic "replies" to the topic's first message.
    return (
        reply is not None
        and reply.forum_topic_created is None
        and reply.from_user is not None
        and reply.from_user.id == bot_id
    )


# -- sending helpers ---------------------------------------------------------------------------


class _Part(NamedTuple):
    """One message's worth of text: as HTML, and as the plain text it came from."""

    html: str
    plain: str


class _Upload(NamedTuple):
    path: Path
    as_photo: bool


def _render(markdown: str, limit: int) -> list[_Part]:
    return [_Part(markdown_to_html(part), part) for part in split_text(markdown, limit)]


async def _with_caption(send: Callable[[str | None, str | None], Awaitable[_T]], caption: _Part | None) -> _T:
    if caption is None:
        return await send(None, None)
    try:
        return await send(caption.html, ParseMode.HTML)
    except BadRequest as exc:
        if not _unparsable(exc):
            raise
        log.info("telegram: caption markup refused (%s); sending it plain", exc.message)
    return await send(caption.plain, None)


def _checked_upload(path: Path) -> _Upload:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ChannelError(f"telegram: cannot read {path.name}: {exc.strerror}", retryable=False) from exc
    if size > MAX_UPLOAD_BYTES:
        raise ChannelError(
            f"telegram: {path.name} is {size} bytes; a bot may send at most {MAX_UPLOAD_BYTES}", retryable=False
        )
    return _Upload(path, path.suffix.lower() in _PHOTO_SUFFIXES and size <= MAX_PHOTO_BYTES)


def _unparsable(exc: BadRequest) -> bool:
    return "can't parse entities" in exc.message.lower()


def _not_modified(exc: BadRequest) -> bool:
    return "message is not modified" in exc.message.lower()


def _chat_of(to: Routing) -> int | str:
    chat = to.platform_id
    if not chat:
        raise ChannelError("telegram: a message needs a chat to go to", retryable=False)
    # Chats are numbers; a public channel may also be named "@name".
    return int(chat) if re.fullmatch(r"-?\d+", chat) else chat


class _Place(NamedTuple):
    """Where in its chat a send goes: a forum topic, a reply thread (as replies to its
    root), or neither (the chat itself)."""

    topic: int | None = None
    root: int | None = None

    def reply_parameters(self) -> ReplyParameters | None:
        if self.root is None:
            return None
        # A root deleted since must not fail the send: it goes out as a plain message then.
        return ReplyParameters(self.root, allow_sending_without_reply=True)


def _reply_thread_id(root: int) -> str:
    return f"{_REPLY_THREAD_PREFIX}{root}"


def _place_of(to: Routing) -> _Place:
    """The thread id's two forms: "<topic>" and "r<root message id>"."""
    thread = to.thread_id
    if thread is None:
        return _Place()
    if re.fullmatch(r"[0-9]+", thread):
        return _Place(topic=int(thread))
    if re.fullmatch(rf"{_REPLY_THREAD_PREFIX}[0-9]+", thread):
        return _Place(root=int(thread.removeprefix(_REPLY_THREAD_PREFIX)))
    raise ChannelError(f"telegram: {thread!r} is neither a forum topic nor a reply thread", retryable=False)


def _message_id_of(platform_message_id: str) -> int:
    if not re.fullmatch(r"\d+", platform_message_id):
        raise ChannelError(f"telegram: {platform_message_id!r} is not a Telegram message id", retryable=False)
    return int(platform_message_id)


def _retry_seconds(exc: RetryAfter) -> float:
    # The public attribute warns while PTB moves it from int to timedelta; the stored
    # timedelta is the same value either way.
    value = getattr(exc, "_retry_after", None)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    public = exc.retry_after
    return public.total_seconds() if isinstance(public, dt.timedelta) else float(public)


def _file_url_for(base_url: str) -> str:
    """Telegram serves files beside the API: `.../bot<token>/...` -> `.../file/bot<token>/...`."""
    head, sep, _ = base_url.rstrip("/").rpartition("/")
    return f"{head}/file/bot" if sep else f"{base_url}/file/bot"


def _clear_old_downloads(folder: Path) -> None:
    """Files a previous run fetched and no host took (it stopped first) are of no use now."""
    for entry in folder.glob(f"{_DOWNLOAD_PREFIX}*"):
        if entry.is_dir() and not entry.is_symlink():
            _remove(entry)


def _remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class _RedactToken(logging.Filter):
    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self._token:
            message = record.getMessage()
            if self._token in message:
                record.msg = message.replace(self._token, "<token>")
                record.args = ()
        return True


# -- reactions ---------------------------------------------------------------------------------
