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
import re
from collections.abc import Sequence

import msgspec

from actors.channels.base import InboundChat
from actors.store import messaging_group_agents
from actors.store.db import Store
from actors.store.messaging_group_agents import PATTERN, PREFIX, SENDER_SCOPE, Wiring, scope_of

# A pattern is the owner's, the text a stranger's: the search sees a bounded part of it, so
# a pattern that backtracks badly costs a bounded time.
_MATCHED_CHARS = 4096


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
        return _compiled(rule.removeprefix(PATTERN)).search(event.text[:_MATCHED_CHARS]) is not None
    if rule.startswith(SENDER_SCOPE):
        return event.sender_id is not None and event.sender_id in scope_of(rule)
    if rule.startswith(PREFIX):
        return event.text.startswith(rule.removeprefix(PREFIX))
    return False


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
