"""Budgets at the credential proxy (docs/ARCHITECTURE.md, "Budgets").

Before a `POST /v1/messages` is forwarded, `BudgetGate.refusal` compares the agent group's
use in the current UTC day and month with its limits: once one is reached, the request is
refused with a 429 in the API's error shape (`budget_exceeded`) and a `retry-after` until
the period ends, and the agent hands its batch back (a `deferred` ack) instead of failing
it. After each recorded answer `BudgetGate.after_use` tells the owner, once per group,
period and level, when 80% and when 100% of a limit is used.

Who "the owner" is: the owner's direct chats on each channel whose owner is configured
(`HUTCH_TELEGRAM_OWNER`, ...), as the pairing requests find them; where there is none, the
local chat (`cli:local`), whose socket is the host user's alone. Every notice is logged too.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import msgspec

from actors.access import owner_chats
from actors.messages import Notify, Tellable
from actors.pricing import PriceTable
from actors.store import agent_groups, budgets
from actors.store.db import Store, StoreError
from protocol.rows import Routing

log = logging.getLogger("hutch.budget")

LOCAL_CHAT = Routing("local", "cli")


class BudgetRefusal(msgspec.Struct, frozen=True):
    """Why a group's request is refused, for the agent, and how long until it may pass."""

    message: str
    retry_after_s: int


class BudgetGate:
    """`notify(text)` tells the owner (see the module's note); None: notices are only logged."""

    def __init__(
        self,
        store: Store,
        prices: PriceTable | None = None,
        notify: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._prices = prices
        self._notify = notify
        self._clock = clock

    def refusal(self, agent_group_id: str) -> BudgetRefusal | None:
        """None when the group may spend; a database problem lets the request through (the
        answer's use is then recorded, or the failure is logged there)."""
        try:
            budget = budgets.get(self._store, agent_group_id)
            if budget is None:
                return None
            now = self._clock()
            spent = [limit for limit in budgets.state(self._store, budget, self._prices, now) if limit.spent]
        except (StoreError, sqlite3.Error) as exc:
            log.warning("budget of agent group %s not checked: %s", agent_group_id[:8], exc)
            return None
        if not spent:
            return None
        # The limit that holds out longest decides when the group may spend again.
        binding = max(spent, key=lambda limit: limit.resets_at)
        wait_s = max(1, math.ceil((binding.resets_at - now).total_seconds()))
        return BudgetRefusal(f"the agent group's {binding.describe()} is spent; {binding.resets_text()}", wait_s)

    def after_use(self, agent_group_id: str) -> None:
        """Tell the owner once per group, period and level when a limit is 80% or 100% used."""
        try:
            budget = budgets.get(self._store, agent_group_id)
            if budget is None:
                return
            for limit in budgets.state(self._store, budget, self._prices, self._clock()):
                self._maybe_tell(agent_group_id, limit)
        except (StoreError, sqlite3.Error) as exc:
            log.warning("budget notices of agent group %s not checked: %s", agent_group_id[:8], exc)

    def _maybe_tell(self, agent_group_id: str, limit: budgets.LimitState) -> None:
        level = 100 if limit.spent else 80 if limit.share >= budgets.WARN_AT else None
        if level is None:
            return
        if level == 100:
            # Past 100 at once: the 80% notice would say less than this one, so it is not sent.
            budgets.note_notice(self._store, agent_group_id, limit.period, limit.period_start, 80)
        if not budgets.note_notice(self._store, agent_group_id, limit.period, limit.period_start, level):
            return
        group = agent_groups.get(self._store, agent_group_id)
        name = group.name if group is not None else agent_group_id[:8]
        if level == 100:
            text = (
                f"Agent group {name!r} has spent its {limit.describe()} ({limit.used_text()}): its agents wait "
                f"({limit.resets_text()}). To let them go on now, raise it: hutch budget set {name} ..."
            )
        else:
            text = (
                f"Agent group {name!r} has used {limit.share:.0%} of its {limit.describe()} "
                f"({limit.used_text()}); at 100% its agents stop answering until the period ends."
            )
        log.warning("budget: %s", text)
        if self._notify is not None:
            self._notify(text)


def notice_chats(store: Store, owners: Mapping[str, str]) -> list[Routing]:
    """Where a notice for the owner goes: their direct chats on every channel with a
    configured owner; the local chat when there is none (the host user is the owner of a
    host without channel owners)."""
    return owner_chats(store, owners) or [LOCAL_CHAT]


def tell_owner(
    delivery: Tellable, store: Store, owners: Mapping[str, str], text: str, *, besides: Routing | None = None
) -> None:
    """`text` to each of the owner's `notice_chats`, but `besides` (a chat that hears of it already)."""
    for routing in notice_chats(store, owners):
        if routing != besides:
            delivery.tell(Notify(routing, text))
