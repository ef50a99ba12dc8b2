"""The whole host with its Telegram channel, end to end: the real host (process runtime, mock
provider) builds `TelegramChannel` from its configuration, which talks through
python-telegram-bot to the fake Bot API (tests/fakes/fake_telegram.py); people are updates
pushed into the fake, and what the host sends is read from the fake's record."""

from __future__ import annotations

import html
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from actors.cli.app import app
from actors.host import Host
from actors.store import agent_groups, members, messaging_group_agents, messaging_groups, pending_questions
from protocol.content import ChatIn, QuestionAnswer
from tests.fakes.fake_telegram import ApiCall, Failure, FakeTelegram, private_chat, user
from tests.integration.channel_support import (
    WAIT_S,
    chat_layout,
    delivered,
    deliveries,
    every_inbound_row,
    free_port,
    host_config,
    inbound_rows,
    log_lines,
    poll_until,
    reply_rows,
    reply_texts,
    running_host,
    session_of_chat,
    wait_on_folder,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(60),
    # PTB's RetryAfter reads its own deprecated int attribute while it is being made.
    pytest.mark.filterwarnings("ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"),
]

OWNER = user(77, "Olive", "Owner", username="olive")
STRANGER = user(88, "Sam", "Stranger")
OWNER_CHAT = private_chat(OWNER)
STRANGER_CHAT = private_chat(STRANGER)
OWNER_ID = "77"
STRANGER_ID = "88"
MAX_TEXT_UNITS = 4096

# The host's first retry comes this long after a failed send, and each next one twice as long.
BASE_S = 0.2


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


def telegram_host(
    data_dir: Path, fake: FakeTelegram, *, delivery_retry_base_s: float = 0.05, **settings: Any
) -> AbstractContextManager[Host]:
    """The host with its Telegram channel on `fake`; OWNER owns it."""
    config = host_config(
        data_dir, telegram_bot_token=fake.token, telegram_base_url=fake.base_url, telegram_owner=OWNER_ID, **settings
    )
    return running_host(config, delivery_retry_base_s=delivery_retry_base_s)


# -- reading the fake's record -------------------------------------------------------------------


def sent(fake: FakeTelegram, chat_id: str, method: str = "sendMessage") -> list[ApiCall]:
    """The calls of `method` to `chat_id` that Telegram accepted, in order."""
    return [c for c in fake.calls(method) if c.failure is None and str(c.params.get("chat_id")) == chat_id]


def texts(fake: FakeTelegram, chat_id: str) -> list[str]:
    """What the chat shows: each accepted message's text, its HTML entities read back."""
    return [html.unescape(call.params["text"]) for call in sent(fake, chat_id)]


def wait_text(fake: FakeTelegram, chat_id: str, wanted: Callable[[str], bool], timeout: float = WAIT_S) -> str:
    """The first message to `chat_id` that `wanted` accepts, once there is one."""
    return fake.wait_until(lambda: next((t for t in texts(fake, chat_id) if wanted(t)), None), timeout)


def wait_reply(fake: FakeTelegram, chat_id: str, text: str, timeout: float = WAIT_S) -> str:
    """The mock agent's answer to `text` (it echoes the last line)."""
    return wait_text(fake, chat_id, lambda shown: shown.startswith(f"mock: {text}"), timeout)


# -- who may talk to the agent -------------------------------------------------------------------


def test_the_owners_first_direct_message_is_answered(data_dir: Path, fake: FakeTelegram) -> None:
    with telegram_host(data_dir, fake) as host:
        assert messaging_groups.get_by_platform(host.store, "telegram", OWNER_ID) is None  # a chat not seen yet
        fake.push_text(OWNER_CHAT, OWNER, "hello from the owner")
        reply = wait_reply(fake, OWNER_ID, "hello from the owner")
        assert reply.endswith("[turn 1]")

        # The direct chat was wired to `main` by that first message, and the owner recorded.
        chat = messaging_groups.get_by_platform(host.store, "telegram", OWNER_ID)
        assert chat is not None and not chat.is_group
        wirings = messaging_group_agents.wirings_for(host.store, chat.id)
        folders = [agent_groups.get(host.store, wiring.agent_group_id) for wiring in wirings]
        assert [group.folder for group in folders if group is not None] == ["main"]
        assert members.role_of(host.store, chat.id, OWNER_ID) == "owner"

        (row,) = inbound_rows(chat_layout(host, "telegram", OWNER_ID))
        content = row.decoded()
        assert isinstance(content, ChatIn)
        assert (content.text, content.sender, content.sender_id, content.sender_role) == (
            "hello from the owner",
            "Olive Owner",
            OWNER_ID,
            "owner",
        )
        assert (row.platform_id, row.channel_type) == (OWNER_ID, "telegram")


