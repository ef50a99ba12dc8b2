"""Plumbing shared by the entity modules: rows to structs, and the generic insert/update/delete.

Table and column names here always come from the code (struct fields, module constants),
never from callers, which is why building them into SQL text is safe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from actors.store.db import Store

T = TypeVar("T", bound=msgspec.Struct)


def select_from(cls: type[msgspec.Struct], table: str) -> str:
    """`SELECT <the struct's fields> FROM table`: naming columns, rather than `*`, keeps old
    code working when a later migration adds a column."""
    columns = ", ".join(field.name for field in msgspec.structs.fields(cls))
    return f"SELECT {columns} FROM {table}"


def to_struct(cls: type[T], row: sqlite3.Row) -> T:
    # strict=False turns SQLite's 0/1 into bool; types are still checked (a bad Literal fails).
    return msgspec.convert(dict(row), cls, strict=False)


def fetch_one(
    store: Store,
    sql: str,
    params: Sequence[Any],
    convert: Callable[[sqlite3.Row], T],
) -> T | None:
    with store.read() as conn:
        row = conn.execute(sql, params).fetchone()
    return None if row is None else convert(row)


def fetch_all(
    store: Store,
    sql: str,
    params: Sequence[Any],
    convert: Callable[[sqlite3.Row], T],
) -> list[T]:
    with store.read() as conn:
        rows = conn.execute(sql, params).fetchall()
    return [convert(row) for row in rows]


def insert(store: Store, table: str, values: Mapping[str, Any]) -> None:
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    with store.transaction() as conn:
        conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values()))


def set_fields(store: Store, table: str, row_id: str, changes: Mapping[str, Any]) -> bool:
    """UPDATE only the fields that were passed (UNSET means "leave as is"); True if the row exists."""
    given = {name: value for name, value in changes.items() if value is not msgspec.UNSET}
    with store.transaction() as conn:
        if not given:
            return conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone() is not None
        assignments = ", ".join(f"{name} = ?" for name in given)
        cursor = conn.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", (*given.values(), row_id))
        return cursor.rowcount > 0


def delete_row(store: Store, table: str, row_id: str) -> bool:
    """True if a row was deleted; rows referring to it go too, per the schema's ON DELETE."""
    with store.transaction() as conn:
        return conn.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,)).rowcount > 0
