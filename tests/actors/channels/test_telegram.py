"""The Telegram adapter, driven for real (python-telegram-bot over HTTP) against a fake Bot API."""

from __future__ import annotations

import concurrent.futures
import http.client
import itertools
import json
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from telegram import Message

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
    SentParts,
    Stored,
)
from actors.channels.telegram import MAX_CALLBACK_DATA_BYTES, TelegramChannel, _ReplyThreads, safe_name
from actors.channels.telegram_format import markdown_to_html, reaction_for, split_text
from actors.channels.telegram_webhook import MAX_CONCURRENT
from protocol.rows import Routing
from tests.fakes.fake_telegram import (
    BOT_USER,
    ApiCall,
    Failure,
    FakeTelegram,
    group_chat,
    mention,
    private_chat,
    user,
)

pytestmark = [
    pytest.mark.timeout(30),
    # PTB's RetryAfter reads its own deprecated int attribute while it is being made.
    pytest.mark.filterwarnings("ignore:.*retry_after.*:telegram.warnings.PTBDeprecationWarning"),
]

WAIT = 5.0
ALICE = user(77, "Alice", "Smith", username="alice")
BOB = user(88, "Bob")
ALICE_CHAT = private_chat(ALICE)
GROUP = group_chat(-1001, "Family")
FORUM = group_chat(-1002, "Projects", forum=True)
TO_ALICE = Routing("77", "telegram")
TO_TOPIC = Routing("-1002", "telegram", "7")


class Events:
    """What the channel hands the host. Like the host, it takes each file when it is handed
    over (the adapter removes its copy once the event is stored); each future resolves at
    once, or, while `holding`, only on `release()`."""

    def __init__(self) -> None:
        self.queue: queue.Queue[InboundEvent] = queue.Queue()
        self.contents: dict[str, bytes] = {}
        self.holding = False
        self.held: list[Stored] = []

    def __call__(self, event: InboundEvent) -> Stored:
        if isinstance(event, InboundChat):
            for file in event.files:
                self.contents[file.path] = Path(file.path).read_bytes()
        stored: Stored = pykka.ThreadingFuture()
        self.queue.put(event)
        if self.holding:
            self.held.append(stored)
        else:
            stored.set(None)
        return stored

    def release(self) -> None:
        for stored in self.held:
            stored.set(None)

    def next_chat(self) -> InboundChat:
        event = self.queue.get(timeout=WAIT)
        assert isinstance(event, InboundChat), event
        return event

    def next_answer(self) -> InboundAnswer:
        event = self.queue.get(timeout=WAIT)
        assert isinstance(event, InboundAnswer), event
        return event


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    return tmp_path / "downloads"


def make_channel(fake: FakeTelegram, downloads: Path, **kwargs: Any) -> TelegramChannel:
    # base_file_url is left to be derived from base_url, as in production.
    return TelegramChannel(
        fake.token, base_url=fake.base_url, download_dir=downloads, poll_timeout_s=10, send_timeout_s=5, **kwargs
    )


@pytest.fixture
def channel(fake: FakeTelegram, downloads: Path, events: Events) -> Iterator[TelegramChannel]:
    adapter = make_channel(fake, downloads)
    adapter.start(events)
    yield adapter
    adapter.stop()


def telegram_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("telegram")]


# -- the contract --------------------------------------------------------------------------------


def test_is_a_channel_adapter_with_every_capability(channel: TelegramChannel) -> None:
    adapter: ChannelAdapter = channel
    assert adapter.channel_type == "telegram"
    assert adapter.capabilities == {FILES, EDIT, REACTION, QUESTION, CARD, TYPING}
    assert channel.bot_username == "hutch_bot"  # learned from getMe


# -- inbound messages ----------------------------------------------------------------------------


def test_a_private_message_is_addressed_to_the_assistant(
    fake: FakeTelegram, channel: TelegramChannel, events: Events
) -> None:
    sent = fake.push_text(ALICE_CHAT, ALICE, "hello there")
    event = events.next_chat()
    assert event == InboundChat(
        channel_type="telegram",
        platform_id="77",
        text="hello there",
        sender="Alice Smith",
        sender_id="77",
        thread_id=None,
        platform_message_id=str(sent["message_id"]),
        chat_name="Alice Smith",
        is_group=False,
        mentions_assistant=True,
    )


def test_group_messages_mention_the_assistant_only_when_they_name_it(
    fake: FakeTelegram, channel: TelegramChannel, events: Events
) -> None:
    fake.push_text(GROUP, BOB, "just chatting")
    plain = events.next_chat()
    assert (plain.platform_id, plain.is_group, plain.chat_name, plain.sender) == ("-1001", True, "Family", "Bob")
    assert not plain.mentions_assistant

    text = "hey @hutch_bot what's up"
    fake.push_text(GROUP, BOB, text, entities=[mention(text, "@hutch_bot")])
    assert events.next_chat().mentions_assistant

    other = "ask @other_bot instead"
    fake.push_text(GROUP, BOB, other, entities=[mention(other, "@other_bot")])
    assert not events.next_chat().mentions_assistant

    command = "/summary@hutch_bot now"
    fake.push_text(GROUP, BOB, command, entities=[mention(command, "/summary@hutch_bot", "bot_command")])
    assert events.next_chat().mentions_assistant


def test_a_reply_to_the_bot_is_addressed_to_it(fake: FakeTelegram, channel: TelegramChannel, events: Events) -> None:
    earlier = fake.message(GROUP, BOT_USER, text="what shall we cook?")
    fake.push_text(GROUP, BOB, "pasta", reply_to=earlier)
    assert events.next_chat().mentions_assistant

    someone = fake.message(GROUP, ALICE, text="who's in?")
    fake.push_text(GROUP, BOB, "me", reply_to=someone)
    assert not events.next_chat().mentions_assistant


