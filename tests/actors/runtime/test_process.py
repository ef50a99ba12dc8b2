"""ProcessRuntime with tiny `python -c` agents instead of the real container_runner."""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from actors.runtime.base import AgentRuntime, AgentSpec, RuntimeStartError
from actors.runtime.process import REPO_ROOT, ProcessRuntime, agents_in
from tests.fakes.probes import Exits, LineWaiter

pytestmark = pytest.mark.timeout(20)

TAG = "family/abcdef01"


@pytest.fixture
def spec(tmp_path: Path) -> AgentSpec:
    session_dir = tmp_path / "sessions" / "abcdef0123"
    agent_dir = tmp_path / "groups" / "family"
    session_dir.mkdir(parents=True)
    agent_dir.mkdir(parents=True)
    return AgentSpec(
        session_id="abcdef0123456789",
        agent_group="family",
        session_dir=session_dir,
        agent_dir=agent_dir,
        env={"HUTCH_SESSION_DIR": str(session_dir), "HUTCH_AGENT_DIR": str(agent_dir), "HUTCH_PROVIDER": "mock"},
    )


@pytest.fixture
def ready(caplog: pytest.LogCaptureFixture) -> Iterator[LineWaiter]:
    caplog.set_level(logging.INFO, logger="hutch.agent")
    waiter = LineWaiter("ready")
    logger = logging.getLogger("hutch.agent")
    logger.addHandler(waiter)
    yield waiter
    logger.removeHandler(waiter)


def runtime_for(script: str, extra_env: Mapping[str, str] | None = None) -> ProcessRuntime:
    return ProcessRuntime(extra_env=extra_env, command=[sys.executable, "-c", script])


def test_is_an_agent_runtime() -> None:
    runtime: AgentRuntime = ProcessRuntime()
    assert runtime.name == "process"
    assert runtime.isolates is False


def test_env_is_minimal_and_cwd_is_agent_dir(spec: AgentSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-host-secret")
    monkeypatch.setenv("SOME_HOST_SETTING", "x")
    script = "import json, os; json.dump({'env': dict(os.environ), 'cwd': os.getcwd()}, open('seen.json', 'w'))"
    exits = Exits()
    runtime_for(script, extra_env={"HUTCH_EXTRA": "1", "ANTHROPIC_AUTH_TOKEN": "leak"}).start(spec, exits)
    assert exits.wait() == 0

    seen = json.loads((spec.agent_dir / "seen.json").read_text())
    env = seen["env"]
    assert Path(seen["cwd"]) == spec.agent_dir.resolve()
    for key, value in spec.env.items():
        assert env[key] == value
    assert env["HUTCH_EXTRA"] == "1"
    assert "ANTHROPIC_API_KEY" not in env
    assert "ANTHROPIC_AUTH_TOKEN" not in env
    assert "SOME_HOST_SETTING" not in env
    assert env["PATH"] == os.environ["PATH"]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)


def test_output_lines_are_logged_with_the_session_tag(
    spec: AgentSpec, caplog: pytest.LogCaptureFixture, ready: LineWaiter
) -> None:
    script = "import sys; print('hello'); print('oops', file=sys.stderr); sys.stdout.write('no newline')"
    exits = Exits()
    runtime_for(script).start(spec, exits)
    exits.wait()

    lines = [r.getMessage() for r in caplog.records if r.name == "hutch.agent"]
    assert f"[{TAG}] hello" in lines
    assert f"[{TAG}] oops" in lines
    assert f"[{TAG}] no newline" in lines


def test_normal_exit_reports_the_code_once(spec: AgentSpec) -> None:
    exits = Exits()
    handle = runtime_for("raise SystemExit(7)").start(spec, exits)
    assert handle.ident.isdigit()
    assert exits.wait() == 7
    assert not handle.alive()
    # Stopping an agent that already ended is harmless and reports the same code.
    assert handle.stop(timeout_s=1) == 7
    assert exits.codes == [7]


def test_stop_sends_sigterm_first(spec: AgentSpec, ready: LineWaiter) -> None:
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n"
        "print('ready')\n"
        "while True: time.sleep(1)\n"
    )
    exits = Exits()
    handle = runtime_for(script).start(spec, exits)
    ready.wait()
    assert handle.alive()
    assert handle.stop(timeout_s=10) == 3
    assert exits.wait() == 3
    assert exits.codes == [3]
    assert not handle.alive()


def test_stop_escalates_to_sigkill(spec: AgentSpec, ready: LineWaiter) -> None:
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready')\n"
        "while True: time.sleep(1)\n"
    )
    exits = Exits()
    handle = runtime_for(script).start(spec, exits)
    ready.wait()
    assert handle.stop(timeout_s=0.3) == -signal.SIGKILL
    assert exits.wait() == -signal.SIGKILL
    assert exits.codes == [-signal.SIGKILL]


