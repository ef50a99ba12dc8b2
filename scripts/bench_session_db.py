"""What the session-DB discipline of docs/ARCHITECTURE.md costs, in microseconds per operation.

Our writers open a connection, `BEGIN IMMEDIATE`, insert, `COMMIT` (synchronous=FULL) and
close, every time; our readers open, read, close. That buys freshness across a VM mount and
crash safety. The baselines in the same run show the price: the same insert on one
persistent connection, with SQLite's default FULL and with NORMAL.

    python scripts/bench_session_db.py [ITERATIONS] [--dir DIR]

Run it with --dir on the file system the session folders really live on: fsync cost is
most of what is measured, and /tmp may be a RAM disk.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# Run as a file, `python scripts/...` puts scripts/ on the path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_machine import cpu_model

from protocol import inbound
from protocol.content import ChatIn
from protocol.db import BUSY_TIMEOUT_MS, create_session_db, read_transaction, write_transaction
from protocol.schema import INBOUND
from protocol.timeutil import now_ts, utc_now

WARMUP = 10
# A realistic inbox: most rows handled, a few waiting.
PENDING_ROWS = 10


@dataclass(frozen=True, slots=True)
class Result:
    label: str
    median_us: float
    p99_us: float


def _measure(label: str, iterations: int, operation: Callable[[int], object]) -> Result:
    """Time `operation(i)` per call; the first WARMUP calls (cold caches, file creation) are not counted."""
    for i in range(WARMUP):
        operation(-1 - i)
    samples: list[float] = []
    for i in range(iterations):
        start = time.perf_counter_ns()
        operation(i)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    p99_index = max(0, math.ceil(0.99 * len(samples)) - 1)
    return Result(label, statistics.median(samples), samples[p99_index])


def _content(i: int) -> ChatIn:
    return ChatIn(text=f"message {i}: " + "lorem ipsum " * 20, sender="Ana", sender_id="u1")


def _insert(conn: sqlite3.Connection, i: int) -> None:
    inbound.insert_message(conn, message_id=f"m{i}", content=_content(i), timestamp=now_ts())


def _fresh_db(folder: Path, name: str) -> Path:
    path = folder / name
    create_session_db(path, INBOUND)
    return path


def _persistent_connection(path: Path, synchronous: str) -> sqlite3.Connection:
    # The same explicit transactions as write_transaction; only the connection's lifetime
    # (and, for one baseline, the sync level) differs.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def _persistent_insert(conn: sqlite3.Connection) -> Callable[[int], object]:
    def operation(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        _insert(conn, i)
        conn.execute("COMMIT")

    return operation


def bench_short_writes(folder: Path, iterations: int) -> tuple[Result, Path]:
    path = _fresh_db(folder, "short.db")

    def operation(i: int) -> None:
        with write_transaction(path) as conn:
            _insert(conn, i)

    return _measure("(a) host insert, write_transaction per op, FULL", iterations, operation), path


def bench_short_reads(path: Path, iterations: int) -> Result:
    with write_transaction(path) as conn:
        conn.execute(
            "UPDATE messages_in SET status = 'completed' WHERE seq <= (SELECT MAX(seq) FROM messages_in) - ?",
            (2 * PENDING_ROWS,),
        )
        total = conn.execute("SELECT COUNT(*) FROM messages_in").fetchone()[0]
    now = utc_now()

    def operation(_: int) -> None:
        with read_transaction(path) as conn:
            due = inbound.pending_due(conn, now)
        assert len(due) == PENDING_ROWS

    return _measure(
        f"(b) container read, read_transaction + pending_due ({PENDING_ROWS}/{total} rows)", iterations, operation
    )


def bench_persistent_writes(folder: Path, iterations: int, synchronous: str, label: str) -> Result:
    path = _fresh_db(folder, f"persistent-{synchronous.lower()}.db")
    with closing(_persistent_connection(path, synchronous)) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        if mode != "delete" or level != {"FULL": 2, "NORMAL": 1}[synchronous]:
            raise RuntimeError(f"baseline is not what it claims: journal_mode={mode}, synchronous={level}")
        return _measure(label, iterations, _persistent_insert(conn))


def bench_persistent_reads(path: Path, iterations: int, now: datetime) -> Result:
    with closing(_persistent_connection(path, "FULL")) as conn:

        def operation(_: int) -> None:
            conn.execute("BEGIN")
            inbound.pending_due(conn, now)
            conn.execute("COMMIT")

        return _measure("(e) same read on one persistent connection", iterations, operation)


def _report(results: list[Result], iterations: int, folder: Path) -> str:
    width = max(len(result.label) for result in results)
    lines = [
        f"session DB benchmark: {iterations} iterations (+{WARMUP} warm-up) in {folder}",
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}",
        f"python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, journal_mode=DELETE throughout",
        "",
        f"{'operation':<{width}}  {'median us':>10}  {'p99 us':>10}",
        f"{'-' * width}  {'-' * 10}  {'-' * 10}",
    ]
    lines += [f"{result.label:<{width}}  {result.median_us:>10.1f}  {result.p99_us:>10.1f}" for result in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("iterations", nargs="?", type=int, default=500, help="timed operations per case")
    parser.add_argument("--dir", type=Path, default=None, help="where to make the temporary folder")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("iterations must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-session-db-", dir=args.dir) as name:
        folder = Path(name)
        short_writes, path = bench_short_writes(folder, args.iterations)
        results = [
            short_writes,
            bench_short_reads(path, args.iterations),
            bench_persistent_writes(
                folder, args.iterations, "FULL", "(c) same insert, one persistent connection, FULL"
            ),
            bench_persistent_writes(
                folder, args.iterations, "NORMAL", "(d) same insert, one persistent connection, NORMAL"
            ),
            bench_persistent_reads(path, args.iterations, utc_now()),
        ]
        print(_report(results, args.iterations, folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
