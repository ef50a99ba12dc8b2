"""The control operations' session part while no host runs: the command itself, holding the
data folder's lock (so no host can start meanwhile), is the one writer of a session's
`inbound.db`, and what it writes there the next host's agent reads as it would the host's."""

from __future__ import annotations

import uuid
from pathlib import Path

from actors.control.operations import OperationError
from actors.session.system_actions import apply_action
from actors.store import agent_groups
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store
from actors.store.sessions import Session
from protocol import inbound
from protocol.content import ChatIn, SeriesChange
from protocol.db import write_transaction
from protocol.layout import SessionLayout
from protocol.rows import Routing
from protocol.timeutil import now_ts


class OfflineSessions:
    """`SessionControl` for a stopped host. Build it only while holding `DataFolderLock`."""

    host_runs = False

    def __init__(self, store: Store) -> None:
        self._store = store

    def change_series(self, session: Session, layout: SessionLayout, action: SeriesChange) -> str:
        with write_transaction(_existing(layout, session)) as conn:
            return apply_action(conn, action, Routing(), requested_by=0)

    def write_chat(self, session: Session, layout: SessionLayout, content: ChatIn, routing: Routing) -> None:
        with write_transaction(_existing(layout, session)) as conn:
            inbound.insert_message(
                conn, message_id=uuid.uuid4().hex, content=content, timestamp=now_ts(), routing=routing
            )

    def stop(self, session: Session) -> bool:
        return False  # no host, no agent: a killed host's leftovers are ended by the next start

    def remove_group(self, group: AgentGroup) -> list[str]:
        agent_groups.delete(self._store, group.id)
        return []

    def restart_group(self, group: AgentGroup) -> list[str]:
        return []  # no host, no agent: the next one starts with the group's model

    def recheck_budget(self, group: AgentGroup) -> int:
        return 0  # rows waiting for a budget are looked at again within the hour of a start

    def tell(self, routing: Routing, text: str) -> bool:
        return False  # the channels are the host's


def _existing(layout: SessionLayout, session: Session) -> Path:
    # `write_transaction` would make an empty file; a session that never ran has nothing to change.
    if not layout.inbound_db.is_file():
        raise OperationError(f"session {session.id[:8]} has not run yet: it holds no conversation or tasks")
    return layout.inbound_db
