"""The session commands the host answers itself, for a chat's owners and admins: `/cost` and
`/model [name]`. They need the central DB, which an agent cannot read, so they never reach
one (`actors.inbound_router` calls these before anything is stored).

`/model NAME` changes the agent group's model (`agent_groups.model`) and has the group's
running agents stopped (`RestartGroupAgents`): an agent reads its model when it starts, and
the next message starts it again with the new one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import msgspec

from actors.pricing import PriceTable
from actors.store import agent_groups, sessions, usage
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store
from actors.store.members import ADMIN_ROLES
from actors.store.messaging_group_agents import Wiring
from actors.store.messaging_groups import MessagingGroup
from actors.store.usage import UsageTotals
from protocol.models import UnusableModelError, check_model

COST = "/cost"
MODEL = "/model"


class SessionCommand(msgspec.Struct, frozen=True):
    name: str  # COST or MODEL
    argument: str | None = None


def parse_command(text: str) -> SessionCommand | None:
    """`/cost`, `/model` or `/model NAME` as typed (a bot's `@name` suffix allowed); None
    for anything else, which goes to the agents as usual."""
    words = text.split()
    if not words or not 1 <= len(words) <= 2:
        return None
    name = words[0].lower().split("@", 1)[0]
    if name == COST and len(words) == 1:
        return SessionCommand(COST)
    if name == MODEL:
        return SessionCommand(MODEL, words[1] if len(words) == 2 else None)
    return None


def refusal(command: SessionCommand, role: str) -> str | None:
    """The one line a sender who may not use `command` gets; None when they may."""
    if role in ADMIN_ROLES:
        return None
    return f"Only this chat's owner or an admin can use {command.name}."


class Answerer:
    """Answers a command for one chat's wired agent groups. `restart_group` has a group's
    running agents stopped; `prices` is the host's price table (asked per `/cost`)."""

    def __init__(
        self, store: Store, default_model: str, restart_group: Callable[[str], None], prices: Callable[[], PriceTable]
    ) -> None:
        self._store = store
        self._default_model = default_model
        self._restart_group = restart_group
        self._prices = prices

    def answer(
        self, command: SessionCommand, chat: MessagingGroup, thread_id: str | None, wirings: Sequence[Wiring]
    ) -> str:
        groups = [group for wiring in wirings if (group := agent_groups.get(self._store, wiring.agent_group_id))]
        if not groups:
            return "No agent group is wired to this chat."
        if command.name == COST:
            by_id = {wiring.agent_group_id: wiring for wiring in wirings}
            return "\n".join(self._cost(group, by_id[group.id], chat, thread_id) for group in groups)
        if command.argument is None:
            return "\n".join(self._current(group) for group in groups)
        if len(groups) > 1:
            names = ", ".join(group.name for group in groups)
            return f"This chat has several agent groups ({names}): use `hutch groups set NAME --model M` for one."
        return set_model(self._store, groups[0], command.argument, self._default_model, self._restart_group)

    def _current(self, group: AgentGroup) -> str:
        if group.model is None:
            return f"{group.name}: {self._default_model} (the host's default)"
        return f"{group.name}: {group.model}"

    def _cost(self, group: AgentGroup, wiring: Wiring, chat: MessagingGroup, thread_id: str | None) -> str:
        prices = self._prices()
        now = datetime.now(UTC)
        today, month = usage.utc_day(now), now.date().replace(day=1).isoformat()
        key = sessions.session_key(
            wiring.session_mode, agent_group_id=group.id, messaging_group_id=chat.id, thread_id=thread_id
        )
        session = sessions.get_by_key(self._store, key)
        lines = [f"{group.name}, in UTC days:"]
        for label, since in (("today", today), ("this month", month)):
            mine = (
                UsageTotals()
                if session is None
                else usage.session_totals(self._store, session.id, since, prices=prices)
            )
            whole = usage.totals_for(self._store, group.id, since, prices=prices)
            lines.append(f"  {label}: this conversation {_figures(mine)}; the agent group {_figures(whole)}")
        return "\n".join(lines)


# What `/model` and `hutch groups set --model` take to go back to the host's HUTCH_MODEL.
HOST_DEFAULT = "default"


def choose_model(name: str) -> tuple[str | None, str | None]:
    """The group model `name` asks for (None: the host's default) and a warning when it is not
    one this version knows. UnusableModelError when it cannot be a model id."""
    if name.strip().lower() == HOST_DEFAULT:
        return None, None
    return check_model(name)


def set_model(
    store: Store, group: AgentGroup, name: str, default_model: str, restart_group: Callable[[str], None]
) -> str:
    """Check `name`, store it as the group's model and restart its running agents; the line
    that says what was done (or why not: nothing is changed then)."""
    try:
        model, warning = choose_model(name)
    except UnusableModelError as exc:
        return f"{exc}; nothing was changed."
    if model == group.model:
        return f"{group.name} already uses {model or default_model}."
    agent_groups.update(store, group.id, model=model)
    restart_group(group.id)
    chosen = model or f"{default_model} (the host's default)"
    said = f"{group.name} now uses {chosen}, from the next message on."
    return said if warning is None else f"{said} Note: {warning}."


def _figures(totals: UsageTotals) -> str:
    tokens = totals.input_tokens + totals.output_tokens + totals.cache_read_tokens + totals.cache_write_tokens
    cost = "cost unknown (a model without a price)" if totals.cost_usd is None else f"${totals.cost_usd:.2f}"
    return (
        f"{tokens:,} tokens ({totals.input_tokens:,} in, {totals.output_tokens:,} out, "
        f"{totals.cache_read_tokens:,} cache reads, {totals.cache_write_tokens:,} cache writes), {cost}"
    )
