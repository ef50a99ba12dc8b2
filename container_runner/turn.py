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

    def begin(self, batch: tuple[MessageIn, ...]) -> None:
        """Replies go where the newest routed message of the batch came from."""
        routed = [row for row in batch if row.platform_id or row.channel_type]
        latest = max(routed or batch, key=lambda row: row.seq)
        with self._lock:
            self._routing = latest.routing
            self._reply_to = latest.id

    @property
    def routing(self) -> Routing:
        with self._lock:
            return self._routing

    @property
    def reply_to(self) -> str | None:
        with self._lock:
            return self._reply_to
