"""The Claude provider: the Messages API through the `anthropic` SDK, streamed, with the
tool loop, prompt caching, a durable conversation and compaction."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import anthropic
import httpx2
import msgspec
from anthropic.types import Message, MessageParam, TextBlockParam, ToolUnionParam, Usage

from container_runner.images import image_blocks, without_images
from container_runner.providers.base import FollowUps, ProviderError, StateStore, TurnResult
from container_runner.tools.base import ToolBox, ToolCall, ToolOutcome

log = logging.getLogger(__name__)

STATE_KEY: Final = "conversation"
# The host's credential proxy swaps this for the real key; the container never holds one.
PROXY_PLACEHOLDER_KEY: Final = "hutch-proxy-supplies-the-key"
# Any URL does over a Unix socket; the host part only ends up in the Host header.
PROXY_BASE_URL: Final = "http://anthropic-proxy"
MAX_MODEL_TURNS: Final = 50
SUMMARY_MAX_TOKENS: Final = 4096

STALLED: Final = "The model stopped responding; please try again."
UNREACHABLE: Final = "The model API could not be reached; please try again."
CUT_OFF: Final = "The model's reply was cut off; please try again."
UNEXPECTED: Final = "Something went wrong while talking to the model; please try again."

_EPHEMERAL: Final[dict[str, str]] = {"type": "ephemeral"}
# Blocks the API does not accept a cache breakpoint on.
_UNMARKABLE: Final = frozenset({"thinking", "redacted_thinking"})

SUMMARY_REQUEST: Final = (
    "Please write a concise summary of our conversation so far. It will replace the older "
    "messages in your context, so keep every fact, decision, name, preference, open task and "
    "anything I asked you to remember. Do not call any tools; reply with the summary only."
)
SUMMARY_PREFIX: Final = "Summary of our earlier conversation (older messages were condensed to save space):\n\n"
SUMMARY_ACK: Final = "Understood. I will continue from that summary."

Conversation = list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class ClaudeSettings:
    model: str
    max_tokens: int = 8192
    system_prompt: str = ""
    base_url: str | None = None
    api_key: str | None = None
    # The host's credential proxy; when set, requests go over this Unix socket with no real key.
    proxy_socket: str | os.PathLike[str] | None = None
    stall_timeout: float = 60.0
    max_retries: int = 2
    context_window: int = 200_000
    compaction_threshold: float = 0.8

    def __post_init__(self) -> None:
        if self.proxy_socket is not None and self.api_key is not None:
            raise ValueError("an api_key must not be given together with proxy_socket: the proxy adds the key")
        if self.max_tokens <= 0 or self.stall_timeout <= 0 or self.context_window <= 0 or self.max_retries < 0:
            raise ValueError("max_tokens, stall_timeout and context_window must be positive, max_retries >= 0")
        if not 0 < self.compaction_threshold <= 1:
            raise ValueError("compaction_threshold must be in (0, 1]")


class ClaudeProvider:
    """One session's conversation with Claude. Not thread-safe: the AgentActor owns it."""

    def __init__(self, settings: ClaudeSettings, state: StateStore) -> None:
        self._settings = settings
        self._state = state
        self._client = _make_client(settings)
        self._messages: Conversation = _decode_conversation(state.load(STATE_KEY))
        # What is persisted; a failed run returns to it, so memory never runs ahead of disk.
        self._saved: Conversation = list(self._messages)
        # Where the previous request's last breakpoint sat: marking it again guarantees a cache
        # hit on what that request wrote, whatever the API's breakpoint look-back window.
        self._anchor: int | None = None
        self._context_tokens = 0

    # -- Provider --------------------------------------------------------------------

    def run(self, prompt: str, tools: ToolBox, follow_ups: FollowUps, images: Sequence[Path] = ()) -> TurnResult:
        try:
            return self._run(prompt, tools, follow_ups, images)
        except ProviderError:
            self._rollback()
            raise
        except Exception as exc:
            # Whatever broke, the user gets a reply rather than a dead agent.
            log.exception("Claude run failed unexpectedly")
            self._rollback()
            raise ProviderError(UNEXPECTED) from exc

    def clear(self) -> None:
        self._state.delete(STATE_KEY)
        self._messages = []
        self._saved = []
        self._anchor = None
        self._context_tokens = 0

    def close(self) -> None:
        """Releases the HTTP connections."""
        self._client.close()

    # -- the tool loop ---------------------------------------------------------------

    def _run(self, prompt: str, tools: ToolBox, follow_ups: FollowUps, images: Sequence[Path]) -> TurnResult:
        definitions = _cached_tools(tools.definitions())
        self._compact_if_due(definitions)
        self._append_user([*image_blocks(images), _text(prompt)])
        for turn in range(1, MAX_MODEL_TURNS + 1):
            message = self._model_turn(self._messages, definitions, self._settings.max_tokens)
            content = _assistant_content(message)
            calls = _tool_calls(message) if message.stop_reason == "tool_use" else []
            if not calls:
                return self._finish(content, turn)
            self._messages.append({"role": "assistant", "content": content})
            results: list[dict[str, Any]] = [_tool_result(call, _run_tool(tools, call)) for call in calls]
            if extra := follow_ups():
                results.append(_text(extra))
            self._messages.append({"role": "user", "content": results})
            # The tool_use has its results now, so this is a state a restart can resume from.
            self._save()
            self._compact_if_due(definitions)
        raise ProviderError(f"I stopped after {MAX_MODEL_TURNS} steps without finishing; ask me to continue.")

    def _finish(self, content: list[dict[str, Any]], turns: int) -> TurnResult:
        # A reply cut off mid-call (max_tokens) leaves tool_use blocks nobody will answer.
        content = [block for block in content if block["type"] != "tool_use"]
        # The API rejects an empty assistant message anywhere but at the very end.
        if content:
            self._messages.append({"role": "assistant", "content": content})
        self._messages = without_images(self._messages)
        # Staged: it commits with the batch's reply and acks, so a crash in between cannot
        # leave a conversation that holds an answer the batch never completed with.
        self._save(staged=True)
        text = "".join(block["text"] for block in content if block["type"] == "text")
        return TurnResult(text=text, model_turns=turns)

    def _append_user(self, blocks: list[dict[str, Any]]) -> None:
        self._messages = _with_user_blocks(self._messages, blocks)

    # -- one model call --------------------------------------------------------------

    def _model_turn(self, messages: Conversation, tools: list[dict[str, Any]], max_tokens: int) -> Message:
        request = _marked_messages(messages, self._anchor)
        self._anchor = len(messages) - 1
        message = self._stream(request, tools, max_tokens)
        self._context_tokens = _context_tokens(message.usage)
        return message

    def _stream(self, messages: Conversation, tools: list[dict[str, Any]], max_tokens: int) -> Message:
        settings = self._settings
        system = [{"type": "text", "text": settings.system_prompt, "cache_control": _EPHEMERAL}]
        try:
            with self._client.messages.stream(
                model=settings.model,
                max_tokens=max_tokens,
                messages=cast("list[MessageParam]", messages),
                system=cast("list[TextBlockParam]", system) if settings.system_prompt else anthropic.omit,
                tools=cast("list[ToolUnionParam]", tools) if tools else anthropic.omit,
            ) as stream:
                message: Message = stream.get_final_message()
        except anthropic.APIStatusError as exc:
            if _retrying_may_help(exc):
                raise ProviderError(_status_message(exc)) from exc
            # The person is told it will not pass by itself; the log keeps the API's own words.
            log.error(
                "the model API refused a request for model %s (HTTP %d, %s), and retrying will not help: %s",
                settings.model,
                exc.status_code,
                exc.type or "no error type",
                _api_message(exc),
            )
            raise ProviderError(_refusal_message(exc)) from exc
        except (anthropic.APITimeoutError, httpx2.TimeoutException) as exc:
            # The SDK's own retries cover a stall before the headers; a stall mid-stream ends here.
            raise ProviderError(STALLED) from exc
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            raise ProviderError(UNREACHABLE) from exc
        if message.stop_reason is None:
            raise ProviderError(CUT_OFF)
        return message

    # -- durability ------------------------------------------------------------------

    def _save(self, *, staged: bool = False) -> None:
        # Pictures are sent while their turn runs, never kept: a restart mid-turn loses them.
        encoded = msgspec.json.encode(without_images(self._messages)).decode()
        if staged:
            self._state.stage(STATE_KEY, encoded)
        else:
            self._state.save(STATE_KEY, encoded)
        self._saved = list(self._messages)

    def _rollback(self) -> None:
        self._messages = list(self._saved)
        if self._anchor is not None and self._anchor >= len(self._messages):
            self._anchor = None

    # -- compaction ------------------------------------------------------------------

    def _compact_if_due(self, tools: list[dict[str, Any]]) -> None:
        limit = self._settings.compaction_threshold * self._settings.context_window
        if self._context_tokens <= limit:
            return
        # Re-armed by the next response's usage, so a failed attempt is not retried every turn.
        self._context_tokens = 0
        cut = _compaction_cut(self._messages)
        if cut is None:
            return
        summary = self._summarise(self._messages[:cut], tools)
        if not summary:
            return
        head: Conversation = [{"role": "user", "content": [_text(SUMMARY_PREFIX + summary)]}]
        if self._messages[cut]["role"] == "user":
            head.append({"role": "assistant", "content": [_text(SUMMARY_ACK)]})
        self._messages = head + self._messages[cut:]
        self._anchor = None
        self._save()
        log.info("conversation compacted: %d messages summarised", cut)

    def _summarise(self, older: Conversation, tools: list[dict[str, Any]]) -> str:
        """A model call over the older messages, same tools and system, so it reads the cache."""
        request = _with_user_blocks(older, [_text(SUMMARY_REQUEST)])
        max_tokens = min(self._settings.max_tokens, SUMMARY_MAX_TOKENS)
        try:
            message = self._stream(_marked_messages(request, self._anchor), tools, max_tokens)
        except ProviderError as exc:
            # Not fatal: the query itself may still fit; compaction is tried again later.
            log.warning("conversation summary failed: %s", exc)
            return ""
        return "".join(block.text for block in message.content if block.type == "text").strip()


