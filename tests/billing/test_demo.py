"""A 12-month demo book: verify passes and every invoice's figures tie to its postings."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from adapters.demo import run_demo
from adapters.runtime import Runtime
from billing.postgres.invoices import list_invoices
from ledger.postgres.queries import trial_balance_as_of


@pytest.fixture(scope="module")
def demo_book(runtime: Runtime) -> dict[str, object]:
    return run_demo(runtime, customers_count=12, months=12, seed=7, start=date(2026, 1, 1))


@pytest.mark.slow
def test_twelve_months_verify(demo_book: dict[str, object]) -> None:
    assert demo_book["verify"] == {"ok": True, "discrepancies": 0}
    activity = demo_book["activity"]
    assert isinstance(activity, dict)
    for kind in (
        "invoices_from_runs",
        "payments",
        "overpayments",
        "one_off_invoices",
        "credit_notes",
        "refunds",
        "cancellations",
        "recognition_entries",
    ):
        assert activity.get(kind, 0) > 0, kind


@pytest.mark.slow
def test_every_invoice_ties_to_its_receivable_postings(
    runtime: Runtime, demo_book: dict[str, object]
) -> None:
    book_id = uuid.UUID(str(demo_book["book_id"]))
    with runtime.connection() as conn:
        invoices = list_invoices(conn, book_id, limit=100_000)
        ar = dict(
            conn.execute(
                "select p.document, sum(p.amount) from postings p"
                " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
                " where p.book_id = %s and a.name = 'Assets:Receivable:Trade'"
                " group by p.document",
                (book_id,),
            ).fetchall()
        )
        lines = trial_balance_as_of(conn, book_id, date(2026, 12, 31))
    assert len(invoices) > 50
    for invoice in invoices:
        if invoice.status in ("draft", "void"):
            continue
        posted = ar.get(f"invoice:{invoice.id}", Decimal(0))
        assert invoice.amount_due == posted, invoice.number
    debits = sum((line.debit for line in lines), Decimal(0))
    credits = sum((line.credit for line in lines), Decimal(0))
    assert debits == credits > 0


@pytest.mark.slow
def test_revenue_by_month_and_product_ties_to_the_income_accounts(
    runtime: Runtime, demo_book: dict[str, object]
) -> None:
    from billing.postgres.reports import revenue

    book_id = uuid.UUID(str(demo_book["book_id"]))
    with runtime.connection() as conn:
        rows = revenue(conn, book_id, date(2026, 1, 1), date(2026, 12, 31))
        lines = trial_balance_as_of(conn, book_id, date(2026, 12, 31))
    products = {row["product"] for row in rows}
    assert {"SaaS Annual", "SaaS Pro", "MSP retainer"} <= products
    income = -sum(
        (line.balance for line in lines if line.account.startswith("Income:")), Decimal(0)
    )
    assert sum((row["amount"] for row in rows), Decimal(0)) == income
