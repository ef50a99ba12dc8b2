"""The control operations: what the `hutch` command and the control page may change.

Each request of `actors.control.requests` is carried out here, once, against the central DB
and a `SessionControl` for what touches a session's files or its running agent. While a host
runs, that is the host's own actors (`actors.control.in_host`); while none does, it is the
command itself holding the data folder's lock (`actors.control.offline`). Either way each
file keeps its one writer (docs/ARCHITECTURE.md, "The control socket")."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any, Protocol

from actors.access import TRUSTED_CHANNELS
from actors.control.requests import (
    AddGroup,
    AddWebhookRoute,
    AllowSender,
    BlockSender,
    ChangeTask,
    ClearSession,
    DecidePairing,
    RemoveGroup,
    RemoveWebhookRoute,
    Reply,
    Request,
    RotateWebhookSecret,
    SetBudget,
    SetGroup,
    SetGroupModel,
    StopSession,
    Unwire,
    Wire,
)
from actors.control.tasks import TaskSeries, read_tasks
from actors.data_folder import DataFolder
from actors.group_folder import seed_group_folder
from actors.inbound_router import MAIN_GROUP, decide_pairing
from actors.session_commands import choose_model
from actors.store import (
    agent_groups,
    budgets,
    members,
    messaging_group_agents,
    messaging_groups,
    pairing_requests,
    sessions,
    webhook_routes,
)
from actors.store.agent_groups import AgentGroup
from actors.store.db import Store, StoreError
from actors.store.messaging_groups import MessagingGroup
from actors.store.sessions import Session
from protocol.content import CancelTask, ChatIn, PauseTask, ResumeTask, SeriesChange
from protocol.layout import SessionLayout
from protocol.models import UnusableModelError
from protocol.rows import Routing

log = logging.getLogger("hutch.control")

# Who a command-line `/clear` comes from, in the agent's prompt and the session's rows.
COMMAND_SENDER = "hutch (command line)"
# The channels a chat can be on; webhooks are routes, not chats.
CHAT_CHANNELS = ("cli", "telegram", "discord")
# A group's folder is one path component below groups/ and sessions/.
_FOLDER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_RESERVED_FOLDERS = frozenset({"global"})
_MAX_NAME = 100
_MAX_PLATFORM_ID = 200
# What an agent group's own limits may be, beside the cpus (`_check_limit`): the least is
# what an agent needs (AgentLimits'), the most only keeps a slip of the finger (a size in
# bytes, say) from being stored. /dev/shm cannot be turned off: Docker reads 0 as 64 MB.
_LIMIT_RANGES: dict[str, tuple[int, int, str]] = {
    "memory_mb": (64, 1024 * 1024, " MB"),
    "pids": (16, 4_194_304, ""),  # the most Linux's pid_max can be
    "shm_mb": (1, 1024 * 1024, " MB"),
}
LIMITS = ("cpus", "memory_mb", "pids", "shm_mb")
_HOST_MODEL = "the host's model (HUTCH_MODEL)"
_TASK_CHANGES: dict[str, type[CancelTask | PauseTask | ResumeTask]] = {
    "pause": PauseTask,
    "resume": ResumeTask,
    "cancel": CancelTask,
}


class OperationError(Exception):
    """The request cannot be carried out; nothing was changed. The text says why."""


class SessionControl(Protocol):
    """What an operation needs done to a session, by whoever may do it now."""

    @property
    def host_runs(self) -> bool: ...

    def change_series(self, session: Session, layout: SessionLayout, action: SeriesChange) -> str:
        """Apply the change in the session's inbound.db; ActionRejected if it does not apply."""
        ...

    def write_chat(self, session: Session, layout: SessionLayout, content: ChatIn, routing: Routing) -> None:
        """Add a chat row for the session's agent, as a channel's message would be."""
        ...

    def stop(self, session: Session) -> bool:
        """Stop the session's agent; True if one ran."""
        ...

    def remove_group(self, group: AgentGroup) -> list[str]:
        """Stop the group's sessions and delete it; the ids of those that ran."""
        ...

    def restart_group(self, group: AgentGroup) -> list[str]:
        """Stop the group's running agents, so the next message starts them as it now is."""
        ...

    def tell(self, routing: Routing, text: str) -> bool:
        """Send a person a line on their channel; False if nobody can now."""
        ...

    def recheck_budget(self, group: AgentGroup) -> int:
        """Have the group's live sessions run what waits for its budget; how many were told."""
        ...