def test_a_strangers_file_is_not_even_fetched(data_dir: Path, fake: FakeTelegram) -> None:
    """A stranger the host drops could otherwise make the bot download up to 20 MB a message."""
    with log_lines() as lines, telegram_host(data_dir, fake) as host:
        fake.push_document(STRANGER_CHAT, STRANGER, b"x" * 4096, "big.bin", caption="take this")
        lines.wait_for(f"dropped a message in telegram/{STRANGER_ID}")
        fake.push_document(OWNER_CHAT, OWNER, b"%PDF-1.4 mine", "mine.pdf", caption="and mine")
        wait_reply(fake, OWNER_ID, "and mine")
        # One getFile: the owner's.
        assert [call.params.get("file_id") for call in fake.calls("getFile")] == ["file-2"]
        assert session_of_chat(host, "telegram", STRANGER_ID) is None


def test_a_stranger_is_dropped_under_the_default_policy(data_dir: Path, fake: FakeTelegram) -> None:
    with log_lines() as lines, telegram_host(data_dir, fake) as host:
        where = f"telegram/{STRANGER_ID}"
        dropped = f"dropped a message in {where}"
        fake.push_text(STRANGER_CHAT, STRANGER, "let me in")  # update 1
        lines.wait_for(dropped)
        before = len(lines.matching(where))
        fake.push_text(STRANGER_CHAT, STRANGER, "please?")  # update 2
        lines.wait_for(dropped, count=2)
        # Whatever the host would have sent the stranger would go out before this reply:
        # one channel's sends go in order.
        fake.push_text(OWNER_CHAT, OWNER, "anyone else here?")
        wait_reply(fake, OWNER_ID, "anyone else here?")

        # One line for each dropped message, naming the sender and the policy, and nothing
        # else about that chat (it is not even kept).
        assert len(lines.matching(dropped)) == 2
        assert len(lines.matching(where)) == before + 1
        assert all(f"sender {STRANGER_ID} is not a member" in line and "policy drop" in line
                   for line in lines.matching(dropped))  # fmt: skip
        # Nothing sent back, no session, nothing in any inbound.db.
        assert [c for c in fake.calls() if str(c.params.get("chat_id")) == STRANGER_ID] == []
        assert session_of_chat(host, "telegram", STRANGER_ID) is None
        assert messaging_groups.get_by_platform(host.store, "telegram", STRANGER_ID) is None  # not even the chat
        rows = every_inbound_row(host)
        assert [row.platform_id for row in rows] == [OWNER_ID]
        assert not any("let me in" in row.content or "please?" in row.content for row in rows)
        # Telegram was told the stranger's updates were taken (the poll that brought the
        # owner's update 3 confirmed them): they do not come again after a restart.
        assert fake.confirmed_offset >= 3


