"""DeliveryActor: holds the channel adapters and makes one attempt per `Deliver`, each
channel's in a `ChannelSender` of its own.

It keeps no delivery state of its own: the SessionActor records every outcome in its
inbound.db and decides about retries, so a restart loses nothing and sends nothing twice
that was confirmed; questions are recorded by the Supervisor before they get here. Where a
channel lacks a feature, the message degrades to plain text.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import pykka

from actors.channels.base import (
    CARD,
    EDIT,
    FILES,
    QUESTION,
    REACTION,
    TYPING,
    ChannelAdapter,
    ChannelError,
    card_as_text,
)
from actors.messages import (
    AskQuestion,
    Deliver,
    Delivered,
    DeliveryAction,
    DeliveryFailed,
    EditText,
    FlushDeliveries,
    Notify,
    React,
    SendCard,
    SendText,
    ShowTyping,
)
from protocol.logs import session_context, session_tag
from protocol.rows import Routing

log = logging.getLogger("hutch.delivery")

# A notice (a pairing code, "your message failed") is worth a few tries, not a queue on disk.
NOTICE_ATTEMPTS = 5
NOTICE_RETRY_BASE_S = 2.0


class DeliveryActor(pykka.ThreadingActor):
    """Hands each delivery to its channel's own `ChannelSender`: a channel that is slow or
    down holds up only its own sends, never another channel's."""

    def __init__(self, adapters: Iterable[ChannelAdapter]) -> None:
        super().__init__()
        self._adapters = list(adapters)
        self._senders: dict[str, pykka.ActorRef[ChannelSender]] = {}
        # Typing hints go only to the channels that can show them: no hop for the rest.
        self._typing = {adapter.channel_type for adapter in self._adapters if TYPING in adapter.capabilities}

    def on_start(self) -> None:
        for adapter in self._adapters:
            self._senders[adapter.channel_type] = ChannelSender.start(adapter)

    def on_stop(self) -> None:
        for sender in self._senders.values():
            sender.stop()

    def on_receive(self, message: Any) -> Any:
        match message:
            case Deliver():
                self._route(message.routing, message, unknown=lambda: self._unknown(message))
            case Notify(routing=routing, text=text):
                self._route(routing, message, unknown=lambda: log.warning(
                    "delivery: cannot notify on unknown channel %r: %s", routing.channel_type, text
                ))  # fmt: skip
            case ShowTyping(routing=routing):
                if routing.channel_type in self._typing:
                    self._route(routing, message, unknown=lambda: None)
            case FlushDeliveries():
                for future in [sender.ask(message, block=False) for sender in self._senders.values()]:
                    future.get()
            case _:
                return super().on_receive(message)
        return None

    def _route(self, routing: Routing, message: Any, unknown: Callable[[], None]) -> None:
        sender = self._senders.get(routing.channel_type or "")
        if sender is None:
            unknown()
            return
        sender.tell(message)

    def _unknown(self, request: Deliver) -> None:
        failed = DeliveryFailed(request.message_out_id, f"no channel {request.routing.channel_type!r}", False)
        _answer(request, failed)


