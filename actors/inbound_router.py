"""From an inbound event to the sessions that take it (the Supervisor's routing, without the
actor): who sent it (`actors.access`), which agents take it (`actors.routing`), and the
row each session writes. Owner commands and pairing happen here too; what the people
involved are told goes out through `notify`.

Nothing here waits on a container or a channel: it reads and writes the central DB only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import msgspec

from actors.access import (
    TRUSTED_CHANNELS,
    Admitted,
    Dropped,
    OwnerCommand,
    PairingOffered,
    admit,
    owner_chats,
    owner_command,
)
from actors.channels.base import InboundAnswer, InboundChat, InboundWebhook
from actors.messages import WriteInbound
from actors.routing import Target, targets
from actors.session_commands import Answerer, parse_command, refusal
from actors.store import (
    agent_groups,
    members,
    messaging_group_agents,
    messaging_groups,
    pairing_requests,
    pending_questions,
    sessions,
    webhook_routes,
)
from actors.store.db import Store
from actors.store.members import Role
from actors.store.messaging_groups import MessagingGroup, UnknownSenders
from actors.store.pairing_requests import PairingRequest
from actors.store.sessions import Session
from protocol.content import ChatIn, QuestionAnswer, WebhookIn
from protocol.logs import session_tag
from protocol.rows import Routing

log = logging.getLogger("hutch.routing")

# The agent group a chat is wired to when its owner (or an approved stranger) first writes
# in a direct chat.
MAIN_GROUP = "main"

Notify = Callable[[Routing, str], None]

PAIRING_OWNER_ONLY = "Only the owner can approve or refuse pairing requests, in their direct chat with the bot."


class RoutingError(ValueError):
    """An inbound message with nowhere to go; the channel tells the sender."""


class Routed(msgspec.Struct, frozen=True):
    session: Session
    request: WriteInbound


class InboundRouter:
    """`owners`: each channel's owner, by the platform's user id (`HUTCH_TELEGRAM_OWNER`, ...).
    `unknown_senders`: the policy a chat gets when it is first seen."""

    def __init__(
        self,
        store: Store,
        owners: Mapping[str, str],
        notify: Notify,
        unknown_senders: UnknownSenders = "drop",
        touch: Callable[[str], None] = lambda _session_id: None,
        commands: Answerer | None = None,
    ) -> None:
        self._commands = commands
        self._store = store
        self._owners = dict(owners)
        self._notify = notify
        self._unknown_senders = unknown_senders
        self._touch = touch

    # --- chat messages ----------------------------------------------------------------------

    def route_chat(self, event: InboundChat) -> list[Routed]:
        """The sessions `event` goes to; empty when it goes nowhere on purpose (a stranger
        dropped or offered a code, an owner command). RoutingError when it should have gone
        somewhere and cannot."""
        known = messaging_groups.get_by_platform(self._store, event.channel_type, event.platform_id)
        if known is None and self._unknown_senders == "drop" and not self._may_be_admitted(event):
            # A stranger in a chat nobody wired: nothing of theirs is kept, not even the chat.
            log.info("dropped a message in %s/%s: sender %s is not a member of this chat (policy drop)",
                     event.channel_type, event.platform_id, event.sender_id)  # fmt: skip
            return []
        chat = self._new_chat(event) if known is None else self._correct_kind(known, event)
        admission = admit(self._store, self._owners, chat, event)
        match admission:
            case Dropped(reason=reason):
                log.info("dropped a message in %s/%s: %s", chat.channel_type, chat.platform_id, reason)
                return []
            case PairingOffered(request=request, new=new):
                if new:
                    self._offer_pairing(chat, event, request.code)
                return []
            case Admitted(role=role):
                pass
        command = owner_command(event.text)
        if command is not None:
            # Never an agent's: decided by the owner in their direct chat, refused elsewhere alike
            # (the same answer whatever the code, so nobody learns which codes are open).
            if self._may_decide_pairing(chat, event):
                self._decide_pairing(command, _routing(event))
            else:
                log.info("refused %s from %s in %s/%s: only the owner decides pairing, in their direct chat",
                         event.text.split()[0], event.sender_id, chat.channel_type, chat.platform_id)  # fmt: skip
                self._notify(_routing(event), PAIRING_OWNER_ONLY)
            return []
        if role == "owner":
            self._remember_owner_chat(chat, event)
        wirings = messaging_group_agents.wirings_for(self._store, chat.id)
        if not wirings and not chat.is_group and role == "owner":
            wirings = [self._wire_to_main(chat)]
        asked = None if self._commands is None else parse_command(event.text)
        if asked is not None and self._commands is not None:
            # `/cost` and `/model` need the central DB, so the host answers them; never an agent.
            answer = refusal(asked, role) or self._commands.answer(asked, chat, event.thread_id, wirings)
            self._notify(_routing(event), answer)
            return []
        if not wirings:
            raise RoutingError(f"no agent is wired to chat {event.platform_id!r} on {event.channel_type}")
        return [self._to_session(target, chat, event, role) for target in targets(self._store, wirings, event)]

    def _may_be_admitted(self, event: InboundChat) -> bool:
        """Whether the sender of a message in a chat not seen before could be let in: the
        channel's owner, or anyone on a trusted channel (members belong to known chats)."""
        return event.channel_type in TRUSTED_CHANNELS or (
            event.sender_id is not None and self._owners.get(event.channel_type) == event.sender_id
        )

    def _correct_kind(self, chat: MessagingGroup, event: InboundChat) -> MessagingGroup:
        """The stored chat, made a group or a direct chat as the platform says it is: a chat
        wired before its first message had to be guessed (a Discord id does not say which),
        and a group taken for a direct chat would be where pairing requests are announced.
        Only Discord is believed about a direct chat: Telegram reports a broadcast channel as
        not a group, though it is no one's direct chat."""
        if event.is_group and not chat.is_group:
            is_group = True
        elif not event.is_group and chat.is_group and chat.channel_type == "discord":
            is_group = False
        else:
            return chat
        log.warning("chat %s was stored as a %s chat; the platform says it is a %s chat: corrected",
                    chat.label, "group" if chat.is_group else "direct", "group" if is_group else "direct")  # fmt: skip
        corrected = messaging_groups.update(self._store, chat.id, is_group=is_group)
        return chat if corrected is None else corrected

    def _new_chat(self, event: InboundChat) -> MessagingGroup:
        log.info("new chat %s/%s", event.channel_type, event.platform_id)
        return messaging_groups.create(
            self._store,
            channel_type=event.channel_type,
            platform_id=event.platform_id,
            name=event.chat_name,
            is_group=event.is_group,
            unknown_senders=self._unknown_senders,
        )

    def _to_session(self, target: Target, chat: MessagingGroup, event: InboundChat, role: Role) -> Routed:
        wiring = target.wiring
        key = sessions.session_key(
            wiring.session_mode,
            agent_group_id=wiring.agent_group_id,
            messaging_group_id=chat.id,
            thread_id=event.thread_id,
        )
        session = sessions.get_by_key(self._store, key)
        if session is None:
            thread = event.thread_id if wiring.session_mode == "per-thread" else None
            session = sessions.create(
                self._store, agent_group_id=wiring.agent_group_id, session_key=key,
                messaging_group_id=chat.id, thread_id=thread,
            )  # fmt: skip
            log.info("%s new session", self._tag(session))
        self._touch(session.id)
        content = ChatIn(
            text=event.text,
            sender=event.sender,
            sender_id=event.sender_id,
            platform_message_id=event.platform_message_id,
            sender_role=role,
        )
        request = WriteInbound(
            content=content,
            routing=_routing(event),
            trigger=target.trigger,
            files=tuple((file.name, file.path) for file in event.files),
        )
        return Routed(session, request)

    # --- owners and pairing -----------------------------------------------------------------

    def _may_decide_pairing(self, chat: MessagingGroup, event: InboundChat) -> bool:
        """`/approve` and `/refuse` count from the channel's configured owner in their own
        direct chat with the bot (or from the local chat, whose user is the host's, who can
        run `hutch senders approve` as well); an owner's role in some chat is not enough."""
        if chat.channel_type in TRUSTED_CHANNELS:
            return True
        owner = self._owners.get(chat.channel_type)
        return bool(owner) and event.sender_id == owner and not chat.is_group and not event.is_group

    def _remember_owner_chat(self, chat: MessagingGroup, event: InboundChat) -> None:
        """The configured owner's direct chats are where pairing requests are announced; a
        trusted channel has no strangers to announce, so its messages cost no lookup here."""
        if chat.channel_type in TRUSTED_CHANNELS or chat.is_group or not event.sender_id:
            return
        if self._owners.get(chat.channel_type) != event.sender_id:
            return  # an owner by a member row: they cannot decide a request, so are not asked
        if members.role_of(self._store, chat.id, event.sender_id) is None:
            members.put(self._store, chat.id, event.sender_id, "owner", event.sender)

    def _wire_to_main(self, chat: MessagingGroup) -> messaging_group_agents.Wiring:
        wiring = wire_to_main(self._store, chat)
        if wiring is None:
            raise RoutingError(f"there is no agent group {MAIN_GROUP!r} to answer a new direct chat")
        return wiring

    def _offer_pairing(self, chat: MessagingGroup, event: InboundChat, code: str) -> None:
        who = f"{event.sender} ({event.sender_id})"
        where = chat.name or chat.platform_id
        self._notify(
            _routing(event),
            f"Hello {event.sender}: this assistant answers only people its owner knows. Your pairing code "
            f"is {code}; the owner has been asked.",
        )
        # The only place a request can be decided from, so the only place its code is shown.
        deciders = owner_chats(self._store, self._owners, chat.channel_type)
        if not deciders:
            log.warning("pairing code %s for %s in %s: the owner has no direct chat with the bot yet", code, who, where)
        for routing in deciders:
            self._notify(
                routing, f"{who} asks to talk to the assistant in {where}. Reply /approve {code} or /refuse {code}."
            )
        log.info("pairing code %s offered to %s in %s/%s", code, who, chat.channel_type, chat.platform_id)

    def _tag(self, session: Session) -> str:
        group = agent_groups.get(self._store, session.agent_group_id)
        return session_tag(session.id, None if group is None else group.folder)

    def _decide_pairing(self, command: OwnerCommand, reply_to: Routing) -> None:
        decision = decide_pairing(self._store, command.code, command.approve)
        if decision is None:
            self._notify(reply_to, f"There is no open pairing request {command.code}.")
            return
        request, chat = decision.request, decision.chat
        if chat is None:
            return
        who = request.user_name or request.user_id
        verdict = "approved" if command.approve else "refused"
        self._notify(reply_to, f"{who} is {verdict}.")
        told = "You can talk to the assistant now." if command.approve else "The owner declined your request."
        self._notify(Routing(chat.platform_id, chat.channel_type), told)
        log.info("pairing %s %s for %s in %s/%s", command.code, verdict, who, chat.channel_type, chat.platform_id)

    # --- webhooks -----------------------------------------------------------------------------

    def route_webhook(self, event: InboundWebhook) -> list[Routed]:
        """A signed delivery (the channel checked the signature) for its route's agent group,
        in that route's own session."""
        route = webhook_routes.get(self._store, event.route)
        if route is None:
            raise RoutingError(f"there is no webhook route {event.route!r}")
        key = sessions.webhook_session_key(route.agent_group_id, route.route)
        session = sessions.get_by_key(self._store, key)
        if session is None:
            session = sessions.create(self._store, agent_group_id=route.agent_group_id, session_key=key)
            log.info("%s new session for webhook route %r", self._tag(session), route.route)
        self._touch(session.id)
        request = WriteInbound(
            content=WebhookIn(source=route.route, payload=event.payload, event=event.event),
            routing=Routing(route.route, "webhook"),
        )
        return [Routed(session, request)]

    # --- answers to questions ---------------------------------------------------------------

    def route_answer(self, event: InboundAnswer) -> list[Routed]:
        question = pending_questions.get(self._store, event.question_id)
        if question is None or question.channel_type != event.channel_type:
            raise RoutingError(f"there is no question {event.question_id!r}")
        chat = messaging_groups.get_by_platform(self._store, event.channel_type, event.platform_id)
        if chat is None or not isinstance(admit(self._store, self._owners, chat, event), Admitted):
            log.info("dropped an answer to %s from %s: not a member", event.question_id, event.sender_id)
            return []
        answer = event.answer
        if event.option_index is not None:
            if not 0 <= event.option_index < len(question.options):
                raise RoutingError(f"question {event.question_id!r} has no option {event.option_index}")
            answer = question.options[event.option_index]
        if not answer:
            raise RoutingError("an answer needs a choice")
        if pending_questions.answer(self._store, event.question_id, answer) is None:
            raise RoutingError("that question was already answered")
        session = sessions.get(self._store, question.session_id)
        if session is None:
            raise RoutingError("the conversation that asked this question is gone")
        request = WriteInbound(
            content=QuestionAnswer(question_id=question.id, answer=answer, answered_by=event.sender),
            routing=Routing(question.platform_id, question.channel_type, question.thread_id),
        )
        return [Routed(session, request)]


