"""The agent's send_card and update_task through a whole host (process runtime, mock
provider, the local chat): a card reaches the chat as a card, an update reaches inbound.db."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from actors.host import Host
from actors.store import sessions
from protocol import inbound
from protocol.content import Notice, TaskIn
from protocol.db import read_transaction
from protocol.layout import SessionLayout
from protocol.rows import MessageIn
from tests.fakes.chat_client import ChatClient
from tests.fakes.session import FolderEvents

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def chat(host: Host) -> Iterator[ChatClient]:
    client = ChatClient(host.config.chat_socket)
    yield client
    client.close()


def _layout(host: Host) -> SessionLayout:
    (session,) = sessions.list_all(host.store)
    return SessionLayout(host.config.sessions_dir / "main" / session.id)


def _rows(layout: SessionLayout) -> list[MessageIn]:
    with read_transaction(layout.inbound_db) as conn:
        return inbound.messages_with_status(conn, "pending", "paused", "processing", "completed", "failed")


def test_a_card_the_agent_sends_reaches_the_chat_as_a_card(host: Host, chat: ChatClient) -> None:
    card = {"title": "Build #12", "text": "all green", "fields": [{"label": "tests", "value": "412"}]}
    chat.send(f"!tool send_card {json.dumps(card)}")
    shown = chat.next_message()
    assert shown["type"] == "card"
    assert (shown["title"], shown["text"], shown["fields"]) == ("Build #12", "all green", [["tests", "412"]])
    reply = chat.next_message()
    assert reply["type"] == "message" and "send_card -> card sent as message" in reply["text"]


def test_update_task_changes_a_pending_task_and_an_unknown_one_is_refused(host: Host, chat: ChatClient) -> None:
    chat.send('!tool schedule_task {"prompt": "water the plants", "process_after": "2030-12-02T08:00:00Z"}')
    scheduled = re.search(r"task (t[0-9a-f]{11}) scheduled", chat.next_message()["text"])
    assert scheduled is not None
    task_id = scheduled.group(1)
    change = {
        "task_id": task_id,
        "prompt": "water the roses",
        "process_after": "2030-12-05T17:30:00Z",
        "recurrence": "30 17 * * 1-5",
    }
    chat.send(f"!tool update_task {json.dumps(change)}")
    assert "update of task" in chat.next_message()["text"]
    chat.send('!tool update_task {"task_id": "nope", "prompt": "x"}')
    assert "update of task nope requested" in chat.next_message()["text"]  # the host decides

    layout = _layout(host)
    events = FolderEvents(layout.root)
    try:
        updated = events.wait_until(
            lambda: [r for r in _rows(layout) if r.id == task_id and r.recurrence == "30 17 * * 1-5"] or None
        )
        refused = events.wait_until(
            lambda: (
                [
                    r
                    for r in _rows(layout)
                    if r.kind == "system" and isinstance(r.decoded(), Notice) and "no task 'nope'" in r.decoded().text
                ]
                or None
            )
        )
    finally:
        events.close()
    (task,) = updated
    assert (task.status, task.process_after) == ("pending", "2030-12-05T17:30:00.000000Z")
    assert task.decoded() == TaskIn(
        prompt="water the roses", scheduled_by=task.decoded().scheduled_by, scheduled_for="2030-12-05T17:30:00.000000Z"
    )
    assert len(refused) == 1
    assert [r.kind for r in _rows(layout)].count("task") == 1


def test_a_card_with_buttons_is_a_question_and_a_press_reaches_the_agent(host: Host, chat: ChatClient) -> None:
    card = {"title": "Deploy?", "text": "v2 is ready", "fields": [{"label": "tests", "value": "412"}]}
    card["buttons"] = ["Ship it", "Wait"]
    assert chat.send(f"!tool send_card {json.dumps(card)}")["type"] == "ack"
    shown = chat.next_message()
    assert shown["type"] == "question" and shown["options"] == ["Ship it", "Wait"]
    assert shown["question"] == "*Deploy?*\nv2 is ready\ntests: 412"
    sent = re.search(r"send_card -> card sent as message (\d+)", chat.next_message()["text"])
    assert sent is not None

    assert chat.answer(shown["question_id"], "Ship it")["type"] == "ack"
    reply = chat.next_message()
    # No tool waits for a card's answer: it comes as a message naming the button and the card.
    assert reply["type"] == "message"
    assert f'pressed "Ship it" on card {sent.group(1)} (Deploy?)' in reply["text"]
