"""DockerRuntime through a real engine, real bind mounts and the real agent image.

The tests that need an engine skip, with `DockerRuntime.available()`'s reason, when none is
reachable or the image is missing (`scripts/ensure_docker.sh` provides both). Each test uses
its own installation id, so it only ever sees, and cleans up, its own containers.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest
from docker.errors import NotFound

from actors.runtime.base import AgentLimits, AgentRuntime, AgentSpec, RuntimeStartError
from actors.runtime.docker import (
    DEFAULT_IMAGE,
    LABEL_AGENT_GROUP,
    LABEL_INSTALLATION,
    LABEL_SESSION,
    DockerRuntime,
)
from protocol.content import ChatIn, ChatOut
from protocol.layout import SessionLayout
from tests.fakes.probes import Exits, LineWaiter
from tests.fakes.session import FolderEvents, acks, make_session, replies, write_in

PYTHON = "/opt/hutch/bin/python"
SESSION_ID = "abcdef0123456789"
TAG = "family/abcdef01"


@pytest.fixture(scope="session")
def _engine() -> None:
    reason = DockerRuntime.available()
    if reason is not None:
        pytest.skip(reason)


F = TypeVar("F", bound=Callable[..., Any])


def needs_engine(test: F) -> F:
    """A test through the real engine (its `client` fixture skips when there is none)."""
    return pytest.mark.docker(pytest.mark.timeout(120)(test))  # type: ignore[no-any-return]


@pytest.fixture
def ready(caplog: pytest.LogCaptureFixture) -> Iterator[LineWaiter]:
    caplog.set_level(logging.INFO, logger="hutch.agent")
    waiter = LineWaiter("ready")
    logger = logging.getLogger("hutch.agent")
    logger.addHandler(waiter)
    yield waiter
    logger.removeHandler(waiter)


@pytest.fixture
def installation() -> str:
    return f"test{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(_engine: None, installation: str) -> Iterator[Any]:
    """An engine connection that, at the end, removes whatever the test left behind."""
    client = docker.from_env()
    yield client
    for container in client.containers.list(
        all=True, filters={"label": f"{LABEL_INSTALLATION}={installation}"}, ignore_removed=True
    ):
        container.remove(force=True)
    client.close()


@pytest.fixture
def runtime(client: Any, installation: str) -> DockerRuntime:
    return DockerRuntime(installation_id=installation, client=client)


@pytest.fixture
def spec(tmp_path: Path) -> AgentSpec:
    layout = make_session(tmp_path / "sessions" / SESSION_ID)
    agent_dir = tmp_path / "groups" / "family"
    agent_dir.mkdir(parents=True)
    return AgentSpec(
        session_id=SESSION_ID,
        agent_group="family",
        session_dir=layout.root,
        agent_dir=agent_dir,
        env={
            "HUTCH_SESSION_DIR": str(layout.root),
            "HUTCH_AGENT_DIR": str(agent_dir),
            "HUTCH_PROVIDER": "mock",
            "HUTCH_HEARTBEAT_INTERVAL": "0.5",
        },
    )


def run_python(client: Any, installation: str, code: str, **kwargs: Any) -> DockerRuntime:
    """A runtime whose containers run `python -c code` instead of the runner."""
    return DockerRuntime(installation_id=installation, client=client, command=[PYTHON, "-c", code], **kwargs)


def gone(client: Any, ident: str) -> bool:
    try:
        client.containers.get(ident)
    except NotFound:
        return True
    return False


# --- without an engine -------------------------------------------------------------------


def test_is_an_agent_runtime() -> None:
    runtime: AgentRuntime = DockerRuntime(installation_id="inst-1")
    assert runtime.name == "docker"
    assert runtime.isolates is True


@pytest.mark.parametrize(("installation_id", "uid_gid"), [("", None), ("a/b", None), ("inst-1", "root")])
def test_bad_settings_are_refused(installation_id: str, uid_gid: str | None) -> None:
    with pytest.raises(ValueError):
        DockerRuntime(installation_id=installation_id, uid_gid=uid_gid)


@pytest.mark.parametrize("cpus", [0.0, -1.0, 2000.0])
def test_a_cpu_share_of_nothing_is_refused(cpus: float) -> None:
    with pytest.raises(ValueError, match="share of a CPU"):
        AgentLimits(cpus=cpus)


def test_container_names_are_scoped_by_installation() -> None:
    runtime = DockerRuntime(installation_id="0123456789abcdef")
    assert runtime.container_name("fedcba9876543210") == "hutch-01234567-fedcba987654"
    assert runtime.container_name("a b/c") == "hutch-01234567-a-b-c"


def test_a_proxy_socket_outside_the_session_folder_is_refused(spec: AgentSpec, tmp_path: Path) -> None:
    # Refused before the engine is even asked: the agent could never reach its model API.
    outside = AgentSpec(
        session_id=spec.session_id,
        agent_group=spec.agent_group,
        session_dir=spec.session_dir,
        agent_dir=spec.agent_dir,
        env={**spec.env, "HUTCH_PROXY_SOCKET": str(tmp_path / "proxy.sock")},
    )
    with pytest.raises(RuntimeStartError, match="not inside the session folder"):
        DockerRuntime(installation_id="inst-1").start(outside, Exits())


def test_an_unreachable_engine_is_reported(spec: AgentSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    reason = DockerRuntime.available()
    assert reason is not None and "no Docker engine reachable" in reason
    exits = Exits()
    with pytest.raises(RuntimeStartError, match="no Docker engine reachable"):
        DockerRuntime(installation_id="inst-1").start(spec, exits)
    assert exits.codes == []


# --- through a real engine -----------------------------------------------------------------


@needs_engine
def test_the_runner_answers_a_chat_through_the_mounted_session_folder(
    runtime: DockerRuntime, client: Any, spec: AgentSpec
) -> None:
    layout = SessionLayout(spec.session_dir)
    row = write_in(layout, ChatIn(text="hello container", sender="Ann", sender_id="u1"))
    events = FolderEvents(layout.root)
    exits = Exits()
    try:
        handle = runtime.start(spec, exits)
        assert handle.alive()

        def answered() -> ChatOut | None:
            for out in replies(layout):
                if out.in_reply_to == row.id and out.kind == "chat" and out.seq % 2 == 1:
                    content = out.decoded()
                    return content if isinstance(content, ChatOut) else None
            return None

        content = events.wait_until(answered, timeout=90)
        assert content.text.startswith("mock: hello container")
        events.wait_until(lambda: (ack := acks(layout).get(row.id)) is not None and ack.status == "completed")
        events.wait_until(layout.heartbeat.exists)
    finally:
        events.close()

    # Written by the container, as the host's user: the host can go on reading and writing.
    assert layout.outbound_db.stat().st_uid == os.getuid()
    assert layout.heartbeat.stat().st_uid == os.getuid()
    container = client.containers.get(handle.ident)
    assert container.labels[LABEL_INSTALLATION] == runtime.installation_id
    assert container.labels[LABEL_SESSION] == SESSION_ID
    assert container.labels[LABEL_AGENT_GROUP] == "family"
    assert container.name == runtime.container_name(SESSION_ID)
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"
    assert container.attrs["HostConfig"]["NanoCpus"] == 1_000_000_000  # one CPU at most
    assert container.attrs["HostConfig"]["ShmSize"] == 16 * 1024 * 1024

    assert handle.stop(timeout_s=20) == 0  # the runner ends cleanly on SIGTERM
    assert exits.wait() == 0
    assert not handle.alive()
    assert exits.codes == [0]
    assert gone(client, handle.ident)


PROBE = """
import importlib.util, json, os, socket
report = {
    "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
    "env": {k: v for k, v in os.environ.items()},
    "interfaces": [name for _, name in socket.if_nameindex()],
    "global": open("/global/notes.md").read(),
    "missing": [m for m in ("actors", "docker", "dotenv") if importlib.util.find_spec(m) is not None],
    "present": [m for m in ("protocol", "container_runner", "anthropic") if importlib.util.find_spec(m) is None],
}
def writable(path):
    try:
        open(path, "w").close()
        return True
    except OSError:
        return False
