"""The host's figures, each beside its baseline from the same run; printed, written as JSON
and drawn as a PNG.

(a) warm round trip through the whole host (a real `python -m actors.main`, process runtime,
    mock provider, with every session's agent live): socket -> reply on the socket.
    Baselines: a poller that opens each of as many `outbound.db` files and reads max(seq),
    at 1 s (the reference implementation's interval) and at 10 ms: the latency it adds
    (commit -> seen) and its CPU (% of one core).
(b) taken in: M messages sent by one client into S warm sessions (per-thread wiring, one
    thread per session), all lines at once without waiting for acks; msg/s from the first
    send to the last ack, and to the reply naming each thread's last message. Then each
    session's inbound.db must hold every message exactly once. Baselines: the inbound.db
    commits alone on this disk, one transaction per message and one for all of them.
(c) idle: host CPU (all its threads) and the agents' CPU over a window with S idle agents.
(d) cold start to first reply on a new thread (new session, agent start), process and
    Docker runtimes.
(e) SIGTERM to the host with S live agents: seconds until it exits; no agent may be left.
(rt) the rows of scripts/bench_roundtrip.py: the host in this process, the container
    alone, and the floors of event delivery.

    python scripts/bench_host.py [--quick] [--out DIR] [--dir DIR] [size flags]

Everything printed is measured in this run. The machine is noted; share of a core is
per core, so 100 % is one core busy.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

# Run as a file, `python scripts/...` puts scripts/ on the path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_roundtrip
from bench_chat import ChatClient, expected_reply
from bench_machine import cpu_model, percentile
from bench_poller import PollerResult, measure_poller
from bench_proc import CLOCK_TICKS, REPO_ROOT, BenchError, HostProcess, ProcStat, descendants, read_stat

from actors.config import HostConfig
from actors.runtime.docker import DockerRuntime
from actors.store import agent_groups, messaging_group_agents, messaging_groups
from actors.store.db import open_store
from protocol import inbound
from protocol.content import ChatIn
from protocol.db import create_session_db, read_transaction, write_transaction
from protocol.schema import INBOUND
from protocol.timeutil import now_ts

log = logging.getLogger("bench_host")

DEFAULT_OUT: Final = REPO_ROOT / "bench-results"
STOP_TARGET_S: Final = 10.0
# What ensure_first_start creates; the bench makes the same and sets the mode it needs.
MAIN_FOLDER: Final = "main"
LOCAL_CHAT: Final = ("cli", "local")
# The file in which the host keeps the id its Docker containers are labelled with.
INSTALLATION_FILE: Final = "installation-id"

HOST_READY_S: Final = 60.0
ROUND_TRIP_TIMEOUT_S: Final = 30.0
COLD_TIMEOUT_S: Final = 180.0  # a Docker start on a loaded machine
ANSWER_STALL_S: Final = 60.0  # no ack at all for this long: the host is stuck
MIN_ANSWER_RATE: Final = 2.0  # msg/s: slower than this in all is a failure, not a figure
STOP_LIMIT_S: Final = 180.0
SETTLE_S: Final = 2.0  # after the last reply, before the idle window: turns finish writing
POLL_INTERVALS: Final = ((1.0, "1s"), (0.010, "10ms"))

# Exit codes: a figure could not be taken (2), or a check failed: lost, duplicated or
# misrouted messages, agents left after a stop (1).
EXIT_ERROR: Final = 2
EXIT_CHECK: Final = 1


# -- rows ------------------------------------------------------------------------------------


@dataclass
class Row:
    id: str
    figure: str
    label: str
    unit: str
    samples: list[float] = field(default_factory=list)
    value: float | None = None  # a single figure: a rate, a share of a core, a count, a duration
    skipped: str | None = None
    baseline: bool = False

    @property
    def n(self) -> int:
        return len(self.samples) if self.samples else (0 if self.value is None else 1)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "figure": self.figure,
            "label": self.label,
            "unit": self.unit,
            "baseline": self.baseline,
            "n": self.n,
        }
        if self.samples:
            out |= {
                "median": statistics.median(self.samples),
                "p99": percentile(self.samples, 0.99),
                "mean": statistics.fmean(self.samples),
                "min": min(self.samples),
                "max": max(self.samples),
                "samples": self.samples,
            }
        if self.value is not None:
            out["value"] = self.value
        if self.skipped is not None:
            out["skipped"] = self.skipped
        return out


@dataclass
class Run:
    """What the bench found: rows, checks and notes, and what went wrong."""

    rows: list[Row] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # a figure could not be taken
    failed_checks: list[str] = field(default_factory=list)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)

    def skip(self, reason: str, *templates: Row) -> None:
        for row in templates:
            row.skipped = reason
            self.rows.append(row)


@dataclass(frozen=True)
class Sizes:
    sessions: int = 50
    messages: int = 1000
    idle_s: float = 30.0
    cold: int = 10
    docker: bool = True
    warm: int = 50
    poll_samples: int = 30
    poll_cpu_window_s: float = 10.0
    roundtrip_n: int = 50
    ceiling_n: int = 500


QUICK: Final = Sizes(
    sessions=5,
    messages=50,
    idle_s=5.0,
    cold=2,
    docker=False,
    warm=10,
    poll_samples=3,
    poll_cpu_window_s=2.0,
    roundtrip_n=3,
    ceiling_n=50,
)


# -- the machine -----------------------------------------------------------------------------


def mount_of(path: Path) -> dict[str, str]:
    """The mount under `path`: fsync and inotify costs depend on the disk and file system."""
    best = {"mount": "", "device": "unknown", "fs": "unknown"}
    target = str(path.resolve())
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best["mount"]):
            best = {"mount": point, "device": parts[0], "fs": parts[2]}
    return best


def rotational(device: str) -> bool | None:
    """From sysfs; a partition's flag lives with its whole disk. None when not a block device."""
    entry = Path("/sys/class/block") / Path(device).name
    for queue in (entry / "queue", entry.resolve().parent / "queue"):
        try:
            return (queue / "rotational").read_text().strip() == "1"
        except OSError:
            continue
    return None


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine(folder: Path) -> dict[str, Any]:
    disk: dict[str, Any] = dict(mount_of(folder))
    disk["path"] = str(folder)
    disk["rotational"] = rotational(disk["device"])
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "disk": disk,
        "load_average_at_start": list(os.getloadavg()),
    }


