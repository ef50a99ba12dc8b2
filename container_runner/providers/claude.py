"""The Claude provider: the Messages API through the `anthropic` SDK, streamed, with the
tool loop, prompt caching, a durable conversation and compaction."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import anthropic
import httpx2
import msgspec
from anthropic.types.beta import (
    BetaMessage,
    BetaMessageParam,
    BetaTextBlockParam,
    BetaThinkingConfigParam,
    BetaToolUnionParam,
    BetaUsage,
)

from container_runner import tokens
from container_runner.attachments import attachment_blocks
from container_runner.context import (
    MAX_TOOL_RESULT_CHARS,
    ContextPolicy,
    archive_transcript,
    cap_text,
    clear_old_tool_results,
    from_latest_compaction,
)
from container_runner.images import without_images
from container_runner.providers.base import FollowUps, ProviderDeferredError, ProviderError, StateStore, TurnResult
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
# A long text in the turns being summarised is cut to this: the gist is what counts there.
SUMMARY_TEXT_CHARS: Final = 8_000
MINIMAL_PROMPT_CHARS: Final = 100_000
MINIMAL_NOTICE: Final = (
    "(Our conversation had grown too long for the model even after summarising it, so I set it "
    "aside and kept only your latest message. Earlier context may be missing.)"
)
TOO_LONG: Final = "Your message is too long for the model even on its own; please send a shorter one."

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
    # The memory file (CLAUDE.md), read at the start of every turn.
    memory: Callable[[], str] | None = None
    # How long the agent waits idle before it stops: past 5 minutes the stable prefix is
    # cached for an hour.
    agent_lifetime_s: float | None = None
    # Where the transcript before each compaction is kept (the agent's own `out/`).
    archive_dir: Path | None = None
    max_tool_result_chars: int = MAX_TOOL_RESULT_CHARS

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
        self._policy = ContextPolicy(
            model=settings.model,
            window=settings.context_window,
            threshold=settings.compaction_threshold,
            agent_lifetime_s=settings.agent_lifetime_s,
        )
        self._messages: Conversation = _decode_conversation(state.load(STATE_KEY))
        # What is persisted; a failed run returns to it, so memory never runs ahead of disk.
        self._saved: Conversation = list(self._messages)
        # Where the previous request's last breakpoint sat: marking it again guarantees a cache
        # hit on what that request wrote, whatever the API's breakpoint look-back window.
        self._anchor: int | None = None
        # What the API measured: the first `count` messages and the reply to them took
        # `tokens`. Reset whenever the history is rewritten (cleared, compacted, rolled back).
        self._measured: tuple[int, int] | None = None
        self._last_usage: BetaUsage | None = None
        # After a failed summary, not again before the API has answered once more.
        self._compaction_blocked = False
        # The request's fixed parts for the running turn: the memory file is read per turn.
        self._system: list[dict[str, Any]] = []
        self._tool_definitions: list[dict[str, Any]] = []
        self._prompt = ""
        self._notices: list[str] = []

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
        self._measured = None

    def close(self) -> None:
        """Releases the HTTP connections."""
        self._client.close()

    # -- ContextControl (the /compact and /context commands) -------------------------

    def compact_now(self, tools: ToolBox) -> str:
        self._prepare(tools)
        if not self._messages:
            return "Nothing to compact: the conversation is empty."
        # Counted, as /context counts: the two figures can be compared.
        before = self._size(count=True)
        if not self._compact("asked for with /compact", force=True):
            return f"Nothing was compacted; {before.total} tokens in use."
        after = self._size(count=True)
        return f"Compacted the conversation: {before.total} tokens before, {after.total} after."

    def context_report(self, tools: ToolBox) -> str:
        self._prepare(tools)
        size = self._size(count=True)
        policy = self._policy
        memory = tokens.estimate_system(self._system[1:])
        lines = [
            f"Context: {size.total} of {policy.window} tokens ({size.method}); "
            f"the history is shrunk past {policy.limit}.",
            f"- tools: {size.tools}",
            f"- system instructions: {size.system - memory}",
            f"- memory file (CLAUDE.md): {memory}",
            f"- conversation: {size.messages} in {len(self._messages)} messages",
            f"Cache: tools and instructions kept {policy.prefix_ttl}, the conversation 5m. The memory file is "
            f"read every turn and sent after the cached instructions: an edit re-sends it and the conversation "
            f"uncached once (about {memory + size.messages} tokens), the tools and instructions stay cached.",
        ]
        usage = self._last_usage
        if usage is not None:
            lines.append(
                f"Last request: {usage.input_tokens} input, {usage.cache_read_input_tokens or 0} read from the cache, "
                f"{usage.cache_creation_input_tokens or 0} written to it, {usage.output_tokens} output."
            )
        lines.append(
            "Old tool results are cleared by the API (context management)."
            if policy.server_clearing
            else "Old tool results are cleared here, then older turns summarised."
        )
        if policy.server_compaction:
            lines.append(f"The API summarises the conversation itself past {policy.compaction_trigger} tokens.")
        return "\n".join(lines)

    # -- the tool loop ---------------------------------------------------------------

    def _run(self, prompt: str, tools: ToolBox, follow_ups: FollowUps, images: Sequence[Path]) -> TurnResult:
        self._prepare(tools)
        self._prompt = prompt
        self._notices = []
        # Before the prompt joins, on what the API measured: the prompt's own exchange is then
        # kept whole. The request's own check (with the prompt, counted if need be) follows.
        self._fit(counting=False)
        self._append_user([*attachment_blocks(images), _text(prompt)])
        for turn in range(1, MAX_MODEL_TURNS + 1):
            message = self._model_turn(self._settings.max_tokens)
            content = _assistant_content(message)
            calls = _tool_calls(message) if message.stop_reason == "tool_use" else []
            if not calls:
                return self._finish(content, turn)
            self._append_assistant(content)
            results: list[dict[str, Any]] = [
                _tool_result(call, _run_tool(tools, call), self._settings.max_tool_result_chars) for call in calls
            ]
            if extra := follow_ups():
                results.append(_text(extra))
            self._messages.append({"role": "user", "content": results})
            # The tool_use has its results now, so this is a state a restart can resume from.
            self._save()
        raise ProviderError(f"I stopped after {MAX_MODEL_TURNS} steps without finishing; ask me to continue.")

    def _prepare(self, tools: ToolBox) -> None:
        """The turn's tools and system blocks. The memory file is read here, once a turn: an
        edit reaches the next turn, and a turn's own requests share one prefix."""
        settings = self._settings
        prefix = self._policy.prefix_cache_control()
        self._tool_definitions = _cached_tools(tools.definitions(), prefix)
        system: list[dict[str, Any]] = []
        if settings.system_prompt:
            system.append({"type": "text", "text": settings.system_prompt, "cache_control": prefix})
        memory = settings.memory() if settings.memory is not None else ""
        if memory:
            # After the prefix's breakpoint, so an edit leaves the tools and instructions cached.
            system.append({"type": "text", "text": memory})
        self._system = system

    def _finish(self, content: list[dict[str, Any]], turns: int) -> TurnResult:
        # A reply cut off mid-call (max_tokens) leaves tool_use blocks nobody will answer.
        content = [block for block in content if block["type"] != "tool_use"]
        # The API rejects an empty assistant message anywhere but at the very end.
        if content:
            self._append_assistant(content)
        self._messages = without_images(self._messages)
        # Staged: it commits with the batch's reply and acks, so a crash in between cannot
        # leave a conversation that holds an answer the batch never completed with.
        self._save(staged=True)
        text = "".join(block["text"] for block in content if block["type"] == "text")
        if self._notices:
            text = "\n\n".join([*self._notices, text]) if text else "\n\n".join(self._notices)
        return TurnResult(text=text, model_turns=turns)

    def _append_user(self, blocks: list[dict[str, Any]]) -> None:
        self._messages = _with_user_blocks(self._messages, blocks)

    def _append_assistant(self, content: list[dict[str, Any]]) -> None:
        messages = [*self._messages, {"role": "assistant", "content": content}]
        if not any(block["type"] == "compaction" for block in content):
            self._messages = messages
            return
        # The API compacted: its block stands for everything before it, and is accepted only
        # first in `messages`, so the history before it is archived and dropped.
        kept, dropped = from_latest_compaction(messages)
        if dropped and self._settings.archive_dir is not None:
            archive_transcript(self._settings.archive_dir, messages, "compacted by the model API")
        self._messages = kept
        # What the API measured was the conversation before the compaction.
        self._rewritten()
        log.info("the model API compacted the conversation: %d messages kept", len(kept))

    # -- one model call --------------------------------------------------------------

    def _model_turn(self, max_tokens: int) -> BetaMessage:
        """One request, sized first; a "prompt is too long" all the same compacts and retries
        once, and a second one leaves a minimal history, so it is never met twice."""
        self._fit()
        try:
            return self._request(max_tokens)
        except PromptTooLongError as exc:
            log.warning("the model API found the prompt too long (%s); compacting and retrying once", exc)
        self._compact("the model API said the prompt is too long", force=True)
        try:
            return self._request(max_tokens)
        except PromptTooLongError as exc:
            log.warning("still too long after compacting (%s); keeping only the latest message", exc)
        self._keep_minimal()
        try:
            return self._request(max_tokens)
        except PromptTooLongError as exc:
            raise ProviderError(TOO_LONG) from exc

    def _request(self, max_tokens: int) -> BetaMessage:
        messages = self._messages
        request = _marked_messages(messages, self._anchor)
        self._anchor = len(messages) - 1
        message = self._stream(request, self._tool_definitions, max_tokens)
        self._last_usage = message.usage
        self._compaction_blocked = False
        # The reply is in the usage (output) and, once stored, estimated again: errs high.
        self._measured = (len(messages), _context_tokens(message.usage))
        return message

    def _stream(self, messages: Conversation, tools: list[dict[str, Any]], max_tokens: int) -> BetaMessage:
        settings = self._settings
        system = self._system
        # Decided by the policy, with the model: sent only where the model has it.
        managed = self._policy.context_management()
        betas = self._policy.betas()
        thinking = self._policy.thinking(max_tokens)
        try:
            # The beta client for every request, whether or not a beta is asked for: only its
            # stream accumulator and types carry a `compaction` block (the plain one drops
            # its `compaction_delta`), and one path keeps every model's requests alike.
            with self._client.beta.messages.stream(
                model=settings.model,
                max_tokens=max_tokens,
                messages=cast("list[BetaMessageParam]", messages),
                system=cast("list[BetaTextBlockParam]", system) if system else anthropic.omit,
                tools=cast("list[BetaToolUnionParam]", tools) if tools else anthropic.omit,
                thinking=cast("BetaThinkingConfigParam", thinking) if thinking is not None else anthropic.omit,
                betas=betas if betas else anthropic.omit,
                context_management=managed if managed is not None else anthropic.omit,
            ) as stream:
                message: BetaMessage = stream.get_final_message()
        except anthropic.APIStatusError as exc:
            if _is_prompt_too_long(exc):
                raise PromptTooLongError(_api_message(exc)) from exc
            if _retrying_may_help(exc):
                raise _retryable_error(exc) from exc
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
        self._measured = None
        if self._anchor is not None and self._anchor >= len(self._messages):
            self._anchor = None

    # -- sizing and compaction -------------------------------------------------------

    def _size(self, *, count: bool = False, counting: bool = True) -> _Size:
        """What the next request takes, by part. The parts are estimates; the total is the
        larger of the estimate and the last measured usage plus an estimate of what came
        since, and near the limit (or when `count`) the API's own count."""
        tools_tokens = tokens.estimate_tools(self._tool_definitions)
        system_tokens = tokens.estimate_system(self._system)
        messages_tokens = tokens.estimate_messages(self._messages)
        estimated = tools_tokens + system_tokens + messages_tokens
        total, method, settled = estimated, tokens.METHOD, False
        measured = self._measured
        if measured is not None and measured[0] <= len(self._messages):
            since = tokens.estimate_messages(self._messages[measured[0] :])
            if measured[1] + since >= estimated:
                total = measured[1] + since
                method = "measured by the API for the last request, plus an estimate of what came since"
                # Mostly the API's own figure: a count would add little.
                settled = since * 10 < self._policy.limit
        if count or (counting and total >= self._policy.near and not settled):
            counted = self._count_tokens()
            if counted is not None:
                total, method = counted, "counted by the API (count_tokens); the parts estimated"
        return _Size(
            tools=tools_tokens,
            system=system_tokens,
            messages=messages_tokens,
            total=total,
            method=method,
            settled=settled,
        )

    def _count_tokens(self) -> int | None:
        settings = self._settings
        tools = self._tool_definitions
        try:
            # As the requests go: a stored `compaction` block is a beta block.
            betas = self._policy.betas()
            counted = self._client.beta.messages.count_tokens(
                model=settings.model,
                messages=cast("list[BetaMessageParam]", self._messages),
                system=cast("list[BetaTextBlockParam]", self._system) if self._system else anthropic.omit,
                tools=cast("list[BetaToolUnionParam]", tools) if tools else anthropic.omit,
                betas=betas if betas else anthropic.omit,
            )
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            # The estimate stands; it errs high.
            log.info("count_tokens failed, going by the estimate: %s", exc)
            return None
        return counted.input_tokens

    def _fit(self, *, counting: bool = True) -> None:
        """Before a request: over the limit, clear old tool results first, then compact.
        Without `counting`, only on the measured size (no count_tokens round trip)."""
        if not self._messages:
            return
        limit = self._policy.limit
        size = self._size(counting=counting)
        if not counting and not size.settled:
            return
        if size.total <= limit:
            return
        cleared, count = clear_old_tool_results(self._messages, self._policy.keep_tool_results)
        if count:
            self._messages = cleared
            self._rewritten()
            log.info("cleared %d old tool result(s): %d tokens in use", count, size.total)
            size = self._size()
            if size.total <= limit:
                return
        if not self._compaction_blocked:
            self._compact(f"{size.total} tokens in use, over the limit of {limit}")

    def _compact(self, reason: str, *, force: bool = False) -> bool:
        """Summarises the older turns and keeps the recent ones verbatim; the conversation as
        it was is archived first. False when there was nothing to compact or the summary
        failed (then not tried again before the API has answered once more)."""
        messages = self._messages
        if force:
            messages, cleared = clear_old_tool_results(messages, self._policy.keep_tool_results)
            if cleared:
                self._messages = messages
                self._rewritten()
        cut = self._compaction_cut(messages)
        if cut is None:
            return False
        if self._settings.archive_dir is not None:
            archive_transcript(self._settings.archive_dir, self._messages, reason)
        summary = self._summarise(messages[:cut])
        if not summary:
            self._compaction_blocked = True
            return False
        head: Conversation = [{"role": "user", "content": [_text(SUMMARY_PREFIX + summary)]}]
        if messages[cut]["role"] == "user":
            head.append({"role": "assistant", "content": [_text(SUMMARY_ACK)]})
        self._messages = head + messages[cut:]
        self._rewritten()
        log.info("conversation compacted (%s): %d messages summarised", reason, cut)
        return True

    def _compaction_cut(self, messages: Conversation) -> int | None:
        """Where the kept tail starts: the latest exchange, or, when that is the whole
        conversation or too big to keep, its latest model turn."""
        cut = _compaction_cut(messages)
        too_big = cut is not None and tokens.estimate_messages(messages[cut:]) > self._policy.limit // 2
        if cut is not None and too_big and messages[cut]["role"] == "user":
            latest = _latest_assistant(messages)
            if latest is not None and latest > cut:
                return latest
        return cut

    def _summarise(self, older: Conversation) -> str:
        """A model call over the older messages, same tools and system, so it reads the cache."""
        budget = self._policy.limit - tokens.estimate_tools(self._tool_definitions)
        budget -= tokens.estimate_system(self._system) + tokens.estimate_text(SUMMARY_REQUEST)
        request = _with_user_blocks(_summary_input(older, budget), [_text(SUMMARY_REQUEST)])
        max_tokens = min(self._settings.max_tokens, SUMMARY_MAX_TOKENS)
        try:
            message = self._stream(_marked_messages(request, self._anchor), self._tool_definitions, max_tokens)
        except ProviderError as exc:
            # Not fatal: the query itself may still fit; compaction is tried again later.
            log.warning("conversation summary failed: %s", exc)
            return ""
        return "".join(block.text for block in message.content if block.type == "text").strip()

    def _keep_minimal(self) -> None:
        """The last resort: only the running query, and the person is told."""
        if self._settings.archive_dir is not None:
            archive_transcript(self._settings.archive_dir, self._messages, "too long even after compacting")
        self._messages = [{"role": "user", "content": [_text(cap_text(self._prompt, MINIMAL_PROMPT_CHARS))]}]
        self._rewritten()
        self._save()
        self._notices.append(MINIMAL_NOTICE)

    def _rewritten(self) -> None:
        # The cached prefix and the measured size no longer describe what is sent.
        self._anchor = None
        self._measured = None


