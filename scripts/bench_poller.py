"""The baseline the host's file events replace: a poller that opens every session's
`outbound.db` at a fixed interval and reads max(seq), as the reference implementation does
once a second.

Run as a program it is that poller (its own process, so its CPU time is its own):

    python scripts/bench_poller.py --interval 0.01 FILE...

It prints `ready` after its first pass, then `<file index> <max seq> <monotonic ns>` for
every change it sees, and on end of input (the parent closed the pipe) `passes <n> busy_s <s>`.
`measure_poller` is the parent: it commits rows at random moments into one file after
another and takes, for each, the time until the poller reported it.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

# Run as a file, `python scripts/...` puts scripts/ on the path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_proc import BenchError, bench_env, read_stat

from protocol import outbound
from protocol.content import ChatOut
from protocol.db import create_session_db, max_seq, read_transaction, write_transaction
from protocol.schema import OUTBOUND
from protocol.timeutil import now_ts

SCRIPT: Final = Path(__file__).resolve()
READY: Final = "ready"
_START_TIMEOUT_S: Final = 30.0
# Beyond the interval itself: a pass over the files on a loaded machine, and scheduling.
_DETECT_SLACK_S: Final = 10.0


# -- the poller process --------------------------------------------------------------------


def _read_max_seq(path: Path) -> int:
    # The host's own read discipline (a short-lived connection per read), as a poller would use it.
    with read_transaction(path) as conn:
        return max_seq(conn, "messages_out")


def poll(paths: list[Path], interval_s: float, stop: threading.Event, out: IO[str]) -> None:
    last = [_read_max_seq(path) for path in paths]
    print(READY, file=out, flush=True)
    passes, busy_s = 0, 0.0
    next_start = time.monotonic() + interval_s
    while not stop.wait(max(0.0, next_start - time.monotonic())):
        started = time.monotonic()
        for index, path in enumerate(paths):
            seq = _read_max_seq(path)
            if seq != last[index]:
                last[index] = seq
                # CLOCK_MONOTONIC is one clock for every process on Linux: the parent compares.
                print(f"{index} {seq} {time.monotonic_ns()}", file=out, flush=True)
        passes += 1
        busy_s += time.monotonic() - started
        # Fixed rate; a pass that overran starts the next one at once, never a burst of them.
        next_start = max(next_start + interval_s, time.monotonic())
    print(f"passes {passes} busy_s {busy_s:.6f}", file=out, flush=True)


def _stop_on_eof(stop: threading.Event) -> None:
    sys.stdin.read()
    stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, required=True, help="seconds between the starts of two passes")
    parser.add_argument("files", nargs="+", type=Path, help="outbound.db files")
    args = parser.parse_args(argv)
    stop = threading.Event()
    threading.Thread(target=_stop_on_eof, args=(stop,), daemon=True).start()
    poll(list(args.files), args.interval, stop, sys.stdout)
    return 0


# -- the parent ----------------------------------------------------------------------------


@dataclass
class PollerResult:
    interval_s: float
    files: int
    latency_ms: list[float] = field(default_factory=list)  # commit -> the poller reported it
    cpu_s_per_s: float = 0.0  # the poller's CPU seconds per wall second
    window_s: float = 0.0
    passes: int = 0
    mean_pass_ms: float = 0.0


class _Detections:
    """The poller's reports, read by a thread so its pipe never fills."""

    def __init__(self, stream: IO[str]) -> None:
        self._changed = threading.Condition()
        self._seen: dict[tuple[int, int], int] = {}
        self._ready = False
        self.summary: tuple[int, float] | None = None
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            parts = line.split()
            with self._changed:
                if parts == [READY]:
                    self._ready = True
                elif parts[:1] == ["passes"]:
                    self.summary = (int(parts[1]), float(parts[3]))
                elif len(parts) == 3:
                    self._seen[(int(parts[0]), int(parts[1]))] = int(parts[2])
                self._changed.notify_all()

    def wait_ready(self, timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._ready, timeout):
                raise BenchError(f"the poller did not start within {timeout:.0f} s")

    def wait_seen(self, index: int, seq: int, timeout: float) -> int:
        with self._changed:
            if not self._changed.wait_for(lambda: (index, seq) in self._seen, timeout):
                raise BenchError(f"the poller did not report seq {seq} of file {index} within {timeout:.0f} s")
            return self._seen[(index, seq)]

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def make_outboxes(folder: Path, count: int) -> list[Path]:
    paths: list[Path] = []
    for index in range(count):
        path = folder / f"s{index:03d}" / "outbound.db"
        path.parent.mkdir(parents=True)
        create_session_db(path, OUTBOUND)
        paths.append(path)
    return paths


def _commit_reply(path: Path, text: str) -> tuple[int, int]:
    """A reply row as the agent writes it; returns its seq and when the commit returned."""
    with write_transaction(path) as conn:
        row = outbound.insert_message(
            conn, message_id=uuid.uuid4().hex, content=ChatOut(text=text), timestamp=now_ts(), highest_inbound_seq=0
        )
    return row.seq, time.monotonic_ns()


def measure_poller(folder: Path, interval_s: float, files: int, samples: int, cpu_window_s: float) -> PollerResult:
    """`samples` commits at random phases of the poll cycle; the poller's CPU over at least
    `cpu_window_s` (10 ms of clock-tick resolution needs a window of seconds)."""
    folder.mkdir(parents=True)
    paths = make_outboxes(folder, files)
    result = PollerResult(interval_s, files)
    rng = random.Random(len(paths) * 1000 + samples)
    child = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--interval", str(interval_s), *map(str, paths)],
        env=bench_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        detections = _Detections(child.stdout)
        detections.wait_ready(_START_TIMEOUT_S)
        _sample(result, child.pid, paths, detections, rng, samples, cpu_window_s)
        child.stdin.close()
        child.wait(timeout=interval_s + _DETECT_SLACK_S)
        detections.join(5)
        if detections.summary is not None:
            result.passes, busy_s = detections.summary
            result.mean_pass_ms = 1000 * busy_s / max(1, result.passes)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    return result


def _sample(
    result: PollerResult,
    pid: int,
    paths: list[Path],
    detections: _Detections,
    rng: random.Random,
    samples: int,
    cpu_window_s: float,
) -> None:
    before = _cpu_s(pid)
    window_start = time.monotonic()
    for index in range(samples):
        # A random wait puts the commit at a random phase of the poll cycle.
        time.sleep(rng.uniform(0, result.interval_s))
        file_index = index % len(paths)
        seq, committed_ns = _commit_reply(paths[file_index], f"poll {index}")
        seen_ns = detections.wait_seen(file_index, seq, result.interval_s + _DETECT_SLACK_S)
        result.latency_ms.append((seen_ns - committed_ns) / 1e6)
    time.sleep(max(0.0, window_start + cpu_window_s - time.monotonic()))
    result.window_s = time.monotonic() - window_start
    result.cpu_s_per_s = (_cpu_s(pid) - before) / result.window_s


def _cpu_s(pid: int) -> float:
    stat = read_stat(pid)
    if stat is None:
        raise BenchError("the poller exited early")
    return stat.cpu_s


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        sys.exit(main())
