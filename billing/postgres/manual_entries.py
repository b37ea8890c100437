"""The database side of billing.manual_entries: which named customers and
documents exist in the book, in one query for a whole batch."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from billing.manual_entries import Reference, first_problem, references
from billing.postings import BILLING_DOCUMENT_KINDS
from ledger.entries import JournalEntry

# The table each reference kind names a row of. Every billing document kind
# (billing.postings.BILLING_DOCUMENT_KINDS) must be here, or a manual entry
# naming one would read as an unknown reference instead of a refused document.
_TABLES = {
    "customer": "customers",
    "invoice": "invoices",
    "payment": "payments",
    "credit_note": "credit_notes",
    "refund": "refunds",
    "contract": "contracts",
    "encounter": "encounters",
    "claim": "claims",
    "remittance": "remittances",
    "patient_payment": "patient_payments",
}
assert set(BILLING_DOCUMENT_KINDS) <= set(_TABLES)

_EXISTING = (
    "select r.n - 1 from unnest(%(kinds)s::text[], %(ids)s::uuid[])"
    " with ordinality as r(kind, id, n) where case r.kind "
    + " ".join(
        f"when '{kind}' then exists"
        f" (select 1 from {table} t where t.book_id = %(book)s and t.id = r.id)"
        for kind, table in _TABLES.items()
    )
    + " else false end"
)


def _params(book_id: uuid.UUID, refs: Sequence[Reference]) -> dict[str, Any]:
    return {"book": book_id, "kinds": [r.kind for r in refs], "ids": [r.id for r in refs]}


def check_manual_entries(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    entries: Sequence[JournalEntry],
    *,
    name_entry: bool = True,
) -> None:
    """Raise UnknownReference or BillingDocumentPosting for the first posting of
    manual `entries` that names what it may not; nothing is written."""
    refs = references(entries)
    if not refs:
        return
    existing = {row[0] for row in conn.execute(_EXISTING, _params(book_id, refs))}
    problem = first_problem(refs, existing, name_entry=name_entry)
    if problem is not None:
        raise problem


async def check_manual_entries_async(
    conn: psycopg.AsyncConnection,
    book_id: uuid.UUID,
    entries: Sequence[JournalEntry],
    *,
    name_entry: bool = True,
) -> None:
    """check_manual_entries on an asyncio connection."""
    refs = references(entries)
    if not refs:
        return
    cur = await conn.execute(_EXISTING, _params(book_id, refs))
    existing = {row[0] for row in await cur.fetchall()}
    problem = first_problem(refs, existing, name_entry=name_entry)
    if problem is not None:
        raise problem