def test_a_forum_topic_is_the_thread(fake: FakeTelegram, channel: TelegramChannel, events: Events) -> None:
    # In a topic every message replies to the topic's first message, here made by the bot:
    # that is not a reply to the bot.
    opening = fake.message(FORUM, BOT_USER, forum_topic_created={"name": "Trip", "icon_color": 7322096}, topic=7)
    fake.push_text(FORUM, BOB, "in the topic", topic=7, reply_to=opening)
    event = events.next_chat()
    assert (event.thread_id, event.is_group, event.mentions_assistant) == ("7", True, False)

    # A reply to someone in the topic is in the topic still: a topic is never a reply thread.
    said = fake.push_text(FORUM, ALICE, "shall we?", topic=7, reply_to=opening)
    assert events.next_chat().thread_id == "7"
    fake.push_text(FORUM, BOB, "yes", topic=7, reply_to=replied(said))
    assert events.next_chat().thread_id == "7"

    # A message that replies to nothing is in no thread, whatever message_thread_id it carries.
    fake.push_text(GROUP, BOB, "not a reply", message_thread_id=55)
    assert events.next_chat().thread_id is None


# -- reply threads -------------------------------------------------------------------------------

TO_GROUP = Routing("-1001", "telegram")


def replied(message: dict[str, Any]) -> dict[str, Any]:
    """`message` as Telegram puts it in a reply to it: without a reply_to_message of its own."""
    return {key: value for key, value in message.items() if key != "reply_to_message"}


def bot_message(fake: FakeTelegram, chat: dict[str, Any], message_id: str | None) -> dict[str, Any]:
    """The bot's message `message_id` (as a send returned it), as a reply to it shows it."""
    assert message_id is not None
    return {**fake.message(chat, BOT_USER, text="the bot said"), "message_id": int(message_id)}


def reply_parameters(call: ApiCall) -> Any:
    value = call.params.get("reply_parameters")
    return json.loads(value) if isinstance(value, str) else value


def test_a_reply_in_a_group_is_in_the_thread_of_its_root(
    fake: FakeTelegram, channel: TelegramChannel, events: Events
) -> None:
    root = fake.push_text(GROUP, ALICE, "who's coming on saturday?")
    assert events.next_chat().thread_id is None  # a message that replies to nothing
    thread = f"r{root['message_id']}"

    first = fake.push_text(GROUP, BOB, "me", reply_to=replied(root))
    assert events.next_chat().thread_id == thread
    second = fake.push_text(GROUP, ALICE, "great, bring the salad", reply_to=replied(first))
    event = events.next_chat()
    assert (event.thread_id, event.mentions_assistant) == (thread, False)
    fake.push_text(GROUP, BOB, "sure", reply_to=replied(second))
    assert events.next_chat().thread_id == thread

    # Another chain is another thread.
    other = fake.push_text(GROUP, BOB, "and sunday?")
    events.next_chat()
    fake.push_text(GROUP, ALICE, "busy", reply_to=replied(other))
    assert events.next_chat().thread_id == f"r{other['message_id']}"


def test_a_reply_to_the_bots_message_goes_on_in_the_thread_it_was_sent_to(
    fake: FakeTelegram, channel: TelegramChannel, events: Events, tmp_path: Path
) -> None:
    # Root 5 was never seen by this run: only the bot's sends put its messages in the thread.
    to_thread = Routing("-1001", "telegram", "r5")
    answer = channel.send_text(to_thread, "here is the plan")
    fake.push_text(GROUP, BOB, "sounds good", reply_to=bot_message(fake, GROUP, answer))
    event = events.next_chat()
    assert (event.thread_id, event.mentions_assistant) == ("r5", True)

    # Every message of a send is in the thread: a later part, and a file.
    parts = channel.send_text(to_thread, "a" * 3000 + "\n\n" + "b" * 3000)
    assert parts is not None
    second_part = str(int(parts) + 1)
    fake.push_text(GROUP, ALICE, "about part two", reply_to=bot_message(fake, GROUP, second_part))
    assert events.next_chat().thread_id == "r5"
    notes = tmp_path / "notes.txt"
    notes.write_text("notes")
    attached = channel.send_text(to_thread, "the notes", (notes,))
    fake.push_text(GROUP, ALICE, "thanks", reply_to=bot_message(fake, GROUP, attached))
    assert events.next_chat().thread_id == "r5"

    # And a button pressed on a question asked there.
    asked = channel.ask_question(to_thread, "q-7", "Which day?", ("Saturday", "Sunday"))
    assert asked is not None
    fake.push_callback(GROUP, BOB, "q:q-7:1", message_id=int(asked))
    assert events.next_answer().thread_id == "r5"

    # A bot's message sent to the chat itself is a root like any other.
    plain = channel.send_text(TO_GROUP, "good morning")
    fake.push_text(GROUP, BOB, "morning!", reply_to=bot_message(fake, GROUP, plain))
    event = events.next_chat()
    assert (event.thread_id, event.mentions_assistant) == (f"r{plain}", True)


def test_a_reply_to_a_message_not_known_starts_its_own_thread(
    fake: FakeTelegram, downloads: Path, events: Events
) -> None:
    first = make_channel(fake, downloads)
    first.start(events)
    try:
        root = fake.message(GROUP, ALICE, text="never seen: from before this run")
        reply = fake.push_text(GROUP, BOB, "a reply", reply_to=root)
        assert events.next_chat().thread_id == f"r{root['message_id']}"
        later = fake.push_text(GROUP, ALICE, "a reply to the reply", reply_to=replied(reply))
        assert events.next_chat().thread_id == f"r{root['message_id']}"
    finally:
        first.stop()

    # What a run knew is gone with it: the reply to a reply now starts a thread of its own.
    second = make_channel(fake, downloads)
    second.start(events)
    try:
        fake.push_text(GROUP, BOB, "after the restart", reply_to=replied(later))
        assert events.next_chat().thread_id == f"r{later['message_id']}"
    finally:
        second.stop()


def test_a_reply_to_a_message_not_known_takes_the_root_telegram_names(
    fake: FakeTelegram, channel: TelegramChannel, events: Events
) -> None:
    # In a supergroup Telegram sets message_thread_id on a reply: the top of its reply chain.
    middle = fake.message(GROUP, ALICE, text="deep in an old chain", message_thread_id=40)
    reply = fake.push_text(GROUP, BOB, "back to it", reply_to=middle, message_thread_id=40)
    assert events.next_chat().thread_id == "r40"
    # Known from now on, whatever a later message says.
    fake.push_text(GROUP, ALICE, "and again", reply_to=replied(middle))
    assert events.next_chat().thread_id == "r40"
    fake.push_text(GROUP, ALICE, "and on", reply_to=replied(reply))
    assert events.next_chat().thread_id == "r40"