class Operations:
    """Carries out control requests; `execute` never raises for a refused request."""

    def __init__(
        self, store: Store, folder: DataFolder, control: SessionControl, owners: Mapping[str, str] | None = None
    ) -> None:
        self._store = store
        self._folder = folder
        self._control = control
        self._owners = dict(owners or {})

    def execute(self, request: Request) -> Reply:
        try:
            message = self._carry_out(request)
        except (OperationError, StoreError, ValueError) as exc:
            return Reply(ok=False, message=str(exc))
        log.info("control: %s", message)
        return Reply(ok=True, message=message)

    def _carry_out(self, request: Request) -> str:
        match request:
            case StopSession(session=wanted):
                return self._stop(find_session(self._store, wanted))
            case ClearSession(session=wanted):
                return self._clear(find_session(self._store, wanted))
            case ChangeTask():
                return self._change_task(request)
            case AddGroup():
                return self._add_group(request)
            case RemoveGroup(name=name):
                return self._remove_group(name)
            case SetGroupModel(name=name, model=model):
                return self._set_group(SetGroup(name=name, model=model))
            case SetGroup():
                return self._set_group(request)
            case SetBudget():
                return self._set_budget(request)
            case Wire():
                return self._wire(request)
            case Unwire(chat=chat, group=group):
                return self._unwire(chat, group)
            case DecidePairing(code=code, approve=approve):
                return self._decide(code, approve)
            case AllowSender():
                return self._allow(request)
            case BlockSender(chat=chat, user=user):
                return self._block(chat, user)
            case AddWebhookRoute():
                return self._add_route(request)
            case RotateWebhookSecret(route=route, secret=secret):
                return self._rotate_route(route, secret)
            case RemoveWebhookRoute(route=route):
                return self._remove_route(route)
        raise OperationError(f"unknown request {type(request).__name__}")

    # --- sessions ---------------------------------------------------------------------------

    def _stop(self, session: Session) -> str:
        if not self._control.host_runs:
            return f"session {session.id[:8]}: no host runs, so no agent of it runs"
        if self._control.stop(session):
            return f"session {session.id[:8]}: its agent is stopped; the next message starts it again"
        return f"session {session.id[:8]}: no agent of it was running"

    def _clear(self, session: Session) -> str:
        group = self._group_of(session)
        content = ChatIn(text="/clear", sender=COMMAND_SENDER, sender_role="owner")
        self._control.write_chat(session, self._layout(group, session), content, self._routing(session))
        later = "" if self._control.host_runs else " when the host next runs"
        return f"session {session.id[:8]}: its agent forgets the conversation{later} (a /clear as the owner)"

    def _routing(self, session: Session) -> Routing:
        """The session's chat, so the agent's answer to the clear reaches it."""
        if session.messaging_group_id is None:
            return Routing()
        chat = messaging_groups.get(self._store, session.messaging_group_id)
        if chat is None:
            return Routing()
        return Routing(chat.platform_id, chat.channel_type, session.thread_id)

    # --- tasks ------------------------------------------------------------------------------

    def _change_task(self, request: ChangeTask) -> str:
        session, series = self._find_task(request.task, request.session)
        if not series.can(request.verb):
            raise OperationError(f"task {series.id} is {series.state}: there is nothing to {request.verb}")
        layout = self._layout(self._group_of(session), session)
        done = self._control.change_series(session, layout, _TASK_CHANGES[request.verb](task_id=series.id))
        return f"session {session.id[:8]}: {done}"

    def _find_task(self, wanted: str, session_wanted: str | None) -> tuple[Session, TaskSeries]:
        wanted = wanted.strip()
        if not wanted:
            raise OperationError("give a task id (`hutch tasks list` shows them)")
        scope = [find_session(self._store, session_wanted)] if session_wanted else sessions.list_all(self._store)
        found: list[tuple[Session, TaskSeries]] = []
        for session in scope:
            group = agent_groups.get(self._store, session.agent_group_id)
            if group is None:
                continue
            for series in read_tasks(self._layout(group, session).root):
                if series.id == wanted:
                    return session, series
                if series.id.startswith(wanted):
                    found.append((session, series))
        if not found:
            raise OperationError(f"no task {wanted!r} (`hutch tasks list` shows them)")
        if len(found) > 1:
            raise OperationError(f"{len(found)} tasks start with {wanted!r}: give more of the id, or --session")
        return found[0]

    # --- agent groups -----------------------------------------------------------------------

    def _add_group(self, request: AddGroup) -> str:
        name = _text("name", request.name, _MAX_NAME)
        folder = request.folder if request.folder is not None else name.lower()
        if not _FOLDER.fullmatch(folder) or folder in _RESERVED_FOLDERS:
            raise OperationError(
                f"folder {folder!r} cannot be used: lower-case letters, digits, '-' and '_', at most 64, "
                "not 'global' (give one with --folder)"
            )
        model, warning = None, None
        if request.model is not None:
            model, warning = _choose_model(request.model)
        limits: dict[str, Any] = {
            name: _check_limit(name, value) for name in LIMITS if (value := getattr(request, name)) is not None
        }
        if agent_groups.get_by_name(self._store, name) is not None:
            raise OperationError(f"there is already an agent group {name!r}")
        if agent_groups.get_by_folder(self._store, folder) is not None:
            raise OperationError(f"folder {folder!r} is already another agent group's")
        agent_groups.create(self._store, name=name, folder=folder, model=model, **limits)
        seed_group_folder(self._folder.groups_dir, folder)
        own = f"; its agents may use {_describe_limits(limits)}" if limits else ""
        note = "" if warning is None else f" (note: {warning})"
        return f"agent group {name!r} added (folder groups/{folder}){own}; `hutch wire` connects a chat to it{note}"

    def _remove_group(self, name: str) -> str:
        group = self._group_named(name)
        if group.folder == MAIN_GROUP:
            raise OperationError(f"{group.name!r} is where owners' direct chats are wired; it cannot be removed")
        stopped = self._control.remove_group(group)
        ran = f"; {len(stopped)} running session(s) stopped" if stopped else ""
        return (
            f"agent group {group.name!r} removed with its wirings and sessions{ran}; "
            f"its files stay in groups/{group.folder} and sessions/{group.folder}"
        )

    def _set_group(self, request: SetGroup) -> str:
        """The model and limits given, all checked before any is stored; then the group's
        running agents stop, so that the next message starts them as the group now is."""
        group = self._group_named(request.name)
        changes: dict[str, Any] = {}
        said = f"agent group {group.name!r}"
        warning = None
        if request.model is not None:
            changes["model"], warning = _choose_model(request.model)
            said += f" uses {changes['model'] or _HOST_MODEL}"
        limits: dict[str, Any] = {
            name: None if value == "default" else _check_limit(name, value)
            for name in LIMITS
            if (value := getattr(request, name)) is not None
        }
        if not changes and not limits:
            raise OperationError(f"nothing to change for {group.name!r}: give a model or a limit ({', '.join(LIMITS)})")
        if limits:
            said += f"{';' if changes else ':'} its agents may use {_describe_limits(limits)}"
        agent_groups.update(self._store, group.id, **changes, **limits)
        stopped = self._control.restart_group(group)
        if stopped:
            with_ = "with it" if not limits else "as the group now is"
            said += f"; {len(stopped)} running agent(s) stopped, the next message starts them {with_}"
        return said if warning is None else f"{said} (note: {warning})"

    def _set_budget(self, request: SetBudget) -> str:
        group = self._group_named(request.group)
        wanted = budgets.Budget(
            agent_group_id=group.id,
            daily_usd=request.daily_usd,
            monthly_usd=request.monthly_usd,
            daily_tokens=request.daily_tokens,
            monthly_tokens=request.monthly_tokens,
        )
        stored = budgets.put(self._store, wanted)
        # Whatever changed, the proxy decides again on the next request; what waits for the
        # budget is tried now rather than at its next look (docs/ARCHITECTURE.md, "Budgets").
        told = self._control.recheck_budget(group) if self._control.host_runs else 0
        waiting = f"; {told} running session(s) try what waited for it now" if told else ""
        if stored is None:
            return f"agent group {group.name!r} has no budget{waiting}"
        return f"agent group {group.name!r}: {budgets.describe(stored)}{waiting}"

    def _group_named(self, name: str) -> AgentGroup:
        """By name, or by folder (the name's lower-case form, unless one was given)."""
        group = agent_groups.get_by_name(self._store, name.strip()) or agent_groups.get_by_folder(
            self._store, name.strip()
        )
        if group is None:
            raise OperationError(f"no agent group {name!r} (`hutch groups list` shows them)")
        return group

    # --- wiring -----------------------------------------------------------------------------

    def _wire(self, request: Wire) -> str:
        group = self._group_named(request.group)
        with self._store.transaction():
            chat = self._chat(request.chat, create=True)
            if request.unknown_senders is not None and request.unknown_senders != chat.unknown_senders:
                messaging_groups.update(self._store, chat.id, unknown_senders=request.unknown_senders)
            existing = messaging_group_agents.get_pair(self._store, chat.id, group.id)
            if existing is None:
                messaging_group_agents.create(
                    self._store,
                    messaging_group_id=chat.id,
                    agent_group_id=group.id,
                    session_mode=request.session_mode,
                    trigger_rule=request.trigger_rule,
                    untriggered=request.untriggered,
                )
                verb = "wired to"
            else:
                messaging_group_agents.update(
                    self._store,
                    existing.id,
                    session_mode=request.session_mode,
                    trigger_rule=request.trigger_rule,
                    untriggered=request.untriggered,
                )
                verb = "rewired to"
        return (
            f"{request.chat} {verb} {group.name!r}: sessions {request.session_mode}, trigger {request.trigger_rule}, "
            f"untriggered messages {request.untriggered}"
        )

    def _unwire(self, chat_name: str, group_name: str) -> str:
        group = self._group_named(group_name)
        chat = self._chat(chat_name, create=False)
        wiring = messaging_group_agents.get_pair(self._store, chat.id, group.id)
        if wiring is None:
            raise OperationError(f"{chat_name} is not wired to {group.name!r}")
        messaging_group_agents.delete(self._store, wiring.id)
        return f"{chat_name} unwired from {group.name!r}; its sessions stay until they go idle"

    def _chat(self, name: str, *, create: bool) -> MessagingGroup:
        channel, platform_id = parse_chat(name)
        chat = messaging_groups.get_by_platform(self._store, channel, platform_id)
        if chat is not None:
            return chat
        if not create:
            raise OperationError(f"no chat {name} (`hutch wire` makes one)")
        return messaging_groups.create(
            self._store,
            channel_type=channel,
            platform_id=platform_id,
            is_group=wired_chat_is_group(channel, platform_id),
        )

    # --- senders ----------------------------------------------------------------------------

    def _decide(self, code: str, approve: bool) -> str:
        decision = decide_pairing(self._store, code, approve)
        if decision is None:
            raise OperationError(_not_open(self._store, code))
        request, chat = decision.request, decision.chat
        who = f"{request.user_name} ({request.user_id})" if request.user_name else request.user_id
        where = "its chat" if chat is None else chat.label
        if approve:
            wired = f"; the chat is wired to {MAIN_GROUP!r}" if decision.wired is not None else ""
            said = f"{request.code}: {who} is approved in {where}{wired}"
        else:
            said = f"{request.code}: {who} is refused in {where}"
        if chat is None:
            return f"{said}. Their chat is gone, so they are not told."
        told = "You can talk to the assistant now." if approve else "The owner declined your request."
        if self._control.tell(Routing(chat.platform_id, chat.channel_type), told):
            return f"{said}. They are told."
        why = f"{chat.channel_type} is not configured on the host" if self._control.host_runs else "no host runs"
        return f"{said}. They are not told ({why}): tell them yourself."

    def _allow(self, request: AllowSender) -> str:
        chat = self._chat(request.chat, create=False)
        user = _text("user", request.user, _MAX_PLATFORM_ID)
        name = None if request.name is None else _text("name", request.name, _MAX_NAME)
        with self._store.transaction():
            for open_request in pairing_requests.pending(self._store):
                if (open_request.messaging_group_id, open_request.user_id) == (chat.id, user):
                    pairing_requests.decide(self._store, open_request.code, approve=True)  # makes a member
            members.put(self._store, chat.id, user, request.role, name)
        return f"{user} may talk to the agents of {request.chat} as {request.role}"

    def _block(self, chat_name: str, user_id: str) -> str:
        chat = self._chat(chat_name, create=False)
        user = _text("user", user_id, _MAX_PLATFORM_ID)
        if self._owners.get(chat.channel_type) == user:
            raise OperationError(f"{user} is the configured owner of {chat.channel_type}; change that setting instead")
        with self._store.transaction():
            was_member = members.remove(self._store, chat.id, user)
            pairing_requests.block(self._store, chat.id, user)
        left = "; they are no longer a member" if was_member else ""
        return f"{user} is blocked in {chat_name}: their messages are dropped and they are not offered a code{left}"

    # --- webhook routes ---------------------------------------------------------------------
    # A reply never holds the secret: every reply is logged.

    def _add_route(self, request: AddWebhookRoute) -> str:
        route = webhook_routes.check_route(request.route)
        group = self._group_named(request.group)
        with self._store.transaction():
            existing = webhook_routes.get(self._store, route)
            if existing is not None:
                raise OperationError(
                    f"there is already a webhook route {route!r} (for {self._group_name(existing.agent_group_id)!r}): "
                    f"`hutch hooks rotate {route}` gives it a new secret, `hutch hooks remove {route}` removes it"
                )
            webhook_routes.create(self._store, route=route, secret=request.secret, agent_group_id=group.id)
        return f"webhook route {route!r} added for {group.name!r}: POST /hooks/{route} reaches it"

    def _rotate_route(self, route: str, secret: str) -> str:
        existing = self._route_named(route)
        webhook_routes.set_secret(self._store, existing.route, secret)
        return f"webhook route {existing.route!r} has a new secret: the old one is refused from now on"

    def _remove_route(self, route: str) -> str:
        existing = self._route_named(route)
        webhook_routes.delete(self._store, existing.route)
        return (
            f"webhook route {existing.route!r} removed: POST /hooks/{existing.route} is answered 404; "
            "its session stays until it goes idle"
        )

    def _route_named(self, route: str) -> webhook_routes.WebhookRoute:
        existing = webhook_routes.get(self._store, webhook_routes.check_route(route))
        if existing is None:
            raise OperationError(f"no webhook route {route!r} (`hutch hooks list` shows them)")
        return existing

    def _group_name(self, agent_group_id: str) -> str:
        group = agent_groups.get(self._store, agent_group_id)
        return agent_group_id if group is None else group.name

    # --- shared -----------------------------------------------------------------------------

    def _group_of(self, session: Session) -> AgentGroup:
        group = agent_groups.get(self._store, session.agent_group_id)
        if group is None:
            raise OperationError(f"session {session.id[:8]} belongs to no agent group")
        return group

    def _layout(self, group: AgentGroup, session: Session) -> SessionLayout:
        return SessionLayout(self._folder.session_folder(group.folder, session.id))