# -- the SDK client ------------------------------------------------------------------


def _make_client(settings: ClaudeSettings) -> anthropic.Anthropic:
    # A read that waits longer than the stall timeout means the stream has died.
    timeout = httpx2.Timeout(settings.stall_timeout)
    if settings.proxy_socket is None:
        client = anthropic.Anthropic(
            api_key=settings.api_key,
            base_url=settings.base_url,
            max_retries=settings.max_retries,
            timeout=timeout,
        )
        if client.api_key is None and client.auth_token is None and client.credentials is None:
            # Said at start-up: otherwise the first query would fail with a vague error.
            log.warning("no Anthropic credentials found (api_key, ANTHROPIC_API_KEY or a profile)")
        return client
    transport = httpx2.HTTPTransport(uds=os.fspath(settings.proxy_socket))
    return anthropic.Anthropic(
        # Explicit, so the SDK never falls back to ANTHROPIC_API_KEY or a profile on disk.
        api_key=PROXY_PLACEHOLDER_KEY,
        base_url=settings.base_url or PROXY_BASE_URL,
        max_retries=settings.max_retries,
        timeout=timeout,
        http_client=anthropic.DefaultHttpxClient(transport=transport, timeout=timeout),
    )


# What a refusal's error type is when the body names none.
_REFUSAL_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
}
# What the operator (or the person) can do instead of retrying, by error type.
_REFUSAL_HINTS: Final = {
    "authentication_error": "The operator needs to check the host's credentials (ANTHROPIC_API_KEY).",
    "permission_error": "The operator needs to check what the API key may use.",
    "not_found_error": "The operator needs to check the model name (HUTCH_MODEL, or the agent group's model).",
    "request_too_large": "The conversation is too large for the model; try /clear.",
}
_API_MESSAGE_CHARS: Final = 300