def test_a_reply_in_a_private_chat_is_in_no_thread(
    fake: FakeTelegram, channel: TelegramChannel, events: Events
) -> None:
    answer = channel.send_text(TO_ALICE, "done")
    fake.push_text(ALICE_CHAT, ALICE, "thanks", reply_to=bot_message(fake, ALICE_CHAT, answer))
    event = events.next_chat()
    assert (event.thread_id, event.mentions_assistant) == (None, True)


def test_the_map_of_reply_threads_is_bounded_per_chat_and_in_chats() -> None:
    def message(chat_id: int, message_id: int, reply_to: int) -> Message:
        chat = {"id": chat_id, "type": "supergroup", "title": "g"}
        replied_to = {"message_id": reply_to, "date": 0, "chat": chat}
        data = {"message_id": message_id, "date": 0, "chat": chat, "reply_to_message": replied_to}
        parsed = Message.de_json(data, None)
        assert parsed is not None
        return parsed

    threads = _ReplyThreads(per_chat=2, chats=2)
    assert threads.thread_of(message(-1, 11, 10)) == "r10"
    assert threads.thread_of(message(-1, 12, 11)) == "r10"
    assert threads.thread_of(message(-1, 13, 12)) == "r10"
    # Message 11 fell out of chat -1 (two are kept): a reply to it starts a thread there.
    assert threads.thread_of(message(-1, 14, 11)) == "r11"
    assert threads.thread_of(message(-1, 15, 13)) == "r10"  # 13 is still known
    # A third chat pushes out the one least recently touched.
    assert threads.thread_of(message(-2, 21, 20)) == "r20"
    assert threads.thread_of(message(-3, 31, 30)) == "r30"
    assert threads.thread_of(message(-1, 16, 15)) == "r15"  # chat -1 was forgotten: 15 is a root now
    assert threads.thread_of(message(-3, 32, 31)) == "r30"


def test_photo_document_and_voice_are_fetched_into_the_download_dir(
    fake: FakeTelegram, channel: TelegramChannel, events: Events, downloads: Path
) -> None:
    fake.push_photo(ALICE_CHAT, ALICE, b"\xff\xd8 the big photo", caption="look")
    fake.push_document(ALICE_CHAT, ALICE, b"%PDF report", "../../etc/report.pdf")
    fake.push_voice(ALICE_CHAT, ALICE, b"OggS voice")

    photo, document, voice = events.next_chat(), events.next_chat(), events.next_chat()
    assert photo.text == "look"
    assert (document.text, voice.text) == ("", "")
    found = [(event.files[0].name, events.contents[event.files[0].path]) for event in (photo, document, voice)]
    assert found == [
        ("photo.jpg", b"\xff\xd8 the big photo"),
        ("report.pdf", b"%PDF report"),
        ("voice.ogg", b"OggS voice"),
    ]
    for event in (photo, document, voice):
        path = Path(event.files[0].path)
        assert path.parent.parent == downloads
        assert path.name == event.files[0].name

    # Once the host has an event, the adapter's copy goes (the host moved it already).
    fake.push_text(ALICE_CHAT, ALICE, "after")
    assert events.next_chat().text == "after"
    assert list(downloads.iterdir()) == []


def test_a_file_too_large_to_fetch_is_noted_in_the_text(
    fake: FakeTelegram, channel: TelegramChannel, events: Events
) -> None:
    fake.push_document(ALICE_CHAT, ALICE, b"", "movie.mkv", caption="our holiday", size=25 * 1024 * 1024)
    event = events.next_chat()
    assert event.text == "our holiday\n(a file too large to fetch: movie.mkv)"
    assert event.files == ()
    assert fake.calls("getFile") == []


def test_a_file_that_cannot_be_fetched_is_noted(fake: FakeTelegram, channel: TelegramChannel, events: Events) -> None:
    document = {"file_id": "gone", "file_unique_id": "u-gone", "file_name": "lost.txt", "file_size": 3}
    fake.push_message(ALICE_CHAT, ALICE, document=document)
    event = events.next_chat()
    assert (event.text, event.files) == ("(a file that could not be fetched: lost.txt)", ())


def test_polling_goes_on_after_a_server_error(fake: FakeTelegram, channel: TelegramChannel, events: Events) -> None:
    fake.wait_for("getUpdates")
    fake.fail("getUpdates", Failure.server_error(502))
    fake.push_text(ALICE_CHAT, ALICE, "still there?")  # answers the parked poll; the next one fails
    assert events.next_chat().text == "still there?"
    fake.push_text(ALICE_CHAT, ALICE, "after the error")
    assert events.next_chat().text == "after the error"
    assert len(fake.calls("getUpdates")) >= 3


def test_a_button_press_is_an_answer_with_the_option_index(
    fake: FakeTelegram, channel: TelegramChannel, events: Events
) -> None:
    query_id = fake.push_callback(FORUM, BOB, "q:qid-1:2", message_id=500, topic=7)
    answer = events.next_answer()
    assert answer == InboundAnswer(
        channel_type="telegram",
        platform_id="-1002",
        question_id="qid-1",
        option_index=2,
        sender="Bob",
        sender_id="88",
        thread_id="7",
    )
    assert fake.wait_for("answerCallbackQuery")[0].params["callback_query_id"] == query_id


def test_a_long_question_id_fits_the_button_and_comes_back_whole(
    fake: FakeTelegram, channel: TelegramChannel, events: Events
) -> None:
    question_id = "question-" + "x" * 200
    channel.ask_question(TO_ALICE, question_id, "Which?", ("one", "two"))
    buttons = [row[0] for row in fake.calls("sendMessage")[0].params["reply_markup"]["inline_keyboard"]]
    assert all(len(button["callback_data"].encode()) <= MAX_CALLBACK_DATA_BYTES for button in buttons)

    fake.push_callback(ALICE_CHAT, ALICE, buttons[1]["callback_data"])
    answer = events.next_answer()
    assert (answer.question_id, answer.option_index) == (question_id, 1)


def test_a_button_of_a_question_no_longer_known_is_answered_and_dropped(
    fake: FakeTelegram, channel: TelegramChannel, events: Events
) -> None:
    fake.push_callback(ALICE_CHAT, ALICE, "h:forgotten-key:0")
    fake.push_text(ALICE_CHAT, ALICE, "next")
    assert events.next_chat().text == "next"
    assert fake.calls("answerCallbackQuery")[0].params["text"] == "This question is no longer open."


