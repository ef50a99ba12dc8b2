from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from actors.cli.app import app
from actors.store import agent_groups, messaging_group_agents, messaging_groups, sessions
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store, open_store
from actors.store.sessions import Session
from protocol.content import ChatIn
from protocol.db import create_session_db, write_transaction
from protocol.inbound import insert_message
from protocol.layout import SessionLayout
from protocol.rows import InStatus
from protocol.schema import INBOUND
from protocol.timeutil import format_ts, now_ts, utc_now
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_telegram import FakeTelegram

# Settings a developer's shell may carry; each test starts from none of them.
_HOST_ENV = ("TZ", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "DOCKER_HOST")


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No `.env` and no HUTCH_* of the developer's: only what a test sets."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in list(os.environ):
        if name.startswith("HUTCH_") or name in _HOST_ENV:
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps at 80 columns when not on a terminal


def hutch(*args: str, env: dict[str, str] | None = None, answers: str | None = None) -> Result:
    """`answers`: what the person types at the command's prompts."""
    return CliRunner().invoke(app, list(args), env=env, input=answers)


def one_error_line(result: Result) -> str:
    """A failure is one line on stderr, a non-zero exit, and no traceback anywhere."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@dataclass
class Folder:
    """A data folder as a host would have left it, with the host's own store connection."""

    path: Path
    store: Store
    main: AgentGroup
    local: Session  # main's session of the local chat: three pending rows (one for later), one done
    family: Session  # a telegram group chat's session that has no inbound.db yet

    def layout(self, session: Session, group: AgentGroup) -> SessionLayout:
        return SessionLayout(self.path / "sessions" / group.folder / session.id)


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Folder]:
    path = tmp_path / "data"
    with open_store(path / "hutch.db") as store:
        main = agent_groups.create(store, name="main", folder="main")
        local_chat = messaging_groups.create(store, channel_type="cli", platform_id="local", name="local chat")
        messaging_group_agents.create(
            store, messaging_group_id=local_chat.id, agent_group_id=main.id, session_mode="shared"
        )
        family_chat = messaging_groups.create(
            store, channel_type="telegram", platform_id="-100", name="family", is_group=True
        )
        local = sessions.create(
            store,
            agent_group_id=main.id,
            messaging_group_id=local_chat.id,
            session_key=sessions.session_key("shared", agent_group_id=main.id, messaging_group_id=local_chat.id),
        )
        family = sessions.create(
            store,
            agent_group_id=main.id,
            messaging_group_id=family_chat.id,
            session_key=sessions.session_key("shared", agent_group_id=main.id, messaging_group_id=family_chat.id),
        )
        folder = Folder(path, store, main, local, family)
        _queue(folder.layout(local, main))
        yield folder


def _queue(layout: SessionLayout) -> None:
    layout.create()
    create_session_db(layout.inbound_db, INBOUND)
    tomorrow = format_ts(utc_now() + timedelta(days=1))
    with write_transaction(layout.inbound_db) as conn:
        rows: list[tuple[InStatus, str | None]] = [
            ("pending", None),
            ("pending", None),
            ("pending", tomorrow),
            ("completed", None),
        ]
        for number, (status, after) in enumerate(rows):
            insert_message(
                conn,
                message_id=f"m{number}",
                content=ChatIn(text=f"message {number}", sender="ada"),
                timestamp=now_ts(),
                status=status,
                process_after=after,
            )


# The servers `doctor` and `onboard` check against: the model API, Telegram and Discord.


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def discord() -> Iterator[FakeDiscord]:
    with FakeDiscord() as server:
        yield server
