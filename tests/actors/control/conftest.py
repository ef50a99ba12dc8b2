from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.control.offline import OfflineSessions
from actors.control.operations import Operations
from actors.data_folder import DataFolder
from actors.session.system_actions import apply_action
from actors.store import agent_groups, messaging_group_agents, messaging_groups, sessions
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store, open_store
from actors.store.messaging_groups import MessagingGroup
from actors.store.sessions import Session
from protocol.content import ScheduleTask
from protocol.db import create_session_db, write_transaction
from protocol.layout import SessionLayout
from protocol.rows import Routing
from protocol.schema import INBOUND


@dataclass(frozen=True)
class Folder(DataFolder):
    data_dir: Path


@dataclass
class World:
    """A data folder as a host leaves it: `main` wired to the local chat, whose session has
    run (it has an inbound.db) and holds two tasks; a Telegram group chat wired too."""

    folder: Folder
    store: Store
    main: AgentGroup
    local_chat: MessagingGroup
    family_chat: MessagingGroup
    local: Session
    operations: Operations

    def layout(self, session: Session) -> SessionLayout:
        group = agent_groups.get(self.store, session.agent_group_id)
        assert group is not None
        return SessionLayout(self.folder.sessions_dir / group.folder / session.id)

    def schedule(self, session: Session, task_id: str, recurrence: str | None = None) -> None:
        action = ScheduleTask(
            task_id=task_id, prompt=f"do {task_id}", process_after="2030-01-01T09:00:00.000000Z", recurrence=recurrence
        )
        with write_transaction(self.layout(session).inbound_db) as conn:
            apply_action(conn, action, Routing(), requested_by=1)

    def statuses(self, session: Session) -> dict[str, str]:
        with write_transaction(self.layout(session).inbound_db) as conn:
            return {row["id"]: row["status"] for row in conn.execute("SELECT id, status FROM messages_in")}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    folder = Folder(tmp_path / "data")
    with open_store(folder.central_db) as store:
        main = agent_groups.create(store, name="main", folder="main")
        local_chat = messaging_groups.create(store, channel_type="cli", platform_id="local", name="local chat")
        family_chat = messaging_groups.create(
            store, channel_type="telegram", platform_id="-100", name="family", is_group=True
        )
        for chat in (local_chat, family_chat):
            messaging_group_agents.create(
                store, messaging_group_id=chat.id, agent_group_id=main.id, session_mode="shared"
            )
        local = sessions.create(
            store,
            agent_group_id=main.id,
            messaging_group_id=local_chat.id,
            session_key=sessions.session_key("shared", agent_group_id=main.id, messaging_group_id=local_chat.id),
        )
        operations = Operations(store, folder, OfflineSessions(store), {"telegram": "1"})
        made = World(folder, store, main, local_chat, family_chat, local, operations)
        layout = made.layout(local)
        layout.create()
        create_session_db(layout.inbound_db, INBOUND)
        made.schedule(local, "tdaily", recurrence="0 9 * * *")
        made.schedule(local, "tonce")
        yield made
