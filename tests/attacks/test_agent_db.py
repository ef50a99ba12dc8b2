"""Attacks through the agent's own SQLite file, which the host reads: a journal planted
beside `out/outbound.db` (naming a host file as its super-journal, which a normal SQLite
connection rolling it back deletes with the host's rights; or a FIFO, whose open blocks the
reader for good) and a view over an endless query in place of `messages_out`. Each test
shows the host reading none of it (protocol/agent_db.py), the host file intact, the other
session answered, and the host stopping promptly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from protocol.layout import OUTBOUND_DB
from tests.attacks.conftest import RUNTIMES
from tests.attacks.hostile import ATTACKER, BYSTANDER, AttackRun

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# The harness sweeps every second, and a sweep reads every live session's outbound.db: a
# few sweeps is what it took the reviewer's host to delete the file.
SWEEPS_S = 3.5
STOP_S = 20.0

PLANT_SUPER_JOURNAL = """
import os, struct, sys
victim = sys.argv[1].encode()
magic = bytes([0xD9, 0xD5, 0x05, 0xF9, 0x20, 0xA1, 0x63, 0xD7])
record = struct.pack(">I", 0x7FFFFFFF) + victim + struct.pack(">I", len(victim))
record += struct.pack(">I", sum(victim) & 0xFFFFFFFF) + magic
path = os.path.join(os.environ["HUTCH_SESSION_DIR"], "out", "outbound.db-journal")
open(path, "wb").write(b"X" * 512 + record)
"""

ENDLESS_VIEW = """
import os, sqlite3
conn = sqlite3.connect(os.path.join(os.environ["HUTCH_SESSION_DIR"], "out", "outbound.db"))
conn.executescript(
    "ALTER TABLE messages_out RENAME TO kept;"
    " CREATE VIEW messages_out AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)"
    " SELECT 'x' AS id, n AS seq, NULL AS in_reply_to, '' AS timestamp, NULL AS deliver_after, 'chat' AS kind,"
    " NULL AS platform_id, NULL AS channel_type, NULL AS thread_id, '{}' AS content FROM r"
)
conn.close()
"""


def _stops_promptly(attack: AttackRun) -> None:
    started = time.monotonic()
    assert attack.stop() == 0
    assert time.monotonic() - started < STOP_S, "the host hung on stopping"


@pytest.mark.parametrize("runtime", RUNTIMES, indirect=True)
def test_a_planted_journal_never_makes_the_host_delete_a_file(attack: AttackRun, host_files: Path) -> None:
    """Attack: the agent plants out/outbound.db-journal whose super-journal is a host file.
    Proves: the host never rolls it back (the file survives several sweeps that read the
    attacker's session), and the other session is answered."""
    victim = host_files / "precious"
    victim.write_text("a host file only the host may delete")
    attack.session(ATTACKER)
    done = attack.agent(ATTACKER).python(PLANT_SUPER_JOURNAL, str(victim))
    assert done.code == 0, done.output
    time.sleep(SWEEPS_S)  # nothing to wait on: the host must do nothing, over several sweeps
    attack.ask(BYSTANDER, "still there?")
    assert victim.read_text() == "a host file only the host may delete"
    assert not attack.failures(), attack.tail()
    _stops_promptly(attack)


@pytest.mark.parametrize("runtime", RUNTIMES, indirect=True)
def test_a_fifo_journal_never_blocks_the_host(attack: AttackRun) -> None:
    """Attack: out/outbound.db-journal is a FIFO nobody writes. Proves: no reader of the
    host opens it (the other session is answered across several sweeps, and SIGTERM still
    stops the host at once: the reviewer's host ignored it)."""
    attack.session(ATTACKER)
    attack.move(ATTACKER, f'mkfifo "$HUTCH_SESSION_DIR/out/{OUTBOUND_DB}-journal"')
    time.sleep(SWEEPS_S)
    attack.ask(BYSTANDER, "not stuck?")
    assert not attack.failures(), attack.tail()
    _stops_promptly(attack)


@pytest.mark.parametrize("runtime", RUNTIMES, indirect=True)
def test_a_view_in_place_of_the_table_is_refused_not_run(attack: AttackRun) -> None:
    """Attack: messages_out becomes a view over an endless recursive query. Proves: the host
    refuses to read a file that declares one (logged) instead of spinning on it, and the
    other session is answered."""
    attacker = attack.session(ATTACKER)
    mark = len(attack.log)
    done = attack.agent(ATTACKER).python(ENDLESS_VIEW)
    assert done.code == 0, done.output
    attack.await_warning(attacker, OUTBOUND_DB, "view", after=mark)
    attack.ask(BYSTANDER, "answered meanwhile?")
    assert not attack.failures(), attack.tail()
    _stops_promptly(attack)