def find_session(store: Store, wanted: str) -> Session:
    """The session with this id, or the one whose id starts with it."""
    wanted = wanted.strip()
    exact = sessions.get(store, wanted) if wanted else None
    if exact is not None:
        return exact
    matches = [session for session in sessions.list_all(store) if wanted and session.id.startswith(wanted)]
    if not matches:
        raise OperationError(f"no session {wanted!r} (`hutch sessions list` shows them)")
    if len(matches) > 1:
        raise OperationError(f"{len(matches)} sessions start with {wanted!r}: give more of the id")
    return matches[0]


def parse_chat(name: str) -> tuple[str, str]:
    """`telegram:12345` -> ("telegram", "12345"); OperationError for anything else."""
    channel, sep, platform_id = name.strip().partition(":")
    if not sep or channel not in CHAT_CHANNELS or not platform_id:
        raise OperationError(
            f"{name!r} is not a chat: write it as CHANNEL:ID, the channel one of {', '.join(CHAT_CHANNELS)} "
            "(telegram:12345, discord:6789, cli:local)"
        )
    return channel, _text("chat id", platform_id, _MAX_PLATFORM_ID)


def wired_chat_is_group(channel: str, platform_id: str) -> bool:
    """Whether a chat `hutch wire` makes before anyone wrote there is a group. Where the id
    tells, as it tells: a Telegram group's id is negative, a direct chat's the person's own;
    the local chat is the host user's. Where it does not (Discord: a DM channel's id looks like
    a server channel's), a group: the safe side, since a direct chat of the owner's is where
    pairing requests (a stranger's name, id and code) and budget notices are posted."""
    if channel == "telegram":
        return platform_id.startswith("-")
    return channel not in TRUSTED_CHANNELS


