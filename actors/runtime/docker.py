"""Production runtime: every session's agent runs in its own Docker container.

The container sees three folders and nothing else of the host: the session folder at
`/session` (read-only: the host's `inbound.db`, `inbox/` and proxy socket) with its `out/`
mounted over it read-write (the one place the agent writes: `outbound.db`, `.heartbeat`,
`outbox/`), the agent folder at `/workspace` (read-write) and the global folder at `/global`
(read-only). It runs as the uid:gid the spec names (its agent group's own when the host runs
as root; docs/ARCHITECTURE.md, "Who an agent runs as"), within the spec's limits; it has no
network at all, so the model API is reachable only through the proxy socket
(docs/ARCHITECTURE.md, invariants 2 and 10).

Every container carries the installation's label: several hosts may share one engine, and
orphan clean-up must only ever touch its own installation's containers.

When the engine cannot report a container's exit code (the container was removed behind
our back, the engine stayed unreachable), `on_exit` receives `LOST_EXIT_CODE`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Final

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import LogConfig, Mount

from actors.runtime.base import AgentLimits, AgentSpec, RuntimeStartError
from protocol.layout import OUT_DIR
from protocol.logs import AgentOutput

log = logging.getLogger("hutch.runtime.docker")

DEFAULT_IMAGE: Final = "hutch-agent:latest"

SESSION_MOUNT: Final = "/session"
AGENT_MOUNT: Final = "/workspace"
GLOBAL_MOUNT: Final = "/global"

LABEL_INSTALLATION: Final = "hutch.installation"
LABEL_SESSION: Final = "hutch.session"
LABEL_AGENT_GROUP: Final = "hutch.agent_group"

LOST_EXIT_CODE: Final = -1

BUILD_HINT: Final = "run scripts/build_image.sh"
ENGINE_HINT: Final = "start one (scripts/ensure_docker.sh does, as root)"

# Even if a caller puts them in spec.env by mistake: invariant 10.
_CREDENTIAL_ENV: Final = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"})

# Docker's rule for container names; ids that break it are mapped into it.
_NAME_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")
_INSTALLATION_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_UID_GID: Final = re.compile(r"^\d+:\d+$")

# Each agent holds three long-lived connections (two log streams, wait); the default pool of
# 10 would make urllib3 open and discard extra connections, with a warning each time.
_MAX_POOL_SIZE: Final = 128

# A program that prints without newlines must not make the reader buffer without bound.
_MAX_LINE_BYTES: Final = 64 * 1024

# The log stream ends when the container does; this only bounds a stream the engine keeps
# open for a moment longer, so on_exit is not held up by it.
_READER_JOIN_S: Final = 5.0

# After `docker stop` returns the container has ended; the waiter still has to collect the
# code and remove the container. Bounds stop() if the engine goes away in between.
_EXIT_WAIT_S: Final = 30.0

# An engine restart breaks the wait connection; the container may well outlive it
# (live-restore), so the waiter tries again for about a minute before giving up.
_WAIT_RETRIES: Final = 8
_WAIT_BACKOFF_MAX_S: Final = 10.0

# A leftover's removal may still be in progress when the new container is created (409).
_CREATE_ATTEMPTS: Final = 5
_CREATE_RETRY_S: Final = 0.5


class DockerRuntime:
    """Starts one container from `image` per session.

    `installation_id` scopes everything this runtime touches: container names, labels and
    orphan clean-up. `command`, when given, replaces the image's entrypoint (tests use it to
    look around inside a container). One runtime per installation and process: orphan
    clean-up spares exactly the containers this object started and has not seen end.
    """

    name: Final = "docker"
    isolates: Final = True

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        installation_id: str,
        uid_gid: str | None = None,
        client: docker.DockerClient | None = None,
        command: Sequence[str] | None = None,
        limits: AgentLimits | None = None,
        tmp_size: str = "512m",
    ) -> None:
        """`uid_gid` and `limits` are for specs that name none (the host's always do)."""
        if not _INSTALLATION_ID.fullmatch(installation_id):
            raise ValueError(f"installation id {installation_id!r} is not 1-128 characters of [A-Za-z0-9_.-]")
        uid_gid = uid_gid if uid_gid is not None else f"{os.getuid()}:{os.getgid()}"
        if not _UID_GID.fullmatch(uid_gid):
            raise ValueError(f"uid_gid {uid_gid!r} is not numeric 'uid:gid'")
        self._image = image
        self._installation_id = installation_id
        self._uid_gid = uid_gid
        self._command: list[str] | None = list(command) if command is not None else None
        self._limits = limits or AgentLimits()
        self._tmp_size = tmp_size
        self._client = client
        self._owns_client = client is None
        self._client_lock = threading.Lock()
        # Names of containers this runtime started and whose end it has not finished
        # handling; orphan clean-up must not touch them. A count, because a session may be
        # started again while the previous container's waiter is still finishing.
        self._live: collections.Counter[str] = collections.Counter()
        self._live_lock = threading.Lock()

    @property
    def image(self) -> str:
        return self._image

    @property
    def installation_id(self) -> str:
        return self._installation_id

    @staticmethod
    def available(image: str = DEFAULT_IMAGE) -> str | None:
        """None when an engine answers and `image` exists; otherwise why not, in one line."""
        try:
            client = docker.from_env(timeout=10)
        except DockerException as exc:
            return f"no Docker engine reachable ({exc}); {ENGINE_HINT}"
        try:
            client.images.get(image)
        except ImageNotFound:
            return f"Docker image {image} not found; {BUILD_HINT}"
        except (DockerException, OSError) as exc:
            return f"Docker engine error while looking for {image}: {exc}"
        finally:
            client.close()
        return None

    def container_name(self, session_id: str) -> str:
        return _NAME_UNSAFE.sub("-", f"hutch-{self._installation_id[:8]}-{session_id[:12]}")

    def start(self, spec: AgentSpec, on_exit: Callable[[int], None]) -> DockerHandle:
        env = self._container_env(spec)
        mounts = _mounts(spec)
        client = self._get_client()
        name = self.container_name(spec.session_id)
        with self._live_lock:
            self._live[name] += 1
        try:
            container = self._create_and_start(client, spec, name, env, mounts)
        except BaseException:
            self._release(name)
            raise
        log.info("[%s] started the agent in container %s (%s)", spec.tag, name, container.short_id)
        return DockerHandle(container, spec.tag, on_exit, release=lambda: self._release(name))

    def cleanup_orphans(self) -> list[str]:
        """Remove this installation's containers that no live handle of this runtime owns.

        Containers labelled with another installation (or with none) are never touched.
        Best effort: engine errors are logged, not raised, and the next call tries again.
        Returns the names of the containers removed.
        """
        try:
            client = self._get_client()
            found = client.containers.list(
                all=True, filters={"label": f"{LABEL_INSTALLATION}={self._installation_id}"}, ignore_removed=True
            )
        except (RuntimeStartError, DockerException, OSError) as exc:
            log.warning("orphan clean-up skipped: %s", exc)
            return []
        removed: list[str] = []
        for container in found:
            # The label filter is the engine's; checking again costs nothing and keeps the
            # one rule that matters here independent of how a filter is spelled.
            if container.labels.get(LABEL_INSTALLATION) != self._installation_id:
                continue
            # Held across the removal: start() registers a name before creating its
            # container, so whatever is removed here was created before any live start.
            with self._live_lock:
                if self._live[container.name] > 0:
                    continue
                try:
                    container.remove(force=True)
                except NotFound:
                    continue
                except (DockerException, OSError) as exc:
                    log.warning("could not remove orphan container %s: %s", container.name, exc)
                    continue
            log.info("removed orphan container %s (%s)", container.name, container.short_id)
            removed.append(container.name)
        return removed

    def close(self) -> None:
        """Close the engine connection, if this runtime opened it."""
        with self._client_lock:
            if self._client is not None and self._owns_client:
                self._client.close()
                self._client = None

    def _get_client(self) -> Any:
        # Opened on first use: the SDK asks the engine for its API version as it connects,
        # and a host must be able to start (and report why) with the engine down.
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = docker.from_env(max_pool_size=_MAX_POOL_SIZE)
                except DockerException as exc:
                    raise RuntimeStartError(f"no Docker engine reachable ({exc}); {ENGINE_HINT}") from exc
            return self._client

    def _release(self, name: str) -> None:
        with self._live_lock:
            self._live[name] -= 1
            if self._live[name] <= 0:
                del self._live[name]

    def _container_env(self, spec: AgentSpec) -> dict[str, str]:
        env = dict(spec.env)
        for key in sorted(_CREDENTIAL_ENV & env.keys()):
            log.warning("[%s] not passing %s to the agent: credentials never reach an agent", spec.tag, key)
            del env[key]
        env["HUTCH_SESSION_DIR"] = SESSION_MOUNT
        env["HUTCH_AGENT_DIR"] = AGENT_MOUNT
        if spec.global_dir is not None:
            env["HUTCH_GLOBAL_DIR"] = GLOBAL_MOUNT
        else:
            env.pop("HUTCH_GLOBAL_DIR", None)
        socket = env.get("HUTCH_PROXY_SOCKET")
        if socket:
            env["HUTCH_PROXY_SOCKET"] = _socket_in_container(spec, Path(socket))
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _create_and_start(
        self, client: Any, spec: AgentSpec, name: str, env: dict[str, str], mounts: list[Mount]
    ) -> Any:
        try:
            container = self._create(client, spec, name, env, mounts)
        except ImageNotFound as exc:
            raise RuntimeStartError(
                f"cannot start agent {spec.tag}: image {self._image} not found; {BUILD_HINT}"
            ) from exc
        except APIError as exc:
            raise RuntimeStartError(f"cannot start agent {spec.tag}: {exc.explanation or exc}") from exc
        except (DockerException, OSError) as exc:
            raise RuntimeStartError(
                f"cannot start agent {spec.tag}: Docker engine error ({exc}); {ENGINE_HINT}"
            ) from exc
        try:
            container.start()
        except (DockerException, OSError) as exc:
            # A created but never started container would only wait for orphan clean-up.
            with contextlib.suppress(DockerException, OSError):
                container.remove(force=True)
            reason = exc.explanation if isinstance(exc, APIError) and exc.explanation else exc
            raise RuntimeStartError(f"cannot start agent {spec.tag}: {reason}") from exc
        return container

    def _create(self, client: Any, spec: AgentSpec, name: str, env: dict[str, str], mounts: list[Mount]) -> Any:
        limits = spec.limits or self._limits
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            self._remove_leftover(client, spec, name)
            try:
                return client.containers.create(
                    self._image,
                    entrypoint=self._command,
                    name=name,
                    labels={
                        LABEL_INSTALLATION: self._installation_id,
                        LABEL_SESSION: spec.session_id,
                        LABEL_AGENT_GROUP: spec.agent_group,
                    },
                    environment=env,
                    mounts=mounts,
                    working_dir=AGENT_MOUNT,
                    user=str(spec.user) if spec.user is not None else self._uid_gid,
                    network_mode="none",
                    # tini as PID 1: it forwards `docker stop`'s SIGTERM to the runner and
                    # reaps whatever the agent's shell commands leave behind.
                    init=True,
                    mem_limit=f"{limits.memory_mb}m",
                    # No swap beyond the memory limit: the limit is what the agent gets.
                    memswap_limit=f"{limits.memory_mb}m",
                    pids_limit=limits.pids,
                    # One agent's busy loop must not starve the host and the other agents.
                    nano_cpus=int(limits.cpus * 1e9),
                    # /dev/shm is writable even in a read-only container: bounded like /tmp.
                    shm_size=f"{limits.shm_mb}m",
                    # The agent writes only where it is meant to: its folders and /tmp.
                    read_only=True,
                    tmpfs={"/tmp": f"rw,nosuid,nodev,size={self._tmp_size}"},
                    cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    # We follow the stream anyway; rotation only keeps a chatty, long-lived
                    # agent from filling the engine's disk.
                    log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "2"}),
                )
            except APIError as exc:
                # 409: a container of that name still exists (its removal by a previous
                # agent's waiter or by clean-up is in progress). Anything else is final.
                if exc.status_code != 409 or attempt == _CREATE_ATTEMPTS:
                    raise
                time.sleep(_CREATE_RETRY_S)
        raise AssertionError("unreachable")  # pragma: no cover

    def _remove_leftover(self, client: Any, spec: AgentSpec, name: str) -> None:
        """Remove an earlier container of this session (a crashed host, a lost waiter).

        Only ever one of this installation's: a name taken by anyone else is their business.
        """
        try:
            old = client.containers.get(name)
        except NotFound:
            return
        owner = old.labels.get(LABEL_INSTALLATION)
        if owner != self._installation_id:
            raise RuntimeStartError(
                f"cannot start agent {spec.tag}: container name {name} is taken by a container "
                f"of {'installation ' + repr(owner) if owner else 'no hutch installation'}; not touching it"
            )
        log.warning("[%s] removing the agent's leftover container %s (%s)", spec.tag, name, old.short_id)
        try:
            old.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            # 409: someone else's removal of it is in progress; creating waits for it.
            if exc.status_code != 409:
                raise


