"""The whole host with its Discord channel, end to end: the real host (process runtime, mock
provider) builds `DiscordChannel` from its configuration, which talks through discord.py to
the fake Discord (tests/fakes/fake_discord.py), gateway and REST; people are gateway events
dispatched by the fake, and what the host sends is read from the fake's record."""

from __future__ import annotations

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

from actors.host import Host
from actors.store import agent_groups, members, messaging_group_agents, messaging_groups, pending_questions
from protocol.content import ChatIn, QuestionAnswer
from tests.fakes.fake_discord import (
    ALICE,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    FakeDiscord,
    Json,
    RestCall,
    dm_channel,
    message,
    user,
)
from tests.integration.channel_support import (
    WAIT_S,
    chat_layout,
    delivered,
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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

OWNER = ALICE  # display name "Alice"
OWNER_DM = DM_CHANNEL_ID
STRANGER = user("260000000000000001", "sam", "Sam")
STRANGER_DM = "491000000000000001"
MAX_MESSAGE_CHARS = 2000

# The host's first retry comes this long after a failed send, and each next one twice as long.
BASE_S = 0.2


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord() as server:
        server.add_channel(dm_channel(STRANGER_DM, STRANGER))
        yield server


def discord_host(
    data_dir: Path, fake: FakeDiscord, *, delivery_retry_base_s: float = 0.05, **settings: Any
) -> AbstractContextManager[Host]:
    """The host with its Discord channel on `fake`; OWNER owns it."""
    config = host_config(
        data_dir,
        discord_bot_token=fake.token,
        discord_api_base=fake.api_base,
        discord_gateway_url=fake.gateway_url,
        discord_owner=OWNER["id"],
        **settings,
    )
    return running_host(config, delivery_retry_base_s=delivery_retry_base_s)


# -- playing people, reading the fake's record ---------------------------------------------------


def say(fake: FakeDiscord, person: Json, dm: str, text: str, **extra: Any) -> Json:
    """`person` writes `text` in the direct chat `dm`."""
    sent = message(text, channel_id=dm, in_guild=False, author=person, **extra)
    fake.dispatch("MESSAGE_CREATE", sent)
    return sent


def posts(fake: FakeDiscord, dm: str) -> list[RestCall]:
    """The messages the bot posted to `dm` that Discord accepted, in order."""
    return [c for c in fake.calls_to("POST", f"/channels/{dm}/messages") if c.failed_with is None]


def texts(fake: FakeDiscord, dm: str) -> list[str]:
    return [call.body.get("content") or "" for call in posts(fake, dm)]


def wait_text(fake: FakeDiscord, dm: str, wanted: Callable[[str], bool], timeout: float = WAIT_S) -> str:
    return fake.wait_until(lambda: next((t for t in texts(fake, dm) if wanted(t)), None), timeout)


def wait_reply(fake: FakeDiscord, dm: str, text: str, timeout: float = WAIT_S) -> str:
    """The mock agent's answer to `text` (it echoes the last line)."""
    return wait_text(fake, dm, lambda shown: shown.startswith(f"mock: {text}"), timeout)


# -- who may talk to the agent -------------------------------------------------------------------


def test_the_owners_first_direct_message_is_answered(data_dir: Path, fake: FakeDiscord) -> None:
    with discord_host(data_dir, fake) as host:
        assert messaging_groups.get_by_platform(host.store, "discord", OWNER_DM) is None  # a chat not seen yet
        sent = say(fake, OWNER, OWNER_DM, "hello from the owner")
        reply = wait_reply(fake, OWNER_DM, "hello from the owner")
        assert reply.endswith("[turn 1]")

        # The direct chat was wired to `main` by that first message, and the owner recorded.
        chat = messaging_groups.get_by_platform(host.store, "discord", OWNER_DM)
        assert chat is not None and not chat.is_group
        wirings = messaging_group_agents.wirings_for(host.store, chat.id)
        folders = [agent_groups.get(host.store, wiring.agent_group_id) for wiring in wirings]
        assert [group.folder for group in folders if group is not None] == ["main"]
        assert members.role_of(host.store, chat.id, OWNER["id"]) == "owner"

        (row,) = inbound_rows(chat_layout(host, "discord", OWNER_DM))
        content = row.decoded()
        assert isinstance(content, ChatIn)
        assert (content.text, content.sender, content.sender_id, content.sender_role) == (
            "hello from the owner",
            "Alice",
            OWNER["id"],
            "owner",
        )
        assert content.platform_message_id == sent["id"]
        assert (row.platform_id, row.channel_type) == (OWNER_DM, "discord")


def test_a_strangers_file_is_not_even_fetched(data_dir: Path, fake: FakeDiscord) -> None:
    """A stranger the host drops could otherwise make the bot download 10 files of 25 MB."""
    with log_lines() as lines, discord_host(data_dir, fake) as host:
        theirs = fake.attachment("big.bin", b"x" * 4096)
        say(fake, STRANGER, STRANGER_DM, "take this", attachments=[theirs])
        lines.wait_for(f"dropped a message in discord/{STRANGER_DM}")
        mine = fake.attachment("mine.pdf", b"%PDF-1.4 mine")
        say(fake, OWNER, OWNER_DM, "and mine", attachments=[mine])
        wait_reply(fake, OWNER_DM, "and mine")
        assert fake.fetched == [mine["id"]]
        assert session_of_chat(host, "discord", STRANGER_DM) is None


def test_a_stranger_is_dropped_under_the_default_policy(data_dir: Path, fake: FakeDiscord) -> None:
    with log_lines() as lines, discord_host(data_dir, fake) as host:
        where = f"discord/{STRANGER_DM}"
        dropped = f"dropped a message in {where}"
        say(fake, STRANGER, STRANGER_DM, "let me in")
        lines.wait_for(dropped)
        before = len(lines.matching(where))
        say(fake, STRANGER, STRANGER_DM, "please?")
        lines.wait_for(dropped, count=2)
        # Whatever the host would have sent the stranger would go out before this reply:
        # one channel's sends go in order.
        say(fake, OWNER, OWNER_DM, "anyone else here?")
        wait_reply(fake, OWNER_DM, "anyone else here?")

        # One line for each dropped message, naming the sender and the policy, and nothing
        # else about that chat (it is not even kept).
        assert len(lines.matching(dropped)) == 2
        assert len(lines.matching(where)) == before + 1
        assert all(f"sender {STRANGER['id']} is not a member" in line and "policy drop" in line
                   for line in lines.matching(dropped))  # fmt: skip
        # Nothing sent back (not even typing), no session, nothing in any inbound.db.
        assert [c for c in fake.calls if STRANGER_DM in c.path] == []
        assert session_of_chat(host, "discord", STRANGER_DM) is None
        assert messaging_groups.get_by_platform(host.store, "discord", STRANGER_DM) is None  # not even the chat
        rows = every_inbound_row(host)
        assert [row.platform_id for row in rows] == [OWNER_DM]
        assert not any("let me in" in row.content or "please?" in row.content for row in rows)


def test_pairing_lets_the_owner_approve_a_stranger(data_dir: Path, fake: FakeDiscord) -> None:
    with discord_host(data_dir, fake, unknown_senders="pair") as host:
        # The owner's direct chat is where pairing requests are announced.
        say(fake, OWNER, OWNER_DM, "good morning")
        wait_reply(fake, OWNER_DM, "good morning")

        say(fake, STRANGER, STRANGER_DM, "hi, I am Sam")
        offer = wait_text(fake, STRANGER_DM, lambda text: "pairing code" in text)
        match = re.search(r"pairing code is ([A-Z0-9]{6})", offer)
        assert match is not None, offer
        code = match.group(1)
        question = wait_text(fake, OWNER_DM, lambda text: f"/approve {code}" in text)
        assert f"Sam ({STRANGER['id']})" in question and f"/refuse {code}" in question

        say(fake, OWNER, OWNER_DM, f"/approve {code}")
        assert wait_text(fake, OWNER_DM, lambda text: text.endswith("is approved.")) == "Sam is approved."
        wait_text(fake, STRANGER_DM, lambda text: text == "You can talk to the assistant now.")

        say(fake, STRANGER, STRANGER_DM, "so, hello again")
        wait_reply(fake, STRANGER_DM, "so, hello again")

        # The stranger's chat got a session of its own; the message before approval never
        # reached an agent, and neither did the owner's command.
        stranger_rows = inbound_rows(chat_layout(host, "discord", STRANGER_DM))
        assert [row.decoded().text for row in stranger_rows] == ["so, hello again"]
        assert stranger_rows[0].decoded().sender_role == "member"
        assert not any("/approve" in row.content or "I am Sam" in row.content for row in every_inbound_row(host))
        # The stranger was told exactly twice before being answered: the code, the approval.
        assert len(texts(fake, STRANGER_DM)) == 3


# -- questions, long replies, files --------------------------------------------------------------


def test_a_question_is_answered_by_a_button(data_dir: Path, fake: FakeDiscord) -> None:
    ask = {"question": "Tea or coffee?", "options": ["tea", "coffee"]}
    with discord_host(data_dir, fake) as host:
        say(fake, OWNER, OWNER_DM, f"which drink?\n!tool ask_user_question {json.dumps(ask)}")
        asked = fake.wait_until(
            lambda: next((m for m in fake.messages.values() if m["channel_id"] == OWNER_DM and m["components"]), None),
            WAIT_S,
        )
        assert asked["content"] == "Tea or coffee?"
        buttons = [button for row in asked["components"] for button in row["components"]]
        assert [button["label"] for button in buttons] == ["tea", "coffee"]

        interaction = fake.click(asked["id"], buttons[1]["custom_id"], user=OWNER)
        reply = wait_reply(fake, OWNER_DM, "which drink?")
        assert "ask_user_question -> the user chose: coffee" in reply
        # The click was acknowledged, then, the answer taken, the message shows the choice
        # instead of the buttons; the answer reached the session as a row.
        (callback,) = fake.wait_for_calls("POST", f"/interactions/{interaction}/")
        assert callback.body["type"] == 6
        shown = fake.wait_until(lambda: fake.messages[asked["id"]]["components"] == [] and fake.messages[asked["id"]])
        assert shown["content"] == "Tea or coffee?\n\n→ **coffee** (Alice)"
        layout = chat_layout(host, "discord", OWNER_DM)
        answers = [row.decoded() for row in inbound_rows(layout) if row.kind == "system"]
        assert [(a.answer, a.answered_by) for a in answers if isinstance(a, QuestionAnswer)] == [("coffee", "Alice")]
        (question,) = pending_questions.list_all(host.store)
        assert (question.status, question.answer) == ("answered", "coffee")


def test_a_click_the_host_does_not_take_leaves_the_question_to_those_who_may_answer(
    data_dir: Path, fake: FakeDiscord
) -> None:
    ask = {"question": "Deploy?", "options": ["yes", "no"]}
    with (
        log_lines() as lines,
        log_lines("actors.channels.discord") as channel_lines,
        discord_host(data_dir, fake) as host,
    ):
        # A guild channel wired to `main` (`hutch wire discord:<channel> main --trigger always`).
        chat = messaging_groups.create(host.store, channel_type="discord", platform_id=CHANNEL_ID, is_group=True)
        main = agent_groups.get_by_folder(host.store, "main")
        assert main is not None
        messaging_group_agents.create(
            host.store, messaging_group_id=chat.id, agent_group_id=main.id, session_mode="shared"
        )
        fake.dispatch("MESSAGE_CREATE", message(f"ship it?\n!tool ask_user_question {json.dumps(ask)}", author=OWNER))
        asked = fake.wait_until(
            lambda: next(
                (m for m in fake.messages.values() if m["channel_id"] == CHANNEL_ID and m["components"]), None
            ),
            WAIT_S,
        )
        before = dict(asked)
        yes, no = (button["custom_id"] for row in asked["components"] for button in row["components"])

        # A stranger clicks "yes": the host drops the answer, and the message stays as it was.
        mallory = fake.click(asked["id"], yes, user=STRANGER)
        lines.wait_for(f"dropped an answer to {yes.split(':')[1]} from {STRANGER['id']}: not a member")
        # A click on a question the host does not know: refused, and the message stays too.
        stale = fake.click(asked["id"], "q:nonexistent:0", user=OWNER)
        channel_lines.wait_for("the host did not take the answer to 'nonexistent'")
        for interaction in (mallory, stale):
            (callback,) = fake.wait_for_calls("POST", f"/interactions/{interaction}/")
            assert callback.body["type"] == 6  # acknowledged, nothing changed
        assert fake.messages[asked["id"]] == before
        assert not [call for call in fake.calls if call.method == "PATCH"]

        # The owner can still answer by button; that answer is taken and shown.
        fake.click(asked["id"], no, user=OWNER)
        reply = wait_text(fake, CHANNEL_ID, lambda text: text.startswith("mock: ship it?"))
        assert "ask_user_question -> the user chose: no" in reply
        shown = fake.wait_until(lambda: fake.messages[asked["id"]]["components"] == [] and fake.messages[asked["id"]])
        assert shown["content"] == "Deploy?\n\n→ **no** (Alice)"
        (question,) = pending_questions.list_all(host.store)
        assert (question.status, question.answer) == ("answered", "no")


def test_a_long_reply_is_split_in_order(data_dir: Path, fake: FakeDiscord) -> None:
    words = " ".join(f"word{n:04d}" for n in range(300))  # 2699 characters, one line
    with discord_host(data_dir, fake) as host:
        say(fake, OWNER, OWNER_DM, words)
        wait_text(fake, OWNER_DM, lambda text: text.endswith("[turn 1]"))
        parts = texts(fake, OWNER_DM)
        (reply,) = reply_texts(chat_layout(host, "discord", OWNER_DM))

    assert reply.startswith(f"mock: {words}") and len(reply) > MAX_MESSAGE_CHARS
    assert len(parts) == 2
    assert all(len(part) <= MAX_MESSAGE_CHARS for part in parts)
    # In order and nothing lost: only the whitespace at a cut is not sent.
    assert parts[0].startswith("mock: word0000")
    assert " ".join(parts).split() == reply.split()


def test_files_both_ways(data_dir: Path, fake: FakeDiscord) -> None:
    pdf = b"%PDF-1.4 quarterly numbers\n\x00\x01\x02"
    with discord_host(data_dir, fake) as host:
        attachment = fake.attachment("numbers.pdf", pdf)
        say(fake, OWNER, OWNER_DM, "here are the numbers", attachments=[attachment])
        wait_reply(fake, OWNER_DM, "here are the numbers")
        layout = chat_layout(host, "discord", OWNER_DM)
        (row,) = inbound_rows(layout)
        assert row.decoded().files == ["numbers.pdf"]
        inbox = layout.root / "inbox" / row.id / "numbers.pdf"
        assert inbox == host.config.sessions_dir / "main" / layout.root.name / "inbox" / row.id / "numbers.pdf"
        assert inbox.read_bytes() == pdf
        # The adapter's own copy is gone once the host has the file.
        downloads = host.config.downloads_dir / "discord"
        poll_until(lambda: not any(downloads.iterdir()))

        make = json.dumps({"command": "echo report > report.txt"})
        say(fake, OWNER, OWNER_DM, f'a report please\n!tool bash {make}\n!tool send_file {{"path": "report.txt"}}')
        (upload,) = fake.wait_until(lambda: [c for c in posts(fake, OWNER_DM) if c.files], WAIT_S)
        assert list(upload.files.values()) == [("report.txt", b"report\n")]
        reply = wait_reply(fake, OWNER_DM, "a report please")
        assert "send_file -> sent report.txt" in reply
        # The file went out before the reply that mentions it (a session's rows go in order).
        calls = fake.calls
        assert calls.index(upload) < calls.index(posts(fake, OWNER_DM)[-1])


# -- a channel in trouble ------------------------------------------------------------------------


def test_a_reply_that_meets_rate_limits_and_server_errors_arrives_once(data_dir: Path, fake: FakeDiscord) -> None:
    path = f"/channels/{OWNER_DM}/messages"
    with log_lines() as lines, discord_host(data_dir, fake, delivery_retry_base_s=BASE_S) as host:
        say(fake, OWNER, OWNER_DM, "warm up")
        wait_reply(fake, OWNER_DM, "warm up")

        # Failures discord.py does not ride out itself: a 429 without Discord's proxy (a
        # Cloudflare ban) and 503s fail the send at once; the host retries.
        fake.fail_next("POST", path, 429, {"message": "banned", "retry_after": 0.05, "global": False})
        fake.fail_next("POST", path, 503, {"message": "unavailable", "code": 0}, times=2)
        say(fake, OWNER, OWNER_DM, "are you there?")
        wait_reply(fake, OWNER_DM, "are you there?")
        # A later reply goes out only after this one settled: it is the barrier for repeats.
        say(fake, OWNER, OWNER_DM, "and now?")
        wait_reply(fake, OWNER_DM, "and now?")

        tries = [c for c in fake.calls_to("POST", path) if "are you there?" in (c.body.get("content") or "")]
        assert [c.failed_with or 200 for c in tries] == [429, 503, 503, 200]
        assert len([t for t in texts(fake, OWNER_DM) if t.startswith("mock: are you there?")]) == 1
        # Retried by the host, each wait twice the one before (a retry is never early).
        retries = lines.matching("failed (attempt")
        assert [re.search(r"attempt (\d)", line).group(1) for line in retries] == ["1", "2", "3"]  # type: ignore[union-attr]
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(tries)]
        assert all(gap >= 0.9 * BASE_S * 2**n for n, gap in enumerate(gaps)), gaps
        layout = chat_layout(host, "discord", OWNER_DM)
        (row,) = reply_rows(layout, "mock: are you there?")
        delivery = wait_on_folder(layout.root, lambda: delivered(layout, row.id))
        assert delivery.attempts == 4
        assert [r.decoded().text.split("\n")[0] for r in reply_rows(layout, "mock:")] == [
            "mock: warm up",
            "mock: are you there?",
            "mock: and now?",
        ]