class ChannelSender(pykka.ThreadingActor):
    """One channel's sends, one at a time, in its own thread; the outcome of a delivery is
    told to the session that asked."""

    def __init__(self, adapter: ChannelAdapter) -> None:
        super().__init__()
        self._adapter = adapter

    def on_receive(self, message: Any) -> Any:
        match message:
            case Deliver():
                self._deliver(message)
            case Notify():
                self._notify(message)
            case ShowTyping(routing=routing):
                self._typing(routing)
            case FlushDeliveries():
                pass  # everything handed over before it has been handled
            case _:
                return super().on_receive(message)
        return None

    def _deliver(self, request: Deliver) -> None:
        # What the channel's code logs while it sends this is about the session that asked.
        with session_context(session_tag(request.session_id)):
            self._deliver_now(request)

    def _deliver_now(self, request: Deliver) -> None:
        adapter = self._adapter
        try:
            platform_id = _perform(adapter, request.routing, request.action)
            answer: Any = Delivered(request.message_out_id, platform_id)
        except ChannelError as exc:
            answer = DeliveryFailed(request.message_out_id, str(exc), exc.retryable, exc.retry_after_s)
        except Exception as exc:
            # An adapter bug must not take the actor down with every session's deliveries.
            log.exception("delivery: %s adapter failed", request.routing.channel_type)
            answer = DeliveryFailed(request.message_out_id, f"{type(exc).__name__}: {exc}", True)
        _answer(request, answer)

    def _notify(self, notice: Notify) -> None:
        routing, text = notice.routing, notice.text
        try:
            self._adapter.send_text(routing, text)
        except ChannelError as exc:
            if exc.retryable and notice.attempt < NOTICE_ATTEMPTS:
                wait = max(NOTICE_RETRY_BASE_S * 2 ** (notice.attempt - 1), exc.retry_after_s or 0.0)
                _later(self.actor_ref, msgspec.structs.replace(notice, attempt=notice.attempt + 1), wait)
                return
            log.warning("delivery: notice to %s/%s not sent (%s): %s", routing.channel_type, routing.platform_id,
                        exc, text)  # fmt: skip
        except Exception:
            # A tell: raising here would stop the actor and every session's deliveries with it.
            log.exception("delivery: %s adapter failed sending a notice: %s", routing.channel_type, text)

    def _typing(self, routing: Routing) -> None:
        if TYPING not in self._adapter.capabilities:
            return
        try:
            self._adapter.show_typing(routing)
        except Exception as exc:  # a hint: never worth more than a debug line
            log.debug("delivery: typing in %s/%s not shown: %s", routing.channel_type, routing.platform_id, exc)


def _later(ref: pykka.ActorRef[Any], message: Any, delay_s: float) -> None:
    """Tell `message` to `ref` in `delay_s`; nothing if the actor stopped meanwhile."""

    def tell() -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)

    timer = threading.Timer(delay_s, tell)
    timer.daemon = True
    timer.start()


def _answer(request: Deliver, answer: Delivered | DeliveryFailed) -> None:
    try:
        request.reply_to.tell(answer)
    except pykka.ActorDeadError:
        log.warning("%s delivery: the session stopped before hearing about %s", session_tag(request.session_id),
                    request.message_out_id)  # fmt: skip


def _perform(adapter: ChannelAdapter, to: Routing, action: DeliveryAction) -> str | None:
    can = adapter.capabilities
    match action:
        case SendText(text=text, files=files):
            return _send_text(adapter, to, text, tuple(Path(f) for f in files))
        case EditText(platform_message_id=platform_id, text=text):
            if EDIT in can:
                adapter.edit_text(to, platform_id, text)
                return platform_id
            return adapter.send_text(to, f"(correction) {text}")
        case React(platform_message_id=platform_id, emoji=emoji):
            if REACTION in can:
                adapter.add_reaction(to, platform_id, emoji)
            return None  # without reactions there is nothing worth saying instead
        case AskQuestion(question_id=question_id, question=question, options=options):
            if QUESTION in can:
                return adapter.ask_question(to, question_id, question, options)
            numbered = "\n".join(f"{index}. {option}" for index, option in enumerate(options, 1))
            return adapter.send_text(to, f"{question}\n{numbered}")
        case SendCard(card=card):
            if CARD in can:
                return adapter.send_card(to, card)
            return adapter.send_text(to, card_as_text(card))
    raise ChannelError(f"unknown action {type(action).__name__}", retryable=False)


def _send_text(adapter: ChannelAdapter, to: Routing, text: str, files: tuple[Path, ...]) -> str | None:
    if not files or FILES in adapter.capabilities:
        return adapter.send_text(to, text, files)
    names = ", ".join(path.name for path in files)
    return adapter.send_text(to, f"{text}\n(files not shown here: {names})".strip())
