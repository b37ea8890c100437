"""Opaque pagination cursors: by id, by (timestamp, id) for recorded order, or by a
row's whole sort key."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

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


class HasId(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


U = TypeVar("U", bound=HasId)


def id_page(items: Sequence[U], limit: int, to_json: Callable[[U], Any]) -> dict[str, Any]:
    """A list answer paged by id: `{"data": [...], "next_cursor": ...}`."""
    return {
        "data": [to_json(item) for item in items],
        "next_cursor": next_cursor(items, limit, lambda item: item.id),
    }


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


_KINDS: dict[str, Callable[[str], Any]] = {
    "b": lambda text: text == "1",
    "i": int,
    "s": str,
    "t": datetime.fromisoformat,
    "d": date.fromisoformat,
    "u": uuid.UUID,
}


def _tagged(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["b", "1" if value else "0"]
    if isinstance(value, int):
        return ["i", str(value)]
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    return ["s", str(value)]


def encode_sort_key(values: Sequence[Any]) -> str:
    """A cursor holding a row's sort key (bools, integers, text, dates, timestamps, ids)."""
    raw = json.dumps([_tagged(v) for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_sort_key(cursor: str | None) -> tuple[Any, ...] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return tuple(_KINDS[kind](text) for kind, text in json.loads(raw))
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise _invalid() from None
