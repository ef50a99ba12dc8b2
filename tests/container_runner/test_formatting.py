from __future__ import annotations

from pathlib import Path

from container_runner.formatting import Formatter
from protocol import outbound
from protocol.content import CardOut, ChatIn, Notice, QuestionAnswer, TaskIn, WebhookIn, encode_content
from protocol.db import write_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageIn
from tests.fakes.session import make_session

STAMP = "2026-11-25T19:05:00.000000Z"


def _row(seq: int, content: object, kind: str) -> MessageIn:
    return MessageIn(
        id=f"m{seq}",
        seq=seq,
        kind=kind,
        timestamp=STAMP,
        platform_id="secret-chat",
        channel_type="telegram",
        thread_id="secret-thread",
        content=encode_content(content),  # type: ignore[arg-type]
    )


def test_chat_is_escaped_and_carries_no_routing(tmp_path: Path) -> None:
    formatter = Formatter(SessionLayout(tmp_path), "Europe/Berlin")
    text = formatter.row(_row(2, ChatIn(text='a < b & "c"', sender='Ann "A"'), "chat"))
    assert text == ('<message id="2" sender=\'Ann "A"\' time="2026-11-25 20:05 CET">a &lt; b &amp; "c"</message>')
    assert "secret" not in text and "telegram" not in text


def test_several_rows_form_a_block_in_seq_order(tmp_path: Path) -> None:
    formatter = Formatter(SessionLayout(tmp_path), "UTC")
    rows = [_row(4, ChatIn(text="second", sender="b"), "chat"), _row(2, ChatIn(text="first", sender="a"), "chat")]
    text = formatter.batch(rows)
    assert text.startswith('<messages>\n<message id="2"')
    assert text.index("first") < text.index("second")
    assert text.endswith("</messages>")


def test_other_kinds(tmp_path: Path) -> None:
    formatter = Formatter(SessionLayout(tmp_path), "UTC")
    task = formatter.row(_row(6, TaskIn(prompt="check <mail>"), "task"))
    assert task == '<task id="6" time="2026-11-25 19:05 UTC">check &lt;mail&gt;</task>'
    hook = formatter.row(_row(8, WebhookIn(source="github", event="push", payload={"ref": "main"}), "webhook"))
    assert hook.startswith('<webhook id="8" source="github" event="push"') and '{"ref": "main"}' in hook
    answer = formatter.row(_row(10, QuestionAnswer(question_id="q1", answer="Yes"), "system"))
    assert 'type="question_answer"' in answer and ">Yes</system>" in answer
    notice = formatter.row(_row(12, Notice(text="task rejected"), "system"))
    assert 'type="notice"' in notice


def test_attachments_are_listed_with_their_inbox_path(tmp_path: Path) -> None:
    formatter = Formatter(SessionLayout(tmp_path), "UTC")
    text = formatter.row(_row(2, ChatIn(text="see", sender="a", files=["cat.png"]), "chat"))
    assert f'path="{tmp_path}/inbox/m2/cat.png"' in text


def test_unreadable_content_is_shown_not_raised(tmp_path: Path) -> None:
    formatter = Formatter(SessionLayout(tmp_path), "UTC")
    row = MessageIn(id="bad", seq=2, kind="chat", timestamp=STAMP, content='{"text": 1}')
    assert formatter.row(row).startswith('<unreadable id="2">')


def test_an_answer_to_a_cards_buttons_names_the_button_and_the_card(tmp_path: Path) -> None:
    layout = make_session(tmp_path / "session")
    card = CardOut(title="Deploy <v2>", buttons=["Ship it", "Wait"], question_id="c1")
    with write_transaction(layout.outbound_db) as conn:
        written = outbound.insert_message(conn, message_id="o1", content=card, timestamp=STAMP, highest_inbound_seq=0)
    formatter = Formatter(layout, "UTC")
    pressed = formatter.row(_row(8, QuestionAnswer(question_id="c1", answer="Ship it"), "system"))
    assert pressed == (
        f'<system id="8" type="card_button" card="{written.seq}" time="2026-11-25 19:05 UTC">'
        f'pressed "Ship it" on card {written.seq} (Deploy &lt;v2&gt;)</system>'
    )
    # An answer to a question no card asked stays a plain answer.
    other = formatter.row(_row(10, QuestionAnswer(question_id="q9", answer="Yes"), "system"))
    assert 'type="question_answer"' in other
