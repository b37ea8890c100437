"""Book settings in PostgreSQL (`books.settings`): read them, change them whole or not at all."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from billing.settings import InvalidSettings, apply_change
from ledger.errors import NotFound


def read_settings(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute("select settings from books where id = %s", (book_id,)).fetchone()
    if row is None:
        raise NotFound(f"book {book_id} does not exist")
    return dict(row[0] or {})


def change_settings(conn: psycopg.Connection, book_id: uuid.UUID, change: object) -> dict[str, Any]:
    """Apply a merge patch of settings; any bad key refuses the whole change.

    The book row is locked so two concurrent changes to different keys both land.
    """
    row = conn.execute("select settings from books where id = %s for update", (book_id,)).fetchone()
    if row is None:
        raise NotFound(f"book {book_id} does not exist")
    settings, errors = apply_change(row[0] or {}, change)
    if errors:
        raise InvalidSettings(
            "; ".join(e.message for e in errors),
            errors=[{"key": e.key, "message": e.message} for e in errors],
        )
    conn.execute("update books set settings = %s where id = %s", (Jsonb(settings), book_id))
    return settings
