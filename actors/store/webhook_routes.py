"""Webhook routes: `POST /hooks/<route>` signed with the route's secret reaches its agent group."""

from __future__ import annotations

import sqlite3

import msgspec

from actors.store import _rows
from actors.store.db import InvalidValueError, Store
from protocol.timeutil import now_ts

TABLE = "webhook_routes"

# Shorter secrets are guessable enough to matter; GitHub suggests high-entropy ones.
MIN_SECRET_LENGTH = 16


class WebhookRoute(msgspec.Struct, frozen=True, kw_only=True):
    route: str
    secret: str
    agent_group_id: str
    created_at: str


_SELECT = _rows.select_from(WebhookRoute, TABLE)


def _convert(row: sqlite3.Row) -> WebhookRoute:
    return _rows.to_struct(WebhookRoute, row)


def create(store: Store, *, route: str, secret: str, agent_group_id: str) -> WebhookRoute:
    """InvalidValueError for a route outside [A-Za-z0-9_-]{1,64} or a short secret."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise InvalidValueError(f"webhook secret: at least {MIN_SECRET_LENGTH} characters")
    value = WebhookRoute(route=route, secret=secret, agent_group_id=agent_group_id, created_at=now_ts())
    _rows.insert(store, TABLE, msgspec.structs.asdict(value))
    return value


def get(store: Store, route: str) -> WebhookRoute | None:
    return _rows.fetch_one(store, f"{_SELECT} WHERE route = ?", (route,), _convert)


def list_all(store: Store) -> list[WebhookRoute]:
    return _rows.fetch_all(store, f"{_SELECT} ORDER BY route", (), _convert)


def delete(store: Store, route: str) -> bool:
    with store.transaction() as conn:
        return conn.execute(f"DELETE FROM {TABLE} WHERE route = ?", (route,)).rowcount > 0
