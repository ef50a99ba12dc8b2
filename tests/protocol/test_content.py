"""Content types and timestamps: everything the host reads from a container goes through
`decode_content` (docs/ARCHITECTURE.md, invariant 6), and every stored time through `timeutil` (invariant 9)."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.content import (
    INBOUND_TYPES,
    MAX_BUTTON_BYTES,
    MAX_CARD_BUTTONS,
    MAX_CONTENT_BYTES,
    MAX_FILES,
    MAX_TEXT_CHARS,
    OUTBOUND_TYPES,
    AskQuestionOut,
    CancelTask,
    CardField,
    CardOut,
    ChatIn,
    ChatOut,
    ContentError,
    EditOut,
    InboundContent,
    Notice,
    OutboundContent,
    PauseTask,
    QuestionAnswer,
    ReactionOut,
    ResumeTask,
    ScheduleTask,
    TaskIn,
    UpdateTask,
    WebhookIn,
    decode_content,
    encode_content,
    inbound_kind,
    outbound_kind,
)
from protocol.timeutil import format_ts, now_ts, parse_ts, parse_user_time

INBOUND_SAMPLES: list[tuple[str, InboundContent]] = [
    ("chat", ChatIn(text="hi", sender="Ana", sender_id="u1", platform_message_id="p1", files=["a.png"])),
    ("chat", ChatIn(text="", sender="Ana")),
    ("task", TaskIn(prompt="water the plants", scheduled_by=7)),
    ("webhook", WebhookIn(source="github", payload={"ref": "main", "commits": [1, 2]}, event="push")),
    ("system", QuestionAnswer(question_id="q1", answer="yes", answered_by="Ana")),
    ("system", Notice(text="task t1 was rejected")),
]

OUTBOUND_SAMPLES: list[tuple[str, OutboundContent]] = [
    ("chat", ChatOut(text="hello", files=["report.pdf"])),
    ("chat", ChatOut()),
    ("edit", EditOut(message_seq=3, text="hello again")),
    ("reaction", ReactionOut(message_seq=2, emoji="👍")),
    ("ask_question", AskQuestionOut(question_id="q1", question="Tea?", options=["yes", "no"])),
    ("card", CardOut(title="Weather", text="sunny", fields=[CardField(label="max", value="21 C")])),
    ("card", CardOut(title="Deploy?", text="v2 is ready", buttons=["Ship it", "Wait"], question_id="c1")),
    (
        "system",
        ScheduleTask(task_id="t1", prompt="stand up", process_after="2026-01-01T09:00:00.000000Z", recurrence="daily"),
    ),
    ("system", CancelTask(task_id="t1")),
    ("system", PauseTask(task_id="t1")),
    ("system", ResumeTask(task_id="t1")),
    ("system", UpdateTask(task_id="t1", prompt="sit down", recurrence="0 9 * * *")),
    ("system", UpdateTask(task_id="t1", process_after="2026-01-02T09:00:00.000000Z", clear_recurrence=True)),
]


def _leaf_types(declared: Any) -> set[type]:
    """The concrete Structs behind a kind, looking through unions such as SystemAction."""
    members = typing.get_args(declared)
    return set(members) if members else {declared}


def test_samples_cover_every_content_type() -> None:
    # A type added to the contract without a round-trip sample here fails this test.
    inbound_types = set().union(*(_leaf_types(declared) for declared in INBOUND_TYPES.values()))
    outbound_types = set().union(*(_leaf_types(declared) for declared in OUTBOUND_TYPES.values()))
    assert {type(content) for _, content in INBOUND_SAMPLES} == inbound_types
    assert {type(content) for _, content in OUTBOUND_SAMPLES} == outbound_types


@pytest.mark.parametrize(("kind", "content"), INBOUND_SAMPLES, ids=lambda value: type(value).__name__)
def test_inbound_content_round_trips(kind: str, content: InboundContent) -> None:
    assert inbound_kind(content) == kind
    encoded = encode_content(content)
    assert decode_content("messages_in", "m1", kind, encoded) == content
    assert decode_content("messages_in", "m1", kind, encoded.encode()) == content


@pytest.mark.parametrize(("kind", "content"), OUTBOUND_SAMPLES, ids=lambda value: type(value).__name__)
def test_outbound_content_round_trips(kind: str, content: OutboundContent) -> None:
    assert outbound_kind(content) == kind
    encoded = encode_content(content)
    assert decode_content("messages_out", "o1", kind, encoded) == content
    assert decode_content("messages_out", "o1", kind, encoded.encode()) == content


def test_defaults_are_left_out_of_the_stored_json() -> None:
    # Keeps rows small and lets a field be added later without rewriting old rows.
    assert json.loads(encode_content(ChatOut(text="hi"))) == {"text": "hi"}
    assert json.loads(encode_content(CancelTask(task_id="t1"))) == {"action": "cancel_task", "task_id": "t1"}


def test_a_card_row_from_before_buttons_decodes_and_encodes_as_it_did() -> None:
    raw = '{"title":"Weather","text":"sunny","fields":[{"label":"max","value":"21 C"}]}'
    card = decode_content("messages_out", "o1", "card", raw)
    assert card == CardOut(title="Weather", text="sunny", fields=[CardField(label="max", value="21 C")])
    assert (card.buttons, card.question_id) == ([], None)
    assert encode_content(card) == raw


def test_a_card_takes_eight_buttons_of_64_bytes() -> None:
    buttons = ["é" * 32] * MAX_CARD_BUTTONS  # 64 bytes each
    assert MAX_CARD_BUTTONS == 8 and MAX_BUTTON_BYTES == 64
    card = decode_content("messages_out", "o1", "card", _card_buttons(buttons))
    assert (card.buttons, card.question_id) == (buttons, "c1")


def test_a_card_built_in_code_keeps_the_same_rules() -> None:
    with pytest.raises(ValueError, match="needs a question_id"):
        CardOut(title="t", buttons=["y"])


def _big_text(chars: int) -> str:
    return json.dumps({"text": "a" * chars})


def _card_buttons(buttons: list[str]) -> str:
    return json.dumps({"title": "t", "buttons": buttons, "question_id": "c1"})


_CARD_WITH_BAD_FIELD = '{"title": "t", "fields": [{"label": 1, "value": "v"}]}'


BAD_ROWS: list[tuple[str, str, str, str, str]] = [
    # (id, table, kind, raw, what the message must name besides table and row id)
    ("malformed-json", "messages_out", "chat", '{"text": "hi"', "not valid JSON"),
    ("not-an-object", "messages_out", "chat", '["hi"]', "Expected `object`"),
    ("unknown-kind", "messages_out", "shout", '{"text": "hi"}', "unknown kind"),
    ("unknown-field", "messages_out", "chat", '{"text": "hi", "colour": "red"}', "colour"),
    ("wrong-type", "messages_out", "chat", '{"text": 5}', "$.text"),
    ("int-as-string", "messages_out", "edit", '{"message_seq": "3", "text": "x"}', "$.message_seq"),
    ("missing-field", "messages_out", "edit", '{"text": "x"}', "message_seq"),
    ("missing-inbound-field", "messages_in", "chat", '{"text": "x"}', "sender"),
    ("nested-wrong-type", "messages_out", "card", _CARD_WITH_BAD_FIELD, "$.fields[0].label"),
    ("too-long-text", "messages_out", "chat", _big_text(MAX_TEXT_CHARS + 1), "$.text"),
    ("oversized-row", "messages_out", "chat", _big_text(MAX_CONTENT_BYTES), "bytes"),
    ("too-many-files", "messages_out", "chat", json.dumps({"files": ["f"] * (MAX_FILES + 1)}), "$.files"),
    ("empty-emoji", "messages_out", "reaction", '{"message_seq": 2, "emoji": ""}', "$.emoji"),
    ("no-options", "messages_out", "ask_question", '{"question_id": "q", "question": "?", "options": []}', "$.options"),
    ("bad-action", "messages_out", "system", '{"action": "delete_everything", "task_id": "t1"}', "$.action"),
    ("no-action", "messages_out", "system", '{"task_id": "t1"}', "action"),
    ("card-buttons-no-question", "messages_out", "card", '{"title": "t", "buttons": ["y"]}', "needs a question_id"),
    ("card-question-no-buttons", "messages_out", "card", '{"title": "t", "question_id": "c1"}', "without buttons"),
    ("card-too-many-buttons", "messages_out", "card", _card_buttons(["b"] * 9), "$.buttons"),
    ("card-button-too-long", "messages_out", "card", _card_buttons(["b" * 65]), "$.buttons[0]"),
    # 32 characters but 96 bytes: the cap is on UTF-8 bytes.
    ("card-button-too-many-bytes", "messages_out", "card", _card_buttons(["€" * 32]), "bytes of UTF-8"),
    ("card-empty-button", "messages_out", "card", _card_buttons([""]), "$.buttons[0]"),
    ("inbound-bad-type-tag", "messages_in", "system", '{"type": "shout", "text": "x"}', "$.type"),
    # A container-only kind is not valid in the host's table.
    ("kind-of-the-other-table", "messages_in", "card", '{"title": "t"}', "unknown kind"),
]  # fmt: skip


@pytest.mark.parametrize(("row_id", "table", "kind", "raw", "names"), BAD_ROWS, ids=[row[0] for row in BAD_ROWS])
def test_bad_content_is_a_content_error_naming_table_row_and_field(
    row_id: str, table: str, kind: str, raw: str, names: str
) -> None:
    with pytest.raises(ContentError) as rejected:
        decode_content(table, row_id, kind, raw)
    message = str(rejected.value)
    assert table in message
    assert repr(row_id) in message
    assert names in message


def test_text_at_the_limit_is_accepted() -> None:
    content = decode_content("messages_out", "o1", "chat", _big_text(MAX_TEXT_CHARS))
    assert content == ChatOut(text="a" * MAX_TEXT_CHARS)


def test_oversized_row_is_refused_before_parsing() -> None:
    # Not even valid JSON: the size cap must apply before msgspec spends time on it.
    raw = b"{" * (MAX_CONTENT_BYTES + 1)
    with pytest.raises(ContentError, match="bytes"):
        decode_content("messages_out", "o1", "chat", raw)


def test_content_error_is_a_value_error() -> None:
    # Callers that already guard against ValueError still catch a bad row.
    assert issubclass(ContentError, ValueError)
    assert not issubclass(ContentError, msgspec.ValidationError)


# --- timeutil ---------------------------------------------------------------------------------


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.timezones()))
def test_format_parse_round_trip(moment: datetime) -> None:
    text = format_ts(moment)
    assert len(text) == len("2026-11-25T19:55:47.123456Z")
    assert text.endswith("Z")
    parsed = parse_ts(text)
    # Against the UTC value: Python never calls an aware time in a DST fold equal to one in
    # another zone (PEP 495), even when both name the same instant.
    assert parsed == moment.astimezone(UTC)
    assert parsed.tzinfo is UTC


def test_format_converts_to_utc() -> None:
    moment = datetime(2026, 3, 1, 10, 30, tzinfo=timezone(timedelta(hours=2)))
    assert format_ts(moment) == "2026-03-01T08:30:00.000000Z"


def test_fixed_format_sorts_like_the_times_it_stands_for() -> None:
    early = datetime(2026, 1, 1, 9, 0, 0, 5, tzinfo=UTC)
    late = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert format_ts(early) < format_ts(late)


def test_now_ts_parses() -> None:
    assert abs(parse_ts(now_ts()) - datetime.now(UTC)) < timedelta(minutes=1)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_ts(datetime(2026, 1, 1, 9, 0))


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T09:00:00.000000+00:00",
        "2026-01-01T09:00:00.000000+01:00",
        "2026-01-01T09:00:00.000000",
        "2026-01-01T09:00:00Z",
        "2026-01-01 09:00:00.000000Z",
        "2026-01-01 09:00:00",
        "",
    ],
)
def test_parse_ts_refuses_anything_but_the_one_format(text: str) -> None:
    with pytest.raises(ValueError, match="not a UTC timestamp"):
        parse_ts(text)


@pytest.mark.parametrize(
    ("text", "zone", "expected"),
    [
        ("2026-03-01T09:00:00Z", "UTC", datetime(2026, 3, 1, 9, 0, tzinfo=UTC)),
        ("2026-03-01T09:00:00z", "Europe/Berlin", datetime(2026, 3, 1, 9, 0, tzinfo=UTC)),
        ("2026-03-01T09:00:00+02:00", "UTC", datetime(2026, 3, 1, 7, 0, tzinfo=UTC)),
        ("2026-03-01T09:00:00-05:30", "Asia/Tokyo", datetime(2026, 3, 1, 14, 30, tzinfo=UTC)),
        # An explicit offset wins over the default zone.
        ("2026-03-01T09:00+00:00", "America/New_York", datetime(2026, 3, 1, 9, 0, tzinfo=UTC)),
        # No offset: read in the default zone, with its daylight-saving rules for that date.
        ("2026-03-01T09:00", "UTC", datetime(2026, 3, 1, 9, 0, tzinfo=UTC)),
        ("2026-01-15T09:00", "Europe/Berlin", datetime(2026, 1, 15, 8, 0, tzinfo=UTC)),
        ("2026-07-15T09:00", "Europe/Berlin", datetime(2026, 7, 15, 7, 0, tzinfo=UTC)),
        ("  2026-07-15 09:00:00  ", "America/New_York", datetime(2026, 7, 15, 13, 0, tzinfo=UTC)),
    ],
)
def test_parse_user_time(text: str, zone: str, expected: datetime) -> None:
    parsed = parse_user_time(text, zone)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)
    # What the user typed becomes the one stored format.
    assert parse_ts(format_ts(parsed)) == expected


@pytest.mark.parametrize("text", ["tomorrow at nine", "", "2026-13-01T09:00", "09:00"])
def test_parse_user_time_refuses_non_iso(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO-8601 time"):
        parse_user_time(text)
