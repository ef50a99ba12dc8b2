"""Webhook routes: `POST /hooks/<route>` signed with the route's secret reaches its agent group.

Made, rotated and removed by `hutch hooks` (`actors.control.operations`); the webhook
endpoint looks a route up per request, so a change counts from the next one."""

from __future__ import annotations

import re
import sqlite3

import msgspec

from actors.store import _rows
from actors.store.db import InvalidValueError, Store
from protocol.timeutil import now_ts

TABLE = "webhook_routes"

# The schema's own CHECK (003_access_and_rules.sql): one URL path segment, nothing to escape.
ROUTE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_ROUTE_LENGTH = 64
# Shorter secrets are guessable enough to matter; GitHub suggests high-entropy ones.
MIN_SECRET_LENGTH = 16
# Longer ones buy nothing (HMAC hashes a long key down first) and must fit a control request.
MAX_SECRET_LENGTH = 256


class WebhookRoute(msgspec.Struct, frozen=True, kw_only=True):
    route: str
    secret: str
    agent_group_id: str
    created_at: str


_SELECT = _rows.select_from(WebhookRoute, TABLE)


def _convert(row: sqlite3.Row) -> WebhookRoute:
    return _rows.to_struct(WebhookRoute, row)


def check_route(route: str) -> str:
    """`route` itself; InvalidValueError unless it is 1 to 64 of A-Z a-z 0-9 _ -."""
    if not ROUTE_PATTERN.fullmatch(route):
        raise InvalidValueError(
            f"webhook route {route[:80]!r}: 1 to {MAX_ROUTE_LENGTH} letters, digits, '-' or '_' "
            "(it is the last part of the URL)"
        )
    return route


def check_secret(secret: str) -> str:
    """`secret` itself; InvalidValueError unless it is 16 to 256 characters, none of them a
    control character, with no space at either end (the sender signs with it as it is)."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise InvalidValueError(f"a webhook secret is at least {MIN_SECRET_LENGTH} characters")
    if len(secret) > MAX_SECRET_LENGTH:
        raise InvalidValueError(f"a webhook secret is at most {MAX_SECRET_LENGTH} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in secret):
        raise InvalidValueError("a webhook secret holds no control characters")
    if secret != secret.strip():
        raise InvalidValueError("a webhook secret has no space at either end")
    return secret


def create(store: Store, *, route: str, secret: str, agent_group_id: str) -> WebhookRoute:
    """InvalidValueError for a route outside [A-Za-z0-9_-]{1,64} or a secret `check_secret`
    refuses; AlreadyExistsError for a route that exists."""
    value = WebhookRoute(
        route=check_route(route), secret=check_secret(secret), agent_group_id=agent_group_id, created_at=now_ts()
    )
    _rows.insert(store, TABLE, msgspec.structs.asdict(value))
    return value


def set_secret(store: Store, route: str, secret: str) -> bool:
    """Give the route a new secret (the old one stops working at once); False if there is no such route."""
    check_secret(secret)
    with store.transaction() as conn:
        return conn.execute(f"UPDATE {TABLE} SET secret = ? WHERE route = ?", (secret, route)).rowcount > 0


def get(store: Store, route: str) -> WebhookRoute | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE route = ?", (route,), _convert)


def list_all(store: Store) -> list[WebhookRoute]:
    return _rows.fetch_all(store, f"{_SELECT} ORDER BY route", (), _convert)


def delete(store: Store, route: str) -> bool:
    with store.transaction() as conn:
        return conn.execute(f"DELETE FROM {TABLE} WHERE route = ?", (route,)).rowcount > 0