def machine_line(info: dict[str, Any]) -> str:
    disk = info["disk"]
    spinning = {True: ", rotational", False: ", not rotational", None: ""}[disk["rotational"]]
    return (
        f"machine: {info['cpu_model']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"{info['memory_gib']} GiB, python {info['python']}, SQLite {info['sqlite']}, {info['platform']}\n"
        f"data dir: {disk['path']} on {disk['device']} ({disk['fs']} at {disk['mount']}{spinning}); "
        f"load average at start {', '.join(f'{x:.2f}' for x in info['load_average_at_start'])}"
    )


# -- setting up a data folder ----------------------------------------------------------------


def wire_per_thread(data_dir: Path) -> None:
    """Before the host starts: the local chat's wiring to `main` in per-thread mode, so each
    thread of the chat is a session of its own. What the host would make on a first start is
    made here first; the host then finds it and keeps it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(HostConfig(data_dir=data_dir).central_db)
    try:
        group = agent_groups.get_by_folder(store, MAIN_FOLDER) or agent_groups.create(
            store, name=MAIN_FOLDER, folder=MAIN_FOLDER
        )
        channel, platform_id = LOCAL_CHAT
        chat = messaging_groups.get_by_platform(store, channel, platform_id) or messaging_groups.create(
            store, channel_type=channel, platform_id=platform_id, name="local chat"
        )
        wiring = messaging_group_agents.get_pair(store, chat.id, group.id)
        if wiring is None:
            messaging_group_agents.create(
                store, messaging_group_id=chat.id, agent_group_id=group.id, session_mode="per-thread"
            )
        elif wiring.session_mode != "per-thread":
            messaging_group_agents.update(store, wiring.id, session_mode="per-thread")
    finally:
        store.close()


def thread_names(count: int) -> list[str]:
    return [f"t{i:04d}" for i in range(count)]


# -- (a) and (d): one message at a time ------------------------------------------------------


def cold_starts(chat: ChatClient, threads: list[str]) -> list[float]:
    """Each message opens a new thread: a new session whose agent starts for it."""
    return [chat.round_trip(f"cold {thread}", thread, COLD_TIMEOUT_S) for thread in threads]


def warm_round_trips(chat: ChatClient, thread: str, count: int) -> list[float]:
    return [chat.round_trip(f"warm {thread} r{i:05d}", thread, ROUND_TRIP_TIMEOUT_S) for i in range(count)]


def start_agents(chat: ChatClient, threads: list[str]) -> None:
    """One message per thread, all at once; returns when every thread has its reply."""
    if not threads:
        return
    since, answers, errors = chat.reply_count, chat.answers, len(chat.errors)
    texts = {thread: f"hello {thread}" for thread in threads}
    chat.send_all([(text, thread) for thread, text in texts.items()])
    timeout = COLD_TIMEOUT_S + 2.0 * len(threads)
    chat.wait_answers(answers + len(threads), timeout, ANSWER_STALL_S)
    if len(chat.errors) > errors:
        raise BenchError(f"the host refused a first message: {chat.errors[errors]}")
    chat.wait_mentions({thread: expected_reply(text) for thread, text in texts.items()}, since, timeout)


# -- (b) taken in ----------------------------------------------------------------------------


@dataclass
class Ingest:
    sent: int
    acked_s: float  # first send -> last ack
    replied_s: float  # first send -> the reply naming each thread's last message
    refused: list[str]


def ingest_messages(token: str, threads: list[str], count: int) -> list[tuple[str, str | None]]:
    """Round robin over the threads; fixed-width numbers, so no text is part of another."""
    return [(f"in{token} {threads[i % len(threads)]} m{i:05d}", threads[i % len(threads)]) for i in range(count)]


def ingest(chat: ChatClient, messages: list[tuple[str, str | None]]) -> Ingest:
    since, answers, errors = chat.reply_count, chat.answers, len(chat.errors)
    # The host may take them one at a time (then the acks trail far behind the sends) or
    # in groups: the deadlines assume neither, only that it keeps moving.
    ack_timeout = 60.0 + len(messages) / MIN_ANSWER_RATE
    first = chat.send_all(messages)
    last_ack = chat.wait_answers(answers + len(messages), ack_timeout, ANSWER_STALL_S)
    last_text: dict[str | None, str] = {thread: text for text, thread in messages}
    done = chat.wait_mentions(last_text, since, 120.0 + 0.3 * len(messages))
    return Ingest(len(messages), (last_ack - first) / 1e9, (done - first) / 1e9, chat.errors[errors:])


@dataclass
class Stored:
    """What the sessions' inbound.db files hold of the sent messages."""

    copies: Counter[str]
    misrouted: list[str]  # stored with another thread than the one it was sent on
    split_threads: list[str]  # a thread whose messages went to more than one session
    sessions: int


