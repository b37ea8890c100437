"""Billing's writes to the ledger: the ledger's posting functions, inside a
transaction marked as billing's.

Postings that name a billing document (`invoice:…`, `payment:…`,
`credit_note:…`, `refund:…`) are billing's alone: revision 0009's
postings trigger refuses them unless the transaction has set
`activebilling.writer` to `billing` (transaction-local, gone at commit or
rollback). The setting is a declaration, not a credential: it keeps the
API, the CLI and any session that does not claim to be billing from
settling a document behind the billing services' backs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import psycopg

from ledger.entries import JournalEntry
from ledger.postgres import posting as ledger
from ledger.postgres.posting import PostedEntry

__all__ = ["mark_billing_transaction", "post_entries", "post_entry"]


def mark_billing_transaction(conn: psycopg.Connection) -> None:
    conn.execute("select set_config('activebilling.writer', 'billing', true)")


def post_entries(
    conn: psycopg.Connection, book_id: uuid.UUID, entries: Sequence[JournalEntry]
) -> list[PostedEntry]:
    mark_billing_transaction(conn)
    return ledger.post_entries(conn, book_id, entries)


def post_entry(conn: psycopg.Connection, book_id: uuid.UUID, entry: JournalEntry) -> PostedEntry:
    mark_billing_transaction(conn)
    return ledger.post_entry(conn, book_id, entry)
