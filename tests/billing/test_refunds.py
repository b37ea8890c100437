"""Refunds: the earned / unearned / tax split of ACCOUNTING.md, refunds of a
payment's unapplied part and of a credit balance, and their limits."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from adapters.runtime import Runtime
from billing.errors import ExceedsAvailable, InvalidBillingRequest
from billing.postgres.customers import credit_balance
from billing.postgres.invoices import get_invoice
from billing.postgres.payments import create_payment, create_refund, get_payment
from ledger.errors import CurrencyMismatch, NotFound
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
JAN1, JAN5, JUN30, JUL1 = date(2026, 1, 1), date(2026, 1, 5), date(2026, 6, 30), date(2026, 7, 1)


def _annual_paid(runtime: Runtime, book: BookFixture) -> tuple[uuid.UUID, uuid.UUID]:
    """Annual 1,200.00 + 10 % tax invoiced Jan 1, paid Jan 5, 600.00 recognized by Jun 30."""
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
        payment = create_payment(
            uow.conn, book.id, str(customer.id), D("1320.00"), "USD", "bank_transfer", JAN5
        )
        recognize(uow.conn, book.id, invoice, 1, "600.00", JUN30)
        uow.commit()
    return invoice.id, payment.id


def test_refund_of_annual_invoice_unearned_first_then_earned(
    runtime: Runtime, book: BookFixture
) -> None:
    invoice_id, payment_id = _annual_paid(runtime, book)
    with unit_of_work(runtime.connection) as uow:
        # Refund of the unused half (600.00 + 60.00 tax): all of it is still deferred.
        first = create_refund(
            uow.conn, book.id, D("660.00"), JUL1, payment_ref=str(payment_id), reason="cancel"
        )
        first_lines = entry_lines(uow.conn, book.id, first.entry_id)
        # The rest: nothing is deferred any more, so the net is contra-revenue.
        second = create_refund(uow.conn, book.id, D("660.00"), JUL1, payment_ref=str(payment_id))
        second_lines = entry_lines(uow.conn, book.id, second.entry_id)
        invoice = get_invoice(uow.conn, book.id, str(invoice_id))
        payment = get_payment(uow.conn, book.id, str(payment_id))
        after = balances(uow.conn, book.id, JUL1)
        uow.commit()
    assert first_lines == [
        ("Assets:Bank:Operating", "-660.00"),
        ("Liabilities:Deferred-Revenue", "600.00"),
        ("Liabilities:Tax-Payable", "60.00"),
    ]
    assert second_lines == [
        ("Assets:Bank:Operating", "-660.00"),
        ("Income:Contra:Refunds", "600.00"),
        ("Liabilities:Tax-Payable", "60.00"),
    ]
    # The refund does not reopen the receivable: the invoice stays paid.
    assert (invoice.status, invoice.amount_paid, invoice.amount_due) == (
        "paid",
        D("1320.00"),
        D("0.00"),
    )
    assert payment.refunded == D("1320.00")
    assert after == {
        "Income:Subscriptions": D("-600.00"),
        "Income:Contra:Refunds": D("600.00"),
    }
    with pytest.raises(ExceedsAvailable), unit_of_work(runtime.connection) as uow:
        create_refund(uow.conn, book.id, D("0.01"), JUL1, payment_ref=str(payment_id))


def test_full_refund_at_once_splits_earned_unearned_and_tax(
    runtime: Runtime, book: BookFixture
) -> None:
    _, payment_id = _annual_paid(runtime, book)
    with unit_of_work(runtime.connection) as uow:
        refund = create_refund(uow.conn, book.id, D("1320.00"), JUL1, payment_ref=str(payment_id))
        lines = entry_lines(uow.conn, book.id, refund.entry_id)
        uow.commit()
    assert lines == [
        ("Assets:Bank:Operating", "-1320.00"),
        ("Income:Contra:Refunds", "600.00"),
        ("Liabilities:Deferred-Revenue", "600.00"),
        ("Liabilities:Tax-Payable", "120.00"),
    ]


def test_partial_refund_over_lines_uses_largest_remainder(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0.08")
        new_invoice(
            uow.conn,
            book.id,
            customer,
            JAN1,
            [("10.00", None, None), ("20.00", None, None), ("30.00", None, None)],
        )
        payment = create_payment(
            uow.conn, book.id, str(customer.id), D("64.80"), "USD", "check", JAN5
        )
        refund = create_refund(uow.conn, book.id, D("10.00"), JUL1, payment_ref=str(payment.id))
        lines = entry_lines(uow.conn, book.id, refund.entry_id)
        uow.commit()
    # 10.00 over gross 10.80 / 21.60 / 32.40 → 1.67 / 3.33 / 5.00; each into net and
    # tax at 100 : 8 → (1.55, 0.12), (3.08, 0.25), (4.63, 0.37).
    assert lines == [
        ("Assets:Bank:Operating", "-10.00"),
        ("Income:Contra:Refunds", "1.55"),
        ("Income:Contra:Refunds", "3.08"),
        ("Income:Contra:Refunds", "4.63"),
        ("Liabilities:Tax-Payable", "0.12"),
        ("Liabilities:Tax-Payable", "0.25"),
        ("Liabilities:Tax-Payable", "0.37"),
    ]


def test_refund_of_payment_takes_its_unapplied_credit_first(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0.08")
        invoice = new_invoice(uow.conn, book.id, customer, JAN1, [("100.00", None, None)])
        payment = create_payment(
            uow.conn, book.id, str(customer.id), D("150.00"), "USD", "card", JAN5
        )
        refund = create_refund(uow.conn, book.id, D("50.00"), JUL1, payment_ref=str(payment.id))
        lines = entry_lines(uow.conn, book.id, refund.entry_id)
        credit = credit_balance(uow.conn, book.id, customer.id, "USD")
        paid = get_invoice(uow.conn, book.id, str(invoice.id))
        uow.commit()
    assert lines == [
        ("Assets:Clearing:Manual", "-50.00"),
        ("Income:Contra:Refunds", "7.41"),
        ("Liabilities:Customer-Credit", "42.00"),
        ("Liabilities:Tax-Payable", "0.59"),
    ]
    assert credit == D("0.00")
    assert (paid.status, paid.amount_paid) == ("paid", D("108.00"))
    with runtime.connection() as conn:
        before = row_counts(conn, book.id)
    with pytest.raises(ExceedsAvailable), unit_of_work(runtime.connection) as uow:
        create_refund(uow.conn, book.id, D("100.01"), JUL1, payment_ref=str(payment.id))
    with runtime.connection() as conn:
        assert row_counts(conn, book.id) == before
    with unit_of_work(runtime.connection) as uow:
        rest = create_refund(uow.conn, book.id, D("100.00"), JUL1, payment_ref=str(payment.id))
        rest_lines = entry_lines(uow.conn, book.id, rest.entry_id)
        uow.commit()
    assert rest_lines == [
        ("Assets:Clearing:Manual", "-100.00"),
        ("Income:Contra:Refunds", "92.59"),
        ("Liabilities:Tax-Payable", "7.41"),
    ]


def test_refund_of_a_credit_balance(runtime: Runtime, book: BookFixture) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id)
        new_invoice(uow.conn, book.id, customer, JAN1, [("100.00", None, None)])
        create_payment(uow.conn, book.id, str(customer.id), D("150.00"), "USD", "cash", JAN5)
        uow.commit()
    with pytest.raises(ExceedsAvailable), unit_of_work(runtime.connection) as uow:
        create_refund(uow.conn, book.id, D("42.01"), JUL1, customer_ref=str(customer.id))
    with unit_of_work(runtime.connection) as uow:
        refund = create_refund(
            uow.conn, book.id, D("42.00"), JUL1, customer_ref=str(customer.id), reason="closing"
        )
        lines = entry_lines(uow.conn, book.id, refund.entry_id)
        credit = credit_balance(uow.conn, book.id, customer.id, "USD")
        uow.commit()
    assert lines == [
        ("Assets:Bank:Operating", "-42.00"),
        ("Liabilities:Customer-Credit", "42.00"),
    ]
    assert credit == D("0.00") and refund.payment_id is None


def test_bad_refunds_write_nothing(runtime: Runtime, book: BookFixture) -> None:
    _, payment_id = _annual_paid(runtime, book)
    with runtime.connection() as conn:
        before = row_counts(conn, book.id)
    pay = {"payment_ref": str(payment_id)}
    cases: list[tuple[type[Exception], str, dict[str, str]]] = [
        (ExceedsAvailable, "1320.01", pay),
        (InvalidBillingRequest, "0", pay),
        (InvalidBillingRequest, "-1.00", pay),
        (CurrencyMismatch, "1.00", {**pay, "currency": "EUR"}),
        (InvalidBillingRequest, "1.00", {**pay, "method": "paypal"}),
        (NotFound, "1.00", {"payment_ref": str(uuid.uuid4())}),
        (NotFound, "1.00", {"customer_ref": "nobody"}),
        (InvalidBillingRequest, "1.00", {}),
        (InvalidBillingRequest, "1.00", {**pay, "customer_ref": "x"}),
    ]
    for error, amount, kwargs in cases:
        with pytest.raises(error), unit_of_work(runtime.connection) as uow:
            create_refund(uow.conn, book.id, D(amount), JUL1, **kwargs)
            uow.commit()
    with runtime.connection() as conn:
        assert row_counts(conn, book.id) == before