# -- sends ---------------------------------------------------------------------------------------


def test_text_goes_out_as_telegram_html(fake: FakeTelegram, channel: TelegramChannel) -> None:
    message_id = channel.send_text(TO_ALICE, "**Done**: see `a<b>` & _more_")
    (call,) = fake.calls("sendMessage")
    assert call.params["chat_id"] == "77"
    assert call.params["parse_mode"] == "HTML"
    assert call.params["text"] == "<b>Done</b>: see <code>a&lt;b&gt;</code> &amp; <i>more</i>"
    assert message_id is not None and message_id.isdigit()


def test_a_long_text_is_split_on_paragraphs_and_sent_in_order(fake: FakeTelegram, channel: TelegramChannel) -> None:
    paragraphs = [letter * 3000 for letter in "abc"]
    first_id = channel.send_text(TO_ALICE, "\n\n".join(paragraphs))
    calls = fake.calls("sendMessage")
    assert [call.params["text"] for call in calls] == paragraphs
    # The fake numbers messages in order: the next send's id is three past the first part's.
    later = channel.send_text(TO_ALICE, "later")
    assert first_id is not None and later is not None
    assert int(first_id) == int(later) - 3


def test_markup_telegram_cannot_parse_is_sent_again_as_plain_text(fake: FakeTelegram, channel: TelegramChannel) -> None:
    fake.fail("sendMessage", Failure.unparsable(), parse_mode="HTML")
    channel.send_text(TO_ALICE, "**odd** markup")
    first, second = fake.calls("sendMessage")
    assert first.params["parse_mode"] == "HTML"
    assert "parse_mode" not in second.params
    assert second.params["text"] == "**odd** markup"


def test_a_message_to_a_topic_carries_its_thread(fake: FakeTelegram, channel: TelegramChannel) -> None:
    channel.send_text(TO_TOPIC, "hi topic")
    params = fake.calls("sendMessage")[0].params
    assert (params["chat_id"], params["message_thread_id"]) == ("-1002", "7")
    assert "reply_parameters" not in params


def test_a_send_to_a_reply_thread_goes_as_replies_to_its_root(
    fake: FakeTelegram, channel: TelegramChannel, tmp_path: Path
) -> None:
    to_thread = Routing("-1001", "telegram", "r500")
    picture = tmp_path / "chart.png"
    picture.write_bytes(b"\x89PNG chart")
    channel.send_text(to_thread, "a" * 3000 + "\n\n" + "b" * 3000, (picture,))
    channel.ask_question(to_thread, "q-1", "Which?", ("one", "two"))
    calls = [call for call in fake.calls() if call.method in ("sendMessage", "sendPhoto")]
    assert [call.method for call in calls] == ["sendMessage", "sendMessage", "sendPhoto", "sendMessage"]
    for call in calls:
        assert call.params["chat_id"] == "-1001"
        # A root deleted since must not fail the send.
        assert reply_parameters(call) == {"message_id": 500, "allow_sending_without_reply": True}
        assert "message_thread_id" not in call.params

    # Typing has no reply thread: it is shown in the chat.
    channel.show_typing(to_thread)
    params = fake.calls("sendChatAction")[0].params
    assert (params["chat_id"], params["action"]) == ("-1001", "typing")
    assert "message_thread_id" not in params


@pytest.mark.parametrize("thread_id", ["x5", "r", "r-5", "7a", "-7", "R5"])
def test_a_thread_id_of_neither_form_is_refused_for_good(
    fake: FakeTelegram, channel: TelegramChannel, thread_id: str
) -> None:
    with pytest.raises(ChannelError) as caught:
        channel.send_text(Routing("-1001", "telegram", thread_id), "hi")
    assert not caught.value.retryable
    assert fake.calls("sendMessage") == []


def test_a_file_goes_as_a_document_with_the_text_as_caption(
    fake: FakeTelegram, channel: TelegramChannel, tmp_path: Path
) -> None:
    report = tmp_path / "report.txt"
    report.write_bytes(b"numbers")
    channel.send_text(TO_ALICE, "the **report**", (report,))
    (call,) = fake.calls("sendDocument")
    assert call.files["document"].name == "report.txt"
    assert call.files["document"].data == b"numbers"
    assert (call.params["caption"], call.params["parse_mode"]) == ("the <b>report</b>", "HTML")
    assert fake.calls("sendMessage") == []


def test_an_image_goes_as_a_photo(fake: FakeTelegram, channel: TelegramChannel, tmp_path: Path) -> None:
    picture = tmp_path / "chart.png"
    picture.write_bytes(b"\x89PNG chart")
    channel.send_text(TO_ALICE, "", (picture,))
    (call,) = fake.calls("sendPhoto")
    assert call.files["photo"].data == b"\x89PNG chart"
    assert "caption" not in call.params


