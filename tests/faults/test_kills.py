"""SIGKILL the host or its agent at the steps of a turn, restart, and check that nothing
acknowledged is lost and every database is intact.

Each test runs `python -m actors.main` (process runtime, mock provider; the claude provider
against tests/fakes/fake_messages_api.py for the kill mid model call) as a real process
and talks to it over the local chat socket. "Answered" means the chat client received the
provider's reply (`mock: <message>`, `claude: <message>`). After the fault, a probe message
is sent and its answer awaited: replies leave a session in seq order, so every reply of the
faulted message (a repeat included) arrives before the probe's and the count is final.

Each test checks that its kill landed in the step it names (a claim still open, a model
request still unanswered, a record not yet written, ...). Exactly once is required
everywhere except where the design allows a repeat (delivery is at least once: a reply
shown just before the host dies may be shown again); there the count must match where the
kill landed, at most one duplicate, and it is reported (`report_duplicates`: a test
property, listed in the run's terminal summary by conftest.py).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from protocol.timeutil import format_ts, utc_now
from tests.fakes.fake_messages_api import FakeMessagesAPI
from tests.faults.harness import (
    POLL_TIMEOUT_S,
    FaultRun,
    Gate,
    HeldModel,
    agent_pids,
    chat_rows,
    delivered_ids,
    descendant_running,
    finish,
    first_line,
    inbound_write_lock,
    poll,
    polled_chat_rows,
    polled_rows,
    processing_claims,
    report_duplicates,
    session_rows,
)

RecordProperty = Callable[[str, object], None]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SLEEP_S = 3
TOOL_TURN = f'!tool bash {{"command": "sleep {SLEEP_S}"}}'
SLEEP_ARGV = [b"sleep", str(SLEEP_S).encode()]


def _kill_agent(run: FaultRun, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    poll(f"agent {pid} to end", lambda: pid not in agent_pids(run.data_dir))


def test_host_killed_right_after_the_ack(data_dir: Path) -> None:
    """The row is committed (that is what the ack promises) and the agent not woken yet: a
    new host finds the work on disk and answers it once."""
    with FaultRun(data_dir) as run:
        run.send("after the ack")
        run.kill_host()
        # Where the kill landed: the row is on disk, pending, and no agent ever took it.
        statuses = session_rows(data_dir, "inbound", "SELECT status FROM messages_in WHERE kind = 'chat'")
        assert statuses == [("pending",)], statuses
        claims = polled_rows(data_dir, "outbound", "SELECT count(*) FROM processing_ack")
        assert sum(count for (count,) in claims) == 0, f"the agent had claimed: {claims}\n{run.summary()}"
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


def test_agent_killed_mid_model_call(data_dir: Path) -> None:
    """The claude provider against the fake Messages API, which holds its answer to the
    turn's model request: the agent is SIGKILLed while the fake has the request and has not
    answered it (checked before and after the kill), its claim still open. The host starts
    the agent again, the retried request is answered, and the message is answered once."""
    marker = "killed mid model call"
    model = HeldModel(marker)
    with FakeMessagesAPI(responder=model) as api:
        env = {"HUTCH_PROVIDER": "claude", "ANTHROPIC_BASE_URL": api.base_url, "ANTHROPIC_API_KEY": "sk-fake"}
        try:
            with FaultRun(data_dir, env=env, reply_prefix="claude: ") as run:
                run.send(marker)
                agent = run.agent()
                assert model.arrived.wait(POLL_TIMEOUT_S), f"no model request\n{run.summary()}"
                assert model.holding and processing_claims(data_dir) == 1, run.summary()
                _kill_agent(run, agent)
                # Still unanswered once the agent is gone: the kill landed mid call.
                assert model.holding, "the fake answered before the kill"
                assert processing_claims(data_dir) == 1, run.summary()
                model.release()
                run.await_answer(marker)
                finish(run, marker)
        finally:
            model.release()
        assert model.calls.count(marker) == 2, model.calls  # the held call, and the retry's


PROGRESS = "progress before the kill"


def test_agent_killed_after_a_progress_message_before_its_ack(data_dir: Path) -> None:
    """The turn sends a progress message (send_message: a row in outbound.db, delivered at
    once), then waits in a bash tool at a gate: the agent is SIGKILLed there, after the row
    and before the turn's ack (its claim still open, checked after the kill). The host runs
    the turn again; its send_message is not replayed (the turn's effect id): the progress
    message is in outbound.db and shown exactly once, the final answer exactly once."""
    marker = "progress then killed"
    with Gate() as gate, FaultRun(data_dir) as run:
        send = json.dumps({"text": PROGRESS})
        run.send(f"{marker}\n!tool send_message {send}\n{gate.tool_line()}")
        agent = run.agent()
        run.await_received("the progress message", lambda: _shown(run, PROGRESS) > 0)
        assert polled_chat_rows(data_dir, PROGRESS), run.summary()
        poll("the turn to wait at the gate", lambda: descendant_running(agent, gate.argv))
        _kill_agent(run, agent)
        assert processing_claims(data_dir) == 1, f"the turn's ack was written\n{run.summary()}"
        gate.open()
        run.await_answer(marker)
        finish(run, marker)
        assert _shown(run, PROGRESS) == 1, run.summary()
        assert len(chat_rows(data_dir, PROGRESS)) == 1, chat_rows(data_dir, PROGRESS)


def _shown(run: FaultRun, text: str) -> int:
    return sum(1 for message in run.received if message.get("text") == text)


def _reply_recorded(run: FaultRun, marker: str) -> bool:
    """With the host dead: whether it had recorded `marker`'s reply delivered."""
    (reply,) = chat_rows(run.data_dir, f"mock: {marker}")
    recorded = reply in delivered_ids(run.data_dir)
    print(f"{marker!r}: the killed host had {'' if recorded else 'not '}recorded its reply delivered")
    return recorded


def _answered_after_restart(run: FaultRun, marker: str, recorded: bool, record_property: RecordProperty) -> int:
    """Restart; `delivered` recorded -> answered once, not recorded -> the row is sent again,
    answered exactly twice. The duplicates, reported and returned."""
    run.restart()
    count = finish(run, marker, at_most=2)
    assert count == (1 if recorded else 2), f"recorded={recorded} but answered {count} time(s)\n{run.summary()}"
    duplicates = report_duplicates(record_property, marker, count)
    assert duplicates <= 1
    return duplicates


def test_host_killed_right_after_a_reply_reached_the_chat(data_dir: Path, record_property: RecordProperty) -> None:
    """Send, then record: the host dies as soon as the reply is shown, wherever that lands
    (the record follows the send within 50 ms). Where it landed is read from inbound.db:
    recorded -> shown once; not -> shown exactly once more after the restart; never lost."""
    with FaultRun(data_dir) as run:
        run.send("shown then killed")
        run.await_answer("shown then killed")
        run.kill_host()
        _answered_after_restart(run, "shown then killed", _reply_recorded(run, "shown then killed"), record_property)


def test_host_killed_after_a_send_before_its_record(data_dir: Path, record_property: RecordProperty) -> None:
    """The same kill, made to land in the window every time: the test holds inbound.db's
    write lock from the ack on (the agent still reads the DB), so the host sends the reply
    but cannot record it. Killed once the reply is shown, the host had not recorded it
    (checked), and the restart shows it exactly once more: one duplicate, reported."""
    with FaultRun(data_dir) as run:
        run.send("sent not recorded")
        with inbound_write_lock(data_dir):
            run.await_answer("sent not recorded")
            run.kill_host()
        assert not _reply_recorded(run, "sent not recorded"), "the kill did not land before the record"
        assert _answered_after_restart(run, "sent not recorded", False, record_property) == 1


def test_host_killed_while_its_agent_is_mid_turn(data_dir: Path, record_property: RecordProperty) -> None:
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
        assert report_duplicates(record_property, "host killed mid turn", count) <= 1


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
def test_host_killed_while_applying_a_system_action(
    data_dir: Path, kill_at: str, record_property: RecordProperty
) -> None:
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
        report_duplicates(record_property, marker, count)

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
