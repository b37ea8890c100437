"""Reports read invoice ids out of postings' `document`; a document that names an
invoice by something else (an imported `invoice:INV-2026-000123`) is not one of
this book's invoices and must not break them, whatever plan the database picks.
(A hash join evaluated `substr(document, 9)::uuid` on every receivable row: the
console dashboard answered 500 in CI, on a book with such a posting.)"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg

from adapters.runtime import Runtime
from billing.postgres.collections import ar_balances, credit_sales, settlements
from billing.postgres.reports import ar_aging, revenue
from tests.conftest import make_book
from tests.integration.http_fixtures import open_client
from tests.integration.test_reconciliation_matching import _post_book
from tests.payments.helpers import create_customer, create_invoice


def test_reports_skip_documents_that_name_no_invoice_id(
    runtime: Runtime, database_url: str
) -> None:
    book = make_book(runtime, "USD", date(2026, 1, 1))
    _post_book(runtime, book)  # AR 99.50 with document invoice:INV-2026-000123
    with open_client(runtime) as client:
        invoice = create_invoice(
            client, book.admin_key, create_customer(client, book.admin_key)["id"]
        )
    day = date(2026, 12, 31)
    with psycopg.connect(database_url) as conn:
        conn.execute("set enable_nestloop = off")  # hash joins: every key is computed
        conn.execute("set enable_mergejoin = off")
        aging = ar_aging(conn, book.id, day)
        assert [(str(line.invoice_id), line.amount_due) for line in aging] == [
            (invoice["id"], Decimal(invoice["amount_due"]))
        ]
        assert ar_balances(conn, book.id, day)["USD"][0] == Decimal(invoice["amount_due"])
        assert credit_sales(conn, book.id, date(2026, 1, 1), day)
        assert settlements(conn, book.id, day) == []
        assert revenue(conn, book.id, date(2026, 1, 1), day)
