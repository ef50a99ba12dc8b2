"""ContainerSlots: at most N agents at once, the rest wait in order."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from actors.slots import ContainerSlots

pytestmark = pytest.mark.timeout(30)


class Grants:
    """Records which waiting sessions were called back, in order."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def for_(self, session_id: str) -> Callable[[], None]:
        return lambda: self.order.append(session_id)


def test_up_to_the_limit_sessions_get_a_slot_at_once() -> None:
    slots = ContainerSlots(2)
    grants = Grants()

    assert slots.acquire("a", grants.for_("a"))
    assert slots.acquire("b", grants.for_("b"))
    assert not slots.acquire("c", grants.for_("c"))

    assert slots.holders() == {"a", "b"}
    assert slots.waiting() == ("c",)
    assert grants.order == []


def test_a_holder_asking_again_keeps_its_slot() -> None:
    slots = ContainerSlots(1)

    assert slots.acquire("a", lambda: None)
    assert slots.acquire("a", lambda: None)
    assert slots.holders() == {"a"}


def test_waiters_are_granted_first_in_first_out() -> None:
    slots = ContainerSlots(1)
    grants = Grants()
    slots.acquire("a", grants.for_("a"))
    for session_id in ("b", "c", "d"):
        assert not slots.acquire(session_id, grants.for_(session_id))

    slots.release("a")
    assert grants.order == ["b"]
    assert slots.holders() == {"b"}
    slots.release("b")
    slots.release("c")

    assert grants.order == ["b", "c", "d"]
    assert slots.holders() == {"d"}
    assert slots.waiting() == ()


def test_a_newcomer_does_not_jump_the_queue() -> None:
    slots = ContainerSlots(1)
    grants = Grants()
    slots.acquire("a", grants.for_("a"))
    slots.acquire("b", grants.for_("b"))

    slots.release("a")  # "b" gets it
    assert not slots.acquire("c", grants.for_("c"))
    assert slots.waiting() == ("c",)


def test_releasing_a_waiter_takes_it_out_of_the_queue() -> None:
    slots = ContainerSlots(1)
    grants = Grants()
    slots.acquire("a", grants.for_("a"))
    slots.acquire("b", grants.for_("b"))
    slots.acquire("c", grants.for_("c"))

    slots.release("b")  # gave up waiting (its session stopped)
    assert slots.waiting() == ("c",)
    assert grants.order == []
    slots.release("a")

    assert grants.order == ["c"]
    assert slots.holders() == {"c"}


def test_releasing_an_unknown_session_is_harmless() -> None:
    slots = ContainerSlots(1)
    slots.acquire("a", lambda: None)

    slots.release("nobody")
    slots.release("a")
    slots.release("a")

    assert slots.holders() == frozenset()


def test_the_callback_runs_on_release_outside_the_lock() -> None:
    slots = ContainerSlots(1)
    seen: list[frozenset[str]] = []
    slots.acquire("a", lambda: None)
    # A callback that looks at the slots would deadlock if it ran under the lock.
    slots.acquire("b", lambda: seen.append(slots.holders()))

    slots.release("a")

    assert seen == [frozenset({"b"})]


def test_a_released_slot_is_free_for_a_newcomer_when_nobody_waits() -> None:
    slots = ContainerSlots(1)
    slots.acquire("a", lambda: None)
    slots.release("a")

    assert slots.acquire("b", lambda: None)


@pytest.mark.parametrize("limit", [0, -1])
def test_the_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ContainerSlots(limit)


def test_never_more_holders_than_the_limit_under_contention() -> None:
    slots = ContainerSlots(3)
    lock = threading.Lock()
    peak = 0
    granted: dict[str, threading.Event] = {f"s{i}": threading.Event() for i in range(40)}

    def run(session_id: str) -> None:
        nonlocal peak
        if slots.acquire(session_id, granted[session_id].set):
            granted[session_id].set()
        assert granted[session_id].wait(10)
        with lock:
            peak = max(peak, len(slots.holders()))
        slots.release(session_id)

    threads = [threading.Thread(target=run, args=(session_id,)) for session_id in granted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)

    assert all(event.is_set() for event in granted.values())
    assert 1 <= peak <= 3
    assert slots.holders() == frozenset()
    assert slots.waiting() == ()


# --- sharing fairly: an idle holder gives its slot to a waiting session ------------------


class Asked:
    def __init__(self) -> None:
        self.who: list[str] = []

    def for_(self, session_id: str) -> Callable[[], None]:
        return lambda: self.who.append(session_id)


def test_a_waiting_session_asks_the_holder_idle_longest_and_only_once() -> None:
    slots, grants, asked = ContainerSlots(2), Grants(), Asked()
    slots.acquire("a", grants.for_("a"), asked.for_("a"))
    slots.acquire("b", grants.for_("b"), asked.for_("b"))
    slots.set_idle("b", True)
    slots.set_idle("a", True)  # idle after b: b has been idle longer

    assert not slots.acquire("c", grants.for_("c"), asked.for_("c"))
    assert asked.who == ["b"]
    slots.set_idle("b", True)  # still idle: asked already, not again
    assert asked.who == ["b"]

    slots.release("b")  # b yields
    assert grants.order == ["c"]


def test_a_busy_holder_is_not_asked_until_it_is_idle() -> None:
    slots, grants, asked = ContainerSlots(1), Grants(), Asked()
    slots.acquire("a", grants.for_("a"), asked.for_("a"))
    slots.set_idle("a", False)

    assert not slots.acquire("b", grants.for_("b"), asked.for_("b"))
    assert asked.who == []
    slots.set_idle("a", True)  # its turn ended while b waits
    assert asked.who == ["a"]
    slots.set_idle("a", False)  # busy again after all: asked again next time it idles
    slots.set_idle("a", True)
    assert asked.who == ["a", "a"]


def test_a_session_granted_a_slot_can_be_asked_once_it_says_how() -> None:
    slots, grants, asked = ContainerSlots(1), Grants(), Asked()
    slots.acquire("a", grants.for_("a"), asked.for_("a"))
    slots.acquire("b", grants.for_("b"), asked.for_("b"))
    slots.release("a")
    assert grants.order == ["b"]
    slots.adopt("b", asked.for_("b"))
    slots.set_idle("b", True)
    slots.acquire("c", grants.for_("c"), asked.for_("c"))
    assert asked.who == ["b"]
