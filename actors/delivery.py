"""DeliveryActor: holds the channel adapters and makes one attempt per `Deliver`.

It keeps no delivery state of its own: the SessionActor records every outcome in its
inbound.db and decides about retries, so a restart loses nothing and sends nothing twice
that was confirmed; questions are recorded by the Supervisor before they get here. Where a
channel lacks a feature, the message degrades to plain text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pykka

from actors.channels.base import CARD, EDIT, FILES, QUESTION, REACTION, ChannelAdapter, ChannelError
from actors.messages import (
    AskQuestion,
    Deliver,
    Delivered,
    DeliveryAction,
    DeliveryFailed,
    EditText,
    Notify,
    React,
    SendCard,
    SendText,
)
from protocol.rows import Routing

log = logging.getLogger("hutch.delivery")


class DeliveryActor(pykka.ThreadingActor):
    def __init__(self, adapters: Iterable[ChannelAdapter]) -> None:
        super().__init__()
        self._adapters = {adapter.channel_type: adapter for adapter in adapters}

    def on_receive(self, message: Any) -> Any:
        match message:
            case Deliver():
                self._deliver(message)
            case Notify(routing=routing, text=text):
                self._notify(routing, text)
            case _:
                return super().on_receive(message)
        return None

    def _deliver(self, request: Deliver) -> None:
        adapter = self._adapters.get(request.routing.channel_type or "")
        if adapter is None:
            answer: Any = DeliveryFailed(request.message_out_id, f"no channel {request.routing.channel_type!r}", False)
        else:
            try:
                platform_id = _perform(adapter, request.routing, request.action)
                answer = Delivered(request.message_out_id, platform_id)
            except ChannelError as exc:
                answer = DeliveryFailed(request.message_out_id, str(exc), exc.retryable)
            except Exception as exc:
                # An adapter bug must not take the actor down with every session's deliveries.
                log.exception("delivery: %s adapter failed", request.routing.channel_type)
                answer = DeliveryFailed(request.message_out_id, f"{type(exc).__name__}: {exc}", True)
        try:
            request.reply_to.tell(answer)
        except pykka.ActorDeadError:
            log.warning("delivery: session %s stopped before hearing about %s", request.session_id[:8],
                        request.message_out_id)  # fmt: skip

    def _notify(self, routing: Routing, text: str) -> None:
        adapter = self._adapters.get(routing.channel_type or "")
        if adapter is None:
            log.warning("delivery: cannot notify on unknown channel %r: %s", routing.channel_type, text)
            return
        try:
            adapter.send_text(routing, text)
        except ChannelError as exc:
            log.warning("delivery: notice to %s/%s not sent (%s): %s", routing.channel_type, routing.platform_id,
                        exc, text)  # fmt: skip
        except Exception:
            # A tell: raising here would stop the actor and every session's deliveries with it.
            log.exception("delivery: %s adapter failed sending a notice: %s", routing.channel_type, text)


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
            lines = [f"*{card.title}*", card.text, *(f"{label}: {value}" for label, value in card.fields)]
            return adapter.send_text(to, "\n".join(line for line in lines if line))
    raise ChannelError(f"unknown action {type(action).__name__}", retryable=False)


def _send_text(adapter: ChannelAdapter, to: Routing, text: str, files: tuple[Path, ...]) -> str | None:
    if not files or FILES in adapter.capabilities:
        return adapter.send_text(to, text, files)
    names = ", ".join(path.name for path in files)
    return adapter.send_text(to, f"{text}\n(files not shown here: {names})".strip())
