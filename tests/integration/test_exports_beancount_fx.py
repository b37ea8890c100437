"""The Beancount export of a book with several currencies, revaluations and a realized
difference: beancount's own loader reads it with no error, its balances per account and
currency equal the trial balance at every month end, and the rates are its prices."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from beancount.core import data

from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.fx import FxRate
from billing.postgres.fx import revalue, store_rates
from billing.postgres.payments import create_payment
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_payments import new_customer, new_invoice
from tests.conftest import make_book
from tests.integration.test_exports_beancount import ExportRange, assert_round_trip

pytestmark = pytest.mark.slow
D = Decimal


def test_multi_currency_export_loads_and_ties(runtime: Runtime) -> None:
    book = make_book(runtime, "USD", date(2026, 3, 1))
    with unit_of_work(runtime.connection) as uow:
        conn, b = uow.conn, book.id
        store_rates(
            conn,
            b,
            [FxRate(date(2026, 1, 10), "EUR", "USD", D("1.10")),
             FxRate(date(2026, 1, 31), "EUR", "USD", D("1.12")),
             FxRate(date(2026, 2, 20), "EUR", "USD", D("1.08")),
             FxRate(date(2026, 1, 10), "EUR", "GBP", D("0.85"))],
        )  # fmt: skip
        eur = new_customer(conn, b, tax_rate="0.19", currency="EUR")
        usd = new_customer(conn, b, tax_rate="0.08", currency="USD")
        eur_invoice = new_invoice(conn, b, eur, date(2026, 1, 10), [("1000.00", None, None)])
        new_invoice(conn, b, eur, date(2026, 1, 15), [("250.00", None, None)])
        usd_invoice = new_invoice(conn, b, usd, date(2026, 1, 12), [("100.00", None, None)])
        run = revalue(conn, b, date(2026, 1, 31))
        create_payment(
            conn, b, str(eur.id), D("1190.00"), "EUR", "bank_transfer", date(2026, 2, 20),
            invoice_ref=str(eur_invoice.id),
        )  # fmt: skip
        create_payment(
            conn, b, str(usd.id), D("108.00"), "USD", "bank_transfer", date(2026, 2, 3),
            invoice_ref=str(usd_invoice.id),
        )  # fmt: skip
        revalue(conn, b, date(2026, 2, 28))
        assert verify_everything(conn, b) == []
        uow.commit()
    assert run.entry_id is not None
    entries = assert_round_trip(runtime, b, date(2026, 1, 1), date(2026, 3, 31), ExportRange())
    prices = {(p.date, p.currency, p.amount.currency): p.amount.number
              for p in entries if isinstance(p, data.Price)}  # fmt: skip
    assert prices[(date(2026, 1, 31), "EUR", "USD")] == D("1.12")
    assert len(prices) == 4
    fx_accounts = {
        posting.account
        for e in entries
        if isinstance(e, data.Transaction)
        for posting in e.postings
        if "FX" in posting.account
    }
    assert fx_accounts == {
        "Assets:Receivable:FX-Translation",
        "Income:FX:Realized",
        "Income:FX:Unrealized",
    }
