"""Foreign exchange on PostgreSQL: realized difference of a payment, month-end
revaluation and its reversal, missing rates — exact debits and credits."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from adapters.runtime import Runtime
from billing.chart import DEFAULT_CHART
from billing.fx import FX_TRANSLATION, FxRate, MissingRate
from billing.postgres.fx import rate_in_force, revalue, store_rates
from billing.postgres.invoices import get_invoice
from billing.postgres.payments import create_payment
from ledger.postgres.books import AccountSpec, create_book
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_payments import balances, entry_lines, new_customer, new_invoice, row_counts
from tests.conftest import BookFixture

D = Decimal
JAN10, JAN20, JAN31, FEB1 = (
    date(2026, 1, 10),
    date(2026, 1, 20),
    date(2026, 1, 31),
    date(2026, 2, 1),
)


def _rates(runtime: Runtime, book: BookFixture, *rates: tuple[date, str]) -> None:
    with unit_of_work(runtime.connection) as uow:
        store_rates(uow.conn, book.id, [FxRate(on, "EUR", "USD", D(r)) for on, r in rates])
        uow.commit()


def _fx_entries(conn: object, book_id: object, kind: str) -> list[object]:
    return [
        r[0]
        for r in conn.execute(  # type: ignore[attr-defined]
            "select id from journal_entries where book_id = %s and metadata->>'kind' = %s"
            " order by effective_date",
            (book_id, kind),
        )
    ]


def test_eur_invoice_at_1_10_paid_at_1_08_realizes_a_20_usd_loss(
    runtime: Runtime, book: BookFixture
) -> None:
    _rates(runtime, book, (JAN10, "1.10"), (JAN20, "1.08"))
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0", currency="EUR")
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("1000.00", None, None)])
        payment = create_payment(
            uow.conn, book.id, str(customer.id), D("1000.00"), "EUR", "bank_transfer", JAN20,
            invoice_ref=str(invoice.id),
        )  # fmt: skip
        paid = entry_lines(uow.conn, book.id, payment.entry_id)
        (fx,) = _fx_entries(uow.conn, book.id, "fx_realized")
        realized = entry_lines(uow.conn, book.id, fx)
        settled = get_invoice(uow.conn, book.id, str(invoice.id))
        uow.commit()
    assert paid == [("Assets:Bank:Operating", "1000.00"), ("Assets:Receivable:Trade", "-1000.00")]
    assert realized == [
        ("Assets:Receivable:FX-Translation", "-20.00"),
        ("Income:FX:Realized", "20.00"),  # a loss: debit
    ]
    assert settled.status == "paid"


def test_a_gain_credits_realized_and_a_partial_payment_realizes_its_part(
    runtime: Runtime, book: BookFixture
) -> None:
    _rates(runtime, book, (JAN10, "1.10"), (JAN20, "1.1234"))
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0", currency="EUR")
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("1000.00", None, None)])
        create_payment(
            uow.conn, book.id, str(customer.id), D("333.33"), "EUR", "bank_transfer", JAN20,
            invoice_ref=str(invoice.id),
        )  # fmt: skip
        (fx,) = _fx_entries(uow.conn, book.id, "fx_realized")
        realized = entry_lines(uow.conn, book.id, fx)
        uow.commit()
    # 333.33 × 1.1234 = 374.46 (374.4629…), 333.33 × 1.10 = 366.66 (366.663)
    assert realized == [
        ("Assets:Receivable:FX-Translation", "7.80"),
        ("Income:FX:Realized", "-7.80"),
    ]


def test_month_end_revaluation_and_its_reversal(runtime: Runtime, book: BookFixture) -> None:
    _rates(runtime, book, (JAN10, "1.10"), (JAN31, "1.12"), (date(2026, 2, 20), "1.08"))
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0", currency="EUR")
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("1000.00", None, None)])
        run = revalue(uow.conn, book.id, JAN31)
        again = revalue(uow.conn, book.id, JAN31)
        revaluation = entry_lines(uow.conn, book.id, run.entry_id)
        reversal = entry_lines(uow.conn, book.id, run.reversal_entry_id)
        dated = uow.conn.execute(
            "select effective_date from journal_entries where book_id = %s and id = %s",
            (book.id, run.reversal_entry_id),
        ).fetchone()
        at_month_end = balances(uow.conn, book.id, JAN31)
        after_reversal = balances(uow.conn, book.id, FEB1)
        payment = create_payment(
            uow.conn, book.id, str(customer.id), D("1000.00"), "EUR", "bank_transfer",
            date(2026, 2, 20), invoice_ref=str(invoice.id),
        )  # fmt: skip
        (fx,) = _fx_entries(uow.conn, book.id, "fx_realized")
        realized = entry_lines(uow.conn, book.id, fx)
        uow.commit()
    assert [(line.number, line.amount) for line in run.lines] == [(invoice.number, D("20.00"))]
    assert revaluation == [
        ("Assets:Receivable:FX-Translation", "20.00"),
        ("Income:FX:Unrealized", "-20.00"),
    ]
    assert reversal == [
        ("Assets:Receivable:FX-Translation", "-20.00"),
        ("Income:FX:Unrealized", "20.00"),
    ]
    assert dated is not None and dated[0] == FEB1
    assert (again.id, again.created, again.entry_id) == (run.id, False, run.entry_id)
    assert again.lines == run.lines  # a repeat answers the first run, lines included
    assert at_month_end["Income:FX:Unrealized"] == D("-20.00")
    assert "Income:FX:Unrealized" not in after_reversal
    # the payment realizes against the invoice date's rate, the revaluation being reversed
    assert realized == [
        ("Assets:Receivable:FX-Translation", "-20.00"),
        ("Income:FX:Realized", "20.00"),
    ]
    assert payment.allocations[0].amount == D("1000.00")


def test_a_missing_rate_refuses_the_payment_and_writes_nothing(
    runtime: Runtime, book: BookFixture
) -> None:
    _rates(runtime, book, (JAN20, "1.08"))  # nothing in force on the invoice date
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0", currency="EUR")
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("100.00", None, None)])
        uow.commit()
    with unit_of_work(runtime.connection) as uow:
        before = row_counts(uow.conn, book.id)
    with pytest.raises(MissingRate), unit_of_work(runtime.connection) as uow:
        create_payment(
            uow.conn, book.id, str(customer.id), D("100.00"), "EUR", "bank_transfer", JAN20,
            invoice_ref=str(invoice.id),
        )  # fmt: skip
        uow.commit()
    with unit_of_work(runtime.connection) as uow:
        assert row_counts(uow.conn, book.id) == before


def test_a_book_without_rates_posts_foreign_payments_as_before(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0", currency="EUR")
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("100.00", None, None)])
        create_payment(
            uow.conn, book.id, str(customer.id), D("100.00"), "EUR", "bank_transfer", JAN20,
            invoice_ref=str(invoice.id),
        )  # fmt: skip
        assert _fx_entries(uow.conn, book.id, "fx_realized") == []
        with pytest.raises(MissingRate):
            rate_in_force(uow.conn, book.id, "EUR", "USD", JAN20)


def test_rates_in_force_inverse_and_cross_from_the_table(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        store_rates(
            uow.conn,
            book.id,
            [FxRate(JAN10, "EUR", "USD", D("1.10")), FxRate(JAN10, "EUR", "GBP", D("0.85")),
             FxRate(JAN20, "EUR", "USD", D("1.08"))],
        )  # fmt: skip
        # a correction of the same pair and date replaces it
        store_rates(uow.conn, book.id, [FxRate(JAN20, "EUR", "USD", D("1.09"))])
        assert rate_in_force(uow.conn, book.id, "EUR", "USD", date(2026, 1, 19)).rate == D("1.10")
        assert rate_in_force(uow.conn, book.id, "EUR", "USD", JAN31).rate == D("1.09")
        assert rate_in_force(uow.conn, book.id, "USD", "EUR", JAN10).how == "inverse"
        cross = rate_in_force(uow.conn, book.id, "GBP", "USD", JAN10)
        assert (cross.how, cross.rate) == ("cross:EUR", D("1.294117647059"))


def test_a_book_created_before_fx_gets_the_translation_account_on_first_use(
    runtime: Runtime,
) -> None:
    # a book made before the account was in the default chart
    with unit_of_work(runtime.connection) as uow:
        made = create_book(
            uow.conn,
            f"old {uuid.uuid4().hex[:6]}",
            "USD",
            accounts=[
                AccountSpec(name=a.name, code=a.code, min_balance=a.min_balance)
                for a in DEFAULT_CHART
                if a.name != FX_TRANSLATION
            ],
        )
        uow.commit()
    book = BookFixture(made, "")
    _rates(runtime, book, (JAN10, "1.10"), (JAN20, "1.08"))
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0", currency="EUR")
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("50.00", None, None)])
        create_payment(
            uow.conn, book.id, str(customer.id), D("50.00"), "EUR", "bank_transfer", JAN20,
            invoice_ref=str(invoice.id),
        )  # fmt: skip
        (fx,) = _fx_entries(uow.conn, book.id, "fx_realized")
        assert entry_lines(uow.conn, book.id, fx) == [
            ("Assets:Receivable:FX-Translation", "-1.00"),
            ("Income:FX:Realized", "1.00"),
        ]
        uow.commit()


def test_one_payment_over_two_invoices_realizes_each_at_its_own_rate(
    runtime: Runtime, book: BookFixture
) -> None:
    _rates(runtime, book, (JAN10, "1.10"), (date(2026, 1, 15), "1.20"), (JAN20, "1.15"))
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0", currency="EUR")
        first = new_invoice(uow.conn, book.id, customer, JAN10, [("100.00", None, None)])
        second = new_invoice(
            uow.conn, book.id, customer, date(2026, 1, 15), [("200.00", None, None)]
        )
        create_payment(
            uow.conn, book.id, str(customer.id), D("300.00"), "EUR", "bank_transfer", JAN20,
        )  # fmt: skip
        (fx,) = _fx_entries(uow.conn, book.id, "fx_realized")
        rows = uow.conn.execute(
            "select p.document, a.name, p.amount from postings p join accounts a"
            " on a.book_id = p.book_id and a.id = p.account_id"
            " where p.book_id = %s and p.entry_id = %s order by 1, 2",
            (book.id, fx),
        ).fetchall()
        uow.commit()
    # first: 100 × (1.15 − 1.10) = +5.00 gain; second: 200 × (1.15 − 1.20) = −10.00 loss
    assert [(doc, name, str(amount)) for doc, name, amount in rows] == sorted([
        (f"invoice:{first.id}", "Assets:Receivable:FX-Translation", "5.00"),
        (f"invoice:{first.id}", "Income:FX:Realized", "-5.00"),
        (f"invoice:{second.id}", "Assets:Receivable:FX-Translation", "-10.00"),
        (f"invoice:{second.id}", "Income:FX:Realized", "10.00"),
    ])  # fmt: skip
