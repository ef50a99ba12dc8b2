"""The Discord adapter, driven through the real discord.py against a fake Discord
(tests/fakes/fake_discord.py): gateway events in, REST calls out."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

import actors.channels.discord as discord_channel
from actors.channels.base import (
    CARD,
    EDIT,
    FILES,
    QUESTION,
    REACTION,
    TYPING,
    Card,
    ChannelAdapter,
    ChannelError,
    InboundAnswer,
    InboundChat,
    InboundEvent,
    Stored,
)
from actors.channels.discord import DiscordChannel, split_message
from protocol.rows import Routing
from tests.fakes.fake_discord import (
    ALICE,
    BOT,
    BOT_ROLE_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    HIDDEN_THREAD_ID,
    OTHER_BOT,
    THREAD_ID,
    TOKEN,
    FakeDiscord,
    message,
    user,
)

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0
GENERAL = Routing(CHANNEL_ID, "discord")
IN_THREAD = Routing(CHANNEL_ID, "discord", THREAD_ID)
MESSAGES = f"/channels/{CHANNEL_ID}/messages"
MB = 1024 * 1024


class Events:
    """Plays the host: collects what the channel hands over. Each future answers when the
    channel's watcher asks for it, the way the host's does once the row is committed (with
    the stored event standing for the row): it reads the files first (the host would move
    them), then refuses the message when its text is `refuse`, drops (answers None) an
    answer whose sender is in `strangers`, refuses one to a question in `closed`, and
    records that it was asked (`asked`)."""

    def __init__(self) -> None:
        self.queue: queue.Queue[InboundEvent] = queue.Queue()
        self.asked: queue.Queue[InboundEvent] = queue.Queue()
        self.contents: dict[str, bytes] = {}
        self.refuse: str | None = None
        self.strangers: set[str] = set()
        self.closed: set[str] = set()

    def __call__(self, event: InboundEvent) -> Stored:
        self.queue.put(event)
        stored: Stored = pykka.ThreadingFuture()
        stored.set_get_hook(lambda timeout: self._answer(event))
        return stored

    def _answer(self, event: InboundEvent) -> InboundEvent | None:
        refused = isinstance(event, InboundChat) and event.text == self.refuse
        if isinstance(event, InboundChat) and not refused:
            for file in event.files:
                self.contents[file.name] = Path(file.path).read_bytes()
        self.asked.put(event)
        if refused:
            raise RuntimeError("session store is full")
        if isinstance(event, InboundAnswer):
            if event.question_id in self.closed:
                raise RuntimeError(f"there is no question {event.question_id!r}")
            if event.sender_id in self.strangers:
                return None  # dropped: not a member
        return event

    def next(self) -> InboundEvent:
        return self.queue.get(timeout=WAIT)

    def next_chat(self) -> InboundChat:
        event = self.next()
        assert isinstance(event, InboundChat), event
        return event

    def next_asked(self) -> InboundEvent:
        return self.asked.get(timeout=WAIT)


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord() as server:
        yield server


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    return tmp_path / "downloads"


def make_channel(fake: FakeDiscord, downloads: Path, token: str = TOKEN, **options: Any) -> DiscordChannel:
    return DiscordChannel(
        token, download_dir=downloads, api_base=fake.api_base, gateway_url=fake.gateway_url, **options
    )


@pytest.fixture
def channel(fake: FakeDiscord, downloads: Path, events: Events) -> Iterator[DiscordChannel]:
    adapter = make_channel(fake, downloads, send_timeout_s=WAIT)
    adapter.start(events)
    yield adapter
    adapter.stop()


def closed_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def discord_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("discord-")]


# -- the contract and the connection ---------------------------------------------------------


def test_is_a_channel_adapter_with_every_capability(downloads: Path) -> None:
    adapter: ChannelAdapter = DiscordChannel(TOKEN, download_dir=downloads)
    assert adapter.channel_type == "discord"
    assert adapter.capabilities == {FILES, EDIT, REACTION, QUESTION, CARD, TYPING}


def test_start_identifies_with_the_message_content_intent(channel: DiscordChannel, fake: FakeDiscord) -> None:
    assert fake.identify is not None
    assert fake.identify["token"] == TOKEN
    message_content = 1 << 15
    assert fake.identify["intents"] & message_content
    assert fake.calls_to("GET", "/users/@me")


def test_a_bad_token_fails_start_for_good(fake: FakeDiscord, downloads: Path, events: Events) -> None:
    adapter = make_channel(fake, downloads, token="not-the-token")
    with pytest.raises(ChannelError) as failed:
        adapter.start(events)
    assert failed.value.retryable is False
    assert "token" in str(failed.value)
    assert discord_threads() == []


def test_an_unreachable_discord_fails_start_for_now(downloads: Path, events: Events) -> None:
    port = closed_port()
    adapter = DiscordChannel(
        TOKEN, download_dir=downloads, api_base=f"http://127.0.0.1:{port}/api/v10", gateway_url=f"ws://127.0.0.1:{port}"
    )
    with pytest.raises(ChannelError) as failed:
        adapter.start(events)
    assert failed.value.retryable is True
    assert discord_threads() == []


def test_an_unreachable_gateway_fails_start_for_now(fake: FakeDiscord, downloads: Path, events: Events) -> None:
    # discord.py gives up on a first connection after one backoff delay (0 to 2 s).
    adapter = DiscordChannel(
        TOKEN, download_dir=downloads, api_base=fake.api_base, gateway_url=f"ws://127.0.0.1:{closed_port()}/"
    )
    with pytest.raises(ChannelError) as failed:
        adapter.start(events)
    assert failed.value.retryable is True
    assert "ClientConnectorError" in str(failed.value)
    assert discord_threads() == []


def test_a_gateway_that_never_gets_ready_fails_start_in_time(downloads: Path, events: Events) -> None:
    with FakeDiscord(ready=False) as silent:
        adapter = make_channel(silent, downloads, ready_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(ChannelError) as failed:
            adapter.start(events)
        assert time.monotonic() - started < 5
        assert failed.value.retryable is True
        assert silent.identify is not None
        assert discord_threads() == []


def test_heartbeats_are_answered(downloads: Path, events: Events) -> None:
    with FakeDiscord(heartbeat_ms=50) as fast:
        adapter = make_channel(fast, downloads)
        adapter.start(events)
        try:
            assert fast.heartbeat_seen.wait(WAIT)
            assert adapter.send_text(GENERAL, "still connected")
        finally:
            adapter.stop()


def test_stop_is_prompt_and_leaves_no_thread(fake: FakeDiscord, downloads: Path, events: Events) -> None:
    before = set(threading.enumerate())
    adapter = make_channel(fake, downloads)
    adapter.start(events)
    fake.dispatch("MESSAGE_CREATE", message("hi"))
    events.next_asked()
    started_threads = set(threading.enumerate()) - before
    assert len([thread for thread in started_threads if thread.name.startswith("discord-")]) == 2  # loop, watcher
    started = time.monotonic()
    adapter.stop()
    assert time.monotonic() - started < 3
    assert discord_threads() == []
    # discord.py's own threads (its gateway keep-alive) are told to end on close, not joined.
    for thread in started_threads:
        thread.join(WAIT)
        assert not thread.is_alive(), thread.name
    assert fake.disconnected.wait(WAIT)
    with pytest.raises(ChannelError) as failed:
        adapter.send_text(GENERAL, "anyone there?")
    assert failed.value.retryable is True
    adapter.stop()  # a second stop is harmless


def test_a_second_channel_with_other_endpoints_is_refused(
    channel: DiscordChannel, downloads: Path, events: Events
) -> None:
    other = DiscordChannel(TOKEN, download_dir=downloads, api_base="http://127.0.0.1:9/api/v10")
    with pytest.raises(ChannelError) as failed:
        other.start(events)
    assert failed.value.retryable is False
    assert channel.send_text(GENERAL, "still here")


# -- inbound ---------------------------------------------------------------------------------


def test_guild_message_becomes_inbound_chat(channel: DiscordChannel, fake: FakeDiscord, events: Events) -> None:
    sent = message("hello all", nick="Ali")
    fake.dispatch("MESSAGE_CREATE", sent)
    assert events.next_chat() == InboundChat(
        channel_type="discord",
        platform_id=CHANNEL_ID,
        text="hello all",
        sender="Ali",
        sender_id=ALICE["id"],
        platform_message_id=sent["id"],
        chat_name="general",
        is_group=True,
        mentions_assistant=False,
    )


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(message(f"<@{BOT['id']}> what's up", mentions=[BOT]), id="mention"),
        pytest.param(message(f"<@&{BOT_ROLE_ID}> what's up", mention_roles=[BOT_ROLE_ID]), id="role-mention"),
    ],
)
def test_a_mention_addresses_the_assistant(
    channel: DiscordChannel, fake: FakeDiscord, events: Events, sent: dict[str, Any]
) -> None:
    fake.dispatch("MESSAGE_CREATE", sent)
    event = events.next_chat()
    assert event.mentions_assistant is True
    assert event.text == sent["content"]


def test_direct_message(channel: DiscordChannel, fake: FakeDiscord, events: Events) -> None:
    fake.dispatch("MESSAGE_CREATE", message("just us", channel_id=DM_CHANNEL_ID, in_guild=False))
    event = events.next_chat()
    assert (event.platform_id, event.thread_id, event.is_group) == (DM_CHANNEL_ID, None, False)
    assert (event.sender, event.chat_name, event.mentions_assistant) == ("Alice", "Alice", True)


def test_thread_message_names_its_parent_and_the_thread(
    channel: DiscordChannel, fake: FakeDiscord, events: Events
) -> None:
    fake.dispatch("MESSAGE_CREATE", message("in the thread", channel_id=THREAD_ID))
    event = events.next_chat()
    assert (event.platform_id, event.thread_id, event.chat_name) == (CHANNEL_ID, THREAD_ID, "general")


def test_a_thread_the_gateway_never_announced_is_looked_up(
    channel: DiscordChannel, fake: FakeDiscord, events: Events
) -> None:
    for text in ("first", "second"):
        fake.dispatch("MESSAGE_CREATE", message(text, channel_id=HIDDEN_THREAD_ID))
        event = events.next_chat()
        assert (event.text, event.platform_id, event.thread_id) == (text, CHANNEL_ID, HIDDEN_THREAD_ID)
    assert len(fake.calls_to("GET", f"/channels/{HIDDEN_THREAD_ID}")) == 1  # remembered


def test_a_reply_to_the_assistant_addresses_it(channel: DiscordChannel, fake: FakeDiscord, events: Events) -> None:
    ours = channel.send_text(GENERAL, "want tea?")
    assert ours is not None
    fake.dispatch("MESSAGE_CREATE", message("yes please", reply_to=fake.messages[ours]))
    assert events.next_chat().mentions_assistant is True
    someone_elses = message("lunch?")
    fake.dispatch("MESSAGE_CREATE", message("sure", reply_to=someone_elses))
    assert events.next_chat().mentions_assistant is False


def test_messages_of_bots_and_webhooks_are_ignored(channel: DiscordChannel, fake: FakeDiscord, events: Events) -> None:
    fake.dispatch("MESSAGE_CREATE", message("my own words", author=BOT))
    fake.dispatch("MESSAGE_CREATE", message("beep", author=OTHER_BOT))
    fake.dispatch("MESSAGE_CREATE", message("hooked", webhook_id="777700000000000001"))
    fake.dispatch("MESSAGE_CREATE", message("a person"))
    # A channel's events reach the host in order, so anything not ignored would come first.
    assert events.next_chat().text == "a person"
    assert events.queue.empty()


def test_attachments_are_downloaded_and_handed_over(
    channel: DiscordChannel, fake: FakeDiscord, events: Events, downloads: Path
) -> None:
    first = fake.attachment("notes.txt", b"buy milk")
    second = fake.attachment("notes.txt", b"and bread")
    fake.dispatch("MESSAGE_CREATE", message("see these", attachments=[first, second]))
    event = events.next_chat()
    assert event.text == "see these"
    assert [file.name for file in event.files] == ["notes.txt", "notes (2).txt"]
    for file in event.files:
        path = Path(file.path)
        assert path.name == file.name
        assert path.parent.parent == downloads
    assert events.next_asked() == event
    assert events.contents == {"notes.txt": b"buy milk", "notes (2).txt": b"and bread"}


def test_a_slow_download_holds_up_only_its_own_chat(channel: DiscordChannel, fake: FakeDiscord, events: Events) -> None:
    release = threading.Event()
    slow = fake.attachment("slow.txt", b"at last", hold=release)
    fake.dispatch("MESSAGE_CREATE", message("first", attachments=[slow]))
    fake.dispatch("MESSAGE_CREATE", message("second"))
    fake.dispatch("MESSAGE_CREATE", message("elsewhere", channel_id=DM_CHANNEL_ID, in_guild=False))
    # "second" waits for "first" (same channel); the DM waits for nobody.
    assert events.next_chat().text == "elsewhere"
    release.set()
    assert [events.next_chat().text, events.next_chat().text] == ["first", "second"]


def test_an_attachment_over_the_cap_is_noted_not_downloaded(
    channel: DiscordChannel, fake: FakeDiscord, events: Events
) -> None:
    huge = fake.attachment("huge.iso", b"not really", size=30 * MB)
    fake.dispatch("MESSAGE_CREATE", message("look", attachments=[huge]))
    event = events.next_chat()
    assert event.files == ()
    assert event.text.startswith("look\n")
    assert "huge.iso" in event.text
    assert "25 MB" in event.text


def test_an_attachment_larger_than_announced_stops_at_the_cap(
    channel: DiscordChannel, fake: FakeDiscord, events: Events, downloads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discord_channel, "MAX_FILE_BYTES", 1024)
    liar = fake.attachment("small.bin", b"x" * 5000, size=10)
    fake.dispatch("MESSAGE_CREATE", message("", attachments=[liar]))
    event = events.next_chat()
    assert event.files == ()
    assert event.text.startswith("[attachment small.bin not received")
    # Removed before the hand-over; the folder itself may be going away meanwhile.
    assert [name for _, _, names in os.walk(downloads) for name in names] == []


def test_downloads_the_host_refused_are_deleted(
    channel: DiscordChannel, fake: FakeDiscord, events: Events, downloads: Path
) -> None:
    events.refuse = "refused"
    fake.dispatch("MESSAGE_CREATE", message("refused", attachments=[fake.attachment("a.txt", b"a")]))
    fake.dispatch("MESSAGE_CREATE", message("next"))
    assert events.next_chat().text == "refused"
    assert events.next_chat().text == "next"
    events.next_asked()
    events.next_asked()  # the watcher cleans up after each answer before asking the next
    assert list(downloads.iterdir()) == []


def test_start_removes_downloads_an_earlier_run_left(fake: FakeDiscord, downloads: Path, events: Events) -> None:
    leftover = downloads / ("ab" * 16)
    leftover.mkdir(parents=True)
    (leftover / "photo.jpg").write_bytes(b"old")
    unrelated = downloads / "keep-me"
    unrelated.mkdir()
    adapter = make_channel(fake, downloads)
    adapter.start(events)
    adapter.stop()
    assert sorted(path.name for path in downloads.iterdir()) == ["keep-me"]


def test_a_button_click_becomes_an_answer_and_is_acknowledged(
    channel: DiscordChannel, fake: FakeDiscord, events: Events
) -> None:
    asked = channel.ask_question(IN_THREAD, "ask:7", "Tea or coffee?", ("tea", "coffee"))
    assert asked is not None
    interaction = fake.click(asked, "q:ask:7:1")
    assert events.next() == InboundAnswer(
        channel_type="discord",
        platform_id=CHANNEL_ID,
        thread_id=THREAD_ID,
        question_id="ask:7",
        option_index=1,
        sender="Alice",
        sender_id=ALICE["id"],
    )
    [callback] = fake.wait_for_calls("POST", f"/interactions/{interaction}/")
    assert callback.body["type"] == 6  # acknowledged, the message left as it is for now
    # The host took the answer: the message shows the choice, and the buttons are gone.
    edited = fake.wait_until(lambda: fake.messages[asked] if not fake.messages[asked]["components"] else None)
    assert edited["content"] == "Tea or coffee?\n\n→ **coffee** (Alice)"
    [patch] = fake.calls_to("PATCH", f"/channels/{THREAD_ID}/messages/{asked}")
    assert patch.body["components"] == []


MALLORY = user("260000000000000001", "mallory", "Mallory")


@pytest.mark.parametrize("case", ["a stranger", "a question no longer open"])
def test_a_click_the_host_does_not_take_leaves_the_question_as_it_was(
    channel: DiscordChannel, fake: FakeDiscord, events: Events, case: str
) -> None:
    events.strangers.add(MALLORY["id"])
    events.closed.add("gone")
    asked = channel.ask_question(GENERAL, "ask:8", "Deploy?", ("yes", "no"))
    stale = channel.ask_question(GENERAL, "gone", "Lunch?", ("now", "later"))
    assert asked is not None and stale is not None
    before = {message_id: dict(fake.messages[message_id]) for message_id in (asked, stale)}
    clicker, clicked, custom_id = (MALLORY, asked, "q:ask:8:0") if case == "a stranger" else (ALICE, stale, "q:gone:1")

    interaction = fake.click(clicked, custom_id, user=clicker)
    answer = events.next()
    assert isinstance(answer, InboundAnswer) and answer.sender_id == clicker["id"]
    assert events.next_asked() == answer  # the host has answered for it
    [callback] = fake.wait_for_calls("POST", f"/interactions/{interaction}/")
    assert callback.body["type"] == 6  # a deferred update: acknowledged, nothing shown
    assert fake.messages[clicked] == before[clicked]

    # The owner answers the open question after that: that one is taken and shown.
    owners = fake.click(asked, "q:ask:8:1", user=ALICE)
    assert events.next().sender_id == ALICE["id"]  # type: ignore[union-attr]
    fake.wait_for_calls("POST", f"/interactions/{owners}/")
    shown = fake.wait_until(lambda: fake.messages[asked] if not fake.messages[asked]["components"] else None)
    assert shown["content"] == "Deploy?\n\n→ **no** (Alice)"
    # Nothing else was ever rewritten: the stranger's click or the stale one changed nothing.
    patches = [call for call in fake.calls if call.method == "PATCH"]
    assert [call.path for call in patches] == [f"{MESSAGES}/{asked}"]
    if case == "a question no longer open":
        assert fake.messages[stale] == before[stale]
        assert fake.messages[stale]["components"]


# -- outbound --------------------------------------------------------------------------------


def test_long_text_is_split_and_sent_in_order(channel: DiscordChannel, fake: FakeDiscord) -> None:
    text = "a" * 1500 + "\n\n" + "b" * 1500 + "\n\n" + "c" * 3000
    first = channel.send_text(GENERAL, text)
    posts = fake.calls_to("POST", MESSAGES)
    assert [call.body["content"] for call in posts] == ["a" * 1500, "b" * 1500, "c" * 2000, "c" * 1000]
    assert first == next(iter(fake.messages))


THREE_PARTS = "a" * 1500 + "\n\n" + "b" * 1500 + "\n\n" + "c" * 1500


def accepted(fake: FakeDiscord) -> list[str]:
    return [call.body["content"] for call in fake.calls_to("POST", MESSAGES) if call.failed_with is None]


def test_a_send_that_failed_halfway_goes_on_where_it_stopped_when_tried_again(
    channel: DiscordChannel, fake: FakeDiscord
) -> None:
    # A 503 discord.py does not try again itself: the send fails after its first part.
    fake.fail_next("POST", MESSAGES, 503, after=1)
    with pytest.raises(ChannelError) as failed:
        channel.send_text(GENERAL, THREE_PARTS)
    assert failed.value.retryable is True
    assert accepted(fake) == ["a" * 1500]

    first = channel.send_text(GENERAL, THREE_PARTS)  # the host's retry
    assert accepted(fake) == ["a" * 1500, "b" * 1500, "c" * 1500]  # each once, in order
    assert first == next(iter(fake.messages))  # the send's id is still its first message's

    # Complete, the send is forgotten: the same text sent again is a new message, whole.
    channel.send_text(GENERAL, THREE_PARTS)
    assert accepted(fake)[3:] == ["a" * 1500, "b" * 1500, "c" * 1500]


def test_files_after_a_long_text_go_on_where_the_send_stopped(
    channel: DiscordChannel, fake: FakeDiscord, tmp_path: Path
) -> None:
    files = []
    for n in range(11):  # one more than a message holds: the last goes on its own
        path = tmp_path / f"f{n}.txt"
        path.write_bytes(b"%d" % n)
        files.append(path)
    fake.fail_next("POST", MESSAGES, 503, after=3)
    with pytest.raises(ChannelError):
        channel.send_text(GENERAL, THREE_PARTS, tuple(files))
    channel.send_text(GENERAL, THREE_PARTS, tuple(files))
    posts = [call for call in fake.calls_to("POST", MESSAGES) if call.failed_with is None]
    assert [call.body.get("content") for call in posts] == ["a" * 1500, "b" * 1500, "c" * 1500, None]
    assert [len(call.files) for call in posts] == [0, 0, 10, 1]


def test_a_send_that_failed_for_good_halfway_is_not_resumed(channel: DiscordChannel, fake: FakeDiscord) -> None:
    fake.fail_next("POST", MESSAGES, 400, {"message": "Invalid Form Body", "code": 50035}, after=1)
    with pytest.raises(ChannelError) as failed:
        channel.send_text(GENERAL, THREE_PARTS)
    assert failed.value.retryable is False
    channel.send_text(GENERAL, THREE_PARTS)  # not a retry (the host does not retry that): whole
    assert accepted(fake) == ["a" * 1500, "a" * 1500, "b" * 1500, "c" * 1500]


def test_a_long_question_that_failed_halfway_goes_on_where_it_stopped(
    channel: DiscordChannel, fake: FakeDiscord
) -> None:
    fake.fail_next("POST", MESSAGES, 503, after=1)
    with pytest.raises(ChannelError):
        channel.ask_question(GENERAL, "q9", THREE_PARTS, ("yes", "no"))
    first = channel.ask_question(GENERAL, "q9", THREE_PARTS, ("yes", "no"))
    posts = [call for call in fake.calls_to("POST", MESSAGES) if call.failed_with is None]
    assert [call.body["content"] for call in posts] == ["a" * 1500, "b" * 1500, "c" * 1500]
    assert [bool(call.body.get("components")) for call in posts] == [False, False, True]
    assert first == next(iter(fake.messages))


def test_split_message_prefers_paragraphs_then_lines_then_words() -> None:
    assert split_message("one\n\ntwo", limit=8) == ["one\n\ntwo"]
    assert split_message("one\n\ntwo", limit=7) == ["one", "two"]
    assert split_message("one two\nthree", limit=9) == ["one two", "three"]
    assert split_message("alpha beta gamma", limit=11) == ["alpha beta", "gamma"]
    assert split_message("abcdefghij", limit=4) == ["abcd", "efgh", "ij"]
    assert split_message("para one\n\n\n\npara two", limit=10) == ["para one", "para two"]
    assert split_message("intro\n\n    indented code", limit=20) == ["intro", "    indented code"]
    assert split_message("  \n\n  ") == []
    assert split_message("short") == ["short"]


def test_thread_and_dm_sends_go_to_their_channel(channel: DiscordChannel, fake: FakeDiscord) -> None:
    channel.send_text(IN_THREAD, "in the thread")
    channel.send_text(Routing(DM_CHANNEL_ID, "discord"), "privately")
    assert fake.calls_to("POST", f"/channels/{THREAD_ID}/messages")[0].body["content"] == "in the thread"
    assert fake.calls_to("POST", f"/channels/{DM_CHANNEL_ID}/messages")[0].body["content"] == "privately"


def test_files_go_as_attachments(channel: DiscordChannel, fake: FakeDiscord, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_bytes(b"all good")
    sent = channel.send_text(GENERAL, "the report", (report,))
    [post] = fake.calls_to("POST", MESSAGES)
    assert post.body["content"] == "the report"
    assert list(post.files.values()) == [("report.txt", b"all good")]
    assert sent in fake.messages


def test_a_file_over_the_cap_is_refused_for_good(channel: DiscordChannel, fake: FakeDiscord, tmp_path: Path) -> None:
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as out:
        out.truncate(26 * MB)  # sparse: costs nothing on disk
    with pytest.raises(ChannelError) as failed:
        channel.send_text(GENERAL, "take this", (huge,))
    assert failed.value.retryable is False
    assert fake.calls_to("POST", MESSAGES) == []


def test_edit(channel: DiscordChannel, fake: FakeDiscord) -> None:
    sent = channel.send_text(GENERAL, "draft")
    channel.edit_text(GENERAL, str(sent), "final")
    [patch] = fake.calls_to("PATCH", f"{MESSAGES}/{sent}")
    assert patch.body["content"] == "final"


def test_reaction(channel: DiscordChannel, fake: FakeDiscord) -> None:
    channel.add_reaction(GENERAL, "900000000000000123", "👍")
    assert fake.calls_to("PUT", f"{MESSAGES}/900000000000000123/reactions/👍/@me")


def test_question_as_buttons(channel: DiscordChannel, fake: FakeDiscord) -> None:
    options = tuple(f"option {n}" for n in range(25))
    asked = channel.ask_question(GENERAL, "q1", "Pick one", options)
    [post] = fake.calls_to("POST", MESSAGES)
    assert asked in fake.messages
    assert post.body["content"] == "Pick one"
    rows = post.body["components"]
    assert len(rows) == 5
    buttons = [button for row in rows for button in row["components"]]
    assert all(len(row["components"]) == 5 for row in rows)
    assert [b["label"] for b in buttons] == list(options)
    assert [b["custom_id"] for b in buttons] == [f"q:q1:{n}" for n in range(25)]


def test_a_question_with_too_many_options_is_numbered_text(channel: DiscordChannel, fake: FakeDiscord) -> None:
    channel.ask_question(GENERAL, "q2", "Pick one", tuple(f"o{n}" for n in range(26)))
    [post] = fake.calls_to("POST", MESSAGES)
    assert post.body["content"].startswith("Pick one\n1. o0\n2. o1\n")
    assert not post.body.get("components")


def test_card_as_embed(channel: DiscordChannel, fake: FakeDiscord) -> None:
    channel.send_card(GENERAL, Card("Weather", "Sunny all day", (("High", "24°C"), ("Low", ""))))
    [post] = fake.calls_to("POST", MESSAGES)
    [embed] = post.body["embeds"]
    assert (embed["title"], embed["description"]) == ("Weather", "Sunny all day")
    assert [(f["name"], f["value"]) for f in embed["fields"]] == [("High", "24°C"), ("Low", "\u200b")]


def test_typing(channel: DiscordChannel, fake: FakeDiscord) -> None:
    channel.show_typing(IN_THREAD)
    assert len(fake.calls_to("POST", f"/channels/{THREAD_ID}/typing")) == 1


# -- failures --------------------------------------------------------------------------------


def test_a_rate_limit_is_waited_out_by_discord_py(channel: DiscordChannel, fake: FakeDiscord) -> None:
    fake.rate_limit_next("POST", MESSAGES)
    sent = channel.send_text(GENERAL, "eventually")
    assert sent in fake.messages
    assert len(fake.calls_to("POST", MESSAGES)) == 2


def test_a_server_error_discord_py_gives_up_on_is_retryable(channel: DiscordChannel, fake: FakeDiscord) -> None:
    # 503 is not among the statuses discord.py tries again (its retries sleep 1, 3, 5 s).
    fake.fail_next("POST", MESSAGES, 503, {"message": "unavailable", "code": 0})
    with pytest.raises(ChannelError) as failed:
        channel.send_text(GENERAL, "hello?")
    assert failed.value.retryable is True
    assert len(fake.calls_to("POST", MESSAGES)) == 1


def test_a_send_without_an_answer_times_out_retryable(fake: FakeDiscord, downloads: Path, events: Events) -> None:
    adapter = make_channel(fake, downloads, send_timeout_s=0.3)
    adapter.start(events)
    release = threading.Event()
    try:
        fake.stall_next("POST", MESSAGES, release)
        with pytest.raises(ChannelError) as failed:
            adapter.send_text(GENERAL, "hello?")
        assert failed.value.retryable is True
        assert "no answer within" in str(failed.value)
    finally:
        release.set()
        adapter.stop()


def test_a_bare_429_is_retryable(channel: DiscordChannel, fake: FakeDiscord) -> None:
    fake.fail_next("POST", MESSAGES, 429, {"message": "banned", "retry_after": 5, "global": False})  # no Via
    with pytest.raises(ChannelError) as failed:
        channel.send_text(GENERAL, "hello?")
    assert failed.value.retryable is True


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"message": "Unknown Channel", "code": 10003}),
        (403, {"message": "Missing Permissions", "code": 50013}),
        (400, {"message": "Invalid Form Body", "code": 50035}),
    ],
)
def test_client_errors_are_not_retryable(
    channel: DiscordChannel, fake: FakeDiscord, status: int, body: dict[str, Any]
) -> None:
    fake.fail_next("POST", MESSAGES, status, body)
    with pytest.raises(ChannelError) as failed:
        channel.send_text(GENERAL, "hello?")
    assert failed.value.retryable is False
    assert body["message"] in str(failed.value)


def test_an_unknown_channel_or_bad_ids_are_not_retryable(channel: DiscordChannel) -> None:
    for send in (
        lambda: channel.send_text(Routing("555500000000000001", "discord"), "nobody here"),
        lambda: channel.send_text(Routing("general", "discord"), "not an id"),
        lambda: channel.edit_text(GENERAL, "not-an-id", "x"),
    ):
        with pytest.raises(ChannelError) as failed:
            send()
        assert failed.value.retryable is False


def test_a_gateway_reconnect_is_one_warning_line_not_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """discord.py logs each reconnect as an ERROR with a traceback of some 60 lines."""
    library = logging.getLogger("discord.client")
    caplog.set_level(logging.INFO, logger="discord.client")
    try:
        raise ConnectionResetError("Connection lost")
    except ConnectionResetError:
        library.exception("Attempting a reconnect in %.2fs", 3.5)
    (record,) = [r for r in caplog.records if r.name == "discord.client"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == (
        "discord: the gateway connection dropped (ConnectionResetError: Connection lost); reconnecting in 3.50s"
    )
