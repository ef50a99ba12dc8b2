"""Strangers asking to talk to an agent in a chat whose policy is `pair`: each gets a short
code; the owner approves or refuses it, and until then nothing they send reaches an agent."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Literal

import msgspec

from actors.store import _rows, members
from actors.store.db import Store
from protocol.timeutil import now_ts

TABLE = "pairing_requests"

PairingStatus = Literal["pending", "approved", "refused"]

# Unambiguous when read aloud or typed on a phone: no 0/O, 1/I/L.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6


class PairingRequest(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    messaging_group_id: str
    user_id: str
    user_name: str | None
    status: PairingStatus
    created_at: str
    decided_at: str | None


_SELECT = _rows.select_from(PairingRequest, TABLE)


def _convert(row: sqlite3.Row) -> PairingRequest:
    return _rows.to_struct(PairingRequest, row)


def open_request(
    store: Store, messaging_group_id: str, user_id: str, user_name: str | None
) -> tuple[PairingRequest, bool]:
    """The sender's pending request in that chat, made now if there is none; True if new."""
    with store.transaction() as conn:
        row = conn.execute(
            f"{_SELECT} WHERE messaging_group_id = ? AND user_id = ? AND status = 'pending'",
            (messaging_group_id, user_id),
        ).fetchone()
        if row is not None:
            return _convert(row), False
        request = PairingRequest(
            code=_new_code(conn),
            messaging_group_id=messaging_group_id,
            user_id=user_id,
            user_name=user_name,
            status="pending",
            created_at=now_ts(),
            decided_at=None,
        )
        conn.execute(
            f"INSERT INTO {TABLE} (code, messaging_group_id, user_id, user_name, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (request.code, messaging_group_id, user_id, user_name, request.status, request.created_at),
        )
        return request, True


def _new_code(conn: sqlite3.Connection) -> str:
    while True:
        code = "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))
        if conn.execute(f"SELECT 1 FROM {TABLE} WHERE code = ?", (code,)).fetchone() is None:
            return code


def get(store: Store, code: str) -> PairingRequest | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE code = ?", (code.strip().upper(),), _convert)


def was_refused(store: Store, messaging_group_id: str, user_id: str) -> bool:
    """A refused sender is not offered another code (the owner would be asked again and
    again); an owner who changes their mind adds them as a member."""
    with store.read() as conn:
        row = conn.execute(
            f"SELECT 1 FROM {TABLE} WHERE messaging_group_id = ? AND user_id = ? AND status = 'refused'",
            (messaging_group_id, user_id),
        ).fetchone()
    return row is not None


def pending(store: Store) -> list[PairingRequest]:
    return _rows.fetch_all(store, f"{_SELECT} WHERE status = 'pending' ORDER BY created_at", (), _convert)


def decide(store: Store, code: str, approve: bool) -> PairingRequest | None:
    """Approve (the sender becomes a member of the chat) or refuse a pending request; None
    when there is no pending request with that code."""
    with store.transaction():
        request = get(store, code)
        if request is None or request.status != "pending":
            return None
        status: PairingStatus = "approved" if approve else "refused"
        decided = msgspec.structs.replace(request, status=status, decided_at=now_ts())
        with store.transaction() as conn:
            conn.execute(
                f"UPDATE {TABLE} SET status = ?, decided_at = ? WHERE code = ?",
                (status, decided.decided_at, request.code),
            )
        if approve:
            members.put(store, request.messaging_group_id, request.user_id, "member", request.user_name)
        return decided


def block(store: Store, messaging_group_id: str, user_id: str) -> PairingRequest:
    """Refuse the sender in that chat for good: their open request, or a refused one made
    now, so `was_refused` drops them and they are never offered a code."""
    with store.transaction() as conn:
        now = now_ts()
        row = conn.execute(
            f"{_SELECT} WHERE messaging_group_id = ? AND user_id = ? AND status = 'pending'",
            (messaging_group_id, user_id),
        ).fetchone()
        if row is not None:
            conn.execute(f"UPDATE {TABLE} SET status = 'refused', decided_at = ? WHERE code = ?", (now, row["code"]))
            return msgspec.structs.replace(_convert(row), status="refused", decided_at=now)
        request = PairingRequest(
            code=_new_code(conn),
            messaging_group_id=messaging_group_id,
            user_id=user_id,
            user_name=None,
            status="refused",
            created_at=now,
            decided_at=now,
        )
        conn.execute(
            f"INSERT INTO {TABLE} (code, messaging_group_id, user_id, user_name, status, created_at, decided_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (request.code, messaging_group_id, user_id, None, "refused", now, now),
        )
        return request
