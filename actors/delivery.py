"""DeliveryActor: holds the channel adapters and makes one attempt per `Deliver`.

It keeps no delivery state of its own: the SessionActor records every outcome in its
inbound.db and decides about retries, so a restart loses nothing and sends nothing twice
that was confirmed. Where a channel lacks a feature, the message degrades to plain text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pykka

from actors.channels.base import CARD, EDIT, FILES, QUESTION, REACTION, ChannelAdapter, ChannelError, Target
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
from actors.store import pending_questions
from actors.store.db import Store

log = logging.getLogger("hutch.delivery")


class DeliveryActor(pykka.ThreadingActor):
    def __init__(self, adapters: Iterable[ChannelAdapter], store: Store | None = None) -> None:
        super().__init__()
        self._adapters = {adapter.channel_type: adapter for adapter in adapters}
        self._store = store

    def on_receive(self, message: Any) -> Any:
        match message:
            case Deliver():
                self._deliver(message)
            case Notify(channel_type=channel_type, target=target, text=text):
                self._notify(channel_type, target, text)
            case _:
                log.warning("delivery: ignoring unexpected message %r", message)
        return None

    def _deliver(self, request: Deliver) -> None:
        adapter = self._adapters.get(request.channel_type)
        if adapter is None:
            answer: Any = DeliveryFailed(request.message_out_id, f"no channel {request.channel_type!r}", False)
        else:
            try:
                platform_id = self._perform(adapter, request)
                answer = Delivered(request.message_out_id, platform_id)
            except ChannelError as exc:
                answer = DeliveryFailed(request.message_out_id, str(exc), exc.retryable)
            except Exception as exc:
                # An adapter bug must not take the actor down with every session's deliveries.
                log.exception("delivery: %s adapter failed", request.channel_type)
                answer = DeliveryFailed(request.message_out_id, f"{type(exc).__name__}: {exc}", True)
        try:
            request.reply_to.tell(answer)
        except pykka.ActorDeadError:
            log.warning("delivery: session %s stopped before hearing about %s", request.session_id[:8],
                        request.message_out_id)  # fmt: skip

    def _perform(self, adapter: ChannelAdapter, request: Deliver) -> str | None:
        action: DeliveryAction = request.action
        target = request.target
        can = adapter.capabilities
        match action:
            case SendText(text=text, files=files):
                return _send_text(adapter, target, text, tuple(Path(f) for f in files))
            case EditText(platform_message_id=platform_id, text=text):
                if EDIT in can:
                    adapter.edit_text(target, platform_id, text)
                    return platform_id
                return adapter.send_text(target, f"(correction) {text}")
            case React(platform_message_id=platform_id, emoji=emoji):
                if REACTION in can:
                    adapter.add_reaction(target, platform_id, emoji)
                return None  # without reactions there is nothing worth saying instead
            case AskQuestion(question_id=question_id, question=question, options=options):
                return self._ask(adapter, request, question_id, question, options)
            case SendCard(card=card):
                if CARD in can:
                    return adapter.send_card(target, card)
                lines = [f"*{card.title}*", card.text, *(f"{label}: {value}" for label, value in card.fields)]
                return adapter.send_text(target, "\n".join(line for line in lines if line))
        raise ChannelError(f"unknown action {type(action).__name__}", retryable=False)

    def _ask(
        self, adapter: ChannelAdapter, request: Deliver, question_id: str, question: str, options: tuple[str, ...]
    ) -> str | None:
        # Recorded before it is shown: an answer can come back the moment the platform has it.
        existing = pending_questions.get(self._store, question_id) if self._store is not None else None
        if existing is not None and existing.session_id != request.session_id:
            # The id comes from an untrusted container; it must not steer another session's answer.
            raise ChannelError(f"question id {question_id!r} belongs to another conversation", retryable=False)
        if self._store is not None and existing is None:
            pending_questions.create(
                self._store,
                id=question_id,
                session_id=request.session_id,
                message_out_id=request.message_out_id,
                question=question,
                options=options,
                platform_id=request.target.platform_id,
                channel_type=request.channel_type,
                thread_id=request.target.thread_id,
            )
        if QUESTION in adapter.capabilities:
            return adapter.ask_question(request.target, question_id, question, options)
        numbered = "\n".join(f"{index}. {option}" for index, option in enumerate(options, 1))
        return adapter.send_text(request.target, f"{question}\n{numbered}")

    def _notify(self, channel_type: str, target: Target, text: str) -> None:
        adapter = self._adapters.get(channel_type)
        if adapter is None:
            log.warning("delivery: cannot notify on unknown channel %r: %s", channel_type, text)
            return
        try:
            adapter.send_text(target, text)
        except ChannelError as exc:
            log.warning("delivery: notice to %s/%s not sent (%s): %s", channel_type, target.platform_id, exc, text)
        except Exception:
            # A tell: raising here would stop the actor and every session's deliveries with it.
            log.exception("delivery: %s adapter failed sending a notice: %s", channel_type, text)


def _send_text(adapter: ChannelAdapter, target: Target, text: str, files: tuple[Path, ...]) -> str | None:
    if not files or FILES in adapter.capabilities:
        return adapter.send_text(target, text, files)
    names = ", ".join(path.name for path in files)
    return adapter.send_text(target, f"{text}\n(files not shown here: {names})".strip())
