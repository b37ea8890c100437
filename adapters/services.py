"""Application services shared by the CLI and the HTTP API."""

from __future__ import annotations

import uuid
from datetime import date

import psycopg

from adapters.keys import Role, create_key
from billing.chart import DEFAULT_CHART
from billing.postgres.msp_verify import verify_services
from billing.postgres.verify import (
    verify_cdr_ratings,
    verify_invoices,
    verify_usage_unbilled,
)
from ledger.postgres.books import AccountSpec, Book, create_book
from ledger.postgres.verify import Discrepancy, verify_book


def create_book_with_chart(
    conn: psycopg.Connection, name: str, currency: str, simulated_date: date | None = None
) -> tuple[Book, str]:
    """A book with the default chart of accounts and its first admin key."""
    book = create_book(
        conn,
        name,
        currency,
        simulated_date=simulated_date,
        accounts=[
            AccountSpec(name=a.name, code=a.code, min_balance=a.min_balance) for a in DEFAULT_CHART
        ],
    )
    _, key = create_key(conn, book.id, Role.ADMIN, label="created with the book")
    return book, key


def single_book_id(conn: psycopg.Connection) -> uuid.UUID:
    """The book to use when a command names none: there must be exactly one."""
    rows = conn.execute("select id from books order by created_at limit 2").fetchall()
    if len(rows) != 1:
        raise LookupError(
            "no book exists yet: create one with `activebilling books create`"
            if not rows
            else "several books exist: name one with --book"
        )
    return uuid.UUID(str(rows[0][0]))


def verify_everything(conn: psycopg.Connection, book_id: uuid.UUID) -> list[Discrepancy]:
    """The ledger's own checks, then billing's (the ledger knows nothing of invoices)."""
    return (
        verify_book(conn, book_id)
        + verify_invoices(conn, book_id)
        + verify_cdr_ratings(conn, book_id)
        + verify_usage_unbilled(conn, book_id)
        + verify_services(conn, book_id)
    )