def _choose_model(wanted: str) -> tuple[str | None, str | None]:
    """The same rule as `hutch groups set` and /model: the model (None: the host's), and a
    warning for a name this version does not know."""
    try:
        return choose_model(wanted)
    except UnusableModelError as exc:
        raise OperationError(str(exc)) from None


def _check_limit(name: str, value: object) -> float | int:
    """One of an agent group's own limits, checked; OperationError naming it otherwise."""
    if name == "cpus":
        # Docker refuses to start a container given more CPUs than the machine has.
        most = os.cpu_count() or 1
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.01 <= value <= most:
            raise OperationError(
                f"cpus {value}: give a share of this machine's CPUs from 0.01 to {most} (Docker refuses more)"
            )
        return float(value)
    least, most, unit = _LIMIT_RANGES[name]
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        why = " (Docker reads 0 as its own 64 MB)" if name == "shm_mb" else ""
        raise OperationError(f"{name} {value}: give a whole number from {least} to {most}{unit}{why}")
    return value


def _describe_limits(limits: Mapping[str, float | int | None]) -> str:
    """`cpus 0.5, memory 300 MB, pids the host's (HUTCH_AGENT_PIDS)`."""
    words = {"cpus": ("cpus", ""), "memory_mb": ("memory", " MB"), "pids": ("pids", ""), "shm_mb": ("/dev/shm", " MB")}
    said = []
    for name, value in limits.items():
        label, unit = words[name]
        own = f"the host's (HUTCH_AGENT_{name.upper()})" if value is None else f"{value:g}{unit}"
        said.append(f"{label} {own}")
    return ", ".join(said)


def _text(what: str, value: str, limit: int) -> str:
    value = value.strip()
    if not value:
        raise OperationError(f"the {what} is empty")
    if len(value) > limit:
        raise OperationError(f"the {what} is longer than {limit} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise OperationError(f"the {what} holds control characters")
    return value


def _not_open(store: Store, code: str) -> str:
    known = pairing_requests.get(store, code)
    if known is None:
        return f"no pairing request {code.strip().upper()} (`hutch senders pending` lists the open ones)"
    return f"pairing request {known.code} is not open: it was {known.status} at {known.decided_at or '?'}"