def removable(path):
    try:
        os.remove(path)
        return True
    except OSError:
        return False
report["writable"] = {
    p: writable(p) for p in ("/global/x", "/opt/x", "/tmp/x", "/workspace/x", "/session/x", "/session/out/x")
}
# The host's own file: the agent can read it, never remove, replace or link it.
report["inbound_readable"] = len(open("/session/inbound.db", "rb").read(16)) == 16
report["inbound_removable"] = removable("/session/inbound.db")
json.dump(report, open("/session/out/probe.json", "w"))
"""


@needs_engine
def test_inside_the_container(
    client: Any, installation: str, spec: AgentSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-host-secret")  # the host's: must stay there
    global_dir = tmp_path / "global"
    global_dir.mkdir()
    (global_dir / "notes.md").write_text("shared")
    probed = AgentSpec(
        session_id=spec.session_id,
        agent_group=spec.agent_group,
        session_dir=spec.session_dir,
        agent_dir=spec.agent_dir,
        global_dir=global_dir,
        env={
            **spec.env,
            "HUTCH_GLOBAL_DIR": str(global_dir),
            "HUTCH_PROXY_SOCKET": str(spec.session_dir / "proxy.sock"),
            "ANTHROPIC_AUTH_TOKEN": "leaked-by-mistake",
            "TZ": "Europe/Paris",
        },
    )
    exits = Exits()
    run_python(client, installation, PROBE).start(probed, exits)
    assert exits.wait() == 0

    report = json.loads((spec.session_dir / "out" / "probe.json").read_text())
    assert (report["uid"], report["gid"]) == (os.getuid(), os.getgid())
    assert report["cwd"] == "/workspace"
    env = report["env"]
    assert env["HUTCH_SESSION_DIR"] == "/session"
    assert env["HUTCH_AGENT_DIR"] == "/workspace"
    assert env["HUTCH_GLOBAL_DIR"] == "/global"
    assert env["HUTCH_PROXY_SOCKET"] == "/session/proxy.sock"
    assert env["HUTCH_PROVIDER"] == "mock" and env["TZ"] == "Europe/Paris"
    assert not [key for key in env if key.startswith("ANTHROPIC_") or "TOKEN" in key or "SECRET" in key]
    assert report["interfaces"] == ["lo"]  # network_mode=none: loopback only
    assert report["global"] == "shared"
    assert report["missing"] == [] and report["present"] == []
    assert report["writable"] == {
        "/global/x": False,
        "/opt/x": False,
        "/tmp/x": True,
        "/workspace/x": True,
        "/session/x": False,  # the session folder is the host's: read-only in here
        "/session/out/x": True,
    }
    assert report["inbound_readable"] and not report["inbound_removable"]
    assert (spec.session_dir / "inbound.db").exists()


@needs_engine
@pytest.mark.skipif(os.getuid() != 0, reason="needs root to hand the folders to another uid")
def test_runs_as_the_given_uid_gid(client: Any, installation: str, spec: AgentSpec) -> None:
    for folder in (spec.session_dir / "out", spec.agent_dir):
        os.chown(folder, 4321, 4322)
    code = "import os; open('/session/out/mine', 'w').write(f'{os.getuid()}:{os.getgid()}')"
    exits = Exits()
    run_python(client, installation, code, uid_gid="4321:4322").start(spec, exits)
    assert exits.wait() == 0
    mine = spec.session_dir / "out" / "mine"
    assert mine.read_text() == "4321:4322"
    assert (mine.stat().st_uid, mine.stat().st_gid) == (4321, 4322)


@needs_engine
def test_the_image_holds_no_host_package(client: Any, installation: str, spec: AgentSpec) -> None:
    exits = Exits()
    run_python(client, installation, "import actors").start(spec, exits)
    assert exits.wait() == 1  # ModuleNotFoundError

    image = client.images.get(DEFAULT_IMAGE)
    assert image.labels["hutch.project"] == "hutch"
    assert image.attrs["Config"]["Entrypoint"] == [PYTHON, "-m", "container_runner"]
    assert not [entry for entry in image.attrs["Config"]["Env"] if "KEY" in entry or "TOKEN" in entry]


@needs_engine
def test_output_lines_are_logged_with_the_session_tag(
    client: Any, installation: str, spec: AgentSpec, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hutch.agent")
    code = (
        "import sys; print('hello'); print('oops', file=sys.stderr); print('x' * 70000); sys.stdout.write('no newline')"
    )
    exits = Exits()
    run_python(client, installation, code).start(spec, exits)
    exits.wait()

    lines = [r.getMessage() for r in caplog.records if r.name == "hutch.agent"]
    # Each exactly once: the catch-up after the end must not repeat what was streamed.
    # A line without end is cut at 64 KiB rather than buffered without bound.
    expected = ["hello", "oops", "x" * 65536, "x" * (70000 - 65536), "no newline"]
    assert sorted(lines) == sorted(f"[{TAG}] {line}" for line in expected)


@needs_engine
def test_an_exit_is_reported_once_and_the_container_removed(client: Any, installation: str, spec: AgentSpec) -> None:
    exits = Exits()
    handle = run_python(client, installation, "raise SystemExit(7)").start(spec, exits)
    assert exits.wait() == 7
    assert not handle.alive()
    assert gone(client, handle.ident)
    # Stopping an agent that already ended is harmless and reports the same code.
    assert handle.stop(timeout_s=1) == 7
    assert exits.codes == [7]


SLEEPER = "import time; print('ready', flush=True); time.sleep(600)"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"
)


@needs_engine
def test_stop_forces_an_agent_that_ignores_sigterm(
    client: Any, installation: str, spec: AgentSpec, ready: LineWaiter
) -> None:
    exits = Exits()
    handle = run_python(client, installation, STUBBORN).start(spec, exits)
    ready.wait()
    assert handle.stop(timeout_s=1) == 137  # SIGKILL
    assert exits.codes == [137]


@needs_engine
def test_kill_ends_the_agent_at_once(client: Any, installation: str, spec: AgentSpec, ready: LineWaiter) -> None:
    exits = Exits()
    handle = run_python(client, installation, SLEEPER).start(spec, exits)
    ready.wait()
    handle.kill()
    assert exits.wait() == 137
    assert exits.codes == [137]
    assert gone(client, handle.ident)


@needs_engine
def test_orphan_clean_up_only_touches_this_installations_containers(
    client: Any, installation: str, spec: AgentSpec, ready: LineWaiter
) -> None:
    runtime = run_python(client, installation, SLEEPER)
    other_installation = f"other{uuid.uuid4().hex[:12]}"
    created: list[Any] = []
    try:
        # As left behind by an earlier host process of this installation, and by others.
        ours = client.containers.create(DEFAULT_IMAGE, labels={LABEL_INSTALLATION: installation})
        theirs = client.containers.create(DEFAULT_IMAGE, labels={LABEL_INSTALLATION: other_installation})
        unlabelled = client.containers.create(DEFAULT_IMAGE)
        created += [ours, theirs, unlabelled]
        exits = Exits()
        live = runtime.start(spec, exits)  # a live agent is no orphan
        ready.wait()

        assert runtime.cleanup_orphans() == [ours.name]

        assert gone(client, ours.id)
        assert not gone(client, theirs.id)
        assert not gone(client, unlabelled.id)
        assert live.alive()
        assert runtime.cleanup_orphans() == []
        live.kill()
        assert exits.wait() == 137
    finally:
        for container in created:
            if not gone(client, container.id):
                container.remove(force=True)


@needs_engine
def test_a_leftover_container_of_the_session_is_replaced(client: Any, installation: str, spec: AgentSpec) -> None:
    runtime = run_python(client, installation, "pass")
    name = runtime.container_name(spec.session_id)
    leftover = client.containers.create(DEFAULT_IMAGE, name=name, labels={LABEL_INSTALLATION: installation})
    exits = Exits()
    handle = runtime.start(spec, exits)
    assert exits.wait() == 0
    assert handle.ident != leftover.id
    assert gone(client, leftover.id)


@needs_engine
def test_a_name_taken_by_another_installation_is_left_alone(client: Any, installation: str, spec: AgentSpec) -> None:
    runtime = run_python(client, installation, "pass")
    name = runtime.container_name(spec.session_id)
    theirs = client.containers.create(DEFAULT_IMAGE, name=name, labels={LABEL_INSTALLATION: "someone-else"})
    try:
        with pytest.raises(RuntimeStartError, match="taken by a container of installation 'someone-else'"):
            runtime.start(spec, Exits())
        assert not gone(client, theirs.id)
    finally:
        theirs.remove(force=True)


@needs_engine
def test_a_missing_image_says_how_to_build_it(client: Any, installation: str, spec: AgentSpec) -> None:
    image = "hutch-agent:no-such-tag"
    reason = DockerRuntime.available(image)
    assert reason is not None and "scripts/build_image.sh" in reason
    exits = Exits()
    with pytest.raises(RuntimeStartError, match=r"not found; run scripts/build_image\.sh"):
        DockerRuntime(image, installation_id=installation, client=client).start(spec, exits)
    assert exits.codes == []


@needs_engine
def test_a_session_can_start_again_from_on_exit(client: Any, installation: str, spec: AgentSpec) -> None:
    # The container is removed before on_exit runs, so its name is free for the restart.
    runtime = run_python(client, installation, "raise SystemExit(3)")
    second = Exits()
    restarted: list[Any] = []

    def restart(code: int) -> None:
        restarted.append(runtime.start(spec, second))

    first = runtime.start(spec, restart)
    assert second.wait() == 3
    assert len(restarted) == 1 and restarted[0].ident != first.ident
    assert gone(client, first.ident) and gone(client, restarted[0].ident)
