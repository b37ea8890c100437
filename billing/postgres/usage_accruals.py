"""What is still accrued to Unbilled for each (subscription, usage price, period), and
the invoice's relief of it (rules in billing.usage_accrual; the run in
billing.postgres.usage_accrual_run)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import psycopg

__all__ = ["lock_accruals", "outstanding_accruals", "record_reliefs", "unbill_voided"]

Key = tuple[str, date]  # (price id, period start)


def lock_accruals(conn: psycopg.Connection, book_id: uuid.UUID, *, exclusive: bool) -> None:
    """An accrual run (exclusive) and invoices relieving accruals (shared) never overlap:
    an accrual computed while an invoice billed the same period would be left in
    Unbilled with nothing to relieve it."""
    kind = "" if exclusive else "_shared"
    conn.execute(
        f"select pg_advisory_xact_lock{kind}(hashtextextended('usage-accrual:' || %s, 0))",
        (str(book_id),),
    )


def outstanding_accruals(
    conn: psycopg.Connection, book_id: uuid.UUID, subscription_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[Key, Decimal]]:
    rows = conn.execute(
        "select subscription_id, price_id, period_start, sum(amount) from usage_accruals"
        " where book_id = %s and subscription_id = any(%s)"
        " group by 1, 2, 3 having sum(amount) <> 0",
        (book_id, list(subscription_ids)),
    ).fetchall()
    out: dict[uuid.UUID, dict[Key, Decimal]] = defaultdict(dict)
    for sub, price, start, amount in rows:
        out[sub][(str(price), start)] = Decimal(amount)
    return out


def record_reliefs(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    reliefs: Sequence[tuple[uuid.UUID, uuid.UUID, str, date, Sequence[tuple[str, date, Decimal]]]],
) -> None:
    """(subscription, invoice, currency, issue date, [(price, period start, relieved)])."""
    rows = [
        (book_id, uuid.uuid4(), sub, price, start, issue, -amount, currency, invoice)
        for sub, invoice, currency, issue, keys in reliefs
        for price, start, amount in keys
    ]
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "insert into usage_accruals (book_id, id, subscription_id, price_id, period_start,"
            " as_of, amount, currency, invoice_id) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def unbill_voided(conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID) -> None:
    """A voided invoice's reversal puts back in Unbilled what it relieved: its CDRs are
    not invoiced any more (the next invoice bills them) and its reliefs are undone."""
    conn.execute(
        "delete from cdr_invoices where book_id = %s and invoice_id = %s",
        (book_id, invoice_id),
    )
    conn.execute(
        "insert into usage_accruals (book_id, id, subscription_id, price_id, period_start,"
        " as_of, amount, currency, invoice_id)"
        " select book_id, gen_random_uuid(), subscription_id, price_id, period_start, as_of,"
        " -amount, currency, invoice_id from usage_accruals"
        " where book_id = %s and invoice_id = %s and amount < 0",
        (book_id, invoice_id),
    )