def test_pairing_lets_the_owner_approve_a_stranger(data_dir: Path, fake: FakeTelegram) -> None:
    with telegram_host(data_dir, fake, unknown_senders="pair") as host:
        # The owner's direct chat is where pairing requests are announced.
        fake.push_text(OWNER_CHAT, OWNER, "good morning")
        wait_reply(fake, OWNER_ID, "good morning")

        fake.push_text(STRANGER_CHAT, STRANGER, "hi, I am Sam")
        offer = wait_text(fake, STRANGER_ID, lambda text: "pairing code" in text)
        match = re.search(r"pairing code is ([A-Z0-9]{6})", offer)
        assert match is not None, offer
        code = match.group(1)
        question = wait_text(fake, OWNER_ID, lambda text: f"/approve {code}" in text)
        assert "Sam Stranger (88)" in question and f"/refuse {code}" in question

        fake.push_text(OWNER_CHAT, OWNER, f"/approve {code}")
        assert wait_text(fake, OWNER_ID, lambda text: text.endswith("is approved.")) == "Sam Stranger is approved."
        wait_text(fake, STRANGER_ID, lambda text: text == "You can talk to the assistant now.")

        fake.push_text(STRANGER_CHAT, STRANGER, "so, hello again")
        wait_reply(fake, STRANGER_ID, "so, hello again")

        # The stranger's chat got a session of its own; the message before approval never
        # reached an agent, and neither did the owner's command.
        stranger_rows = inbound_rows(chat_layout(host, "telegram", STRANGER_ID))
        assert [row.decoded().text for row in stranger_rows] == ["so, hello again"]
        assert stranger_rows[0].decoded().sender_role == "member"
        assert not any("/approve" in row.content or "I am Sam" in row.content for row in every_inbound_row(host))
        # The stranger was told exactly twice before being answered: the code, the approval.
        assert len(texts(fake, STRANGER_ID)) == 3


def test_the_hutch_command_approves_through_the_host_which_tells_the_stranger(
    data_dir: Path, fake: FakeTelegram
) -> None:
    with telegram_host(data_dir, fake, unknown_senders="pair"):
        fake.push_text(STRANGER_CHAT, STRANGER, "hi, I am Sam")
        offer = wait_text(fake, STRANGER_ID, lambda text: "pairing code" in text)
        match = re.search(r"pairing code is ([A-Z0-9]{6})", offer)
        assert match is not None, offer

        result = CliRunner().invoke(app, ["senders", "approve", match.group(1), "--data-dir", str(data_dir)])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip().endswith("(Sam Stranger); the chat is wired to 'main'. They are told.")
        wait_text(fake, STRANGER_ID, lambda text: text == "You can talk to the assistant now.")
        fake.push_text(STRANGER_CHAT, STRANGER, "so, hello again")
        wait_reply(fake, STRANGER_ID, "so, hello again")


def test_a_pairing_question_lost_to_a_server_error_is_asked_again(data_dir: Path, fake: FakeTelegram) -> None:
    with telegram_host(data_dir, fake, unknown_senders="pair"):
        fake.push_text(OWNER_CHAT, OWNER, "good morning")
        wait_reply(fake, OWNER_ID, "good morning")

        # The stranger's code goes out; the owner's question meets a 502.
        fake.fail("sendMessage", Failure.server_error(502), skip=1)
        fake.push_text(STRANGER_CHAT, STRANGER, "hi, I am Sam")
        offer = wait_text(fake, STRANGER_ID, lambda text: "pairing code" in text)
        match = re.search(r"pairing code is ([A-Z0-9]{6})", offer)
        assert match is not None, offer
        lost = fake.wait_until(lambda: [c for c in fake.calls("sendMessage") if c.failure is not None], WAIT_S)
        assert f"/approve {match.group(1)}" in lost[0].params["text"]

        # The stranger, told the owner was asked, writes again.
        fake.push_text(STRANGER_CHAT, STRANGER, "hello? anyone?")
        wait_text(fake, OWNER_ID, lambda text: f"/approve {match.group(1)}" in text, timeout=5)


# -- questions, long replies, files --------------------------------------------------------------


def test_a_card_with_buttons_shows_an_inline_keyboard_and_a_press_reaches_the_agent(
    data_dir: Path, fake: FakeTelegram
) -> None:
    card = {"title": "Deploy", "text": "v2 is ready", "buttons": ["Ship it", "Wait"]}
    with telegram_host(data_dir, fake):
        fake.push_text(OWNER_CHAT, OWNER, f"release?\n!tool send_card {json.dumps(card)}")
        asked = fake.wait_until(
            lambda: next((c for c in sent(fake, OWNER_ID) if "reply_markup" in c.params), None), WAIT_S
        )
        assert "Deploy" in asked.params["text"] and "v2 is ready" in asked.params["text"]
        keyboard = asked.params["reply_markup"]["inline_keyboard"]
        assert [row[0]["text"] for row in keyboard] == ["Ship it", "Wait"]

        fake.push_callback(OWNER_CHAT, OWNER, keyboard[0][0]["callback_data"])
        reply = wait_reply(fake, OWNER_ID, 'pressed "Ship it" on card')
        assert "(Deploy)" in reply


