"""Who may talk to an agent (docs/ARCHITECTURE.md, "Who may talk to an agent").

Every inbound chat message is admitted or not before anything is stored:

- the channel's owner (configured per channel: `HUTCH_TELEGRAM_OWNER`, ...) is the owner of
  every chat on it; the local chat is trusted whole (only the host's user can open its
  socket);
- a chat's members have the role their row gives them (owner, admin, member);
- anyone else meets the chat's unknown-sender policy: `drop` (nothing stored, nothing
  answered, one log line) or `pair` (a short code the owner approves or refuses; until then
  nothing of theirs reaches an agent).

The channel's configured owner approves or refuses from their direct chat with the bot with
`/approve CODE` or `/refuse CODE` (a role of owner in some chat is not enough); those never
reach an agent, from anyone (actors.inbound_router).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from actors.channels.base import InboundAnswer, InboundChat
from actors.store import members, messaging_groups, pairing_requests
from actors.store.db import Store
from actors.store.members import Role
from actors.store.messaging_groups import MessagingGroup
from actors.store.pairing_requests import PairingRequest
from protocol.rows import Routing

# Channels whose every sender is the owner: the local chat's socket is the host user's alone.
TRUSTED_CHANNELS = frozenset({"cli"})

APPROVE = "/approve"
REFUSE = "/refuse"


class Admitted(msgspec.Struct, frozen=True):
    role: Role


class Dropped(msgspec.Struct, frozen=True):
    reason: str


class PairingOffered(msgspec.Struct, frozen=True):
    """The sender has a pending request; `new` when it was made by this message."""

    request: PairingRequest
    new: bool


Admission = Admitted | Dropped | PairingOffered


class OwnerCommand(msgspec.Struct, frozen=True):
    approve: bool
    code: str


def admit(
    store: Store, owners: Mapping[str, str], chat: MessagingGroup, event: InboundChat | InboundAnswer
) -> Admission:
    """Whether the sender of `event` in `chat` may reach an agent, and as whom."""
    if chat.channel_type in TRUSTED_CHANNELS:
        return Admitted("owner")
    sender = event.sender_id
    if not sender:
        return Dropped("the platform gave no sender id")
    if owners.get(chat.channel_type) == sender:
        return Admitted("owner")
    role = members.role_of(store, chat.id, sender)
    if role is not None:
        return Admitted(role)
    if chat.unknown_senders == "pair" and isinstance(event, InboundChat):
        if pairing_requests.was_refused(store, chat.id, sender):
            return Dropped(f"sender {sender} was refused by the owner")
        request, new = pairing_requests.open_request(store, chat.id, sender, event.sender)
        return PairingOffered(request, new)
    return Dropped(f"sender {sender} is not a member of this chat (policy {chat.unknown_senders})")


def owner_chats(store: Store, owners: Mapping[str, str], channel_type: str | None = None) -> list[Routing]:
    """The configured owner's direct chats with the bot, on `channel_type` or on every
    channel with a configured owner: where pairing requests and the host's notices for the
    owner go. A role of owner given to someone else in some chat is not the owner."""
    found: list[Routing] = []
    for channel, owner in owners.items():
        if channel_type is not None and channel != channel_type:
            continue
        for chat in messaging_groups.list_all(store, channel_type=channel):
            if not chat.is_group and any(
                m.role == "owner" and m.user_id == owner for m in members.list_for(store, chat.id)
            ):
                found.append(Routing(chat.platform_id, chat.channel_type))
    return found


def may_reach_an_agent(
    store: Store, owners: Mapping[str, str], channel_type: str, platform_id: str, sender_id: str | None
) -> bool:
    """Whether a message from `sender_id` in this chat could reach an agent now, asked before
    a channel fetches its files: `admit` without its side effects (no pairing request). A
    stranger, and anyone in a chat nobody knows, is no reason to download anything."""
    if channel_type in TRUSTED_CHANNELS:
        return True
    if not sender_id:
        return False
    if owners.get(channel_type) == sender_id:
        return True
    chat = messaging_groups.get_by_platform(store, channel_type, platform_id)
    return chat is not None and members.role_of(store, chat.id, sender_id) is not None


def owner_command(text: str) -> OwnerCommand | None:
    """`/approve CODE` or `/refuse CODE`, as the owner types it."""
    words = text.split()
    if len(words) != 2 or words[0].lower() not in (APPROVE, REFUSE):
        return None
    return OwnerCommand(approve=words[0].lower() == APPROVE, code=words[1].upper())
