"""Marking an invoice uncollectible: the amount due is written off.

Credit-Losses (earned part and its tax), Deferred-Revenue (unearned part) |
AR, `via = write_off`, split over the lines like a credit note
(billing.credit_notes). The invoice's status becomes `uncollectible`; a later
payment naming it is a recovery (billing.payments).
"""

from __future__ import annotations

import uuid
from datetime import date

import psycopg

from billing.credit_notes import available, split_amount, write_off_entry
from billing.errors import DocumentState
from billing.postgres.credit_notes import line_states, lock_customer, lock_invoices
from billing.postgres.events import record_event
from billing.postgres.invoices import Invoice, get_invoice
from billing.postgres.posting import post_entry
from ledger.money import Money


def mark_uncollectible(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str, on: date
) -> Invoice:
    """Write off what is still due on an open invoice and mark it uncollectible."""
    invoice = get_invoice(conn, book_id, invoice_ref)
    lock_customer(conn, book_id, invoice.customer_id)
    lock_invoices(conn, book_id, [invoice.id])
    invoice = get_invoice(conn, book_id, str(invoice.id))
    if invoice.status != "open" or invoice.amount_due <= 0:
        raise DocumentState(
            f"invoice {invoice.number or invoice.id} is {invoice.status}: only an open invoice"
            " with an amount due can be marked uncollectible",
            invoice=str(invoice.id),
        )
    due = Money(invoice.amount_due, invoice.currency)
    states = line_states(conn, book_id, invoice)
    # Credit notes kept as customer credit can leave less on the lines than is
    # due; the rest of the receivable is a plain loss.
    on_lines = available(states) if states else Money.zero(due.currency)
    on_lines = due if due <= on_lines else on_lines
    credits = split_amount(on_lines, states) if on_lines.amount > 0 else []
    entry = write_off_entry(
        invoice.id, invoice.number or "", str(invoice.customer_id), on, credits, due
    )
    post_entry(conn, book_id, entry)
    conn.execute(
        "update invoices set status = 'uncollectible' where book_id = %s and id = %s",
        (book_id, invoice.id),
    )
    return record_event(
        conn,
        book_id,
        "invoice.marked_uncollectible",
        get_invoice(conn, book_id, str(invoice.id)),
        invoice,
    )