def test_a_long_reply_whose_second_part_fails_goes_on_from_there(data_dir: Path, fake: FakeDiscord) -> None:
    path = f"/channels/{OWNER_DM}/messages"
    words = " ".join(f"word{n:04d}" for n in range(600))  # 5399 characters: three messages
    with discord_host(data_dir, fake, delivery_retry_base_s=BASE_S) as host:
        say(fake, OWNER, OWNER_DM, "warm up")
        wait_reply(fake, OWNER_DM, "warm up")

        # The reply's second part meets a 503 (which discord.py does not try again itself).
        fake.fail_next("POST", path, 503, {"message": "unavailable", "code": 0}, after=1)
        say(fake, OWNER, OWNER_DM, words)
        layout = chat_layout(host, "discord", OWNER_DM)
        (row,) = wait_on_folder(layout.root, lambda: reply_rows(layout, "mock: word0000"))
        delivery = wait_on_folder(layout.root, lambda: delivered(layout, row.id))
        tries = fake.calls_to("POST", path)[1:]  # after the warm-up's reply
        parts = texts(fake, OWNER_DM)[1:]
        first = posts(fake, OWNER_DM)[1]

    # The host's retry went on from the part that failed: each part shown once, in order.
    assert [c.failed_with or 200 for c in tries] == [200, 503, 200, 200]
    assert tries[1].body["content"] == tries[2].body["content"]
    assert len(parts) == 3 and parts[0].startswith("mock: word0000") and parts[2].endswith("[turn 2]")
    assert " ".join(parts).split() == row.decoded().text.split()
    assert delivery.attempts == 2
    # The reply's id is its first part's.
    assert delivery.platform_message_id is not None
    assert fake.messages[delivery.platform_message_id]["content"] == first.body["content"]