def read_inbound(data_dir: Path, prefix: str, sent_thread: dict[str, str | None]) -> Stored:
    copies: Counter[str] = Counter()
    misrouted: list[str] = []
    folders: dict[str | None, set[str]] = {}
    databases = sorted(HostConfig(data_dir=data_dir).sessions_dir.glob("*/*/inbound.db"))
    for db in databases:
        with read_transaction(db) as conn:
            rows = conn.execute("SELECT content, thread_id FROM messages_in WHERE kind = 'chat'").fetchall()
        for content, thread in rows:
            text = json.loads(content).get("text", "")
            if not text.startswith(prefix):
                continue
            copies[text] += 1
            folders.setdefault(thread, set()).add(db.parent.name)
            if text in sent_thread and sent_thread[text] != thread:
                misrouted.append(text)
    split = sorted(str(thread) for thread, where in folders.items() if len(where) > 1)
    return Stored(copies, misrouted, split, len(databases))


def commit_ceiling(folder: Path, count: int) -> tuple[float, float]:
    """msg/s for inbound.db commits alone on this disk: one transaction per message (the
    host's write path, opened and closed each time), and all of them in one transaction."""
    folder.mkdir(parents=True)
    each, grouped = folder / "each.db", folder / "grouped.db"
    for path in (each, grouped):
        create_session_db(path, INBOUND)

    def insert(conn: sqlite3.Connection, i: int) -> None:
        content = ChatIn(text=f"ceiling {i}", sender="bench")
        inbound.insert_message(conn, message_id=f"m{i}", content=content, timestamp=now_ts())

    start = time.perf_counter()
    for i in range(count):
        with write_transaction(each) as conn:
            insert(conn, i)
    one_each = count / (time.perf_counter() - start)
    start = time.perf_counter()
    with write_transaction(grouped) as conn:
        for i in range(count):
            insert(conn, i)
    one_for_all = count / (time.perf_counter() - start)
    return one_each, one_for_all


# -- (c) idle --------------------------------------------------------------------------------


