"""Budgets at the credential proxy: under its limit a group's requests are forwarded; once a
limit is reached, `POST /v1/messages` is refused before anything goes upstream, with a 429
in the API's error shape the agent recognises and a `retry-after` until the period ends,
while `count_tokens` still passes. The owner hears of 80% and of 100% once each."""

from __future__ import annotations

import queue
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from actors.budget_gate import LOCAL_CHAT, BudgetGate, notice_chats
from actors.credentials import CredentialProxy
from actors.pricing import Tokens
from actors.store import agent_groups, budgets, members, messaging_groups, sessions, usage
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store
from actors.usage_meter import Metered, UsageBook
from protocol.rows import Routing
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeUsage

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2026, 12, 15, 23, 0, tzinfo=UTC)  # an hour before the day resets
SONNET = "claude-sonnet-4-6"
BODY = {"model": SONNET, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


class WatchedBook(UsageBook):
    def __init__(self, store: Store, gate: BudgetGate) -> None:
        super().__init__(store, gate)
        self.recorded: queue.Queue[Metered] = queue.Queue()

    def record(self, session_id: str, agent_folder: str, tag: str, metered: Metered) -> None:
        super().record(session_id, agent_folder, tag, metered)
        self.recorded.put(metered)


@pytest.fixture
def family(store: Store) -> AgentGroup:
    return agent_groups.create(store, name="family", folder="family")


@pytest.fixture
def told() -> list[str]:
    return []


@pytest.fixture
def clock() -> Callable[[], datetime]:
    # A fixed clock makes the reset times exact; a test of what the proxy records itself
    # (under today's real day) parametrizes `clock` with the real one.
    return lambda: NOW


def real_clock() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def book(store: Store, told: list[str], clock: Callable[[], datetime]) -> WatchedBook:
    return WatchedBook(store, BudgetGate(store, notify=told.append, clock=clock))


@pytest.fixture
def api() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as server:
        server.default_usage = FakeUsage(input_tokens=600, output_tokens=0)
        yield server


@pytest.fixture
def client(store: Store, family: AgentGroup, book: WatchedBook, api: FakeMessagesAPI) -> Iterator[httpx2.Client]:
    session_id = sessions.create(store, agent_group_id=family.id, session_key="family-chat").id
    with tempfile.TemporaryDirectory(prefix="hutch-") as folder:
        proxy = CredentialProxy(api.base_url, api_key="sk-real", usage=book)
        path = Path(folder) / "proxy.sock"
        proxy.open_socket(session_id, "family", path)
        try:
            with httpx2.Client(transport=httpx2.HTTPTransport(uds=str(path)), base_url="http://proxy.local") as http:
                yield http
        finally:
            proxy.stop()


def _spend(store: Store, group: AgentGroup, tokens: int, day: str = "2026-12-15") -> None:
    usage.record(store, agent_group_id=group.id, session_id="s", model=SONNET, tokens=Tokens(input=tokens), day=day)


def test_under_the_limit_requests_are_forwarded(
    store: Store, family: AgentGroup, client: httpx2.Client, api: FakeMessagesAPI
) -> None:
    budgets.put(store, budgets.Budget(agent_group_id=family.id, daily_tokens=1000))
    _spend(store, family, 999)
    response = client.post("/v1/messages", json=BODY)
    assert response.status_code == 200
    assert len(api.requests) == 1


def test_a_spent_budget_is_refused_in_the_apis_error_shape_before_anything_goes_upstream(
    store: Store, family: AgentGroup, client: httpx2.Client, api: FakeMessagesAPI
) -> None:
    budgets.put(store, budgets.Budget(agent_group_id=family.id, daily_usd=0.001))
    _spend(store, family, 1000)  # $0.003
    response = client.post("/v1/messages", json=BODY)
    assert response.status_code == 429
    assert response.json() == {
        "type": "error",
        "error": {
            "type": "budget_exceeded",
            "message": "the agent group's daily budget of $0.00 is spent; it resets at 00:00 UTC",
        },
    }
    assert response.headers["retry-after"] == "3600"
    assert response.headers["x-should-retry"] == "false"  # the SDK must not retry it
    assert api.requests == []
    # Counting tokens costs nothing: it passes.
    assert client.post("/v1/messages/count_tokens", json=BODY).status_code == 200
    assert len(api.requests) == 1


def test_the_monthly_limit_waits_until_the_month_ends(store: Store, family: AgentGroup, client: httpx2.Client) -> None:
    budgets.put(store, budgets.Budget(agent_group_id=family.id, daily_tokens=10, monthly_tokens=10))
    _spend(store, family, 50)
    response = client.post("/v1/messages", json=BODY)
    assert "monthly budget of 10 tokens is spent; it resets on 2027-01-01" in response.json()["error"]["message"]
    assert int(response.headers["retry-after"]) == 16 * 24 * 3600 + 3600


@pytest.mark.parametrize("clock", [real_clock])
def test_the_owner_is_told_at_80_and_at_100_percent_once_each(
    store: Store, family: AgentGroup, client: httpx2.Client, book: WatchedBook, told: list[str]
) -> None:
    budgets.put(store, budgets.Budget(agent_group_id=family.id, daily_tokens=1000))
    _spend(store, family, 200, usage.utc_day())
    for _ in range(2):  # 800, then 1400
        assert client.post("/v1/messages", json=BODY).status_code == 200
        book.recorded.get(timeout=10)
        if len(told) == 1:
            assert "has used 80% of its daily budget of 1,000 tokens" in told[0]
    assert len(told) == 2
    assert "has spent its daily budget of 1,000 tokens (1,400 tokens)" in told[1]
    assert client.post("/v1/messages", json=BODY).status_code == 429
    assert len(told) == 2


def test_notices_go_to_the_owners_direct_chats_else_the_local_chat(store: Store) -> None:
    assert notice_chats(store, {}) == [LOCAL_CHAT]
    direct = messaging_groups.create(store, channel_type="telegram", platform_id="42", name="me")
    group = messaging_groups.create(store, channel_type="telegram", platform_id="-100", name="all", is_group=True)
    members.put(store, direct.id, "42", "owner")
    members.put(store, group.id, "42", "owner")
    # Someone given the owner's role in their own direct chat is not the owner.
    other = messaging_groups.create(store, channel_type="telegram", platform_id="43", name="them")
    members.put(store, other.id, "43", "owner")
    assert notice_chats(store, {"telegram": "42"}) == [Routing("42", "telegram")]
