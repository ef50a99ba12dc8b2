"""A reader in another process sees each committed write at once.

The reference implementation kept one read connection open across a VM mount and was served
stale pages; `read_transaction` opens fresh each time, and this checks that nothing cached in
the reading process (the sqlite3 module, the pager) hides a commit from it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from protocol import inbound
from protocol.content import ChatIn
from protocol.db import create_session_db, write_transaction
from protocol.schema import INBOUND
from protocol.timeutil import now_ts

REPO_ROOT = Path(__file__).resolve().parents[2]
WRITES = 50

# The child answers each request line with the row count it sees, so the parent can tell a
# stale read from a correct one (and a hung child is caught by the timeout, not by a wait).
READER = """
import sys
from pathlib import Path

from protocol.db import read_transaction

path = Path(sys.argv[1])
for line in sys.stdin:
    with read_transaction(path) as conn:
        count = conn.execute("SELECT COUNT(*) FROM messages_in").fetchone()[0]
    print(f"{line.strip()} {count}", flush=True)
"""


def _child_env() -> dict[str, str]:
    # The child is a fresh interpreter: it needs the repo on its path to import `protocol`.
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


@pytest.mark.integration
@pytest.mark.timeout(30)
def test_reader_in_another_process_sees_every_commit_at_once(tmp_path: Path) -> None:
    path = tmp_path / "inbound.db"
    create_session_db(path, INBOUND)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    assert reader.stdin is not None
    assert reader.stdout is not None
    try:
        for expected in range(1, WRITES + 1):
            with write_transaction(path) as conn:
                inbound.insert_message(
                    conn,
                    message_id=f"m{expected}",
                    content=ChatIn(text=f"message {expected}", sender="ana"),
                    timestamp=now_ts(),
                )
            # The commit has returned: from here on every reader must see it.
            reader.stdin.write(f"{expected}\n")
            reader.stdin.flush()
            assert reader.stdout.readline().split() == [str(expected), str(expected)]
        reader.stdin.close()
        assert reader.wait() == 0
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