def test_text_too_long_for_a_caption_goes_first(fake: FakeTelegram, channel: TelegramChannel, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# notes")
    text = "x" * 2000
    first_id = channel.send_text(TO_ALICE, text, (notes,))
    (message,) = fake.calls("sendMessage")
    (document,) = fake.calls("sendDocument")
    assert message.params["text"] == text
    assert "caption" not in document.params
    assert fake.calls().index(message) < fake.calls().index(document)
    assert first_id is not None


def test_a_file_over_50_mb_is_refused_for_good(fake: FakeTelegram, channel: TelegramChannel, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024 + 1)  # sparse: no 50 MB written
    with pytest.raises(ChannelError) as caught:
        channel.send_text(TO_ALICE, "here", (big,))
    assert not caught.value.retryable
    assert fake.calls("sendDocument") == fake.calls("sendMessage") == []


def test_edit(fake: FakeTelegram, channel: TelegramChannel) -> None:
    channel.edit_text(TO_ALICE, "123", "now **final**")
    params = fake.calls("editMessageText")[0].params
    assert (params["chat_id"], params["message_id"], params["text"]) == ("77", "123", "now <b>final</b>")


def test_an_edit_to_the_same_text_is_no_error(fake: FakeTelegram, channel: TelegramChannel) -> None:
    fake.fail("editMessageText", Failure.bad_request("message is not modified: specified new message content"))
    channel.edit_text(TO_ALICE, "123", "same")


def test_a_message_sent_as_a_file_is_edited_through_its_caption(fake: FakeTelegram, channel: TelegramChannel) -> None:
    fake.fail("editMessageText", Failure.bad_request("there is no text in the message to edit"))
    channel.edit_text(TO_ALICE, "321", "new *caption*")
    params = fake.calls("editMessageCaption")[0].params
    assert (params["message_id"], params["caption"], params["parse_mode"]) == ("321", "new <i>caption</i>", "HTML")


def test_reactions_use_telegrams_own_emoji(fake: FakeTelegram, channel: TelegramChannel) -> None:
    channel.add_reaction(TO_ALICE, "10", "👍")
    channel.add_reaction(TO_ALICE, "11", "✅")  # not Telegram's: the closest one
    channel.add_reaction(TO_ALICE, "12", "🦖")  # nothing close: no reaction at all
    calls = fake.calls("setMessageReaction")
    assert [(call.params["message_id"], call.params["reaction"]) for call in calls] == [
        ("10", [{"type": "emoji", "emoji": "👍"}]),
        ("11", [{"type": "emoji", "emoji": "👍"}]),
    ]


def test_a_question_is_an_inline_keyboard(fake: FakeTelegram, channel: TelegramChannel) -> None:
    message_id = channel.ask_question(TO_TOPIC, "q-42", "Which **day**?", ("Monday", "Tuesday", "Never"))
    (call,) = fake.calls("sendMessage")
    assert call.params["text"] == "Which <b>day</b>?"
    assert call.params["message_thread_id"] == "7"
    keyboard = call.params["reply_markup"]["inline_keyboard"]
    assert keyboard == [
        [{"text": "Monday", "callback_data": "q:q-42:0"}],
        [{"text": "Tuesday", "callback_data": "q:q-42:1"}],
        [{"text": "Never", "callback_data": "q:q-42:2"}],
    ]
    assert message_id is not None and message_id.isdigit()


def test_a_card_is_a_bold_title_text_and_fields(fake: FakeTelegram, channel: TelegramChannel) -> None:
    channel.send_card(TO_ALICE, Card("Build #12", "all **green**", (("tests", "512"), ("time", "3_m"))))
    assert fake.calls("sendMessage")[0].params["text"] == (
        "<b>Build #12</b>\nall <b>green</b>\n<b>tests:</b> 512\n<b>time:</b> 3_m"
    )


def test_typing_in_a_topic(fake: FakeTelegram, channel: TelegramChannel) -> None:
    channel.show_typing(TO_TOPIC)
    params = fake.calls("sendChatAction")[0].params
    assert (params["chat_id"], params["action"], params["message_thread_id"]) == ("-1002", "typing", "7")


# -- failures ------------------------------------------------------------------------------------


def test_flood_control_is_retryable_and_says_the_wait(fake: FakeTelegram, channel: TelegramChannel) -> None:
    fake.fail("sendMessage", Failure.flood(7))
    with pytest.raises(ChannelError) as caught:
        channel.send_text(TO_ALICE, "hi")
    assert caught.value.retryable
    assert "retry after 7s" in str(caught.value)


def test_a_server_error_is_retryable(fake: FakeTelegram, channel: TelegramChannel) -> None:
    fake.fail("sendMessage", Failure.server_error(502))
    with pytest.raises(ChannelError) as caught:
        channel.send_text(TO_ALICE, "hi")
    assert caught.value.retryable


@pytest.mark.parametrize(
    "failure", [Failure.bad_request("chat not found"), Failure.forbidden()], ids=["chat-not-found", "blocked"]
)
def test_a_refusal_is_not_retryable(fake: FakeTelegram, channel: TelegramChannel, failure: Failure) -> None:
    fake.fail("sendMessage", failure)
    with pytest.raises(ChannelError) as caught:
        channel.send_text(TO_ALICE, "hi")
    assert not caught.value.retryable
    assert failure.description.split(": ", 1)[1].lower() in str(caught.value).lower()


def test_flood_control_after_the_first_part_is_waited_out(fake: FakeTelegram, channel: TelegramChannel) -> None:
    # Failing once the first part is out would make the host send that part again.
    parts = ["a" * 3000, "b" * 3000]
    fake.fail("sendMessage", Failure.flood(1), skip=1)
    channel.send_text(TO_ALICE, "\n\n".join(parts))
    assert [call.params["text"] for call in fake.calls("sendMessage")] == [parts[0], parts[1], parts[1]]


PARTS = ["a" * 3000, "b" * 3000, "c" * 3000]


def accepted(fake: FakeTelegram, method: str = "sendMessage") -> list[ApiCall]:
    return [call for call in fake.calls(method) if call.failure is None]


@pytest.mark.parametrize("status", [500, 502])
def test_a_send_that_failed_halfway_goes_on_where_it_stopped_when_tried_again(
    fake: FakeTelegram, channel: TelegramChannel, status: int
) -> None:
    fake.fail("sendMessage", Failure.server_error(status), skip=1)
    with pytest.raises(ChannelError) as caught:
        channel.send_text(TO_ALICE, "\n\n".join(PARTS))
    assert caught.value.retryable
    assert [call.params["text"] for call in accepted(fake)] == PARTS[:1]

    first_id = channel.send_text(TO_ALICE, "\n\n".join(PARTS))  # the host's retry
    calls = accepted(fake)
    assert [call.params["text"] for call in calls] == PARTS  # each part once, in order
    # The send's id is still its first message's (what edits and reactions refer to); the
    # fake numbers the messages it accepts from 100.
    assert first_id == "100"

    # Complete, the send is forgotten: the same text again is a new message, sent whole.
    channel.send_text(TO_ALICE, "\n\n".join(PARTS))
    assert [call.params["text"] for call in accepted(fake)] == PARTS + PARTS


def test_a_send_that_failed_for_good_halfway_is_not_resumed(fake: FakeTelegram, channel: TelegramChannel) -> None:
    fake.fail("sendMessage", Failure.bad_request("message is too long"), skip=1)
    with pytest.raises(ChannelError) as caught:
        channel.send_text(TO_ALICE, "\n\n".join(PARTS))
    assert not caught.value.retryable
    channel.send_text(TO_ALICE, "\n\n".join(PARTS))  # no retry of the host's: a send of its own, whole
    assert [call.params["text"] for call in accepted(fake)] == PARTS[:1] + PARTS


def test_a_file_after_the_text_that_failed_goes_alone_when_tried_again(
    fake: FakeTelegram, channel: TelegramChannel, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# notes")
    fake.fail("sendDocument", Failure.server_error(502))
    with pytest.raises(ChannelError):
        channel.send_text(TO_ALICE, "\n\n".join(PARTS), (notes,))
    first_id = channel.send_text(TO_ALICE, "\n\n".join(PARTS), (notes,))
    assert [call.params["text"] for call in accepted(fake)] == PARTS
    assert len(accepted(fake, "sendDocument")) == 1
    assert first_id == "100"


def test_a_long_question_that_failed_halfway_goes_on_where_it_stopped(
    fake: FakeTelegram, channel: TelegramChannel
) -> None:
    fake.fail("sendMessage", Failure.server_error(502), skip=1)
    with pytest.raises(ChannelError):
        channel.ask_question(TO_ALICE, "qid-9", "\n\n".join(PARTS), ("yes", "no"))
    with_buttons = channel.ask_question(TO_ALICE, "qid-9", "\n\n".join(PARTS), ("yes", "no"))
    calls = accepted(fake)
    assert [call.params["text"] for call in calls] == PARTS
    assert ["reply_markup" in call.params for call in calls] == [False, False, True]
    assert with_buttons == "102"  # the message with the buttons, as before


def test_what_multi_part_sends_got_accepted_is_kept_bounded() -> None:
    now = [0.0]
    kept = SentParts(limit=2, ttl_s=10.0, clock=lambda: now[0])
    kept.begin("a").append("1")
    kept.end("a", retryable=True)
    assert kept.begin("a") == ["1"]  # the retry goes on from there
    kept.end("a")
    assert kept.begin("a") == []  # complete: forgotten
    kept.end("a", retryable=True)
    assert len(kept) == 0  # nothing was out: nothing to keep
    for key in "bcd":
        kept.begin(key).append(key)
        kept.end(key, retryable=True)
    assert len(kept) == 2 and kept.begin("b") == []  # the oldest went first
    kept.end("b")
    now[0] = 11.0
    assert kept.begin("d") == []  # too old to be the same send's retry
    assert len(kept) == 1


def test_a_bad_token_fails_start_for_good(fake: FakeTelegram, downloads: Path, events: Events) -> None:
    adapter = TelegramChannel("999:wrong", base_url=fake.base_url, download_dir=downloads, send_timeout_s=5)
    with pytest.raises(ChannelError) as caught:
        adapter.start(events)
    assert not caught.value.retryable
    assert "999:wrong" not in str(caught.value)
    assert telegram_threads() == []


def test_an_unreachable_api_fails_start_for_now(downloads: Path, events: Events) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = TelegramChannel("1:x", base_url=f"http://127.0.0.1:{port}/bot", download_dir=downloads, send_timeout_s=2)
    with pytest.raises(ChannelError) as caught:
        adapter.start(events)
    assert caught.value.retryable
    assert telegram_threads() == []


def test_stop_is_prompt_and_leaves_no_thread(fake: FakeTelegram, downloads: Path, events: Events) -> None:
    adapter = TelegramChannel(
        fake.token, base_url=fake.base_url, download_dir=downloads, poll_timeout_s=25, send_timeout_s=5
    )
    adapter.start(events)
    fake.wait_for("getUpdates")  # a long poll is parked in the server
    started = time.monotonic()
    adapter.stop()
    assert time.monotonic() - started < 3
    assert telegram_threads() == []
    with pytest.raises(ChannelError) as caught:
        adapter.send_text(TO_ALICE, "too late")
    assert caught.value.retryable


def test_a_message_the_host_did_not_store_comes_again_after_a_restart(
    fake: FakeTelegram, downloads: Path, events: Events
) -> None:
    first = make_channel(fake, downloads)
    events.holding = True
    first.start(events)
    sent = fake.push_text(ALICE_CHAT, ALICE, "keep me")
    assert events.next_chat().text == "keep me"
    started = time.monotonic()
    first.stop()  # the host never said it stored it; stop does not wait for it
    assert time.monotonic() - started < 3

    events.holding = False
    second = make_channel(fake, downloads)
    second.start(events)
    try:
        again = events.next_chat()
        assert (again.text, again.platform_message_id) == ("keep me", str(sent["message_id"]))
    finally:
        second.stop()

    # Stored this time, and confirmed at stop: a third run does not get it again.
    third = make_channel(fake, downloads)
    third.start(events)
    try:
        fake.push_text(ALICE_CHAT, ALICE, "new")
        assert events.next_chat().text == "new"
    finally:
        third.stop()


def test_the_token_stays_out_of_the_logs(
    fake: FakeTelegram, channel: TelegramChannel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        channel.send_text(TO_ALICE, "hi")
    assert caplog.records
    assert fake.token not in caplog.text


# -- formatting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**b** *i* __b__ _i_ ~~s~~", "<b>b</b> <i>i</i> <b>b</b> <i>i</i> <s>s</s>"),
        ("snake_case_name and 2 * 3 * 4", "snake_case_name and 2 * 3 * 4"),
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("`x<y>` and ``a ` b``", "<code>x&lt;y&gt;</code> and <code>a ` b</code>"),
        ("```py\nif a < b:\n    pass\n```", '<pre><code class="language-py">if a &lt; b:\n    pass</code></pre>'),
        ("[site](https://e.org/?a=1&b=2)", '<a href="https://e.org/?a=1&amp;b=2">site</a>'),
        ("[click](javascript:alert(1))", "[click](javascript:alert(1))"),
        ("# Title\n- one\n* two", "<b>Title</b>\n• one\n• two"),
        ("> quoted *words*", "<blockquote>quoted <i>words</i></blockquote>"),
        ("**never closed", "**never closed"),
        ("***both***", "<b><i>both</i></b>"),
        (r"\*not italic\*", "*not italic*"),
    ],
)
def test_markdown_to_html(markdown: str, expected: str) -> None:
    assert markdown_to_html(markdown) == expected


def test_splitting_prefers_paragraphs_then_lines_then_anything() -> None:
    assert split_text("short") == ["short"]
    assert split_text("a" * 3000 + "\n\n" + "b" * 3000) == ["a" * 3000, "b" * 3000]
    lines = "\n".join(f"line {n:04d}" for n in range(1000))  # 10 000 characters, no paragraph
    pieces = split_text(lines)
    assert "\n".join(pieces) == lines
    assert all(len(piece) <= 4096 for piece in pieces)
    assert [len(piece) for piece in split_text("x" * 9000)] == [4096, 4096, 808]
    # Telegram counts UTF-16 units: an emoji is two.
    assert [len(piece) for piece in split_text("😀" * 5000)] == [2048, 2048, 904]


def test_a_code_block_cut_in_two_is_closed_and_reopened() -> None:
    code = "\n".join(f"x = {n}" for n in range(1500))
    pieces = split_text(f"```python\n{code}\n```")
    assert len(pieces) > 1
    assert all(piece.startswith("```python\n") and piece.endswith("\n```") for piece in pieces)
    assert all(len(piece) <= 4096 for piece in pieces)


def test_reaction_mapping() -> None:
    assert reaction_for("❤️") == "❤"
    assert reaction_for("👍🏽") == "👍"
    assert reaction_for("🤷‍♂️") == "🤷‍♂️"
    assert reaction_for("😂") == "🤣"
    assert reaction_for("🦖") is None


def test_file_names_from_senders_are_plain_basenames() -> None:
    assert safe_name("../../etc/passwd", "document") == "passwd"
    assert safe_name("..", "document") == "document"
    assert safe_name(None, "photo.jpg") == "photo.jpg"
    assert safe_name("a\\b\x00c.txt", "document") == "b_c.txt"
    long = safe_name("n" * 300 + ".pdf", "document")
    assert len(long) == 200 and long.endswith(".pdf")


# -- webhook mode --------------------------------------------------------------------------------

WEBHOOK_URL = "https://hutch.example/telegram/hook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_update_ids = itertools.count(1)


def make_webhook_channel(fake: FakeTelegram, downloads: Path, port: int = 0) -> TelegramChannel:
    return make_channel(fake, downloads, webhook_url=WEBHOOK_URL, webhook_listen=("127.0.0.1", port))


@pytest.fixture
def hooked(fake: FakeTelegram, downloads: Path, events: Events) -> Iterator[TelegramChannel]:
    adapter = make_webhook_channel(fake, downloads)
    adapter.start(events)
    yield adapter
    adapter.stop()


@pytest.fixture
def poster() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """For requests whose answer the test waits for later."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="poster") as pool:
        yield pool


def secret_of(fake: FakeTelegram) -> str:
    secret = fake.calls("setWebhook")[-1].params["secret_token"]
    assert isinstance(secret, str)
    return secret


def post(
    channel: TelegramChannel,
    body: bytes | Iterable[bytes],
    secret: str | None,
    *,
    chunked: bool = False,
) -> int:
    """POST `body` to the channel's local server as the reverse proxy would; the status."""
    port = channel.webhook_port
    assert port is not None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2 * WAIT)
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    try:
        connection.request("POST", "/telegram/hook", body=body, headers=headers, encode_chunked=chunked)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def post_update(channel: TelegramChannel, fake: FakeTelegram, payload: dict[str, Any]) -> int:
    update = {"update_id": next(_update_ids), **payload}
    return post(channel, json.dumps(update).encode(), secret_of(fake))