@dataclass(frozen=True)
class _Size:
    tools: int
    system: int
    messages: int
    total: int
    method: str
    # Mostly the API's own measure, no count needed.
    settled: bool = False


def _summary_input(older: Conversation, budget: int) -> Conversation:
    """The older turns as the summary request takes them: tool results cleared, long texts
    cut, and the oldest turns left out while it does not fit (it is a summary either way)."""
    shrunk, _ = clear_old_tool_results(older, 0)
    shrunk = [_with_short_texts(message) for message in shrunk]
    start = 0
    while tokens.estimate_messages(shrunk[start:]) > budget:
        later = next(
            (
                index
                for index in range(start + 1, len(shrunk))
                if shrunk[index]["role"] == "user" and not _has_tool_results(shrunk[index])
            ),
            None,
        )
        if later is None:
            break
        start = later
    return shrunk[start:]


def _with_short_texts(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    if not any(block.get("type") == "text" and len(block["text"]) > SUMMARY_TEXT_CHARS for block in content):
        return message
    blocks = [
        {**block, "text": cap_text(block["text"], SUMMARY_TEXT_CHARS)}
        if block.get("type") == "text" and len(block["text"]) > SUMMARY_TEXT_CHARS
        else block
        for block in content
    ]
    return {**message, "content": blocks}


def _latest_assistant(messages: Conversation) -> int | None:
    for index in range(len(messages) - 1, 0, -1):
        if messages[index]["role"] == "assistant":
            return index
    return None


class PromptTooLongError(ProviderError):
    """The API's 400 "prompt is too long": the provider shrinks and retries. (A 413 is about
    bytes, not tokens; it is refused as before.)"""


def _is_prompt_too_long(exc: anthropic.APIStatusError) -> bool:
    return exc.status_code == 400 and "prompt is too long" in (exc.api_message or "").lower()


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


# The credential proxy's refusal once the agent group's budget is spent (actors/budget_gate.py).
BUDGET_EXCEEDED: Final = "budget_exceeded"
# Beyond this a `retry-after` is not believed as given; the host bounds a deferral again.
_MAX_RETRY_AFTER_S: Final = 40 * 24 * 3600.0


def _retryable_error(exc: anthropic.APIStatusError) -> ProviderError:
    """A busy model (429, 529, overloaded) that outlived the SDK's retries, and a spent
    budget, hand the batch back to be tried later (`ProviderDeferredError`); other errors a later
    try may get past (a 500) end the turn with a message, as before."""
    # Not among the SDK's error types: the proxy's own, so compared as a plain string.
    if str(exc.type) == BUDGET_EXCEEDED:
        return ProviderDeferredError(_api_message(exc), _retry_after_s(exc), reason="budget")
    if exc.type in ("overloaded_error", "rate_limit_error") or exc.status_code in (429, 529):
        return ProviderDeferredError(_status_message(exc), _retry_after_s(exc), reason="busy")
    return ProviderError(_status_message(exc))


def _retry_after_s(exc: anthropic.APIStatusError) -> float | None:
    """The answer's `retry-after-ms` or `retry-after` (seconds; an HTTP date is not worth
    parsing here: the agent falls back to its own backoff)."""
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name, "")) * scale
        except ValueError:
            continue
        if 0 <= value <= _MAX_RETRY_AFTER_S:
            return value
    return None


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


def _cached_tools(definitions: list[dict[str, Any]], cache_control: dict[str, str]) -> list[dict[str, Any]]:
    # One breakpoint after the last tool caches the whole (stable) tool list.
    if not definitions:
        return []
    return [*definitions[:-1], {**definitions[-1], "cache_control": cache_control}]


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


def _assistant_content(message: BetaMessage) -> list[dict[str, Any]]:
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
        elif block.type == "compaction":
            # Sent back exactly as returned (its signature covers the content, and a field the
            # server left out stays out), so only the fields it set.
            content.append(block.to_dict(mode="json", exclude_unset=True))
        else:
            content.append(block.to_dict(mode="json", exclude_none=True))
    return content


def _tool_calls(message: BetaMessage) -> list[ToolCall]:
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


def _tool_result(call: ToolCall, outcome: ToolOutcome, cap: int) -> dict[str, Any]:
    # Whatever the tool: one result must never be able to fill the window.
    return {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": cap_text(outcome.content, cap) if outcome.content else "(no output)",
        "is_error": outcome.is_error,
    }


def _context_tokens(usage: BetaUsage) -> int:
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
