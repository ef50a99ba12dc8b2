"""Assembling the host from its configuration: every part, started in order and stopped in
reverse in one place (`Host`). `actors.main` runs it; tests start it in-process."""

from __future__ import annotations

import dataclasses
import getpass
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from actors.access import may_reach_an_agent
from actors.channels.base import ChannelAdapter
from actors.channels.local_chat import LocalChatChannel
from actors.channels.starter import ChannelStarter
from actors.channels.webhook import WebhookChannel
from actors.config import HostConfig
from actors.control.in_host import HostSessions
from actors.control.operations import Operations
from actors.control.server import ControlServer
from actors.control_page import ControlPage
from actors.data_folder import DataFolderUnusable
from actors.data_lock import DataFolderLock
from actors.delivery import DeliveryActor
from actors.group_folder import seed_group_folder
from actors.inotify_limits import inotify_shortfall
from actors.ownership import EVERYONE_READS, can_give_away, secure_data_folder, set_mode
from actors.pricing import PricesError, PriceTable, load_prices
from actors.registry import SessionRegistry
from actors.runtime.base import AgentRuntime
from actors.runtime.process import ProcessRuntime
from actors.session import ProxySockets, SessionSettings
from actors.store import agent_groups, messaging_group_agents, messaging_groups, webhook_routes
from actors.store.db import Store, open_store
from actors.store.usage import daily_by_group
from actors.supervisor import GLOBAL_GROUP, Supervisor, SupervisorSetup, submitter
from actors.sweep import SweepActor
from actors.watch import FolderWatcher

if TYPE_CHECKING:
    from actors.credentials import CredentialProxy

log = logging.getLogger("hutch")

MAIN_GROUP = "main"
LOCAL_CHAT = "local"
INSTALLATION_FILE = "installation-id"