def callback_update(
    chat: dict[str, Any], sender: dict[str, Any], data: str, *, topic: int | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"message_id": 500, "date": int(time.time()), "chat": chat, "from": BOT_USER, "text": "?"}
    if topic is not None:
        message.update(message_thread_id=topic, is_topic_message=True)
    query = {"id": "cbq-hook", "from": sender, "chat_instance": "ci-1", "data": data, "message": message}
    return {"callback_query": query}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_webhook_mode_sets_the_webhook_with_a_fresh_secret_and_does_not_poll(
    fake: FakeTelegram, downloads: Path, events: Events
) -> None:
    adapter = make_webhook_channel(fake, downloads)
    assert adapter.webhook_port is None
    adapter.start(events)
    try:
        (call,) = fake.calls("setWebhook")
        assert call.params["url"] == WEBHOOK_URL
        assert call.params["allowed_updates"] == ["message", "callback_query"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,256}", call.params["secret_token"])
        assert isinstance(adapter.webhook_port, int) and adapter.webhook_port > 0
        assert fake.calls("getUpdates") == fake.calls("deleteWebhook") == []
    finally:
        adapter.stop()
    assert adapter.webhook_port is None

    adapter.start(events)  # a new start, a new secret
    try:
        first, second = fake.calls("setWebhook")
        assert first.params["secret_token"] != second.params["secret_token"]
    finally:
        adapter.stop()


