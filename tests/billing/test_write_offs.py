"""Marking an invoice uncollectible (write-off with the earned / unearned
split) and the recovery of a written-off invoice by a later payment."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from adapters.runtime import Runtime
from billing.errors import DocumentState
from billing.postgres.customers import credit_balance
from billing.postgres.invoices import get_invoice
from billing.postgres.payments import create_payment
from billing.postgres.write_offs import mark_uncollectible
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_payments import (
    balances,
    entry_lines,
    new_customer,
    new_invoice,
    recognize,
    row_counts,
)
from tests.conftest import BookFixture

D = Decimal
JAN1, JAN5, MAR31, APR1 = date(2026, 1, 1), date(2026, 1, 5), date(2026, 3, 31), date(2026, 4, 1)


def test_write_off_splits_earned_unearned_and_tax_then_recovery(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0.10")
        invoice = new_invoice(
            uow.conn,
            book.id,
            customer,
            JAN1,
            [("1200.00", JAN1, date(2027, 1, 1))],
            account="Income:Subscriptions",
        )
        create_payment(
            uow.conn,
            book.id,
            str(customer.id),
            D("220.00"),
            "USD",
            "bank_transfer",
            JAN5,
            invoice_ref=str(invoice.id),
        )
        recognize(uow.conn, book.id, invoice, 1, "300.00", MAR31)
        written = mark_uncollectible(uow.conn, book.id, str(invoice.id), APR1)
        entry = uow.conn.execute(
            "select entry_id from postings where book_id = %s and dimensions->>'via' = 'write_off'"
            " limit 1",
            (book.id,),
        ).fetchone()
        assert entry is not None
        lines = entry_lines(uow.conn, book.id, entry[0])
        uow.commit()
    # 1,100.00 due = 1,000.00 net + 100.00 tax; of the net, 900.00 is still
    # deferred (unearned first) and 100.00 was earned.
    assert lines == [
        ("Assets:Receivable:Trade", "-1100.00"),
        ("Expenses:Credit-Losses", "100.00"),
        ("Expenses:Credit-Losses", "100.00"),
        ("Liabilities:Deferred-Revenue", "900.00"),
    ]
    assert (written.status, written.amount_due, written.amount_written_off) == (
        "uncollectible",
        D("0.00"),
        D("1100.00"),
    )
    with runtime.connection() as conn:
        before = row_counts(conn, book.id)
    with pytest.raises(DocumentState), unit_of_work(runtime.connection) as uow:
        mark_uncollectible(uow.conn, book.id, str(invoice.id), APR1)
    with runtime.connection() as conn:
        assert row_counts(conn, book.id) == before

    # A payment that names no invoice does not touch the written-off one.
    with unit_of_work(runtime.connection) as uow:
        stray = create_payment(uow.conn, book.id, str(customer.id), D("5.00"), "USD", "cash", APR1)
        assert stray.allocations == ()
        assert credit_balance(uow.conn, book.id, customer.id, "USD") == D("5.00")
        uow.commit()

    # Partial recovery: AR | Credit-Losses, then the normal payment.
    with unit_of_work(runtime.connection) as uow:
        partial = create_payment(
            uow.conn,
            book.id,
            str(customer.id),
            D("500.00"),
            "USD",
            "bank_transfer",
            date(2026, 5, 1),
            invoice_ref=str(invoice.id),
        )
        recovery = uow.conn.execute(
            "select entry_id from postings where book_id = %s and dimensions->>'via' = %s limit 1",
            (book.id, f"recovery:{partial.id}"),
        ).fetchone()
        assert recovery is not None
        recovery_lines = entry_lines(uow.conn, book.id, recovery[0])
        payment_lines = entry_lines(uow.conn, book.id, partial.entry_id)
        still = get_invoice(uow.conn, book.id, str(invoice.id))
        uow.commit()
    assert recovery_lines == [
        ("Assets:Receivable:Trade", "500.00"),
        ("Expenses:Credit-Losses", "-500.00"),
    ]
    assert payment_lines == [
        ("Assets:Bank:Operating", "500.00"),
        ("Assets:Receivable:Trade", "-500.00"),
    ]
    assert (still.status, still.amount_paid, still.amount_due) == (
        "uncollectible",
        D("720.00"),
        D("0.00"),
    )
    # The rest is recovered (the 0.01 beyond it becomes credit): the invoice reads as paid.
    with unit_of_work(runtime.connection) as uow:
        create_payment(
            uow.conn,
            book.id,
            str(customer.id),
            D("600.01"),
            "USD",
            "bank_transfer",
            date(2026, 5, 2),
            invoice_ref=str(invoice.id),
        )
        final = get_invoice(uow.conn, book.id, str(invoice.id))
        tb = balances(uow.conn, book.id, date(2026, 5, 2))
        uow.commit()
    assert (final.status, final.amount_paid, final.amount_due) == ("paid", D("1320.00"), D("0.00"))
    assert tb == {
        "Assets:Bank:Operating": D("1325.01"),
        "Expenses:Credit-Losses": D("-900.00"),
        "Income:Subscriptions": D("-300.00"),
        "Liabilities:Customer-Credit": D("-5.01"),
        "Liabilities:Tax-Payable": D("-120.00"),
    }


def test_only_open_invoices_with_an_amount_due_can_be_written_off(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0")
        invoice = new_invoice(uow.conn, book.id, customer, JAN1, [("10.00", None, None)])
        create_payment(uow.conn, book.id, str(customer.id), D("10.00"), "USD", "cash", JAN5)
        uow.commit()
    with pytest.raises(DocumentState), unit_of_work(runtime.connection) as uow:
        mark_uncollectible(uow.conn, book.id, str(invoice.id), APR1)