class Host:
    """The host's parts, started in dependency order and stopped in reverse, all here (as
    Mopidy wires its actors): nothing else starts or stops a part, and each part is handed
    the references it uses.

    Order: the central store, the runtime, the credential proxy, the DeliveryActor, the file
    watcher, the Supervisor (which owns the registry of live sessions), the SweepActor (it
    tells the Supervisor about sessions with work on disk, so it starts after it), then the
    channels, last, so no message arrives before there is somewhere to put it. Stopping
    runs backwards: channels first, so nothing new comes in while the sessions drain.
    """

    def __init__(self, config: HostConfig) -> None:
        # Agents run in other working directories (and containers see other paths): every
        # path handed to them must be absolute, so the data folder is made so here, once.
        self.config = dataclasses.replace(config, data_dir=config.data_dir.absolute())
        self.channels: list[ChannelAdapter] = []
        self._stops: list[tuple[str, Callable[[], object]]] = []

    # -- starting ------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        config: HostConfig,
        runtime: AgentRuntime | None = None,
        settings: SessionSettings | None = None,
        proxy: ProxySockets | None = None,
        channels: Sequence[ChannelAdapter] | None = None,
    ) -> Host:
        """`runtime`, `settings`, `proxy` and `channels` replace what `config` would choose
        (tests and embedding programs hand in their own)."""
        host = cls(config)
        host.channels = list(channels) if channels is not None else host._configured_channels()
        try:
            host._start(runtime, settings, proxy)
        except BaseException:
            host.stop()
            raise
        return host

    def _configured_channels(self) -> list[ChannelAdapter]:
        """The local chat always; the others where the configuration names them."""
        config = self.config
        chosen: list[ChannelAdapter] = [LocalChatChannel(config.chat_socket, config.assistant_name)]
        if config.telegram_bot_token:
            from actors.channels.telegram import TelegramChannel

            chosen.append(
                TelegramChannel(
                    config.telegram_bot_token,
                    base_url=config.telegram_base_url,
                    download_dir=config.downloads_dir / "telegram",
                    webhook_url=config.telegram_webhook_url,
                    webhook_listen=("127.0.0.1", config.telegram_webhook_port),
                    admits=self._admits,
                )
            )
        if config.discord_bot_token:
            from actors.channels.discord import DiscordChannel

            chosen.append(
                DiscordChannel(
                    config.discord_bot_token,
                    download_dir=config.downloads_dir / "discord",
                    api_base=config.discord_api_base,
                    gateway_url=config.discord_gateway_url,
                    admits=self._admits,
                )
            )
        if config.webhook_port is not None:
            # The store opens later in start(); a route is looked up per request.
            chosen.append(WebhookChannel(lambda route: webhook_routes.get(self.store, route), port=config.webhook_port))
        return chosen

    def _admits(self, channel_type: str, platform_id: str, sender_id: str | None) -> bool:
        """Asked by a channel's thread before it fetches a file (the store opens in start())."""
        return may_reach_an_agent(self.store, self.config.owners, channel_type, platform_id, sender_id)

    def _start(
        self, runtime: AgentRuntime | None, settings: SessionSettings | None, proxy: ProxySockets | None
    ) -> None:
        config = self.config
        # Before anything else: a second host on this folder must touch nothing of the first's.
        try:
            lock = DataFolderLock.acquire(config.data_dir)
        except OSError as exc:  # a file in the way, no permission, a read-only disk: one line
            raise DataFolderUnusable.from_os_error(config.data_dir, exc) from exc
        self._on_stop("data folder lock", lock.release)
        # A bad prices.toml is one line now, not a surprise when a cost is first shown.
        try:
            self.prices = load_prices(config.data_dir)
        except PricesError as exc:
            raise SystemExit(f"hutch: {exc}") from None
        self.store = open_store(config.central_db)
        self._on_stop("store", self.store.close)
        # Agents get uids of their own only from a host run as root; they then pass through
        # the data folder to their own folders (docs/ARCHITECTURE.md, "Who an agent runs as").
        agent_uids = config.agent_uids if can_give_away() else None
        secure_data_folder(
            config.data_dir, config.central_db, (config.sessions_dir, config.groups_dir), shared=agent_uids is not None
        )
        ensure_first_start(self.store, config)
        provider = effective_provider(config)

        self.runtime = runtime or choose_runtime(config)
        shortfall = inotify_shortfall(config.max_containers)
        if shortfall is not None:
            log.warning("%s", shortfall)
        removed = self.runtime.cleanup_orphans()  # safe now: no other host uses this folder
        if removed:
            log.info("ended %d agent(s) left by an earlier run", len(removed))
        if proxy is None and provider == "claude":
            owned = _credential_proxy(config, self.store, self.prices, self._tell_owner)
            self._on_stop("credential proxy", owned.stop)
            proxy = owned
        self.proxy = proxy

        self.delivery = DeliveryActor.start(self.channels)
        self._on_stop("delivery", self.delivery.stop)

        self.watcher = FolderWatcher(config.sessions_dir)
        self.watcher.start()
        self._on_stop("watcher", self.watcher.stop)

        setup = SupervisorSetup(
            data_dir=config.data_dir,
            session_settings=settings or session_settings(config, provider),
            max_containers=config.max_containers,
            agent_uids=agent_uids,
            agent_limits=config.agent_limits,
            owners=config.owners,
            unknown_senders="pair" if config.unknown_senders == "pair" else "drop",
        )
        self.registry = SessionRegistry()
        self.supervisor = Supervisor.start(
            setup, self.store, self.runtime, self.delivery, self.watcher, self.registry, proxy
        )
        # The sessions stop in parallel, each giving its agent stop_timeout_s, then a kill and
        # their last deliveries: the wait is derived from the grace, never shorter (a fixed
        # 120 s once cut a longer HUTCH_STOP_GRACE short, and the agent's turn with it).
        supervisor_stop_s = setup.session_settings.stop_timeout_s * 2 + 30
        self._on_stop("supervisor", lambda: self.supervisor.stop(timeout=supervisor_stop_s))

        self.sweep = SweepActor.start(
            self.store, self.registry, self.supervisor, config.sessions_dir, config.sweep_interval_s
        )
        self._on_stop("sweep", self.sweep.stop)

        # The `hutch` command's way in while the host runs (docs/ARCHITECTURE.md, "The control socket").
        served = frozenset(channel.channel_type for channel in self.channels)
        control = HostSessions(self.supervisor, self.delivery, served, stop_timeout_s=supervisor_stop_s)
        self.operations = Operations(self.store, config, control, config.owners)
        self.control_server = ControlServer(config.control_socket, self.operations.execute)
        self.control_server.start()
        self._on_stop("control socket", self.control_server.stop)

        on_event = submitter(self.supervisor)
        for channel in self.channels:
            starter = ChannelStarter(channel, on_event)
            starter.start()
            self._on_stop(f"channel {channel.channel_type}", starter.stop)

        # The control page (docs/ARCHITECTURE.md, "The control page"): after the channels, so
        # it stops first. It reads on its own and changes things only through the operations.
        self.control_page: ControlPage | None = None
        if config.control_port is not None:
            prices = self.prices
            page = ControlPage.for_host(
                config,
                self.operations.execute,
                live_sessions=lambda: [session_id for session_id, _ in self.registry.items()],
                usage=lambda store, since: daily_by_group(store, since, prices=prices),
            )
            page.start()
            self._on_stop("control page", page.stop)
            self.control_page = page
        log.info("host started: data=%s runtime=%s provider=%s", config.data_dir, self.runtime.name, provider)

    def _tell_owner(self, text: str) -> None:
        """A budget notice (actors/budget_gate.py); the DeliveryActor starts after the proxy."""
        from actors.budget_gate import tell_owner

        delivery = getattr(self, "delivery", None)
        if delivery is not None:
            tell_owner(delivery, self.store, self.config.owners, text)

    def _on_stop(self, name: str, stop: Callable[[], object]) -> None:
        self._stops.append((name, stop))

    # -- stopping ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop what was started, newest first; one part failing to stop does not keep the
        others running."""
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception:
                log.exception("stopping the %s failed", name)


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
    """`actors.runtime.choice`'s rule; what it gives up (isolation) and why is said once."""
    from actors.runtime.choice import decide_runtime

    status = None
    if config.runtime != "process":
        from actors.runtime.image import inspect_image

        status = inspect_image()
    choice = decide_runtime(config.runtime, status)
    if choice.runtime is None:
        raise SystemExit(f"hutch: {choice.error}")
    if choice.warning:
        log.warning("%s", choice.warning)
    if choice.note:
        log.info("%s", choice.note)
    if choice.runtime == "docker":
        from actors.runtime.docker import DockerRuntime

        return DockerRuntime(installation_id=installation_id(config), limits=config.agent_limits)
    return ProcessRuntime(scope=config.sessions_dir)


