"""UsageMeter: usage and model read from a Messages answer as its pieces go by, streamed or
whole, however the pieces are cut, with what it keeps bounded."""

from __future__ import annotations

import json

import pytest

from actors import usage_meter
from actors.pricing import Tokens
from actors.usage_meter import MAX_EVENT_LINE, MAX_JSON_BODY, Metered, UsageMeter

SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"
MODEL = "claude-opus-4-6"

START_USAGE = {
    "input_tokens": 25,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 50,
    "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60},
    "output_tokens": 1,
}
EXPECTED = Tokens(input=25, output=15, cache_read=50, cache_write=100, cache_write_1h=60)


def event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def message_start(usage: object = START_USAGE, model: str = MODEL) -> str:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": model, "usage": usage}
    return event("message_start", {"type": "message_start", "message": message})


def message_delta(usage: object) -> str:
    return event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage})


def stream(*, delta_usage: object = None, middle: str = "") -> str:
    """An answer as the API streams it: start, a text block, ping, the final counts, stop."""
    return (
        message_start()
        + event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}})
        + event("ping", {"type": "ping"})
        + middle
        + event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"text": "Hello"}})
        + event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + message_delta(delta_usage or {"output_tokens": 15})
        + event("message_stop", {"type": "message_stop"})
    )


def meter(pieces: list[bytes], content_type: str | None = SSE, encoding: str | None = None) -> Metered:
    reading = UsageMeter(content_type, encoding)
    for piece in pieces:
        reading.feed(piece)
    return reading.finish()


def test_a_stream_gives_the_start_counts_and_the_final_output() -> None:
    assert meter([stream().encode()]) == Metered(model=MODEL, tokens=EXPECTED, complete=True)


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_every_cut_of_a_stream_and_every_line_ending_read_the_same(eol: str) -> None:
    body = stream().replace("\n", eol).encode()
    assert meter([body[i : i + 1] for i in range(len(body))]) == Metered(model=MODEL, tokens=EXPECTED, complete=True)
    for cut in range(1, len(body), 7):
        assert meter([body[:cut], body[cut:]]).tokens == EXPECTED


def test_later_cumulative_counts_replace_earlier_ones() -> None:
    # Server tools and context management can change the input side by the end.
    delta = {"input_tokens": 30, "output_tokens": 20, "cache_read_input_tokens": 70, "cache_creation_input_tokens": 90}
    result = meter([stream(delta_usage=delta).encode()])
    assert result.tokens == Tokens(input=30, output=20, cache_read=70, cache_write=90, cache_write_1h=60)


def test_a_stream_cut_after_its_start_keeps_the_counts_so_far() -> None:
    result = meter([message_start().encode()])
    assert result == Metered(
        model=MODEL,
        tokens=Tokens(input=25, output=1, cache_read=50, cache_write=100, cache_write_1h=60),
        complete=False,
    )


def test_the_last_event_counts_without_its_blank_line() -> None:
    body = (message_start() + message_delta({"output_tokens": 15})).rstrip("\n")
    assert meter([body.encode()]) == Metered(model=MODEL, tokens=EXPECTED, complete=True)


def test_comments_a_data_line_first_and_no_space_after_the_colon() -> None:
    start = (
        message_start().replace("event: message_start\ndata: ", "data:").replace("\n\n", "\nevent:message_start\n\n")
    )
    body = ": keep-alive\n" + start + message_delta({"output_tokens": 15})
    assert meter([body.encode()]) == Metered(model=MODEL, tokens=EXPECTED, complete=True)


def test_a_huge_line_of_another_event_is_skipped_and_never_kept() -> None:
    reading = UsageMeter(SSE, None)
    reading.feed(message_start().encode())
    reading.feed(b"event: content_block_delta\ndata: ")
    piece = b"x" * 65536
    for _ in range(4 * MAX_EVENT_LINE // len(piece)):
        reading.feed(piece)
        assert len(reading._line) <= MAX_EVENT_LINE  # what the meter holds stays bounded
    reading.feed(b"\n\n" + message_delta({"output_tokens": 15}).encode())
    assert reading.finish() == Metered(model=MODEL, tokens=EXPECTED, complete=True)


def test_a_final_count_too_long_to_read_is_a_problem() -> None:
    padding = "x" * MAX_EVENT_LINE
    result = meter([stream(delta_usage={"output_tokens": 15, "padding": padding}).encode()])
    assert result.problem == f"a message_delta event over {MAX_EVENT_LINE} bytes"
    assert not result.complete
    assert result.tokens.input == 25  # what was read before stays


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (event("ping", {"type": "ping"}), "the stream had no message_start event"),
        (message_start() + "event: message_delta\ndata: {not json\n\n", "unreadable message_delta event"),
        (message_start(usage={"input_tokens": -1, "output_tokens": 1}), "unreadable message_start event"),
        (message_start(usage={"input_tokens": 2**60, "output_tokens": 1}), "unreadable message_start event"),
        (message_start(model="m" * 500), "unreadable message_start event"),
        (message_start() + message_delta({"output_tokens": "many"}), "unreadable message_delta event"),
    ],
)
def test_a_stream_that_cannot_be_read_says_why(body: str, problem: str) -> None:
    result = meter([body.encode()])
    assert result.problem is not None
    assert result.problem.startswith(problem)
    assert not result.complete


def test_a_whole_json_answer() -> None:
    message = {"id": "msg_1", "type": "message", "model": MODEL, "content": [{"type": "text", "text": "hi"}]}
    body = json.dumps({**message, "usage": {**START_USAGE, "output_tokens": 15}}).encode()
    assert meter([body[:10], body[10:]], JSON) == Metered(model=MODEL, tokens=EXPECTED, complete=True)


def test_a_json_answer_over_the_bound_is_let_go_unread() -> None:
    reading = UsageMeter(JSON, None)
    piece = b" " * 65536
    for _ in range(2 * MAX_JSON_BODY // len(piece)):
        reading.feed(piece)
        assert len(reading._body) <= MAX_JSON_BODY
    result = reading.finish()
    assert result.problem == f"JSON body over {MAX_JSON_BODY} bytes"
    assert (result.model, result.tokens, result.complete) == (None, Tokens(), False)


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "problem"),
    [
        (b'{"model": "m"}', JSON, None, "no usage in the body"),
        (b'{"model": "m", "usage": ', JSON, None, "unreadable JSON body"),
        (b"<html>", "text/html", None, "unexpected content type 'text/html'"),
        (b"", None, None, "unexpected content type (none)"),
        (b"\x1f\x8b", JSON, "gzip", "compressed body ('gzip')"),
        (b"\x1f\x8b", SSE, "br", "compressed body ('br')"),
    ],
)
def test_an_answer_that_cannot_be_read_says_why(
    body: bytes, content_type: str | None, encoding: str | None, problem: str
) -> None:
    result = meter([body], content_type, encoding)
    assert result.problem is not None
    assert result.problem.startswith(problem)


def test_a_fault_of_the_meter_costs_the_count_not_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: UsageMeter, chunk: bytes) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(usage_meter.UsageMeter, "_feed_sse", broken)
    reading = UsageMeter(SSE, None)
    reading.feed(b"event: message_start\n")  # does not raise
    assert reading.finish().problem == "meter failed (RuntimeError)"
