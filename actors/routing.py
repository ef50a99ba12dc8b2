"""Which agent gets an inbound message, and whether it should start a turn."""

from __future__ import annotations

import re
from collections.abc import Sequence

from actors.channels.base import InboundChat
from actors.store.messaging_group_agents import Wiring


def rule_matches(rule: str, event: InboundChat) -> bool:
    if rule == "always":
        return True
    if rule == "mention":
        return event.mentions_assistant
    if rule.startswith("prefix:"):
        return event.text.startswith(rule.removeprefix("prefix:"))
    if rule.startswith("regex:"):
        return re.search(rule.removeprefix("regex:"), event.text) is not None
    return False


def choose_wiring(wirings: Sequence[Wiring], event: InboundChat) -> tuple[Wiring, bool] | None:
    """The highest-priority wiring whose trigger matches; when none does, the message still
    goes to the highest-priority agent as context (trigger=False), so it is not lost from
    the conversation. `wirings` come ordered by priority, highest first."""
    if not wirings:
        return None
    for wiring in wirings:
        if rule_matches(wiring.trigger_rule, event):
            return wiring, True
    return wirings[0], False