def test_a_posted_message_is_answered_only_once_the_host_stored_it(
    fake: FakeTelegram,
    hooked: TelegramChannel,
    events: Events,
    poster: concurrent.futures.ThreadPoolExecutor,
) -> None:
    events.holding = True
    message = fake.message(ALICE_CHAT, ALICE, text="hello over the hook")
    answered = poster.submit(post_update, hooked, fake, {"message": message})
    event = events.next_chat()
    assert event == InboundChat(
        channel_type="telegram",
        platform_id="77",
        text="hello over the hook",
        sender="Alice Smith",
        sender_id="77",
        platform_message_id=str(message["message_id"]),
        chat_name="Alice Smith",
        mentions_assistant=True,
    )
    # The host has not stored it: the request stays open (a bounded look, not a sync point).
    with pytest.raises(TimeoutError):
        answered.result(timeout=0.2)
    events.release()
    assert answered.result(timeout=WAIT) == 200


def test_a_posted_document_is_fetched_as_a_polled_one_is(
    fake: FakeTelegram, hooked: TelegramChannel, events: Events, downloads: Path
) -> None:
    file_id = fake.add_file(b"%PDF minutes", path="documents/minutes.pdf")
    document = {"file_id": file_id, "file_unique_id": "u-min", "file_name": "minutes.pdf", "file_size": 12}
    message = fake.message(GROUP, BOB, caption="from the meeting", document=document)
    assert post_update(hooked, fake, {"message": message}) == 200
    event = events.next_chat()
    assert (event.text, event.is_group, event.mentions_assistant) == ("from the meeting", True, False)
    (file,) = event.files
    assert (file.name, events.contents[file.path]) == ("minutes.pdf", b"%PDF minutes")
    assert list(downloads.iterdir()) == []  # stored (answered 200): the adapter's copy is gone


