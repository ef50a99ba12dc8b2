"""How inbound rows are shown to the model. Routing fields (platform, channel, thread) never
appear: the agent refers to messages by seq only."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

from container_runner.attachments import file_type, human_size
from protocol import outbound
from protocol.content import CardOut, ChatIn, ContentError, Notice, QuestionAnswer, TaskIn, WebhookIn
from protocol.db import read_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageIn, MessageOut
from protocol.timeutil import parse_ts


class Formatter:
    def __init__(self, layout: SessionLayout, timezone: str) -> None:
        self._layout = layout
        self._zone = ZoneInfo(timezone)

    def batch(self, rows: Sequence[MessageIn]) -> str:
        """One row alone, or several in a `<messages>` block, oldest first."""
        parts = [self.row(row) for row in sorted(rows, key=lambda row: row.seq)]
        if len(parts) == 1:
            return parts[0]
        return "<messages>\n" + "\n".join(parts) + "\n</messages>"

    def row(self, row: MessageIn) -> str:
        try:
            content = row.decoded()
        except ContentError as exc:
            # The host wrote it, so this is a bug, but the agent should still see something.
            return f"<unreadable id={quoteattr(str(row.seq))}>{escape(str(exc))}</unreadable>"
        when = self._local_time(row.timestamp)
        match content:
            case ChatIn():
                return self._chat(row, content, when)
            case TaskIn(prompt=prompt):
                attrs = _attrs(id=row.seq, time=when, recurrence=row.recurrence)
                return f"<task {attrs}>{escape(prompt)}</task>"
            case WebhookIn(source=source, event=event, payload=payload):
                attrs = _attrs(id=row.seq, source=source, event=event, time=when)
                return f"<webhook {attrs}>{escape(json.dumps(payload, ensure_ascii=False))}</webhook>"
            case QuestionAnswer(question_id=question_id, answer=answer):
                card = self._card_asking(question_id)
                if card is not None:
                    return self._card_press(row, card, answer, when)
                attrs = _attrs(id=row.seq, type="question_answer", question=question_id, time=when)
                return f"<system {attrs}>{escape(answer)}</system>"
            case Notice(text=text):
                return f"<system {_attrs(id=row.seq, type='notice', time=when)}>{escape(text)}</system>"
        return f"<unreadable id={quoteattr(str(row.seq))}/>"

    def attachments(self, rows: Sequence[MessageIn]) -> list[Path]:
        """The files people sent with these rows, oldest first (the provider shows the
        pictures and PDFs among them as such: container_runner.attachments)."""
        found: list[Path] = []
        for row in sorted(rows, key=lambda row: row.seq):
            try:
                content = row.decoded()
            except ContentError:
                continue
            if isinstance(content, ChatIn):
                found.extend(self._layout.root / "inbox" / row.id / name for name in content.files)
        return found

    def _chat(self, row: MessageIn, content: ChatIn, when: str) -> str:
        body = escape(content.text)
        for name in content.files:
            body += "\n" + _attachment(name, self._layout.root / "inbox" / row.id / name)
        return f"<message {_attrs(id=row.seq, sender=content.sender, time=when)}>{body}</message>"

    def _card_asking(self, question_id: str) -> MessageOut | None:
        """The card whose buttons this answers: no tool waits for such an answer, so it comes
        as a message, and the model needs to know which card it is about."""
        if not self._layout.outbound_db.exists():
            return None
        try:
            with read_transaction(self._layout.outbound_db) as conn:
                return outbound.card_asking(conn, question_id)
        except sqlite3.Error:
            return None  # the answer is still worth showing, as a bare answer

    def _card_press(self, row: MessageIn, card: MessageOut, answer: str, when: str) -> str:
        try:
            content = card.decoded()
        except ContentError:
            content = None
        title = content.title if isinstance(content, CardOut) else ""
        attrs = _attrs(id=row.seq, type="card_button", card=card.seq, time=when)
        return f'<system {attrs}>pressed "{escape(answer)}" on card {card.seq} ({escape(title)})</system>'

    def _local_time(self, stamp: str) -> str:
        try:
            moment = parse_ts(stamp)
        except ValueError:
            return stamp
        return moment.astimezone(self._zone).strftime("%Y-%m-%d %H:%M %Z")

    def local(self, moment: datetime) -> str:
        return moment.astimezone(self._zone).strftime("%Y-%m-%d %H:%M %Z")


def _attachment(name: str, path: Path) -> str:
    """A file by path, with what the model needs to decide whether and how to open it."""
    try:
        size = human_size(path.stat().st_size)
    except OSError:
        size = "missing"
    attrs = _attrs(name=name, path=path, size=size, type=file_type(path))
    return f"<attachment {attrs}/>"


def _attrs(**values: object) -> str:
    return " ".join(f"{key}={quoteattr(str(value))}" for key, value in values.items() if value is not None)
