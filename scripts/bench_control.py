"""What a change made with the `hutch` command costs, in milliseconds: a task paused and
resumed by a running host, through its control socket, against the same operation called
in the host's own process (the baseline), and the whole command as a person runs it.

(a) baseline: `Operations.execute` in the host's process: the session's SessionActor
    applies the change in its write transaction (one fsync'd commit of inbound.db).
(b) the same request through the control socket (`actors.control.client.submit`).
(c) `hutch tasks pause|resume` as a new process: interpreter start, imports, configuration,
    the socket round trip.

    python scripts/bench_control.py [--n N] [--cli N] [--dir DIR]

The host runs in this process with the mock provider and the process runtime.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

# Run as a file, `python scripts/...` puts scripts/ on the path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_machine import print_table

from actors.config import HostConfig
from actors.control.client import submit
from actors.control.requests import ChangeTask, Reply, TaskVerb
from actors.host import Host, start_host
from protocol.timeutil import format_ts, utc_now
from tests.fakes.chat_client import ChatClient

HUTCH = Path(sys.executable).with_name("hutch")


def _timed(n: int, run: Callable[[TaskVerb], object]) -> list[float]:
    """`run(verb)` n times, pause and resume in turn, each timed alone (ms)."""
    samples = []
    for i in range(n):
        verb: TaskVerb = "pause" if i % 2 == 0 else "resume"
        start = time.perf_counter_ns()
        run(verb)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def _checked(reply: Reply) -> None:
    if not reply.ok:
        raise SystemExit(f"bench_control: the host refused: {reply.message}")


def _schedule_a_task(host: Host) -> str:
    chat = ChatClient(host.config.chat_socket, sender="bench")
    try:
        later = format_ts(utc_now() + timedelta(days=1))
        chat.send(f'!tool schedule_task {{"prompt": "benchmark", "process_after": "{later}"}}')
        chat.next_message(timeout=60)
    finally:
        chat.close()
    for folder in (host.config.sessions_dir / "main").iterdir():
        with sqlite3.connect(folder / "inbound.db") as conn:
            row = conn.execute("SELECT series_id FROM messages_in WHERE kind = 'task'").fetchone()
        if row is not None:
            return str(row[0])
    raise SystemExit("bench_control: the agent scheduled no task")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="requests per in-process and socket row")
    parser.add_argument("--cli", type=int, default=20, help="whole `hutch` commands")
    parser.add_argument("--dir", type=Path, default=None, help="where the data folder goes (its disk's fsync counts)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        data_dir = Path(tmp) / "data"
        config = HostConfig(data_dir=data_dir, runtime="process", provider="mock", log_level="WARNING")
        host = start_host(config)
        try:
            task = _schedule_a_task(host)

            def in_process(verb: TaskVerb) -> None:
                _checked(host.operations.execute(ChangeTask(verb=verb, task=task)))

            def through_socket(verb: TaskVerb) -> None:
                _checked(submit(config.control_socket, ChangeTask(verb=verb, task=task)))

            def command(verb: TaskVerb) -> None:
                argv = [str(HUTCH), "tasks", verb, task, "--data-dir", str(data_dir)]
                subprocess.run(argv, check=True, capture_output=True, env={**os.environ, "HUTCH_LOG_LEVEL": "WARNING"})

            rows = [
                ("(a) baseline: Operations.execute in the host", _timed(args.n, in_process)),
                ("(b) the same through the control socket", _timed(args.n, through_socket)),
                ("(c) `hutch tasks pause|resume`, a new process", _timed(args.cli, command)),
            ]
        finally:
            host.stop()
    print_table("case", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