def test_a_posted_button_press_is_an_answer(fake: FakeTelegram, hooked: TelegramChannel, events: Events) -> None:
    assert post_update(hooked, fake, callback_update(FORUM, BOB, "q:qid-9:1", topic=7)) == 200
    assert events.next_answer() == InboundAnswer(
        channel_type="telegram",
        platform_id="-1002",
        question_id="qid-9",
        option_index=1,
        sender="Bob",
        sender_id="88",
        thread_id="7",
    )
    assert fake.wait_for("answerCallbackQuery")[0].params["callback_query_id"] == "cbq-hook"


def test_a_request_without_the_secret_is_401_and_hands_nothing_over(
    fake: FakeTelegram, hooked: TelegramChannel, events: Events
) -> None:
    body = json.dumps({"update_id": 1, "message": fake.message(ALICE_CHAT, ALICE, text="forged")}).encode()
    assert post(hooked, body, "not-the-secret") == 401
    assert post(hooked, body, None) == 401
    assert post(hooked, body, secret_of(fake)[:-1]) == 401
    assert events.queue.empty()


def test_a_body_over_the_cap_is_413_and_hands_nothing_over(
    fake: FakeTelegram, hooked: TelegramChannel, events: Events
) -> None:
    text = "x" * (1024 * 1024)
    body = json.dumps({"update_id": 1, "message": fake.message(ALICE_CHAT, ALICE, text=text)}).encode()
    assert post(hooked, body, secret_of(fake)) == 413  # told by Content-Length
    assert post(hooked, iter([body[:1000], body[1000:]]), secret_of(fake), chunked=True) == 413  # found reading
    assert events.queue.empty()


@pytest.mark.parametrize(
    "body", [b"not json", b"\xff\xfe", b"[1, 2]", b'{"message": {}}', b'{"update_id": "1"}'], ids=repr
)
def test_what_is_not_an_update_is_400_and_hands_nothing_over(
    fake: FakeTelegram, hooked: TelegramChannel, events: Events, body: bytes
) -> None:
    assert post(hooked, body, secret_of(fake)) == 400
    assert events.queue.empty()


def test_an_update_that_cannot_be_read_is_taken_and_dropped_as_when_polling(
    fake: FakeTelegram, hooked: TelegramChannel, events: Events
) -> None:
    # Answering anything but 200 would only make Telegram send it again and again.
    assert post_update(hooked, fake, {"message": {"text": "no date, no chat"}}) == 200
    assert post_update(hooked, fake, {}) == 200  # nothing in it for the host
    assert post_update(hooked, fake, callback_update(ALICE_CHAT, ALICE, "h:forgotten:0")) == 200
    assert events.queue.empty()
    assert post_update(hooked, fake, {"message": fake.message(ALICE_CHAT, ALICE, text="next")}) == 200
    assert events.next_chat().text == "next"


def test_requests_beyond_the_bound_are_503_until_a_slot_is_free(
    fake: FakeTelegram,
    hooked: TelegramChannel,
    events: Events,
    poster: concurrent.futures.ThreadPoolExecutor,
) -> None:
    assert fake.calls("setWebhook")[0].params["max_connections"] == str(MAX_CONCURRENT)
    events.holding = True
    held = [
        poster.submit(post_update, hooked, fake, {"message": fake.message(ALICE_CHAT, ALICE, text=f"n{n}")})
        for n in range(MAX_CONCURRENT)
    ]
    assert sorted(events.next_chat().text for _ in held) == sorted(f"n{n}" for n in range(MAX_CONCURRENT))
    extra = fake.message(ALICE_CHAT, ALICE, text="one too many")
    assert post_update(hooked, fake, {"message": extra}) == 503
    assert events.queue.empty()
    events.release()
    assert [answered.result(timeout=WAIT) for answered in held] == [200] * MAX_CONCURRENT
    events.holding = False
    assert post_update(hooked, fake, {"message": extra}) == 200  # Telegram's retry
    assert events.next_chat().text == "one too many"


def test_a_refused_set_webhook_fails_start_for_good(fake: FakeTelegram, downloads: Path, events: Events) -> None:
    fake.fail("setWebhook", Failure.bad_request("bad webhook: An HTTPS URL must be provided for webhook"))
    port = free_port()
    adapter = make_webhook_channel(fake, downloads, port)
    with pytest.raises(ChannelError) as caught:
        adapter.start(events)
    assert not caught.value.retryable
    assert "https url must be provided" in str(caught.value).lower()
    assert telegram_threads() == []
    with socket.socket() as again:  # the local server let its port go
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_set_webhook_meeting_an_unreachable_api_fails_start_for_now(
    fake: FakeTelegram, downloads: Path, events: Events
) -> None:
    fake.fail("setWebhook", Failure.server_error(502))
    adapter = make_webhook_channel(fake, downloads)
    with pytest.raises(ChannelError) as caught:
        adapter.start(events)
    assert caught.value.retryable
    assert telegram_threads() == []


def test_an_address_in_use_fails_start_for_good(fake: FakeTelegram, downloads: Path, events: Events) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        adapter = make_webhook_channel(fake, downloads, taken.getsockname()[1])
        with pytest.raises(ChannelError) as caught:
            adapter.start(events)
    assert not caught.value.retryable
    assert fake.calls("setWebhook") == []
    assert telegram_threads() == []


def test_webhook_stop_is_prompt_answers_what_is_in_flight_503_and_keeps_the_webhook(
    fake: FakeTelegram,
    downloads: Path,
    events: Events,
    poster: concurrent.futures.ThreadPoolExecutor,
) -> None:
    adapter = make_webhook_channel(fake, downloads)
    adapter.start(events)
    port = adapter.webhook_port
    events.holding = True
    answered = poster.submit(post_update, adapter, fake, {"message": fake.message(ALICE_CHAT, ALICE, text="wait")})
    assert events.next_chat().text == "wait"
    started = time.monotonic()
    adapter.stop()
    assert time.monotonic() - started < 3
    assert answered.result(timeout=WAIT) == 503  # never stored: Telegram sends it again
    assert telegram_threads() == []
    assert fake.calls("deleteWebhook") == []  # updates wait at Telegram while the host is down
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