def _retrying_may_help(exc: anthropic.APIStatusError) -> bool:
    """As the SDK judges a status (it retries 408, 409, 429 and 5xx itself). A mid-stream
    `error` event arrives on a 200 response, so there the body's error type decides."""
    status = exc.status_code
    if 400 <= status < 500:
        return status in (408, 409, 429)
    return status >= 500 or exc.type not in (*_REFUSAL_TYPES.values(), "billing_error")


def _status_message(exc: anthropic.APIStatusError) -> str:
    """For an error a later try may get past."""
    kind = exc.type
    status = exc.status_code
    if kind == "overloaded_error" or status == 529:
        return "The model is overloaded right now; please try again in a little while."
    if kind == "rate_limit_error" or status == 429:
        return "The model API's rate limit was reached; please try again in a minute."
    if status >= 500 or kind in ("api_error", "timeout_error"):
        return "The model API had an internal error; please try again."
    return f"The model API returned an error ({status}); please try again."


def _refusal_message(exc: anthropic.APIStatusError) -> str:
    """For an error the same request will meet again: the API's reason and what to do."""
    kind = exc.type or _REFUSAL_TYPES.get(exc.status_code, "")
    hint = _REFUSAL_HINTS.get(kind)
    told = f"The model API refused the request, and retrying will not help: {_api_message(exc).rstrip('.')}."
    return f"{told} {hint}" if hint else told


def _api_message(exc: anthropic.APIStatusError) -> str:
    """The API's own explanation, on one line and bounded (a proxy's HTML page is no message)."""
    text = " ".join((exc.api_message or "").split())
    if not text:
        return f"HTTP {exc.status_code} {exc.response.reason_phrase}".strip()
    return text if len(text) <= _API_MESSAGE_CHARS else f"{text[:_API_MESSAGE_CHARS]}..."


# -- building requests ---------------------------------------------------------------


