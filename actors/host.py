"""Assembling the host from its configuration: the store, the first-start wiring, the
runtime, the channels and the Supervisor. `actors.main` runs it; tests start it in-process."""

from __future__ import annotations

import getpass
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka

from actors.channels.local_chat import LocalChatChannel
from actors.config import HostConfig
from actors.messages import Ready
from actors.runtime.base import AgentRuntime
from actors.runtime.process import ProcessRuntime
from actors.session import ProxySockets, SessionSettings
from actors.store import agent_groups, messaging_group_agents, messaging_groups
from actors.store.db import Store, open_store
from actors.supervisor import GLOBAL_GROUP, Supervisor, SupervisorSetup

if TYPE_CHECKING:
    from actors.credentials import CredentialProxy

log = logging.getLogger("hutch")

MAIN_GROUP = "main"
LOCAL_CHAT = "local"
INSTALLATION_FILE = "installation-id"

DEFAULT_MEMORY = """# {name}

Notes for this agent group live here: who the people are, what they like, what to remember.
The agent reads this file at the start of every session.
"""


@dataclass
class Host:
    config: HostConfig
    store: Store
    supervisor: pykka.ActorRef[Any]
    runtime: AgentRuntime
    # The credential proxy start_host built (one handed in stays its caller's to stop).
    proxy: CredentialProxy | None = None

    def stop(self) -> None:
        try:
            self.supervisor.stop(block=True, timeout=120)
        finally:
            if self.proxy is not None:
                self.proxy.stop()  # the sessions closed their sockets; this drops its upstream connections
            self.store.close()


def effective_provider(config: HostConfig) -> str:
    if config.provider == "claude" and not config.api_key:
        print("hutch: no ANTHROPIC_API_KEY is set; using the mock provider (replies are canned).", flush=True)
        return "mock"
    return config.provider


def installation_id(config: HostConfig) -> str:
    """Names this data folder's containers, so clean-up never touches another installation's."""
    path = config.data_dir / INSTALLATION_FILE
    if not path.exists():
        path.write_text(uuid.uuid4().hex + "\n")
    return path.read_text().strip()


def choose_runtime(config: HostConfig) -> AgentRuntime:
    if config.runtime in {"docker", "auto"}:
        from actors.runtime.docker import DockerRuntime

        problem = DockerRuntime.available()
        if problem is None:
            runtime = DockerRuntime(installation_id=installation_id(config))
            removed = runtime.cleanup_orphans()
            if removed:
                log.info("removed %d container(s) left by an earlier run", len(removed))
            return runtime
        if config.runtime == "docker":
            raise SystemExit(f"hutch: HUTCH_RUNTIME=docker but {problem}")
        log.info("docker is not usable (%s); using the process runtime", problem)
    log.warning("process runtime: agents run as plain child processes of the host; nothing is isolated")
    return ProcessRuntime()


def ensure_first_start(store: Store, config: HostConfig) -> None:
    """On a fresh data folder: an agent group `main` wired to the local chat."""
    for folder in (MAIN_GROUP, GLOBAL_GROUP):
        memory = config.groups_dir / folder / "CLAUDE.md"
        memory.parent.mkdir(parents=True, exist_ok=True)
        if not memory.exists():
            memory.write_text(DEFAULT_MEMORY.format(name=folder))
    group = agent_groups.get_by_folder(store, MAIN_GROUP)
    if group is None:
        group = agent_groups.create(store, name=MAIN_GROUP, folder=MAIN_GROUP)
        log.info("first start: created agent group %r", MAIN_GROUP)
    chat = messaging_groups.get_by_platform(store, "cli", LOCAL_CHAT)
    if chat is None:
        chat = messaging_groups.create(
            store, channel_type="cli", platform_id=LOCAL_CHAT, name="local chat", admin_user_id=_local_user()
        )
    if messaging_group_agents.get_pair(store, chat.id, group.id) is None:
        messaging_group_agents.create(
            store, messaging_group_id=chat.id, agent_group_id=group.id, session_mode="shared", trigger_rule="always"
        )


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


def session_settings(config: HostConfig, provider: str) -> SessionSettings:
    return SessionSettings(
        timezone=config.timezone,
        idle_timeout_s=config.idle_timeout_s,
        agent_env={
            "HUTCH_PROVIDER": provider,
            "HUTCH_MODEL": config.model,
            "HUTCH_ASSISTANT_NAME": config.assistant_name,
            "HUTCH_LOG_LEVEL": config.log_level,
        },
    )


def start_host(
    config: HostConfig,
    runtime: AgentRuntime | None = None,
    settings: SessionSettings | None = None,
    proxy: ProxySockets | None = None,
) -> Host:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(config.central_db)
    ensure_first_start(store, config)
    provider = effective_provider(config)
    runtime = runtime or choose_runtime(config)
    owned_proxy = _credential_proxy(config) if proxy is None and provider == "claude" else None
    proxy = proxy if proxy is not None else owned_proxy
    setup = SupervisorSetup(
        data_dir=config.data_dir,
        session_settings=settings or session_settings(config, provider),
        max_containers=config.max_containers,
        sweep_interval_s=config.sweep_interval_s,
    )
    channels = [LocalChatChannel(config.chat_socket, config.assistant_name)]
    supervisor = Supervisor.start(setup, store, runtime, channels, proxy)
    supervisor.ask(Ready(), block=True, timeout=60)
    log.info("host started: data=%s runtime=%s provider=%s", config.data_dir, runtime.name, provider)
    return Host(config, store, supervisor, runtime, owned_proxy)


def _credential_proxy(config: HostConfig) -> CredentialProxy:
    from actors.credentials import CredentialProxy

    return CredentialProxy(config.base_url, config.api_key)