class DockerHandle:
    """A running agent container, a waiter for its end and a follower per output stream."""

    def __init__(self, container: Any, tag: str, on_exit: Callable[[int], None], release: Callable[[], None]) -> None:
        self._container = container
        self._tag = f"[{tag}]"  # the session's, as every log line names it (protocol.logs)
        self._on_exit = on_exit
        self._release = release
        self._code: int | None = None
        self._left = threading.Event()  # the container has ended (it may still exist)
        self._exited = threading.Event()  # removed, logs drained: the code is final
        # One follower per stream: the engine interleaves stdout and stderr chunks, so a
        # shared line buffer would glue a partial stdout line to the next stderr line.
        self._followers = [_LogFollower(container, tag, stream, self._left) for stream in ("stdout", "stderr")]
        self._waiter = threading.Thread(target=self._wait, name=f"agent-wait-{tag}", daemon=True)
        for follower in self._followers:
            follower.start()
        self._waiter.start()

    @property
    def ident(self) -> str:
        return str(self._container.id)

    @property
    def name(self) -> str:
        return str(self._container.name)

    def alive(self) -> bool:
        return not self._left.is_set()

    def stop(self, timeout_s: float = 10) -> int | None:
        if not self._left.is_set():
            try:
                # The engine sends SIGTERM and, after `t` seconds, SIGKILL.
                self._container.stop(timeout=max(0, math.ceil(timeout_s)))
            except NotFound:
                pass  # already gone: the waiter has or will have the code
            except (DockerException, OSError) as exc:
                log.warning("%s stopping the agent failed (%s); killing it", self._tag, exc)
                self.kill()
        if not self._exited.wait(timeout_s + _EXIT_WAIT_S):
            log.error("%s the agent (container %s) could not be confirmed ended", self._tag, self.name)
            return None
        return self._code

    def kill(self) -> None:
        try:
            self._container.kill()
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: not running any more, which is what we wanted
                log.warning("%s killing the agent failed: %s", self._tag, exc)
        except (DockerException, OSError) as exc:
            log.warning("%s killing the agent failed: %s", self._tag, exc)

    def _wait(self) -> None:
        code = self._wait_for_end()
        self._left.set()
        self._finish_output()
        # Removed before anyone hears of the end: whoever starts the session again on
        # on_exit (or after stop()) finds the container name free.
        try:
            self._container.remove(force=True)
        except NotFound:
            pass
        except (DockerException, OSError) as exc:
            log.warning("%s could not remove the agent's container %s: %s", self._tag, self.name, exc)
        self._release()
        self._code = code
        log.info("%s the agent's container exited with code %d", self._tag, code)
        self._exited.set()
        try:
            self._on_exit(code)
        except Exception:
            log.exception("%s on_exit callback for the agent failed", self._tag)

    def _finish_output(self) -> None:
        for follower in self._followers:
            follower.finish()

    def _wait_for_end(self) -> int:
        failures = 0
        while True:
            try:
                # No timeout: an agent may run for days; the SDK's default would cut it at 60 s.
                result = self._container.wait(timeout=None)
                return int(result.get("StatusCode", LOST_EXIT_CODE))
            except NotFound:
                log.error("%s the agent's container %s disappeared; its exit code is unknown", self._tag, self.name)
                return LOST_EXIT_CODE
            except Exception as exc:
                failures += 1
                if failures > _WAIT_RETRIES:
                    log.error("%s gave up waiting for the agent: %s", self._tag, exc)
                    return LOST_EXIT_CODE
                delay = min(2.0**failures, _WAIT_BACKOFF_MAX_S)
                log.warning("%s waiting for the agent failed (%s); retrying in %.0fs", self._tag, exc, delay)
                time.sleep(delay)