def agent_ticks(host_pid: int) -> dict[tuple[int, int], int]:
    """CPU ticks per agent (a child of the host), with whatever that agent started."""
    processes = descendants(host_pid)
    by_pid = {stat.pid: stat for stat in processes}
    ticks: dict[tuple[int, int], int] = {}
    for stat in processes:
        agent = _agent_of(stat, by_pid, host_pid)
        if agent is not None:
            ticks[agent.key] = ticks.get(agent.key, 0) + stat.cpu_ticks
    return ticks


def _agent_of(stat: ProcStat, by_pid: dict[int, ProcStat], host_pid: int) -> ProcStat | None:
    while stat.ppid != host_pid:
        parent = by_pid.get(stat.ppid)
        if parent is None:
            return None
        stat = parent
    return stat


@dataclass
class Idle:
    window_s: float
    host_pct: float
    agent_pct: list[float]  # per agent that lived through the whole window
    agents_at_start: int
    agents_at_end: int


def measure_idle(host: HostProcess, window_s: float) -> Idle:
    host_before = _host_ticks(host)
    agents_before = agent_ticks(host.pid)
    start = time.monotonic()
    time.sleep(window_s)
    host_after = _host_ticks(host)
    agents_after = agent_ticks(host.pid)
    elapsed = time.monotonic() - start
    per_agent = [
        100 * (agents_after[key] - ticks) / CLOCK_TICKS / elapsed
        for key, ticks in agents_before.items()
        if key in agents_after
    ]
    host_pct = 100 * (host_after - host_before) / CLOCK_TICKS / elapsed
    return Idle(elapsed, host_pct, per_agent, len(agents_before), len(agents_after))


def _host_ticks(host: HostProcess) -> int:
    # /proc/<pid>/stat of a process counts all its threads, the ended ones included.
    stat = read_stat(host.pid)
    if stat is None:
        raise BenchError("the host exited during the idle window")
    return stat.cpu_ticks


# -- the phases ------------------------------------------------------------------------------