def test_a_question_is_answered_by_a_button(data_dir: Path, fake: FakeTelegram) -> None:
    ask = {"question": "Tea or coffee?", "options": ["tea", "coffee"]}
    with telegram_host(data_dir, fake) as host:
        fake.push_text(OWNER_CHAT, OWNER, f"which drink?\n!tool ask_user_question {json.dumps(ask)}")
        asked = fake.wait_until(
            lambda: next((c for c in sent(fake, OWNER_ID) if "reply_markup" in c.params), None), WAIT_S
        )
        assert asked.params["text"] == "Tea or coffee?"
        keyboard = asked.params["reply_markup"]["inline_keyboard"]
        assert [row[0]["text"] for row in keyboard] == ["tea", "coffee"]

        query_id = fake.push_callback(OWNER_CHAT, OWNER, keyboard[1][0]["callback_data"])
        reply = wait_reply(fake, OWNER_ID, "which drink?")
        assert "ask_user_question -> the user chose: coffee" in reply
        # The button stopped spinning, and the answer reached the session as a row.
        assert [c.params["callback_query_id"] for c in fake.calls("answerCallbackQuery")] == [query_id]
        answers = [
            row.decoded() for row in inbound_rows(chat_layout(host, "telegram", OWNER_ID)) if row.kind == "system"
        ]
        assert [(a.answer, a.answered_by) for a in answers if isinstance(a, QuestionAnswer)] == [
            ("coffee", "Olive Owner")
        ]
        (question,) = pending_questions.list_all(host.store)
        assert (question.status, question.answer) == ("answered", "coffee")


