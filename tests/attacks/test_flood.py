"""Attack by volume: an agent writes 10,000 outbound rows at once. The host sends them at the
session's pace (a burst of 60, then 120 a minute), holds the rest in order without losing
any, tells the chat once, and goes on answering every other session promptly."""

from __future__ import annotations

import re
import time

import pytest

from actors.session.info import SessionSettings
from tests.attacks.conftest import RUNTIMES
from tests.attacks.hostile import ATTACKER, BYSTANDER, AttackRun, first_line

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

ROWS = 10_000
BURST = SessionSettings().send_burst
# An answer that needs no container start: on a busy 2-core machine it takes well under a
# second; a session held up behind the flood would take minutes.
PROMPT_S = 5.0
# The host's own stop: its sessions drain only what is in flight, never the held rows.
STOP_S = 30.0
NOTICE = "messages a minute"
HELD = re.compile(r"(\d+) message\(s\) held")


def flood_numbers(attack: AttackRun) -> list[int]:
    """The flood rows the chat received, by number, in the order they came."""
    found = []
    for line in attack.in_thread(ATTACKER):
        words = first_line(line).split()
        if len(words) == 2 and words[0] == "flood":
            found.append(int(words[1]))
    return found


def notices(attack: AttackRun) -> list[str]:
    return [first_line(line) for line in attack.in_thread(ATTACKER) if NOTICE in first_line(line)]


@pytest.mark.parametrize("runtime", RUNTIMES, indirect=True)
def test_ten_thousand_rows_at_once_are_paced_held_in_order_and_starve_no_one(attack: AttackRun) -> None:
    """Attack: the agent commits 10,000 chat rows to outbound.db in one transaction. Proves:
    a burst goes out and the rest is held, not dropped (the host's warning counts them,
    none is recorded failed, and the next held row follows at the pace, in order, none
    twice); the chat is told once; the other session is answered promptly throughout; the
    host stops promptly with the rows still held."""
    attacker = attack.session(ATTACKER)
    mark = len(attack.log)

    attack.write_rows(ATTACKER, {"prefix": "flood", "count": ROWS})

    attack.read_until(
        f"a burst of {BURST} and the notice", lambda: len(flood_numbers(attack)) >= BURST and notices(attack)
    )
    held_line = attack.await_warning(attacker, "", "held", after=mark)
    held = HELD.search(held_line)
    assert held is not None, held_line
    assert int(held.group(1)) >= ROWS - BURST - 1, held_line

    took = [attack.ask(BYSTANDER, f"still answered {number}?") for number in range(3)]
    assert max(took) < PROMPT_S, took

    # The held rows keep going, at the pace: the first after the burst comes within a second.
    sent = len(flood_numbers(attack))
    attack.read_until("a held row to follow at the pace", lambda: len(flood_numbers(attack)) > sent, timeout_s=10)
    numbers = flood_numbers(attack)
    assert numbers == list(range(len(numbers))), numbers
    assert len(numbers) < ROWS / 10, "the pace did not hold"
    assert len(notices(attack)) == 1, notices(attack)

    failed = [key for key, (status, _) in attack.deliveries(ATTACKER).items() if status == "failed"]
    assert not failed, failed
    assert len(attack.outbound_ids(ATTACKER)) >= ROWS

    started = time.monotonic()
    assert attack.stop() == 0, attack.tail()
    assert time.monotonic() - started < STOP_S
    assert not attack.failures(), attack.tail()