def _mounts(spec: AgentSpec) -> list[Mount]:
    # Bind mounts of the folders, never of a .db alone: SQLite's journal must sit beside
    # the database (invariant 2). A missing source is an error, not an empty folder the
    # engine would create as root.
    # The session folder read-only, its `out/` writable: the agent can create, delete or
    # rename nothing where the host's own files are (docs/ARCHITECTURE.md, the session folder).
    wanted = [
        (spec.session_dir, SESSION_MOUNT, True),
        (spec.session_dir / OUT_DIR, f"{SESSION_MOUNT}/{OUT_DIR}", False),
        (spec.agent_dir, AGENT_MOUNT, False),
    ]
    if spec.global_dir is not None:
        wanted.append((spec.global_dir, GLOBAL_MOUNT, True))
    mounts = []
    for source, target, read_only in wanted:
        if not source.is_dir():
            raise RuntimeStartError(f"cannot start agent {spec.tag}: {source} is not a folder (for {target})")
        mounts.append(Mount(target=target, source=str(source.resolve()), type="bind", read_only=read_only))
    return mounts


def _socket_in_container(spec: AgentSpec, socket: Path) -> str:
    """Where the container sees the host's proxy socket: only inside the session folder.

    A socket anywhere else is unreachable from the container, and an agent without its
    model API would fail without the user ever hearing back: refuse to start instead.
    """
    if socket.is_absolute():
        real_socket = socket.parent.resolve() / socket.name
        with contextlib.suppress(ValueError):
            relative = real_socket.relative_to(spec.session_dir.resolve())
            if relative.parts:
                return str(PurePosixPath(SESSION_MOUNT, *relative.parts))
    raise RuntimeStartError(
        f"cannot start agent {spec.tag}: HUTCH_PROXY_SOCKET={str(socket)!r} is not inside the session folder "
        f"{spec.session_dir}, so the container could not reach it"
    )


