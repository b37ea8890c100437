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


_UUID_TEXT = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def invoice_id_sql(column: str) -> str:
    """SQL for the invoice id a posting's `document` names, NULL when it names none.

    A document is free text to the ledger (`invoice:<id>` by the billing services,
    but an imported or hand-made posting may say `invoice:INV-2026-000123`). A bare
    `substr(document, 9)::uuid` in a join raised on such a row whenever the plan
    happened to evaluate it, even for rows another filter would have dropped; a
    CASE is evaluated only when its test holds."""
    return f"case when {column} ~ '^invoice:{_UUID_TEXT}$' then substr({column}, 9)::uuid end"