@contextmanager
def phase(run: Run, name: str, *templates: Row) -> Iterator[None]:
    """A phase that fails records why, marks its rows skipped, and lets the others run."""
    started = time.monotonic()
    print(f"-- {name} ...", file=sys.stderr, flush=True)
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, BenchError | bench_roundtrip.BenchError | TimeoutError):  # a surprise: show where
            traceback.print_exc()
        reason = f"failed: {type(exc).__name__}: {exc}"
        run.errors.append(f"{name}: {type(exc).__name__}: {exc}")
        present = {row.id for row in run.rows}
        run.skip(reason, *(row for row in templates if row.id not in present))
    finally:
        print(f"-- {name}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


ROUNDTRIP_IDS: Final = {
    bench_roundtrip.HOST_COLD: "rt.host_cold",
    bench_roundtrip.HOST_WARM: "rt.host_warm",
    bench_roundtrip.CONTAINER_COLD: "rt.container_cold",
    bench_roundtrip.CONTAINER_EVENTS: "rt.container_events",
    bench_roundtrip.CONTAINER_POLL: "rt.container_poll",
    bench_roundtrip.FLOOR_FILE: "rt.floor_file",
    bench_roundtrip.FLOOR_SQLITE: "rt.floor_sqlite",
    bench_roundtrip.SQLITE_COMMIT: "rt.sqlite_commit",
}


def roundtrip_templates() -> list[Row]:
    return [Row(row_id, "rt", label, "ms") for label, row_id in ROUNDTRIP_IDS.items()]


def run_roundtrip(run: Run, folder: Path, n: int) -> None:
    templates = roundtrip_templates()
    if n < 1:
        run.skip("not run (--roundtrip-n 0)", *templates)
        return
    with phase(run, "rt: bench_roundtrip rows", *templates):
        results = bench_roundtrip.bench_host(folder / "host", n)
        container, notes = bench_roundtrip.bench_container(folder / "container", n)
        results += container
        results.append(bench_roundtrip.bench_file_floor(folder / "floor-file", n))
        results += bench_roundtrip.bench_sqlite_floor(folder / "floor-sqlite", n)
        by_label = {result.label: result for result in results}
        for row in templates:
            row.samples = by_label[row.label].samples_ms
        run.add(*templates)
        run.checks["rt_found_by_fallback"] = notes.found_by_fallback
        run.notes.append(
            f"rt: {notes.outbound_events_per_message:.1f} file events on outbound.db per warm message; "
            f"{notes.found_by_fallback} replies found only by the fallback re-check"
        )


def run_ceiling(run: Run, folder: Path, count: int) -> None:
    each = Row("b.ceiling_each", "b", "baseline: inbound.db commits alone, one per message", "msg/s", baseline=True)
    grouped = Row("b.ceiling_grouped", "b", "baseline: inbound.db commits alone, one for all", "msg/s", baseline=True)
    with phase(run, "b: commit ceiling", each, grouped):
        each.value, grouped.value = commit_ceiling(folder, count)
        run.add(each, grouped)


def run_pollers(run: Run, folder: Path, sizes: Sizes) -> dict[str, PollerResult]:
    found: dict[str, PollerResult] = {}
    for interval, name in POLL_INTERVALS:
        latency = Row(
            f"a.poll_{name}_latency", "a", f"baseline: poller every {name}, commit -> seen", "ms", baseline=True
        )
        cpu = Row(
            f"a.poll_{name}_cpu",
            "a",
            f"baseline: poller every {name} over {sizes.sessions} outbound.db, CPU",
            "% of a core",
            baseline=True,
        )
        with phase(run, f"a: poller every {name}", latency, cpu):
            result = measure_poller(
                folder / f"poll-{name}", interval, sizes.sessions, sizes.poll_samples, sizes.poll_cpu_window_s
            )
            latency.samples = result.latency_ms
            cpu.value = 100 * result.cpu_s_per_s
            run.add(latency, cpu)
            run.notes.append(
                f"a: poller every {name}: commit -> seen mean {statistics.fmean(result.latency_ms):.1f} ms; "
                f"{result.passes} passes over {result.files} files in {result.window_s:.1f} s, "
                f"{result.mean_pass_ms:.2f} ms per pass"
            )
            found[name] = result
    return found


def host_templates(sizes: Sizes) -> dict[str, Row]:
    s = sizes.sessions
    rows = [
        Row("a.host_warm", "a", f"host round trip, warm agent ({s} agents live)", "ms"),
        Row("b.ingest_acked", "b", f"taken in: {sizes.messages} msgs pipelined -> last ack", "msg/s"),
        Row("b.ingest_replied", "b", f"taken in: {sizes.messages} msgs -> every thread answered", "msg/s"),
        Row("b.lost", "b", "check: sent messages not in any inbound.db", "messages"),
        Row("b.duplicated", "b", "check: sent messages stored more than once", "messages"),
        Row("c.host_cpu", "c", f"idle: host CPU, {s} agents live", "% of a core"),
        Row("c.agents_cpu_total", "c", f"idle: all {s} agents' CPU", "% of a core"),
        Row("c.agent_cpu", "c", "idle: CPU per agent", "% of a core"),
        Row("d.cold_process", "d", "cold start to first reply, process runtime", "ms"),
        Row("e.stop_s", "e", f"SIGTERM -> host exited, {s} agents live (target {STOP_TARGET_S:.0f} s)", "s"),
        Row("e.leftover_agents", "e", "check: agents left after the host exited", "processes"),
    ]
    return {row.id: row for row in rows}


def run_process_host(run: Run, folder: Path, sizes: Sizes) -> None:
    rows = host_templates(sizes)
    with phase(run, "a-e: host process, process runtime", *rows.values()):
        data_dir = folder / "data"
        wire_per_thread(data_dir)
        host = HostProcess(data_dir, "process", sizes.sessions + 5, folder / "host.log")
        try:
            host.wait_ready(HOST_READY_S)
            chat = ChatClient(host.chat_socket)
            try:
                _drive_host(run, rows, host, chat, sizes)
            finally:
                chat.close()
        finally:
            host.close()
            run.notes.append(f"host log: {host.log_path} (kept only with --keep)")


def _drive_host(run: Run, rows: dict[str, Row], host: HostProcess, chat: ChatClient, sizes: Sizes) -> None:
    threads = thread_names(sizes.sessions)
    _log_step(f"d: {sizes.cold} cold starts, one at a time")
    rows["d.cold_process"].samples = cold_starts(chat, threads[: sizes.cold])
    run.add(rows["d.cold_process"])
    _log_step(f"starting the other {sizes.sessions - sizes.cold} agents at once")
    start_agents(chat, threads[sizes.cold :])
    live = len(host.agents())
    run.checks["agents_live"] = live
    if live != sizes.sessions:
        run.notes.append(f"expected {sizes.sessions} agents, found {live} children of the host")

    _log_step(f"a: {sizes.warm} warm round trips")
    rows["a.host_warm"].samples = warm_round_trips(chat, threads[0], sizes.warm)
    run.add(rows["a.host_warm"])

    _log_step(f"b: {sizes.messages} messages pipelined into {sizes.sessions} sessions")
    _run_ingest(run, rows, host, chat, threads, sizes.messages)

    _log_step(f"c: idle window of {sizes.idle_s:.0f} s")
    time.sleep(SETTLE_S)
    idle = measure_idle(host, sizes.idle_s)
    rows["c.host_cpu"].value = idle.host_pct
    rows["c.agents_cpu_total"].value = sum(idle.agent_pct)
    rows["c.agent_cpu"].samples = idle.agent_pct
    run.add(rows["c.host_cpu"], rows["c.agents_cpu_total"], rows["c.agent_cpu"])
    run.notes.append(
        f"c: window {idle.window_s:.1f} s, agents at start {idle.agents_at_start}, at end {idle.agents_at_end}"
    )
    host.check_alive()

    _log_step("e: SIGTERM")
    outcome = host.terminate_timed(STOP_LIMIT_S)
    if outcome.seconds is None:
        rows["e.stop_s"].skipped = f"the host did not exit within {STOP_LIMIT_S:.0f} s of SIGTERM and was killed"
        run.failed_checks.append(rows["e.stop_s"].skipped or "")
    else:
        rows["e.stop_s"].value = outcome.seconds
    rows["e.leftover_agents"].value = len(outcome.leftovers)
    run.add(rows["e.stop_s"], rows["e.leftover_agents"])
    run.checks["stop_exit_code"] = outcome.exit_code
    if outcome.leftovers:
        run.failed_checks.append(
            f"e: {len(outcome.leftovers)} agent(s) outlived the host (killed): {[s.pid for s in outcome.leftovers]}"
        )
    if outcome.exit_code not in (0, None):
        run.notes.append(f"e: the host exited with code {outcome.exit_code}")


def _run_ingest(
    run: Run, rows: dict[str, Row], host: HostProcess, chat: ChatClient, threads: list[str], count: int
) -> None:
    token = uuid.uuid4().hex[:6]
    messages = ingest_messages(token, threads, count)
    result = ingest(chat, messages)
    rows["b.ingest_acked"].value = result.sent / result.acked_s
    rows["b.ingest_replied"].value = result.sent / result.replied_s
    run.add(rows["b.ingest_acked"], rows["b.ingest_replied"])
    stored = read_inbound(host.data_dir, f"in{token} ", {text: thread for text, thread in messages})
    sent = [text for text, _ in messages]
    lost = [text for text in sent if stored.copies[text] == 0]
    duplicated = [text for text in sent if stored.copies[text] > 1]
    rows["b.lost"].value, rows["b.duplicated"].value = len(lost), len(duplicated)
    run.add(rows["b.lost"], rows["b.duplicated"])
    run.checks |= {
        "ingest_sent": result.sent,
        "ingest_refused": len(result.refused),
        "ingest_stored_rows": sum(stored.copies.values()),
        "ingest_misrouted": len(stored.misrouted),
        "ingest_split_threads": len(stored.split_threads),
        "sessions_with_inbound_db": stored.sessions,
    }
    run.notes.append(
        f"b: acks after {result.acked_s:.2f} s, every thread answered after {result.replied_s:.2f} s; "
        f"{sum(stored.copies.values())} rows stored for {result.sent} sent in {stored.sessions} sessions"
    )
    problems = {
        "lost": lost,
        "stored twice or more": duplicated,
        "refused by the host": result.refused,
        "stored under another thread": stored.misrouted,
        "threads split over sessions": stored.split_threads,
    }
    for what, items in problems.items():
        if items:
            run.failed_checks.append(f"b: {len(items)} message(s) {what}, e.g. {items[:3]}")


def run_docker_host(run: Run, folder: Path, sizes: Sizes) -> None:
    cold = Row("d.cold_docker", "d", "cold start to first reply, Docker runtime", "ms")
    alone = Row("d.warm_docker", "d", "warm round trip, Docker agent, nothing else starting", "ms")
    during = Row("d.warm_docker_during_start", "d", "same, while another chat's Docker agent starts", "ms")
    stop = Row("e.stop_docker_s", "e", f"SIGTERM -> host exited, {2 * sizes.cold + 1} Docker agents live", "s")
    rows = (cold, alone, during, stop)
    if not sizes.docker:
        run.skip("not run (--no-docker or --quick)", *rows)
        return
    problem = DockerRuntime.available()
    if problem is not None:
        print(f"-- d: Docker rows skipped: {problem}", file=sys.stderr, flush=True)
        run.skip(problem, *rows)
        return
    with phase(run, "d: host process, Docker runtime", *rows):
        data_dir = folder / "data"
        wire_per_thread(data_dir)
        host = HostProcess(data_dir, "docker", 2 * sizes.cold + 5, folder / "host.log")
        try:
            host.wait_ready(HOST_READY_S)
            chat = ChatClient(host.chat_socket)
            try:
                cold.samples = cold_starts(chat, thread_names(sizes.cold))
                run.add(cold)
                alone.samples, during.samples = _warm_while_starting(chat, sizes.cold)
                run.add(alone, during)
                outcome = host.terminate_timed(STOP_LIMIT_S)
                if outcome.seconds is not None:
                    stop.value = outcome.seconds
                    run.add(stop)
            finally:
                chat.close()
        finally:
            host.close()
            _remove_containers(run, data_dir)


def _warm_while_starting(chat: ChatClient, count: int) -> tuple[list[float], list[float]]:
    """A warm chat's round trips, alone and each while a new chat's container starts: an
    agent start must hold up no other chat (it used to, inside the Supervisor's asks)."""
    warm = "warm"
    chat.round_trip(f"first {warm}", warm, COLD_TIMEOUT_S)
    alone = warm_round_trips(chat, warm, count)
    during: list[float] = []
    for index in range(count):
        thread, text = f"s{index:04d}", f"cold {index:05d} while warm"
        since = chat.reply_count
        chat.send(text, thread)  # a new session: its container starts now
        during.append(chat.round_trip(f"warm {warm} d{index:05d}", warm, ROUND_TRIP_TIMEOUT_S))
        chat.wait_mentions({thread: expected_reply(text)}, since, COLD_TIMEOUT_S)
    return alone, during


def _remove_containers(run: Run, data_dir: Path) -> None:
    """The host removes its containers when it stops; anything left carries its label."""
    try:
        installation = (data_dir / INSTALLATION_FILE).read_text().strip()
    except OSError:
        return
    runtime = DockerRuntime(installation_id=installation)
    try:
        removed = runtime.cleanup_orphans()
    finally:
        runtime.close()
    if removed:
        run.failed_checks.append(f"d: {len(removed)} container(s) outlived the Docker host (removed): {removed}")


def _log_step(text: str) -> None:
    print(f"   {text}", file=sys.stderr, flush=True)


# -- report ----------------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 1e5 else f"{value:.0f}"


def report_table(rows: list[Row]) -> str:
    width = max(len(f"{row.id}  {row.label}") for row in rows)
    header = f"{'case':<{width}}  {'n':>4}  {'median':>10}  {'p99':>10}  unit"
    lines = [header, "-" * len(header)]
    for row in rows:
        case = f"{row.id}  {row.label}"
        if row.skipped is not None:
            lines.append(f"{case:<{width}}  {'':>4}  {'skipped':>10}  {'':>10}  {row.skipped}")
        elif row.samples:
            median, p99 = statistics.median(row.samples), percentile(row.samples, 0.99)
            lines.append(f"{case:<{width}}  {row.n:>4}  {_number(median):>10}  {_number(p99):>10}  {row.unit}")
        elif row.value is not None:
            lines.append(f"{case:<{width}}  {row.n:>4}  {_number(row.value):>10}  {'-':>10}  {row.unit}")
    return "\n".join(lines)


FIGURE_ORDER: Final = ("a", "b", "c", "d", "e", "rt")


def ordered(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda row: (FIGURE_ORDER.index(row.figure), row.baseline))


def write_outputs(document: dict[str, Any], out_dir: Path) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "bench.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    written = [str(json_path)]
    try:
        import bench_plot
    except ImportError as exc:  # matplotlib comes with the dev extras
        print(f"no PNG: {exc} (pip install -e '.[dev]')", file=sys.stderr)
        return written
    png_path = out_dir / "bench.png"
    bench_plot.draw(document, png_path)
    written.append(str(png_path))
    return written


# -- main ------------------------------------------------------------------------------------


def _sizes(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else Sizes()
    changes = {
        name: getattr(args, name)
        for name in ("sessions", "messages", "idle_s", "cold", "warm", "poll_samples", "roundtrip_n")
        if getattr(args, name) is not None
    }
    if args.no_docker:
        changes["docker"] = False
    return dataclasses.replace(base, **changes)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 5 sessions, 50 msgs, 5 s idle, 2 cold starts, no Docker"
    )
    parser.add_argument("--sessions", type=int, help="live agents (one thread each); default 50")
    parser.add_argument("--messages", type=int, help="messages pipelined in (b); default 1000")
    parser.add_argument("--idle-s", type=float, help="idle window of (c) in seconds; default 30")
    parser.add_argument("--cold", type=int, help="cold starts per runtime in (d); default 10")
    parser.add_argument("--warm", type=int, help="warm round trips in (a); default 50")
    parser.add_argument("--poll-samples", type=int, help="commits per poller baseline; default 30")
    parser.add_argument("--roundtrip-n", type=int, help="N for bench_roundtrip's rows (0 skips them); default 50")
    parser.add_argument("--no-docker", action="store_true", help="skip the Docker rows")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where bench.json and bench.png go")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where the temporary data folders go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (host logs, session DBs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the bench and the host do")
    return parser


