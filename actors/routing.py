"""Which agents get an inbound message, and whether it starts a turn for each.

A message goes to every agent wired to its chat whose trigger rule matches (a turn); a
wiring whose rule does not match keeps it as context for its next turn, or drops it, as the
wiring says. Rules, as the reference has them:

- `always`; `mention` (the platform says the assistant was addressed);
- `mention-sticky`: after a mention in a thread (or a chat without threads), every later
  message there, remembered in the central DB;
- `pattern:<regex>` (searched in the text); `sender-scope:<id>,<id>` (only those senders);
- `prefix:<text>`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import msgspec
import regex  # type: ignore[import-untyped]  # mrab's `regex`: a search with a deadline

from actors.channels.base import InboundChat
from actors.store import messaging_group_agents
from actors.store.db import Store
from actors.store.messaging_group_agents import PATTERN, PREFIX, SENDER_SCOPE, Wiring, scope_of

log = logging.getLogger("hutch.routing")

# A pattern is the owner's, the text a stranger's: the search sees a bounded part of it, and
# gives up after a bounded time. The cap on the text alone does not bound the time (a nested
# quantifier backtracks exponentially in a few dozen characters), and `re` holds the GIL, so
# one such search would stall every thread of the host; `regex` stops at its timeout, and
# (concurrent) lets the other threads run meanwhile.
_MATCHED_CHARS = 4096
_SEARCH_SECONDS = 0.05


class Target(msgspec.Struct, frozen=True):
    wiring: Wiring
    trigger: bool


def targets(store: Store, wirings: Sequence[Wiring], event: InboundChat) -> list[Target]:
    """Where `event` goes: each wiring, in priority order, that takes it (with or without a turn)."""
    chosen: list[Target] = []
    for wiring in wirings:
        if _triggers(store, wiring, event):
            chosen.append(Target(wiring, True))
        elif wiring.untriggered == "context":
            chosen.append(Target(wiring, False))
    return chosen


def _triggers(store: Store, wiring: Wiring, event: InboundChat) -> bool:
    if wiring.trigger_rule != "mention-sticky":
        return rule_matches(wiring.trigger_rule, event)
    thread_key = event.thread_id or ""
    if event.mentions_assistant:
        messaging_group_agents.make_sticky(store, wiring.id, thread_key)
        return True
    return messaging_group_agents.is_sticky(store, wiring.id, thread_key)


def rule_matches(rule: str, event: InboundChat) -> bool:
    """The rules that need nothing but the message itself."""
    if rule == "always":
        return True
    if rule == "mention":
        return event.mentions_assistant
    if rule.startswith(PATTERN):
        return _pattern_matches(rule.removeprefix(PATTERN), event.text[:_MATCHED_CHARS])
    if rule.startswith(SENDER_SCOPE):
        return event.sender_id is not None and event.sender_id in scope_of(rule)
    if rule.startswith(PREFIX):
        return event.text.startswith(rule.removeprefix(PREFIX))
    return False


def _pattern_matches(pattern: str, text: str) -> bool:
    """Whether `pattern` is found in `text`; a pattern that takes too long (or, stored before
    it was checked, does not compile) matches nothing."""
    compiled = _compiled(pattern)
    if compiled is None:
        return False
    try:
        return compiled.search(text, timeout=_SEARCH_SECONDS, concurrent=True) is not None
    except TimeoutError:
        _warn_once(pattern, f"gave up after {_SEARCH_SECONDS * 1000:.0f} ms (it backtracks badly); no match")
        return False


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern | None:
    try:
        return regex.compile(pattern)
    except regex.error as exc:
        _warn_once(pattern, f"does not compile ({exc}); it never matches")
        return None


@functools.lru_cache(maxsize=256)
def _warn_once(pattern: str, what: str) -> None:
    """One warning per pattern and kind, not one per message (as long as it stays cached)."""
    log.warning("trigger pattern %r %s", pattern, what)
