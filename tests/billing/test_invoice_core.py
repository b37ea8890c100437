"""Worked example: a one-off invoice, finalized, read back from the ledger."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from adapters.runtime import Runtime
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.invoices import LineSpec, create_draft, finalize_invoice
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture


def test_one_off_invoice_with_tax_posts_ar_revenue_and_tax(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer, created = upsert_customer(
            uow.conn, book.id, CustomerSpec("Acme", "USD", tax_rate=Decimal("0.08"))
        )
        draft = create_draft(
            uow.conn,
            book.id,
            str(customer.id),
            [LineSpec("Consulting", Decimal("2"), Decimal("50.00"))],
        )
        assert draft is not None and draft.status == "draft" and draft.number is None
        invoice = finalize_invoice(uow.conn, book.id, str(draft.id), date(2026, 1, 10))
        uow.commit()
    assert created
    assert invoice.number == "INV-2026-000001"
    assert (invoice.total, invoice.amount_due, invoice.amount_paid) == (
        Decimal("108.00"),
        Decimal("108.00"),
        Decimal("0.00"),
    )
    assert invoice.due_date == date(2026, 2, 9)
    with runtime.connection() as conn:
        lines = {
            (line.account, line.balance)
            for line in trial_balance_as_of(conn, book.id, date(2026, 1, 31))
        }
    assert lines == {
        ("Assets:Receivable:Trade", Decimal("108.00")),
        ("Income:Services", Decimal("-100.00")),
        ("Liabilities:Tax-Payable", Decimal("-8.00")),
    }