def test_kill(spec: AgentSpec, ready: LineWaiter) -> None:
    exits = Exits()
    handle = runtime_for("import time\nprint('ready')\nwhile True: time.sleep(1)\n").start(spec, exits)
    ready.wait()
    handle.kill()
    assert exits.wait() == -signal.SIGKILL
    assert exits.codes == [-signal.SIGKILL]


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux) to watch the grandchild")
def test_processes_the_agent_started_end_with_it(spec: AgentSpec) -> None:
    # The grandchild inherits the output pipe: left alive, it would also hold back on_exit.
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open('grandchild.pid', 'w').write(str(p.pid))\n"
    )
    exits = Exits()
    runtime_for(script).start(spec, exits)
    assert exits.wait() == 0

    pid = int((spec.agent_dir / "grandchild.pid").read_text())
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already ended and reaped by whoever adopted it
    try:
        # A pidfd becomes readable when the process ends; a survivor would sleep for 60 s.
        readable, _, _ = select.select([pidfd], [], [], 10)
        assert readable, "the grandchild outlived the agent"
    finally:
        os.close(pidfd)


def test_a_command_the_agent_started_in_a_session_of_its_own_ends_with_it(spec: AgentSpec) -> None:
    """The bash tool runs each command with start_new_session, out of the agent's group; the
    command must still not outlive the agent (a reviewer found three `sleep`s after three
    restarts)."""
    script = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                     start_new_session=True, stdout=subprocess.DEVNULL)\n"
        "open('tool.pid', 'w').write(str(p.pid))\n"
    )
    exits = Exits()
    runtime_for(script).start(spec, exits)
    assert exits.wait() == 0
    assert _ends_within(int((spec.agent_dir / "tool.pid").read_text()))


def test_missing_interpreter_is_a_start_error(spec: AgentSpec) -> None:
    exits = Exits()
    with pytest.raises(RuntimeStartError):
        ProcessRuntime(python="/nonexistent/python3").start(spec, exits)
    assert exits.codes == []


def test_missing_agent_dir_is_a_start_error(spec: AgentSpec, tmp_path: Path) -> None:
    broken = AgentSpec(
        session_id=spec.session_id,
        agent_group=spec.agent_group,
        session_dir=spec.session_dir,
        agent_dir=tmp_path / "nowhere",
    )
    with pytest.raises(RuntimeStartError):
        runtime_for("pass").start(broken, Exits())


def _alive(pid: int) -> bool:
    """Running, not a zombie (which only waits for its parent to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}


def _ends_within(pid: int, bound_s: float = 10.0) -> bool:
    deadline = time.monotonic() + bound_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # no event says another process died; the bound keeps this finite
    return not _alive(pid)


HOST = """
import sys, time
from pathlib import Path
from actors.runtime.base import AgentSpec
from actors.runtime.process import ProcessRuntime
folder = Path(sys.argv[1])
spec = AgentSpec(session_id="s1-0123456789", agent_group="g", session_dir=folder, agent_dir=folder)
handle = ProcessRuntime(command=[sys.executable, "-c", "import time; time.sleep(60)"]).start(spec, lambda code: None)
print(handle.ident, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_an_agent_dies_with_a_host_that_is_killed(tmp_path: Path) -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert host.stdout is not None
        agent = int(host.stdout.readline())
        assert _alive(agent)
        host.kill()  # SIGKILL: the host can tell nobody
        host.wait(timeout=10)
        assert _ends_within(agent)
    finally:
        if host.poll() is None:
            host.kill()


def test_a_child_an_agent_forks_is_not_counted_as_another_agent(tmp_path: Path) -> None:
    """Until it execs, a process the agent forks has the agent's command line and
    environment; the fault suite once counted two agents in that window."""
    env = {**os.environ, "HUTCH_SESSION_DIR": str(tmp_path / "sessions" / "main" / "s1")}
    script = "import os, sys, time\nif os.fork() == 0:\n    time.sleep(60)\nprint(flush=True)\ntime.sleep(60)"
    agent = subprocess.Popen(
        [sys.executable, "-c", script, "container_runner"], env=env, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert agent.stdout is not None
        agent.stdout.readline()  # forked by now
        assert agents_in(tmp_path / "sessions") == [agent.pid]
    finally:
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait()


def test_cleanup_ends_only_the_agents_of_its_own_data_folder(tmp_path: Path) -> None:
    def leftover(session_dir: Path) -> subprocess.Popen[bytes]:
        env = {**os.environ, "HUTCH_SESSION_DIR": str(session_dir)}
        script = "import time; time.sleep(60)"
        # "container_runner" in its command line, as a real agent has.
        return subprocess.Popen([sys.executable, "-c", script, "container_runner"], env=env, start_new_session=True)

    def its_tool(session_dir: Path) -> subprocess.Popen[bytes]:
        """A command the agent started: the agent's environment, not its command line."""
        env = {**os.environ, "HUTCH_SESSION_DIR": str(session_dir)}
        return subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)

    ours = leftover(tmp_path / "data" / "sessions" / "main" / "s1")
    our_tool = its_tool(tmp_path / "data" / "sessions" / "main" / "s1")
    theirs = leftover(tmp_path / "other" / "sessions" / "main" / "s1")
    their_tool = its_tool(tmp_path / "other" / "sessions" / "main" / "s1")
    try:
        ended = ProcessRuntime(scope=tmp_path / "data" / "sessions").cleanup_orphans()
        assert ended == [str(ours.pid)]
        assert ours.wait(timeout=10) == -signal.SIGKILL
        assert our_tool.wait(timeout=10) == -signal.SIGKILL
        assert theirs.poll() is None and their_tool.poll() is None
        assert ProcessRuntime().cleanup_orphans() == []  # without a scope it touches nothing
    finally:
        for process in (ours, our_tool, theirs, their_tool):
            if process.poll() is None:
                process.kill()
                process.wait()