def test_a_reply_made_while_discord_is_down_arrives_once_it_is_back(data_dir: Path, fake: FakeDiscord) -> None:
    with log_lines() as lines, discord_host(data_dir, fake, delivery_retry_base_s=BASE_S) as host:
        say(fake, OWNER, OWNER_DM, "warm up")
        wait_reply(fake, OWNER_DM, "warm up")
        # The agent's turn waits in a tool until the test opens this pipe for writing.
        gate = host.config.groups_dir / "main" / "gate"
        os.mkfifo(gate)
        say(fake, OWNER, OWNER_DM, 'held back\n!tool bash {"command": "cat gate"}')
        layout = chat_layout(host, "discord", OWNER_DM)
        wait_on_folder(layout.root, lambda: len(inbound_rows(layout)) == 2)

        fake.stop()  # Discord is down: gateway and REST refuse connections
        with gate.open("w") as pipe:  # blocks until the agent's `cat` reads
            pipe.write("go\n")
        lines.wait_for("failed (attempt 1)")
        fake.start()  # back, on the same port; discord.py connects to the gateway again
        reply = wait_reply(fake, OWNER_DM, "held back")
        assert "bash -> go" in reply
        say(fake, OWNER, OWNER_DM, "and now?")
        wait_reply(fake, OWNER_DM, "and now?")

        assert len([t for t in texts(fake, OWNER_DM) if t.startswith("mock: held back")]) == 1
        (row,) = reply_rows(layout, "mock: held back")
        delivery = wait_on_folder(layout.root, lambda: delivered(layout, row.id))
        assert delivery.attempts >= 2
        assert [r.decoded().text.split("\n")[0] for r in reply_rows(layout, "mock:")] == [
            "mock: warm up",
            "mock: held back",
            "mock: and now?",
        ]


def test_the_host_starts_without_discord_and_takes_it_in_when_it_comes_up(data_dir: Path) -> None:
    port = free_port()
    waiting = FakeDiscord(port=port)
    waiting.add_channel(dm_channel(STRANGER_DM, STRANGER))
    config = host_config(
        data_dir,
        discord_bot_token=waiting.token,
        discord_api_base=f"http://127.0.0.1:{port}/api/v10",
        discord_gateway_url=f"ws://127.0.0.1:{port}/gateway",
        discord_owner=OWNER["id"],
    )
    try:
        with log_lines() as lines, running_host(config) as host:
            # Up, with the local chat, while nobody answers on Discord's port.
            assert host.config.chat_socket.exists()
            lines.wait_for("channel discord did not start")
            assert not lines.matching("channel discord is listening")
            started = time.monotonic()
            waiting.start()
            lines.wait_for("channel discord is listening")
            assert time.monotonic() - started < 10  # the starter's first retries are a second or two apart
            say(waiting, OWNER, OWNER_DM, "are you up now?")
            wait_reply(waiting, OWNER_DM, "are you up now?")
    finally:
        waiting.stop()