class PairingDecision(msgspec.Struct, frozen=True):
    request: PairingRequest
    chat: MessagingGroup | None
    wired: messaging_group_agents.Wiring | None  # made by this approval


def decide_pairing(store: Store, code: str, approve: bool) -> PairingDecision | None:
    """Approve or refuse the open request `code` (None when there is none), for the owner's
    `/approve` in chat and for the `hutch` command alike: an approved stranger's direct chat
    with nothing wired to it is wired to `main`, or their next message would go nowhere. One
    transaction, so a host reading meanwhile sees all of it or none."""
    with store.transaction():
        request = pairing_requests.decide(store, code, approve)
        if request is None:
            return None
        chat = messaging_groups.get(store, request.messaging_group_id)
        wired = None
        direct = approve and chat is not None and not chat.is_group
        if direct and chat is not None and not messaging_group_agents.wirings_for(store, chat.id):
            wired = wire_to_main(store, chat)
    return PairingDecision(request, chat, wired)


def wire_to_main(store: Store, chat: MessagingGroup) -> messaging_group_agents.Wiring | None:
    """Wire a direct chat to the agent group `main`; None when there is no such group."""
    group = agent_groups.get_by_folder(store, MAIN_GROUP)
    if group is None:
        log.warning("no agent group %r to wire direct chat %s/%s to", MAIN_GROUP, chat.channel_type, chat.platform_id)
        return None
    log.info("wired direct chat %s/%s to %r", chat.channel_type, chat.platform_id, MAIN_GROUP)
    return messaging_group_agents.create(
        store, messaging_group_id=chat.id, agent_group_id=group.id, session_mode="shared"
    )


def _routing(event: InboundChat) -> Routing:
    return Routing(event.platform_id, event.channel_type, event.thread_id)