def _cached_tools(definitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # One breakpoint after the last tool caches the whole (stable) tool list.
    if not definitions:
        return []
    return [*definitions[:-1], {**definitions[-1], "cache_control": _EPHEMERAL}]


def _marked_messages(messages: Conversation, anchor: int | None) -> Conversation:
    """The messages as sent: copies with a breakpoint on the latest message and on the
    anchor. Stored messages never carry one, so every earlier message is sent byte for byte
    as before; the API leaves cache_control out of the cache key, so the moving markers do
    not break the prefix. Tools and system take two breakpoints, these the other two."""
    marked = list(messages)
    targets = {len(messages) - 1}
    if anchor is not None and 0 <= anchor < len(messages):
        targets.add(anchor)
    for index in targets:
        if index >= 0:
            marked[index] = _with_breakpoint(messages[index])
    return marked


def _with_breakpoint(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    for index in range(len(content) - 1, -1, -1):
        if content[index].get("type") not in _UNMARKABLE:
            blocks = list(content)
            blocks[index] = {**content[index], "cache_control": _EPHEMERAL}
            return {**message, "content": blocks}
    return message


def _with_user_blocks(messages: Conversation, blocks: list[dict[str, Any]]) -> Conversation:
    """`messages` plus user content. Joined into a trailing user message (left by a failed
    or interrupted run) because roles must alternate; earlier dicts are never mutated."""
    if messages and messages[-1]["role"] == "user":
        last = messages[-1]
        return [*messages[:-1], {**last, "content": [*last["content"], *blocks]}]
    return [*messages, {"role": "user", "content": blocks}]


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


# -- reading responses ---------------------------------------------------------------


def _assistant_content(message: Message) -> list[dict[str, Any]]:
    """The reply as message params, in a fixed shape so it serialises the same every time."""
    content: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "text":
            # The API rejects empty text blocks in a later request.
            if block.text:
                content.append(_text(block.text))
        elif block.type == "tool_use":
            content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": dict(block.input)})
        elif block.type == "thinking":
            content.append({"type": "thinking", "thinking": block.thinking, "signature": block.signature})
        elif block.type == "redacted_thinking":
            content.append({"type": "redacted_thinking", "data": block.data})
        else:
            content.append(block.to_dict(mode="json", exclude_none=True))
    return content


def _tool_calls(message: Message) -> list[ToolCall]:
    return [
        ToolCall(id=block.id, name=block.name, input=dict(block.input))
        for block in message.content
        if block.type == "tool_use"
    ]


def _run_tool(tools: ToolBox, call: ToolCall) -> ToolOutcome:
    try:
        return tools.run(call)
    except Exception as exc:
        # A broken tool is reported to the model like any failed call; the run goes on.
        log.exception("tool %s raised", call.name)
        return ToolOutcome(f"The tool failed unexpectedly: {type(exc).__name__}: {exc}", is_error=True)


def _tool_result(call: ToolCall, outcome: ToolOutcome) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": outcome.content or "(no output)",
        "is_error": outcome.is_error,
    }


def _context_tokens(usage: Usage) -> int:
    return (
        usage.input_tokens
        + (usage.cache_read_input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
        + usage.output_tokens
    )


def _compaction_cut(messages: Conversation) -> int | None:
    """Where the kept tail starts: the latest exchange (from its user prompt on), or, when
    that exchange is the whole conversation, its latest model turn. None: nothing to drop."""
    for index in range(len(messages) - 1, 0, -1):
        if messages[index]["role"] == "user" and not _has_tool_results(messages[index]):
            return index
    for index in range(len(messages) - 1, 0, -1):
        if messages[index]["role"] == "assistant":
            return index
    return None


def _has_tool_results(message: dict[str, Any]) -> bool:
    return any(block.get("type") == "tool_result" for block in message["content"])


# -- the stored conversation ---------------------------------------------------------


def _decode_conversation(raw: str | None) -> Conversation:
    if raw is None:
        return []
    try:
        messages = msgspec.json.decode(raw, type=list[dict[str, Any]])
    except msgspec.DecodeError:
        log.warning("stored conversation is unreadable; starting a new one")
        return []
    if not all(_is_message(message) for message in messages):
        log.warning("stored conversation has a malformed message; starting a new one")
        return []
    # Defensive: a trailing unanswered tool_use would make every later request invalid.
    while messages and messages[-1]["role"] == "assistant" and _has_tool_use(messages[-1]):
        messages.pop()
    return messages


def _is_message(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return (
        message.get("role") in ("user", "assistant")
        and isinstance(content, list)
        and all(isinstance(block, dict) and isinstance(block.get("type"), str) for block in content)
    )


def _has_tool_use(message: dict[str, Any]) -> bool:
    return any(block.get("type") == "tool_use" for block in message["content"])
