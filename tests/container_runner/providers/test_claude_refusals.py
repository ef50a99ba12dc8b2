"""An API error that retrying cannot fix (a 4xx other than 408, 409 and 429) is told as such,
with the API's own message, and logged at ERROR with that message and its type; the ones a
later try may get past keep their "please try again"."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from container_runner.providers.base import ProviderError
from container_runner.providers.claude import ClaudeProvider, ClaudeSettings
from container_runner.tools.base import ToolBox
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply
from tests.fakes.probes import MemoryState

pytestmark = pytest.mark.timeout(30)

LOGGER = "container_runner.providers.claude"


@pytest.fixture
def provider(api: FakeMessagesAPI) -> Iterator[ClaudeProvider]:
    # Retries on: a refusal must not be retried by the SDK either.
    settings = ClaudeSettings(
        model="claude-nope", base_url=api.base_url, api_key="test-key", max_retries=2, stall_timeout=5.0
    )
    made = ClaudeProvider(settings, MemoryState())
    yield made
    made.close()


def no_follow_ups() -> str | None:
    return None


def run_failing(provider: ClaudeProvider) -> str:
    with pytest.raises(ProviderError) as caught:
        provider.run("hi", ToolBox([]), no_follow_ups)
    return str(caught.value)


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("status", "api_message", "error_type", "told"),
    [
        (404, "model: claude-nope", "not_found_error",
         "The model API refused the request, and retrying will not help: model: claude-nope. "
         "The operator needs to check the model name (HUTCH_MODEL, or the agent group's model)."),
        (401, "invalid x-api-key", "authentication_error",
         "The model API refused the request, and retrying will not help: invalid x-api-key. "
         "The operator needs to check the host's credentials (ANTHROPIC_API_KEY)."),
        (403, "Your API key does not have permission to use the specified resource.", "permission_error",
         "The model API refused the request, and retrying will not help: Your API key does not have "
         "permission to use the specified resource. The operator needs to check what the API key may use."),
        (400, "max_tokens: 99999 > 64000, which is the maximum allowed", "invalid_request_error",
         "The model API refused the request, and retrying will not help: "
         "max_tokens: 99999 > 64000, which is the maximum allowed."),
        (413, "Request exceeds the maximum allowed number of bytes.", "request_too_large",
         "The model API refused the request, and retrying will not help: Request exceeds the maximum "
         "allowed number of bytes. The conversation is too large for the model; try /clear."),
        (422, "something the API cannot process", "api_error",  # the fake's type for a status it does not know
         "The model API refused the request, and retrying will not help: something the API cannot process."),
    ],
)  # fmt: skip
def test_a_refusal_is_told_as_final_and_logged_with_the_apis_words(
    api: FakeMessagesAPI,
    provider: ClaudeProvider,
    caplog: pytest.LogCaptureFixture,
    status: int,
    api_message: str,
    error_type: str,
    told: str,
) -> None:
    api.enqueue(FakeReply.error(status, api_message))

    assert run_failing(provider) == told
    assert len(api.requests) == 1  # not retried
    assert errors_logged(caplog) == [
        f"the model API refused a request for model claude-nope (HTTP {status}, {error_type}), "
        f"and retrying will not help: {api_message}"
    ]


def test_a_refusal_in_the_stream_is_final_too(
    api: FakeMessagesAPI, provider: ClaudeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    # An `error` event after message_start: the response's status is 200, its type decides.
    api.enqueue(FakeReply.error(400, "messages: text content blocks must be non-empty", mid_stream=True))

    told = run_failing(provider)

    assert "retrying will not help: messages: text content blocks must be non-empty" in told
    [logged] = errors_logged(caplog)
    assert "invalid_request_error" in logged and "text content blocks must be non-empty" in logged


def test_a_long_or_multi_line_api_message_is_one_bounded_line(
    api: FakeMessagesAPI, provider: ClaudeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    api.enqueue(FakeReply.error(400, "first line\nsecond line " + "x" * 1000))

    told = run_failing(provider)

    assert "first line second line xxx" in told
    assert "\n" not in told
    assert len(told) < 400
    [logged] = errors_logged(caplog)
    assert "\n" not in logged and logged.endswith("x...")


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (FakeReply.error(429), "rate limit was reached; please try again"),
        (FakeReply.error(500), "internal error; please try again"),
        (FakeReply.error(529), "overloaded right now; please try again"),
        (FakeReply.error(529, "Overloaded", mid_stream=True), "overloaded right now; please try again"),
        (FakeReply.error(408), "please try again"),  # the SDK retries a 408 itself: not a refusal
    ],
)
def test_what_a_later_try_may_get_past_still_says_try_again(
    api: FakeMessagesAPI, provider: ClaudeProvider, caplog: pytest.LogCaptureFixture, reply: FakeReply, words: str
) -> None:
    api.enqueue(*[reply] * 3)  # the SDK's own retries take the first two

    told = run_failing(provider)

    assert words in told
    assert "will not help" not in told
    assert errors_logged(caplog) == []