class _LogFollower:
    """Follows one of a container's output streams and logs it line by line, tagged."""

    def __init__(self, container: Any, tag: str, stream: str, left: threading.Event) -> None:
        self._container = container
        self._tag = f"[{tag}]"
        self._output = AgentOutput(self._tag)
        self._which = {"stdout": stream == "stdout", "stderr": stream == "stderr"}
        self._left = left
        self._stream: Any = None
        self._stream_lock = threading.Lock()
        # Output state, the reader's until it ends, then finish()'s caller's (after join()).
        self._lines = _LineBuffer()
        self._received = 0  # bytes the live stream delivered
        self._reader = threading.Thread(target=self._pump, name=f"agent-{stream}-{tag}", daemon=True)

    def start(self) -> None:
        self._reader.start()

    def _pump(self) -> None:
        try:
            stream = self._container.logs(stream=True, follow=True, **self._which)
        except NotFound:
            return  # ended and removed before we got here; nothing left to read
        except Exception as exc:  # a thread's last stop: never die silently
            log.warning("%s cannot follow the agent's output: %s", self._tag, exc)
            return
        with self._stream_lock:
            self._stream = stream
        try:
            for chunk in stream:
                self._received += len(chunk)
                self._emit(self._lines.feed(chunk))
        except Exception as exc:  # the engine went away, or finish() closed the stream
            if not self._left.is_set():
                log.warning("%s lost the agent's output: %s", self._tag, exc)
        finally:
            with contextlib.suppress(Exception):
                stream.close()

    def _emit(self, lines: list[bytes]) -> None:
        for line in lines:
            self._output.line(line.decode("utf-8", errors="replace").rstrip("\r"))

    def finish(self) -> None:
        """Log what the live stream missed: often the last words of an agent that crashed.

        A followed log stream can end before the engine has stored the container's last
        output (an unterminated last line, typically); once the container has ended, a
        plain read returns all of it. The live stream delivered a prefix of those bytes.
        """
        self._reader.join(_READER_JOIN_S)
        if self._reader.is_alive():
            with self._stream_lock, contextlib.suppress(Exception):
                if self._stream is not None:
                    self._stream.close()
            self._reader.join(_READER_JOIN_S)
            if self._reader.is_alive():
                return  # still busy with the buffer: leave it alone
        try:
            stored = self._container.logs(**self._which)
        except Exception as exc:  # gone, or the engine is: what was logged is all there is
            log.debug("%s no stored output of the agent to catch up with: %s", self._tag, exc)
        else:
            # Shorter than what was received: rotation dropped the start, offsets are lost.
            if isinstance(stored, bytes) and len(stored) > self._received:
                self._emit(self._lines.feed(stored[self._received :]))
        self._emit(self._lines.flush())


class _LineBuffer:
    """The engine hands output over as the process wrote it; the log wants lines."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self._pending += chunk
        lines = []
        while True:
            end = self._pending.find(b"\n", 0, _MAX_LINE_BYTES)
            if end >= 0:
                lines.append(bytes(self._pending[:end]))
                del self._pending[: end + 1]
            elif len(self._pending) >= _MAX_LINE_BYTES:
                lines.append(bytes(self._pending[:_MAX_LINE_BYTES]))
                del self._pending[:_MAX_LINE_BYTES]
            else:
                return lines

    def flush(self) -> list[bytes]:
        rest, self._pending = bytes(self._pending), bytearray()
        return [rest] if rest else []
