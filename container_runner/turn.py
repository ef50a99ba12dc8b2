"""What the tools need to know about the batch the agent is working on."""

from __future__ import annotations

import threading

from protocol.rows import MessageIn, Routing


class TurnContext:
    """Set by the AgentActor before each query; read by the messaging and scheduling tools
    (on the agent's own thread, but a lock keeps it honest)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routing = Routing()
        self._reply_to: str | None = None
        self._turn: str | None = None
        self._effects = 0

    def begin(self, batch: tuple[MessageIn, ...]) -> None:
        """Replies go where the newest routed message of the batch came from. A batch that
        grows by follow-ups is the same turn: its side effects keep counting."""
        routed = [row for row in batch if row.platform_id or row.channel_type]
        latest = max(routed or batch, key=lambda row: row.seq)
        turn = min(batch, key=lambda row: row.seq).id
        with self._lock:
            self._routing = latest.routing
            self._reply_to = latest.id
            if turn != self._turn:
                self._turn, self._effects = turn, 0

    def effect_id(self) -> str | None:
        """An id for the turn's next side effect (a message sent before the turn ends): the
        same in a retry of the turn after a kill, so the outbox records it once and the
        person gets it once. None outside a turn."""
        with self._lock:
            if self._turn is None:
                return None
            self._effects += 1
            return f"{self._turn[:52]}-e{self._effects}"

    @property
    def routing(self) -> Routing:
        with self._lock:
            return self._routing

    @property
    def reply_to(self) -> str | None:
        with self._lock:
            return self._reply_to