def test_a_long_reply_is_split_in_order(data_dir: Path, fake: FakeTelegram) -> None:
    words = " ".join(f"word{n:04d}" for n in range(600))  # 5399 characters, one line
    with telegram_host(data_dir, fake) as host:
        fake.push_text(OWNER_CHAT, OWNER, words)
        wait_text(fake, OWNER_ID, lambda text: text.endswith("[turn 1]"))
        parts = texts(fake, OWNER_ID)
        (reply,) = reply_texts(chat_layout(host, "telegram", OWNER_ID))

    assert reply.startswith(f"mock: {words}") and len(reply) > MAX_TEXT_UNITS
    assert len(parts) == 2
    assert all(len(part.encode("utf-16-le")) // 2 <= MAX_TEXT_UNITS for part in parts)
    # In order and nothing lost: only the whitespace at a cut is not sent.
    assert parts[0].startswith("mock: word0000")
    assert " ".join(parts).split() == reply.split()


def test_files_both_ways(data_dir: Path, fake: FakeTelegram) -> None:
    pdf = b"%PDF-1.4 quarterly numbers\n\x00\x01\x02"
    with telegram_host(data_dir, fake) as host:
        fake.push_document(OWNER_CHAT, OWNER, pdf, "numbers.pdf", caption="here are the numbers")
        wait_reply(fake, OWNER_ID, "here are the numbers")
        layout = chat_layout(host, "telegram", OWNER_ID)
        (row,) = inbound_rows(layout)
        assert row.decoded().files == ["numbers.pdf"]
        inbox = layout.root / "inbox" / row.id / "numbers.pdf"
        assert inbox == host.config.sessions_dir / "main" / layout.root.name / "inbox" / row.id / "numbers.pdf"
        assert inbox.read_bytes() == pdf
        # The adapter's own copy is gone once the host has the file.
        downloads = host.config.downloads_dir / "telegram"
        poll_until(lambda: not any(downloads.iterdir()))

        make = json.dumps({"command": "echo report > report.txt"})
        fake.push_text(
            OWNER_CHAT, OWNER, f'a report please\n!tool bash {make}\n!tool send_file {{"path": "report.txt"}}'
        )
        (document,) = fake.wait_until(lambda: sent(fake, OWNER_ID, "sendDocument"), WAIT_S)
        assert (document.files["document"].name, document.files["document"].data) == ("report.txt", b"report\n")
        reply = wait_reply(fake, OWNER_ID, "a report please")
        assert "send_file -> sent report.txt" in reply
        # The file went out before the reply that mentions it (a session's rows go in order).
        calls = fake.calls()
        assert calls.index(document) < calls.index(sent(fake, OWNER_ID)[-1])
        # The host's copy of it is released once the message is settled: kept, a session's
        # files would fill the host's disk one sent file at a time.
        poll_until(lambda: not any((layout.root / "sent").glob("*/*")))


# -- a channel in trouble ------------------------------------------------------------------------


def test_a_reply_that_meets_flood_control_and_server_errors_arrives_once(data_dir: Path, fake: FakeTelegram) -> None:
    with log_lines() as lines, telegram_host(data_dir, fake, delivery_retry_base_s=BASE_S) as host:
        fake.push_text(OWNER_CHAT, OWNER, "warm up")
        wait_reply(fake, OWNER_ID, "warm up")

        fake.fail("sendMessage", Failure.flood(1))
        fake.fail("sendMessage", Failure.server_error(502))
        fake.fail("sendMessage", Failure.server_error(500))
        fake.push_text(OWNER_CHAT, OWNER, "are you there?")
        wait_reply(fake, OWNER_ID, "are you there?")
        # A later reply goes out only after this one settled: it is the barrier for repeats.
        fake.push_text(OWNER_CHAT, OWNER, "and now?")
        wait_reply(fake, OWNER_ID, "and now?")

        tries = [c for c in fake.calls("sendMessage") if "are you there?" in c.params["text"]]
        assert [c.failure.status if c.failure else 200 for c in tries] == [429, 502, 500, 200]
        assert len([t for t in texts(fake, OWNER_ID) if t.startswith("mock: are you there?")]) == 1
        # Retried by the host, each wait twice the one before (a retry is never early).
        retries = lines.matching("failed (attempt")
        assert [re.search(r"attempt (\d)", line).group(1) for line in retries] == ["1", "2", "3"]  # type: ignore[union-attr]
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(tries)]
        assert all(gap >= 0.9 * BASE_S * 2**n for n, gap in enumerate(gaps)), gaps
        layout = chat_layout(host, "telegram", OWNER_ID)
        (row,) = reply_rows(layout, "mock: are you there?")
        delivery = wait_on_folder(layout.root, lambda: delivered(layout, row.id))
        assert delivery.attempts == 4
        assert [r.decoded().text.split("\n")[0] for r in reply_rows(layout, "mock:")] == [
            "mock: warm up",
            "mock: are you there?",
            "mock: and now?",
        ]


def test_a_long_reply_whose_second_part_fails_goes_on_from_there(data_dir: Path, fake: FakeTelegram) -> None:
    words = " ".join(f"word{n:04d}" for n in range(1000))  # 8999 characters: three messages
    with telegram_host(data_dir, fake, delivery_retry_base_s=BASE_S) as host:
        fake.push_text(OWNER_CHAT, OWNER, "warm up")
        wait_reply(fake, OWNER_ID, "warm up")

        fake.fail("sendMessage", Failure.server_error(502), skip=1)  # the reply's second part
        fake.push_text(OWNER_CHAT, OWNER, words)
        layout = chat_layout(host, "telegram", OWNER_ID)
        (row,) = wait_on_folder(layout.root, lambda: reply_rows(layout, "mock: word0000"))
        delivery = wait_on_folder(layout.root, lambda: delivered(layout, row.id))
        tries = fake.calls("sendMessage")[1:]  # after the warm-up's reply
        parts = texts(fake, OWNER_ID)[1:]

    # The host's retry went on from the part that failed: each part shown once, in order.
    assert [c.failure.status if c.failure else 200 for c in tries] == [200, 502, 200, 200]
    assert [c.params["text"] for c in tries[1:3]] == [tries[1].params["text"]] * 2
    assert len(parts) == 3 and parts[0].startswith("mock: word0000") and parts[2].endswith("[turn 2]")
    assert " ".join(parts).split() == row.decoded().text.split()
    assert delivery.attempts == 2
    # The reply's id is its first part's. The fake numbers messages from 100, those pushed
    # included: the warm-up, its reply, the long message, then the reply's first part.
    assert delivery.platform_message_id == "103"


