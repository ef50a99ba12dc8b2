"""SIGKILL the host or its agent at the steps of a turn, restart, and check that nothing
acknowledged is lost and every database is intact.

Each test runs `python -m actors.main` (process runtime, mock provider) as a real process
and talks to it over the local chat socket. "Answered" means the chat client received the
mock provider's reply (`mock: <message>`). After the fault, a probe message is sent and its
answer awaited: replies leave a session in seq order, so every reply of the faulted message
(a repeat included) arrives before the probe's and the count is final.

Exactly once is required everywhere except where the design allows a repeat (delivery is
at least once: a reply shown just before the host dies may be shown again); there at most
two are allowed, and the count is printed and named in the assertion's message.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from protocol.timeutil import format_ts, utc_now
from tests.faults.harness import (
    FaultRun,
    agent_pids,
    descendant_running,
    finish,
    first_line,
    poll,
    polled_rows,
    processing_claims,
    session_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SLEEP_S = 3
TOOL_TURN = f'!tool bash {{"command": "sleep {SLEEP_S}"}}'
SLEEP_ARGV = [b"sleep", str(SLEEP_S).encode()]


def _kill_agent(run: FaultRun, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    poll(f"agent {pid} to end", lambda: pid not in agent_pids(run.data_dir))


def test_host_killed_right_after_the_ack(data_dir: Path) -> None:
    """The row is committed (that is what the ack promises) and the agent maybe not woken
    yet: a new host finds the work on disk and answers it once."""
    with FaultRun(data_dir) as run:
        run.send("after the ack")
        run.kill_host()
        run.restart()
        run.await_answer("after the ack")
        finish(run, "after the ack")


def test_agent_killed_right_after_claiming(data_dir: Path) -> None:
    """The agent committed its `processing` claim and dies: the host starts it again on its
    own and the message is answered once."""
    with FaultRun(data_dir) as run:
        run.send(f"claimed then killed\n{TOOL_TURN}")
        poll("the agent's claim", lambda: processing_claims(data_dir))
        _kill_agent(run, run.agent())
        run.await_answer("claimed then killed")
        finish(run, "claimed then killed")


def test_agent_killed_mid_turn(data_dir: Path) -> None:
    """The agent dies while its bash tool runs: restarted by the host, answered once."""
    with FaultRun(data_dir) as run:
        run.send(f"killed in a tool\n{TOOL_TURN}")
        agent = run.agent()
        poll("the bash tool to run", lambda: descendant_running(agent, SLEEP_ARGV))
        _kill_agent(run, agent)
        run.await_answer("killed in a tool")
        finish(run, "killed in a tool")


def test_host_killed_right_after_a_reply_reached_the_chat(data_dir: Path) -> None:
    """Send, then record: the host dies between the two, so the reply may be shown again
    after the restart (at least once), but at most once more and never lost."""
    with FaultRun(data_dir) as run:
        run.send("shown then killed")
        run.await_answer("shown then killed")
        run.kill_host()
        run.restart()
        count = finish(run, "shown then killed", at_most=2)
        print(f"'shown then killed' was answered {count} time(s)")


def test_host_killed_while_its_agent_is_mid_turn(data_dir: Path) -> None:
    """The agent dies with its host in the middle of a tool; a new host runs the claimed
    message again: answered (once, at most twice), nothing lost."""
    with FaultRun(data_dir) as run:
        run.send(f"host killed mid turn\n{TOOL_TURN}")
        agent = run.agent()
        poll("the bash tool to run", lambda: descendant_running(agent, SLEEP_ARGV))
        run.kill_host()
        run.restart()
        run.await_answer("host killed mid turn")
        count = finish(run, "host killed mid turn", at_most=2)
        print(f"'host killed mid turn' was answered {count} time(s)")


# --- a system action (schedule_task) ------------------------------------------------------

# Far enough out that the task usually runs after the restart as a turn of its own;
# `_task_runs` counts it either way.
TASK_DELAY_S = 8

_SCHEDULE_ROWS = "SELECT id, json_extract(content, '$.task_id') FROM messages_out WHERE kind = 'system'"
_TASKS = "SELECT id, status FROM messages_in WHERE kind = 'task'"
_APPLIED = "SELECT message_out_id FROM delivered WHERE status = 'delivered'"


class DuplicateTaskError(AssertionError):
    """One schedule_task request left more than one task, or its task ran more than once."""


def _schedule_turn(marker: str, prompt: str) -> str:
    """A turn that schedules a one-shot task, then stays in a tool: a kill at its row is
    surely mid-turn."""
    when = format_ts(utc_now() + timedelta(seconds=TASK_DELAY_S))
    request = json.dumps({"prompt": prompt, "process_after": when})
    return f"{marker}\n!tool schedule_task {request}\n{TOOL_TURN}"


def _task_runs(run: FaultRun, prompt: str) -> int:
    """Turns that read the task's prompt: its own (`mock: <prompt>`), or another turn's that
    took it in as a follow-up because it came due meanwhile."""
    also = f"(also read: {prompt})"
    return sum(
        1
        for message in run.received
        if first_line(message) == f"mock: {prompt}" or also in str(message.get("text", "")).splitlines()
    )


def _tasks_settled(run: FaultRun) -> bool:
    tasks = polled_rows(run.data_dir, "inbound", _TASKS)
    return bool(tasks) and all(status != "pending" for _, status in tasks)


def _check_applied_atomically(data_dir: Path) -> int:
    """With the host dead: a task is in inbound.db exactly when its row is recorded applied
    (both or neither, one transaction). The number of tasks stored."""
    requests = dict(session_rows(data_dir, "outbound", _SCHEDULE_ROWS))
    applied = {key for (key,) in session_rows(data_dir, "inbound", _APPLIED)}
    tasks = {task_id for task_id, _ in session_rows(data_dir, "inbound", _TASKS)}
    assert tasks == {task_id for row_id, task_id in requests.items() if row_id in applied}, (requests, applied, tasks)
    return len(tasks)


# A turn retried after the kill calls schedule_task again; the request carries the turn's
# effect id (container_runner/tools/scheduling.py), so the retry's row is the first one.
@pytest.mark.parametrize("kill_at", ["row_written", "task_stored", "reply_shown"])
def test_host_killed_while_applying_a_system_action(data_dir: Path, kill_at: str) -> None:
    """The agent asks for a one-shot task (a `system` row in outbound.db) and the host is
    SIGKILLed as it applies it: as soon as the row is on disk (mostly before the host
    applied it), as soon as the task is in inbound.db (applied), or once the turn's reply
    reached the chat (turn over). The killed host left the task and its "applied" record
    both or neither. After a restart every schedule row is applied and its task kept,
    nothing else is made up, the task exists exactly once and runs exactly once, the message
    is answered (twice at most when the kill came after its reply was shown: send, then
    record) and every DB is intact."""
    marker = f"schedule then killed at {kill_at}"
    prompt = f"the task scheduled before {kill_at}"
    with FaultRun(data_dir) as run:
        run.send(_schedule_turn(marker, prompt))
        if kill_at == "row_written":
            # As tight as a reader can poll: the host applies the row a few ms after its commit.
            poll("the schedule row", lambda: polled_rows(data_dir, "outbound", _SCHEDULE_ROWS), interval_s=0.0005)
        elif kill_at == "task_stored":
            poll("the task in inbound.db", lambda: polled_rows(data_dir, "inbound", _TASKS), interval_s=0.0005)
        else:
            run.await_answer(marker)
        run.kill_host()
        stored = _check_applied_atomically(data_dir)
        mid_turn = processing_claims(data_dir)
        print(f"{kill_at}: the killed host had stored {stored} task(s); {mid_turn} claim(s) unfinished")
        assert mid_turn == (0 if kill_at == "reply_shown" else 1), "the kill did not land where it was meant to"

        run.restart()
        run.await_answer(marker)
        poll("the task to run", lambda: _tasks_settled(run), timeout_s=60)
        run.await_received(f"the task's answer {prompt!r}", lambda: _task_runs(run, prompt) > 0)
        count = finish(run, marker, at_most=2 if kill_at == "reply_shown" else 1)
        print(f"{marker!r} was answered {count} time(s)")

        requests = session_rows(data_dir, "outbound", _SCHEDULE_ROWS)
        tasks = dict(session_rows(data_dir, "inbound", _TASKS))
        applied = {key for (key,) in session_rows(data_dir, "inbound", _APPLIED)}
        # The host's part: every request applied once and kept, nothing made up.
        assert requests, run.summary()
        for row_id, task_id in requests:
            assert row_id in applied, f"schedule row {row_id} never recorded applied\n{run.summary()}"
            assert task_id in tasks, f"task {task_id} of row {row_id} was lost\n{run.summary()}"
        assert set(tasks) <= {task_id for _, task_id in requests}, f"tasks {tasks} vs requests {requests}"
        assert all(status == "completed" for status in tasks.values()), tasks
        # End to end: the person's one request, one task, one run.
        runs = _task_runs(run, prompt)
        if len(requests) != 1 or len(tasks) != 1 or runs != 1:
            raise DuplicateTaskError(
                f"one schedule_task call left {len(requests)} schedule row(s) and {len(tasks)} task(s), "
                f"run in {runs} turn(s)\n{run.summary()}"
            )
