"""Credit notes: to the receivable, kept as customer credit, refunded; by
amount or by lines; their own gapless series; and their limits."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from adapters.runtime import Runtime
from billing.errors import DocumentState, ExceedsAvailable, InvalidBillingRequest
from billing.postgres.credit_notes import create_credit_note, list_credit_notes
from billing.postgres.customers import credit_balance
from billing.postgres.invoices import LineSpec, create_draft, get_invoice, void_invoice
from billing.postgres.payments import create_payment, create_refund
from ledger.errors import NotFound
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
JAN1, JAN10, FEB1, JUN30, JUL1 = (
    date(2026, 1, 1),
    date(2026, 1, 10),
    date(2026, 2, 1),
    date(2026, 6, 30),
    date(2026, 7, 1),
)


def test_credit_note_on_unpaid_invoice_to_receivable(runtime: Runtime, book: BookFixture) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0.08")
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("100.00", None, None)])
        note = create_credit_note(
            uow.conn, book.id, str(invoice.id), FEB1, amount=D("54.00"), reason="discount"
        )
        lines = entry_lines(uow.conn, book.id, note.entry_id)
        after = get_invoice(uow.conn, book.id, str(invoice.id))
        uow.commit()
    assert note.number == "CN-2026-000001"
    assert (note.net_amount, note.tax_amount, note.total) == (D("50.00"), D("4.00"), D("54.00"))
    assert lines == [
        ("Assets:Receivable:Trade", "-54.00"),
        ("Income:Contra:Credit-Notes", "50.00"),
        ("Liabilities:Tax-Payable", "4.00"),
    ]
    assert (after.status, after.amount_due, after.amount_credited, after.amount_paid) == (
        "open",
        D("54.00"),
        D("54.00"),
        D("0.00"),
    )
    # More than is due is refused (and burns no number); the rest by line is fine.
    with runtime.connection() as conn:
        before = row_counts(conn, book.id)
    with pytest.raises(ExceedsAvailable), unit_of_work(runtime.connection) as uow:
        create_credit_note(uow.conn, book.id, str(invoice.id), FEB1, amount=D("54.01"))
        uow.commit()
    with runtime.connection() as conn:
        assert row_counts(conn, book.id) == before
    with unit_of_work(runtime.connection) as uow:
        rest = create_credit_note(uow.conn, book.id, str(invoice.id), FEB1, lines=[(1, D("50.00"))])
        rest_lines = entry_lines(uow.conn, book.id, rest.entry_id)
        final = get_invoice(uow.conn, book.id, str(invoice.id))
        tb = balances(uow.conn, book.id, FEB1)
        uow.commit()
    assert rest.number == "CN-2026-000002"
    assert rest_lines == [
        ("Assets:Receivable:Trade", "-54.00"),
        ("Income:Contra:Credit-Notes", "50.00"),
        ("Liabilities:Tax-Payable", "4.00"),
    ]
    assert (final.amount_due, final.amount_credited, final.status) == (
        D("0.00"),
        D("108.00"),
        "paid",
    )
    assert tb == {"Income:Services": D("-100.00"), "Income:Contra:Credit-Notes": D("100.00")}


def test_credit_note_on_paid_annual_invoice_kept_as_credit(
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
            uow.conn, book.id, str(customer.id), D("1320.00"), "USD", "bank_transfer", JAN10
        )
        recognize(uow.conn, book.id, invoice, 1, "600.00", JUN30)
        # 300.00 net on line 1: tax follows at the original rate, unearned first.
        first = create_credit_note(
            uow.conn,
            book.id,
            str(invoice.id),
            JUL1,
            lines=[(1, D("300.00"))],
            credit_to="customer_credit",
        )
        first_lines = entry_lines(uow.conn, book.id, first.entry_id)
        # Everything that is left: 300.00 unearned, 600.00 earned, 90.00 tax.
        second = create_credit_note(
            uow.conn,
            book.id,
            str(invoice.id),
            JUL1,
            amount=D("990.00"),
            credit_to="customer_credit",
        )
        second_lines = entry_lines(uow.conn, book.id, second.entry_id)
        credit = credit_balance(uow.conn, book.id, customer.id, "USD")
        paid = get_invoice(uow.conn, book.id, str(invoice.id))
        listed = list_credit_notes(uow.conn, book.id, invoice_id=invoice.id)
        uow.commit()
    assert first_lines == [
        ("Liabilities:Customer-Credit", "-330.00"),
        ("Liabilities:Deferred-Revenue", "300.00"),
        ("Liabilities:Tax-Payable", "30.00"),
    ]
    assert second_lines == [
        ("Income:Contra:Credit-Notes", "600.00"),
        ("Liabilities:Customer-Credit", "-990.00"),
        ("Liabilities:Deferred-Revenue", "300.00"),
        ("Liabilities:Tax-Payable", "90.00"),
    ]
    assert credit == D("1320.00")
    assert (paid.status, paid.amount_paid, paid.amount_due) == ("paid", D("1320.00"), D("0.00"))
    assert [n.number for n in sorted(listed, key=lambda n: n.number)] == [
        "CN-2026-000001",
        "CN-2026-000002",
    ]
    # The invoice total is fully credited: nothing more.
    with pytest.raises(ExceedsAvailable), unit_of_work(runtime.connection) as uow:
        create_credit_note(
            uow.conn, book.id, str(invoice.id), JUL1, amount=D("0.01"), credit_to="customer_credit"
        )


def test_credit_note_refunded_in_cash_limits_later_refunds(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0.08")
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("100.00", None, None)])
        payment = create_payment(
            uow.conn, book.id, str(customer.id), D("108.00"), "USD", "card", FEB1
        )
        note = create_credit_note(
            uow.conn, book.id, str(invoice.id), FEB1, amount=D("27.00"), credit_to="refund"
        )
        lines = entry_lines(uow.conn, book.id, note.entry_id)
        uow.commit()
    assert lines == [
        ("Assets:Clearing:Manual", "-27.00"),
        ("Income:Contra:Credit-Notes", "25.00"),
        ("Liabilities:Tax-Payable", "2.00"),
    ]
    with pytest.raises(ExceedsAvailable), unit_of_work(runtime.connection) as uow:
        create_refund(uow.conn, book.id, D("81.01"), FEB1, payment_ref=str(payment.id))
    with pytest.raises(ExceedsAvailable), unit_of_work(runtime.connection) as uow:
        create_credit_note(
            uow.conn, book.id, str(invoice.id), FEB1, amount=D("81.01"), credit_to="refund"
        )
    with unit_of_work(runtime.connection) as uow:
        refund = create_refund(uow.conn, book.id, D("81.00"), FEB1, payment_ref=str(payment.id))
        refund_lines = entry_lines(uow.conn, book.id, refund.entry_id)
        uow.commit()
    assert refund_lines == [
        ("Assets:Clearing:Manual", "-81.00"),
        ("Income:Contra:Refunds", "75.00"),
        ("Liabilities:Tax-Payable", "6.00"),
    ]


def test_bad_credit_notes_write_nothing(runtime: Runtime, book: BookFixture) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0.08")
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("100.00", None, None)])
        draft = create_draft(uow.conn, book.id, str(customer.id), [LineSpec("x", D(1), D("10.00"))])
        voided = new_invoice(uow.conn, book.id, customer, JAN10, [("10.00", None, None)])
        void_invoice(uow.conn, book.id, str(voided.id), JAN10)
        uow.commit()
    assert draft is not None
    with runtime.connection() as conn:
        before = row_counts(conn, book.id)
    ref = str(invoice.id)
    cases: list[tuple[type[Exception], str, dict[str, object]]] = [
        (ExceedsAvailable, ref, {"amount": D("108.01")}),
        (ExceedsAvailable, ref, {"lines": [(1, D("100.01"))]}),
        (ExceedsAvailable, ref, {"amount": D("10.00"), "credit_to": "refund"}),  # nothing paid
        (InvalidBillingRequest, ref, {"amount": D("0")}),
        (InvalidBillingRequest, ref, {"amount": D("-1.00")}),
        (InvalidBillingRequest, ref, {"lines": [(2, D("1.00"))]}),
        (InvalidBillingRequest, ref, {"amount": D("1.00"), "lines": [(1, D("1.00"))]}),
        (InvalidBillingRequest, ref, {}),
        (InvalidBillingRequest, ref, {"amount": D("1.00"), "credit_to": "cash"}),
        (DocumentState, str(draft.id), {"amount": D("1.00")}),
        (DocumentState, str(voided.id), {"amount": D("1.00")}),
        (NotFound, str(uuid.uuid4()), {"amount": D("1.00")}),
    ]
    for error, target, kwargs in cases:
        with pytest.raises(error), unit_of_work(runtime.connection) as uow:
            create_credit_note(uow.conn, book.id, target, FEB1, **kwargs)  # type: ignore[arg-type]
            uow.commit()
    with runtime.connection() as conn:
        assert row_counts(conn, book.id) == before
