"""Opaque pagination cursors: by id, or by (timestamp, id) for recorded order."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from adapters.http.problems import ApiError

T = TypeVar("T")


def _invalid() -> ApiError:
    return ApiError(400, "invalid_cursor", "cursor is not one this API returned")


def encode_cursor(value: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> uuid.UUID | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (ValueError, TypeError):
        raise _invalid() from None


def next_cursor(items: Sequence[T], limit: int, key: Callable[[T], uuid.UUID]) -> str | None:
    """The cursor of a full page's last item; None when the page is the last."""
    return encode_cursor(key(items[-1])) if len(items) == limit else None


def encode_keyset(at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode()


def decode_keyset(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not cursor:
        return None
    try:
        at, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError):
        raise _invalid() from None