def ensure_first_start(store: Store, config: HostConfig) -> None:
    """On a fresh data folder: an agent group `main` wired to the local chat."""
    for folder in (MAIN_GROUP, GLOBAL_GROUP):
        seed_group_folder(config.groups_dir, folder)
    # Every group reads the shared memory; none writes it.
    set_mode(config.groups_dir / GLOBAL_GROUP, EVERYONE_READS)
    group = agent_groups.get_by_folder(store, MAIN_GROUP)
    if group is None:
        group = agent_groups.create(store, name=MAIN_GROUP, folder=MAIN_GROUP)
        log.info("first start: created agent group %r", MAIN_GROUP)
    chat = messaging_groups.get_by_platform(store, "cli", LOCAL_CHAT)
    if chat is None:
        chat = messaging_groups.create(store, channel_type="cli", platform_id=LOCAL_CHAT, name="local chat")
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
        # The runner is given the grace; the host waits a little longer before it kills.
        stop_timeout_s=config.stop_grace_s + 5.0,
        agent_env={
            "HUTCH_PROVIDER": provider,
            "HUTCH_MODEL": config.model,
            "HUTCH_ASSISTANT_NAME": config.assistant_name,
            "HUTCH_LOG_LEVEL": config.log_level,
            # How long the agent may idle: it decides the cached prefix's lifetime (1 h past 5 min).
            "HUTCH_IDLE_TIMEOUT": f"{config.idle_timeout_s:g}",
        },
    )


def start_host(
    config: HostConfig,
    runtime: AgentRuntime | None = None,
    settings: SessionSettings | None = None,
    proxy: ProxySockets | None = None,
) -> Host:
    return Host.start(config, runtime, settings, proxy)


def _credential_proxy(
    config: HostConfig, store: Store, prices: PriceTable, tell_owner: Callable[[str], None]
) -> CredentialProxy:
    from actors.budget_gate import BudgetGate
    from actors.credentials import CredentialProxy
    from actors.usage_meter import UsageBook

    usage = UsageBook(store, BudgetGate(store, prices, tell_owner))
    return CredentialProxy(config.base_url, config.api_key, usage=usage)
