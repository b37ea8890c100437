"""Reading a document reference from a request."""

from __future__ import annotations

import uuid

from ledger.errors import NotFound


def parse_id(ref: str, what: str) -> uuid.UUID:
    """The id in `ref`; anything that is not one names no document of this book."""
    try:
        return uuid.UUID(ref)
    except (ValueError, TypeError):
        raise NotFound(f"{what} {ref!r} does not exist in this book") from None
