"""What a manual journal entry may name (ACCOUNTING.md, "Manual journals and
billing documents").

A manual entry (the API's journal-entry routes, the CLI) may carry a
customer and a document dimension only if they exist in the book, and may
never name a billing document: postings naming an invoice, payment, credit
note or refund are written by the billing services alone, so that an
invoice's amount due, paid, credited and written off always add up to its
total. Pure rules: the database lookup lives in billing.postgres.manual_entries.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from billing.errors import BillingDocumentPosting, UnknownReference
from billing.postings import BILLING_DOCUMENT_KINDS, document_kind
from ledger.entries import JournalEntry
from ledger.errors import LedgerError

__all__ = ["Reference", "first_problem", "references"]


@dataclass(frozen=True, slots=True)
class Reference:
    """A customer or document named by posting `posting` of entry `entry`."""

    entry: int
    posting: int
    field: str  # "customer" or "document"
    value: str
    kind: str | None  # "customer", a document kind, or None (no `<kind>:` prefix)
    id: uuid.UUID | None  # None when the id part is not an id at all


def _id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def references(entries: Sequence[JournalEntry]) -> list[Reference]:
    """Every customer and document the entries name, in entry and posting order."""
    found = []
    for e, entry in enumerate(entries):
        for p, posting in enumerate(entry.postings):
            if posting.customer is not None:
                value = posting.customer
                found.append(Reference(e, p, "customer", value, "customer", _id(value)))
            if posting.document is not None:
                value = posting.document
                kind = document_kind(value)
                ref_id = _id(value.partition(":")[2]) if kind else None
                found.append(Reference(e, p, "document", value, kind, ref_id))
    return found


def first_problem(
    refs: Sequence[Reference], existing: Collection[int], *, name_entry: bool
) -> LedgerError | None:
    """The first reference a manual entry may not make; `existing` holds the
    indexes (into `refs`) of those found in the book."""
    for index, ref in enumerate(refs):
        fields: dict[str, object] = {"posting": ref.posting, "field": ref.field}
        if name_entry:
            fields["entry"] = ref.entry
        where = f"posting {ref.posting}" + (f" of entry {ref.entry}" if name_entry else "")
        if ref.field == "document" and ref.kind not in BILLING_DOCUMENT_KINDS:
            return UnknownReference(
                f"{where}: document {ref.value!r} is not a kind of document this book has"
                f" (<kind>:<id>, kind one of {', '.join(BILLING_DOCUMENT_KINDS)})",
                **fields,
            )
        if index not in existing:
            what = "customer" if ref.field == "customer" else ref.kind
            return UnknownReference(
                f"{where}: {what} {ref.value!r} does not exist in this book", **fields
            )
        if ref.field == "document":
            return BillingDocumentPosting(
                f"{where} names {ref.value}, a billing document: postings naming one are"
                " written only by the billing services (payments, credit notes, write-offs,"
                " refunds), never by a manual journal entry",
                **fields,
            )
    return None