def test_a_reply_made_while_telegram_is_down_arrives_once_it_is_back(data_dir: Path, fake: FakeTelegram) -> None:
    with log_lines() as lines, telegram_host(data_dir, fake, delivery_retry_base_s=0.2) as host:
        fake.push_text(OWNER_CHAT, OWNER, "warm up")
        wait_reply(fake, OWNER_ID, "warm up")
        # The agent's turn waits in a tool until the test opens this pipe for writing.
        gate = host.config.groups_dir / "main" / "gate"
        os.mkfifo(gate)
        fake.push_text(OWNER_CHAT, OWNER, 'held back\n!tool bash {"command": "cat gate"}')
        layout = chat_layout(host, "telegram", OWNER_ID)
        wait_on_folder(layout.root, lambda: len(inbound_rows(layout)) == 2)

        fake.stop()  # Telegram is down: its port refuses connections
        with gate.open("w") as pipe:  # blocks until the agent's `cat` reads
            pipe.write("go\n")
        lines.wait_for("failed (attempt 1)")
        fake.start()  # back, on the same port
        reply = wait_reply(fake, OWNER_ID, "held back")
        assert "bash -> go" in reply
        fake.push_text(OWNER_CHAT, OWNER, "and now?")
        wait_reply(fake, OWNER_ID, "and now?")

        assert len([t for t in texts(fake, OWNER_ID) if t.startswith("mock: held back")]) == 1
        (row,) = reply_rows(layout, "mock: held back")
        delivery = wait_on_folder(layout.root, lambda: delivered(layout, row.id))
        assert delivery.attempts >= 2
        assert [r.decoded().text.split("\n")[0] for r in reply_rows(layout, "mock:")] == [
            "mock: warm up",
            "mock: held back",
            "mock: and now?",
        ]


def test_a_reply_waits_out_a_long_flood_control(data_dir: Path, fake: FakeTelegram) -> None:
    flood_s = 3
    with telegram_host(data_dir, fake) as host:
        fake.push_text(OWNER_CHAT, OWNER, "warm up")
        wait_reply(fake, OWNER_ID, "warm up")
        # Telegram answers 429 "retry after 3" to every send for the next 3 s. The host's five
        # attempts at a 0.05 s base span 0.75 s here, as 2 s spans 30 s at the defaults.
        fake.flood_for("sendMessage", flood_s)
        fake.push_text(OWNER_CHAT, OWNER, "during the flood")
        layout = chat_layout(host, "telegram", OWNER_ID)

        def settled() -> str | None:
            rows = reply_rows(layout, "mock: during the flood")
            delivery = deliveries(layout).get(rows[0].id) if rows else None
            return delivery.status if delivery is not None and delivery.status != "retrying" else None

        assert wait_on_folder(layout.root, settled, timeout=flood_s + 10) == "delivered"
        assert len([t for t in texts(fake, OWNER_ID) if t.startswith("mock: during the flood")]) == 1


def test_the_host_starts_without_telegram_and_takes_it_in_when_it_comes_up(data_dir: Path) -> None:
    port = free_port()
    waiting = FakeTelegram(port=port)
    config = host_config(
        data_dir,
        telegram_bot_token=waiting.token,
        telegram_base_url=f"http://127.0.0.1:{port}/bot",
        telegram_owner=OWNER_ID,
    )
    try:
        with log_lines() as lines, running_host(config) as host:
            # Up, with the local chat, while nobody answers on Telegram's port.
            assert host.config.chat_socket.exists()
            lines.wait_for("channel telegram did not start")
            assert not lines.matching("channel telegram is listening")
            started = time.monotonic()
            waiting.start()
            lines.wait_for("channel telegram is listening")
            assert time.monotonic() - started < 10  # the starter's first retries are a second or two apart
            waiting.push_text(OWNER_CHAT, OWNER, "are you up now?")
            wait_reply(waiting, OWNER_ID, "are you up now?")
    finally:
        waiting.stop()