def _check_sizes(parser: argparse.ArgumentParser, sizes: Sizes) -> None:
    if not 1 <= sizes.sessions <= 9999:
        parser.error("--sessions must be 1..9999")
    if not 1 <= sizes.messages <= 99999:
        parser.error("--messages must be 1..99999")
    if not 1 <= sizes.cold <= sizes.sessions:
        parser.error("--cold must be 1..--sessions (the cold starts open the first sessions)")
    if sizes.idle_s <= 0 or sizes.warm < 1 or sizes.poll_samples < 1 or sizes.roundtrip_n < 0:
        parser.error("--idle-s, --warm and --poll-samples must be positive, --roundtrip-n at least 0")


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # Default SIGTERM ends Python without running `finally`: the host and its agents would stay.
    raise SystemExit(128 + signum)


def measure(sizes: Sizes, folder: Path) -> Run:
    run = Run()
    run_roundtrip(run, folder / "rt", sizes.roundtrip_n)
    run_ceiling(run, folder / "ceiling", sizes.ceiling_n)
    run_pollers(run, folder / "poll", sizes)
    run_process_host(run, folder / "process", sizes)
    run_docker_host(run, folder / "docker", sizes)
    return run


def document_of(run: Run, sizes: Sizes, info: dict[str, Any], quick: bool, took_s: float) -> dict[str, Any]:
    info = info | {"load_average_at_end": list(os.getloadavg())}
    return {
        "version": 1,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "took_s": took_s,
        "quick": quick,
        "sizes": dataclasses.asdict(sizes),
        "machine": info,
        "rows": [row.to_json() for row in ordered(run.rows)],
        "checks": run.checks,
        "notes": run.notes,
        "errors": run.errors,
        "failed_checks": run.failed_checks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    sizes = _sizes(args)
    _check_sizes(parser, sizes)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("watchdog.observers.inotify").addFilter(bench_roundtrip._quiet_stop_race)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.monotonic()
    # Short: the chat socket's path must fit a Unix socket address.
    folder = Path(tempfile.mkdtemp(prefix="bench-host-", dir=args.dir))
    try:
        info = machine(folder)
        run = measure(sizes, folder)
    finally:
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            _remove_tree(folder)
    document = document_of(run, sizes, info, args.quick, time.monotonic() - started)
    written = write_outputs(document, args.out)
    print(_report_text(run, sizes, info, document, written), flush=True)
    if run.errors:
        return EXIT_ERROR
    return EXIT_CHECK if run.failed_checks else 0


def _report_text(run: Run, sizes: Sizes, info: dict[str, Any], document: dict[str, Any], written: list[str]) -> str:
    lines = [
        f"host benchmark: {sizes.sessions} sessions, {sizes.messages} messages in, {sizes.idle_s:.0f} s idle, "
        f"{sizes.cold} cold starts, mock provider",
        machine_line(info),
        "",
        report_table(ordered(run.rows)),
        "",
    ]
    lines += [f"note: {note}" for note in run.notes]
    lines += [f"ERROR: {error}" for error in run.errors]
    lines += [f"CHECK FAILED: {failure}" for failure in run.failed_checks]
    lines.append(f"total time: {document['took_s']:.1f} s; written: {', '.join(written)}")
    return "\n".join(lines)


def _remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
