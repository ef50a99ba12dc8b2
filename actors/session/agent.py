"""The lifecycle of one session's agent, as a plain object the SessionActor holds: the
runtime handle and its generation, the container slot, the proxy socket, and what the
agent shows of life (heartbeats, in memory).

It is called only from the SessionActor's thread. What reaches it from other threads (a
runtime reporting an exit, a slot freed by another session) arrives as a message `tell`s
to the actor, which calls back in; so no lock is needed and nothing here waits on anyone
but the runtime itself.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pykka

from actors.messages import ContainerExited, SlotGranted, YieldSlot
from actors.runtime.base import AgentHandle, AgentRuntime, RuntimeStartError
from actors.session.folder import move_aside_heartbeat
from actors.session.info import ProxySockets, SessionInfo, SessionSettings
from actors.session.liveness import agent_problem, heartbeat_mtime, unclaimed_problem
from actors.session.spec import agent_spec
from actors.slots import ContainerSlots
from protocol.rows import ProcessingAck

log = logging.getLogger("hutch.session")

Tell = Callable[[Any], None]


class AgentController:
    def __init__(
        self,
        info: SessionInfo,
        settings: SessionSettings,
        runtime: AgentRuntime,
        slots: ContainerSlots,
        proxy: ProxySockets | None,
        clock: Callable[[], datetime],
        tell: Tell,
    ) -> None:
        self._info = info
        self._settings = settings
        self._runtime = runtime
        self._slots = slots
        self._proxy = proxy
        self._clock = clock
        self._tell = tell
        self._handle: AgentHandle | None = None
        self._generation = 0
        self._started_at: datetime | None = None
        self._stopping = False
        self._waiting_for_slot = False
        self._last_beat: float | None = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    @property
    def started_at(self) -> datetime | None:
        """When the running agent started; its claims are the ones made since."""
        return self._started_at

    # --- starting ---------------------------------------------------------------------------

    def ensure_running(self) -> bool:
        """Start the agent unless it runs or waits for a slot; True when one was started now.
        Raises `RuntimeStartError` when the runtime cannot start it."""
        if self._handle is not None or self._waiting_for_slot:
            return False
        if not self._slots.acquire(self._info.session_id, self._slot_granted, self._yield_asked):
            self._waiting_for_slot = True
            log.info("%s waiting for a container slot", self._info.tag)
            return False
        self._start()
        return True

    def slot_granted(self) -> bool:
        """The slot this session waited for is its own now; True when an agent was started."""
        self._waiting_for_slot = False
        self._slots.adopt(self._info.session_id, self._yield_asked)
        if self._handle is not None:
            return False
        self._start()
        return True

    def _yield_asked(self) -> None:
        """Called from another session's thread: someone waits for a slot and ours is idle."""
        with contextlib.suppress(pykka.ActorDeadError):
            self._tell(YieldSlot())

    def note_idle(self, idle: bool) -> None:
        """Whether the running agent has nothing to do; an idle one may be asked to yield."""
        if self._handle is not None:
            self._slots.set_idle(self._info.session_id, idle)

    def _slot_granted(self) -> None:
        """Called from the thread of the session that freed the slot."""
        try:
            self._tell(SlotGranted())
        except pykka.ActorDeadError:
            # This session stopped while it waited: pass the slot on rather than raise into
            # the session that released it.
            self._slots.release(self._info.session_id)

    def _start(self) -> None:
        """Start the agent in the slot this session holds; on any failure the slot goes back."""
        try:
            proxy_socket = self._prepare()
            self._generation += 1
            generation = self._generation
            self._handle = self._runtime.start(
                agent_spec(self._info, self._settings, proxy_socket), lambda code: self._exited(generation, code)
            )
        except BaseException:
            self._release()
            raise
        self._started_at = self._clock()
        self._stopping = False
        log.info("%s agent started (%s %s)", self._info.tag, self._runtime.name, self._handle.ident)

    def _prepare(self) -> Path | None:
        """Clear the heartbeat (a stale beat would make the new agent look alive at once) and
        open the proxy socket; what fails here is a start that failed, and is retried."""
        try:
            move_aside_heartbeat(self._info.layout)
            self._last_beat = None
            if self._proxy is None:
                return None
            socket = self._info.layout.proxy_socket
            self._proxy.open_socket(self._info.session_id, self._info.agent_group, socket, owner=self._info.user)
            return socket
        except (OSError, ValueError) as exc:
            raise RuntimeStartError(f"cannot prepare the agent's start: {exc}") from exc

    def _exited(self, generation: int, code: int) -> None:
        """Called once from the runtime's thread."""
        try:
            self._tell(ContainerExited(generation, code))
        except pykka.ActorDeadError:
            return  # the session stopped first and already cleaned up

    # --- ending -----------------------------------------------------------------------------

    def exited(self, message: ContainerExited) -> bool | None:
        """Take note of an agent's end; None when it is about an earlier agent, otherwise
        whether the end was asked for (a stop) rather than a crash or a kill."""
        if message.generation != self._generation or self._handle is None:
            return None
        deliberate = self._stopping
        self._handle = None
        self._stopping = False
        self._started_at = None  # its leftover claims are nobody's work now
        self._release()
        log.info("%s agent exited with code %d%s", self._info.tag, message.exit_code,
                 "" if deliberate else " unexpectedly")  # fmt: skip
        return deliberate

    def stop(self, reason: str) -> None:
        """Ask the agent to finish its turn and end (blocks up to `stop_timeout_s`)."""
        handle = self._handle
        if handle is None:
            return
        self._stopping = True
        log.info("%s stopping agent: %s", self._info.tag, reason)
        handle.stop(self._settings.stop_timeout_s)

    def kill(self, reason: str) -> None:
        """End a dead or stuck agent now; its exit retries what it had claimed."""
        if self._handle is None:
            return
        log.warning("%s agent is dead or stuck (%s); stopping it", self._info.tag, reason)
        self._stopping = False
        self._handle.kill()

    def close(self) -> None:
        """The session is stopping: the agent ends with it, and so do its slot and socket."""
        self.stop("the session is stopping")
        self._release()

    def abandon(self) -> None:
        """The session failed: end the agent without waiting for it."""
        if self._handle is not None:
            self._handle.kill()
        self._release()

    def _release(self) -> None:
        if self._proxy is not None:
            self._proxy.close_socket(self._info.session_id)
        self._slots.release(self._info.session_id)
        self._waiting_for_slot = False

    # --- liveness ---------------------------------------------------------------------------

    def beat(self, at: float) -> None:
        """A heartbeat event: remembered, nothing read."""
        if self._last_beat is None or at > self._last_beat:
            self._last_beat = at

    def problem(self, claims: Mapping[str, ProcessingAck], due_since: datetime | None) -> str | None:
        """Why the running agent should be killed, or None while it looks alive. `due_since`
        is when the oldest work nobody claimed became due. The heartbeat file's mtime backs
        up the events: a mount may not forward them."""
        if self._handle is None or self._started_at is None:
            return None
        if not claims:
            return unclaimed_problem(self._clock(), self._started_at, due_since, self._settings)
        beats = [at for at in (self._last_beat, heartbeat_mtime(self._info.layout.heartbeat)) if at is not None]
        return agent_problem(self._clock(), self._started_at, max(beats, default=None), claims, self._settings)
