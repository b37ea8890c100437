"""Payments: allocation (named, oldest due first, overpayment, unidentified
receipt), partial payments, applied credit, concurrency — exact postings."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import psycopg
import pytest

from adapters.runtime import Runtime
from billing.errors import DocumentState, ExceedsAvailable, InvalidBillingRequest
from billing.postgres.customers import Customer, CustomerSpec, credit_balance, upsert_customer
from billing.postgres.invoices import (
    Invoice,
    LineSpec,
    apply_credit,
    create_draft,
    finalize_invoice,
    get_invoice,
)
from billing.postgres.payments import create_payment, get_payment
from billing.postgres.posting import post_entry
from billing.postings import DEFERRED, invoice_doc
from ledger.entries import Posting, build_entry
from ledger.errors import CurrencyMismatch, NotFound
from ledger.money import Money
from ledger.postgres.posting import get_entry
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture

D = Decimal


# --- helpers shared by the billing tests of payments, refunds, credit notes and write-offs


def new_customer(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    tax_rate: str = "0.08",
    currency: str = "USD",
    settings_off: bool = False,
) -> Customer:
    customer, _ = upsert_customer(
        conn,
        book_id,
        CustomerSpec(f"Customer {uuid.uuid4().hex[:6]}", currency, tax_rate=D(tax_rate)),
    )
    return customer


def new_invoice(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer: Customer,
    issue: date,
    lines: Sequence[tuple[str, date | None, date | None]],
    account: str = "Income:Services",
) -> Invoice:
    """A finalized invoice; each line is (amount, service_start, service_end)."""
    draft = create_draft(
        conn,
        book_id,
        str(customer.id),
        [
            LineSpec(f"line {n}", D(1), D(amount), start, end, revenue_account=account)
            for n, (amount, start, end) in enumerate(lines, start=1)
        ],
    )
    assert draft is not None
    return finalize_invoice(conn, book_id, str(draft.id), issue)


def recognize(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice: Invoice,
    line_no: int,
    amount: str,
    through: date,
    account: str = "Income:Subscriptions",
) -> None:
    """A recognition entry as the recognition run posts it (conventions of billing.postings)."""
    doc = invoice_doc(invoice.id)
    dims = {"line": str(line_no), "via": "recognition"}
    money = Money(D(amount), invoice.currency)
    post_entry(
        conn,
        book_id,
        build_entry(
            through,
            "recognition (test)",
            [
                Posting(DEFERRED, money, str(invoice.customer_id), doc, dims),
                Posting(account, -money, str(invoice.customer_id), doc, dims),
            ],
        ),
    )


def entry_lines(
    conn: psycopg.Connection, book_id: uuid.UUID, entry_id: object
) -> list[tuple[str, str]]:
    """(account, amount) of an entry's postings, sorted: exact debits (+) and credits (-)."""
    entry = get_entry(conn, book_id, str(entry_id))
    return sorted((p.account, str(p.money.quantized().amount)) for p in entry.postings)


def balances(conn: psycopg.Connection, book_id: uuid.UUID, on: date) -> dict[str, Decimal]:
    return {
        line.account: line.balance
        for line in trial_balance_as_of(conn, book_id, on)
        if line.balance != 0
    }


def row_counts(conn: psycopg.Connection, book_id: uuid.UUID) -> tuple[int, ...]:
    row = conn.execute(
        "select (select count(*) from journal_entries where book_id = %(b)s),"
        " (select count(*) from postings where book_id = %(b)s),"
        " (select count(*) from payments where book_id = %(b)s),"
        " (select count(*) from refunds where book_id = %(b)s),"
        " (select count(*) from credit_notes where book_id = %(b)s),"
        " (select count(*) from number_series where book_id = %(b)s"
        "   and series like 'CN-%%'),"
        " (select count(*) from invoices where book_id = %(b)s and status = 'uncollectible')",
        {"b": book_id},
    ).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


JAN1, JAN10, FEB1 = date(2026, 1, 1), date(2026, 1, 10), date(2026, 2, 1)


# --- tests


def test_overpayment_150_on_108_leaves_42_as_customer_credit(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id)
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("100.00", None, None)])
        payment = create_payment(
            uow.conn,
            book.id,
            str(customer.id),
            D("150.00"),
            "USD",
            "bank_transfer",
            date(2026, 1, 20),
            invoice_ref=str(invoice.id),
            reference="TRX-1",
        )
        lines = entry_lines(uow.conn, book.id, payment.entry_id)
        paid = get_invoice(uow.conn, book.id, str(invoice.id))
        credit = credit_balance(uow.conn, book.id, customer.id, "USD")
        uow.commit()
    assert lines == [
        ("Assets:Bank:Operating", "150.00"),
        ("Assets:Receivable:Trade", "-108.00"),
        ("Liabilities:Customer-Credit", "-42.00"),
    ]
    assert (paid.status, paid.amount_paid, paid.amount_due) == ("paid", D("108.00"), D("0.00"))
    assert credit == D("42.00")
    assert [(a.invoice_id, a.amount) for a in payment.allocations] == [(invoice.id, D("108.00"))]
    assert payment.unapplied == D("42.00")


def test_unidentified_receipt_is_all_customer_credit_then_applied_to_next_invoice(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id)
        payment = create_payment(
            uow.conn, book.id, str(customer.id), D("50.00"), "USD", "check", JAN10
        )
        receipt = entry_lines(uow.conn, book.id, payment.entry_id)
        # The next invoice takes the credit automatically (book setting on by default).
        invoice = new_invoice(uow.conn, book.id, customer, FEB1, [("100.00", None, None)])
        after = balances(uow.conn, book.id, FEB1)
        uow.commit()
    assert receipt == [
        ("Assets:Bank:Operating", "50.00"),
        ("Liabilities:Customer-Credit", "-50.00"),
    ]
    assert (invoice.status, invoice.amount_paid, invoice.amount_due) == (
        "open",
        D("50.00"),
        D("58.00"),
    )
    assert after == {
        "Assets:Bank:Operating": D("50.00"),
        "Assets:Receivable:Trade": D("58.00"),
        "Income:Services": D("-100.00"),
        "Liabilities:Tax-Payable": D("-8.00"),
    }


def test_apply_credit_explicitly_with_an_amount(runtime: Runtime, book: BookFixture) -> None:
    with unit_of_work(runtime.connection) as uow:
        uow.conn.execute(
            "update books set settings = settings || '{\"auto_apply_credit\": false}'"
            " where id = %s",
            (book.id,),
        )
        customer = new_customer(uow.conn, book.id)
        create_payment(uow.conn, book.id, str(customer.id), D("80.00"), "USD", "cash", JAN10)
        invoice = new_invoice(uow.conn, book.id, customer, FEB1, [("100.00", None, None)])
        assert invoice.amount_due == D("108.00")  # nothing applied automatically
        applied = apply_credit(uow.conn, book.id, str(invoice.id), FEB1, D("30.00"))
        invoice = get_invoice(uow.conn, book.id, str(invoice.id))
        credit = credit_balance(uow.conn, book.id, customer.id, "USD")
        entry = uow.conn.execute(
            "select entry_id from postings where book_id = %s and dimensions->>'via' like"
            " 'credit:%%' limit 1",
            (book.id,),
        ).fetchone()
        assert entry is not None
        lines = entry_lines(uow.conn, book.id, entry[0])
        uow.commit()
    assert applied == D("30.00")
    assert lines == [
        ("Assets:Receivable:Trade", "-30.00"),
        ("Liabilities:Customer-Credit", "30.00"),
    ]
    assert (invoice.amount_paid, invoice.amount_due, credit) == (
        D("30.00"),
        D("78.00"),
        D("50.00"),
    )


def test_oldest_due_first_and_partial_payment_leaves_invoice_open(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0")
        newer = new_invoice(uow.conn, book.id, customer, FEB1, [("70.00", None, None)])
        older = new_invoice(uow.conn, book.id, customer, JAN10, [("50.00", None, None)])
        payment = create_payment(
            uow.conn, book.id, str(customer.id), D("80.00"), "USD", "card", date(2026, 2, 5)
        )
        lines = entry_lines(uow.conn, book.id, payment.entry_id)
        older = get_invoice(uow.conn, book.id, str(older.id))
        newer = get_invoice(uow.conn, book.id, str(newer.id))
        uow.commit()
    # Card recorded as paid manually lands in the manual clearing account.
    assert lines == [
        ("Assets:Clearing:Manual", "80.00"),
        ("Assets:Receivable:Trade", "-30.00"),
        ("Assets:Receivable:Trade", "-50.00"),
    ]
    assert (older.status, older.amount_due) == ("paid", D("0.00"))
    assert (newer.status, newer.amount_paid, newer.amount_due) == (
        "open",
        D("30.00"),
        D("40.00"),
    )
    assert {(a.invoice_id, a.amount) for a in payment.allocations} == {
        (older.id, D("50.00")),
        (newer.id, D("30.00")),
    }


def test_explicit_allocations_and_their_limits(runtime: Runtime, book: BookFixture) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0")
        a = new_invoice(uow.conn, book.id, customer, JAN1, [("40.00", None, None)])
        b = new_invoice(uow.conn, book.id, customer, JAN10, [("60.00", None, None)])
        uow.commit()

    def pay(amount: str, allocations: list[tuple[str, Decimal]]) -> object:
        with unit_of_work(runtime.connection) as uow:
            payment = create_payment(
                uow.conn,
                book.id,
                str(customer.id),
                D(amount),
                "USD",
                "bank_transfer",
                FEB1,
                allocations=allocations,
            )
            uow.commit()
        return payment

    with runtime.connection() as conn:
        before = row_counts(conn, book.id)
    with pytest.raises(ExceedsAvailable):  # more than b owes
        pay("100.00", [(str(b.id), D("60.01"))])
    with pytest.raises(ExceedsAvailable):  # allocations sum to more than the payment
        pay("50.00", [(str(a.id), D("30.00")), (str(b.id), D("30.00"))])
    with pytest.raises(InvalidBillingRequest):
        pay("50.00", [(str(a.id), D("0"))])
    with pytest.raises(NotFound):
        pay("50.00", [(str(uuid.uuid4()), D("10.00"))])
    with runtime.connection() as conn:
        assert row_counts(conn, book.id) == before
    payment = pay("100.00", [(str(b.id), D("60.00")), (str(a.id), D("10.00"))])
    with runtime.connection() as conn:
        assert entry_lines(conn, book.id, payment.entry_id) == [  # type: ignore[attr-defined]
            ("Assets:Bank:Operating", "100.00"),
            ("Assets:Receivable:Trade", "-10.00"),
            ("Assets:Receivable:Trade", "-60.00"),
            ("Liabilities:Customer-Credit", "-30.00"),
        ]
        assert get_invoice(conn, book.id, str(a.id)).amount_due == D("30.00")
    with pytest.raises(DocumentState):  # b is paid now: nothing left to pay
        pay("1.00", [(str(b.id), D("1.00"))])


def test_bad_payments_write_nothing(runtime: Runtime, book: BookFixture) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id)
        other = new_customer(uow.conn, book.id)
        foreign = new_invoice(uow.conn, book.id, other, JAN10, [("10.00", None, None)])
        own = new_invoice(uow.conn, book.id, customer, JAN10, [("10.00", None, None)])
        uow.commit()
    cases: list[tuple[type[Exception], dict[str, object]]] = [
        # a customer may pay in several currencies, each invoice in its own
        (CurrencyMismatch, {"currency": "EUR", "invoice_ref": str(own.id)}),
        (InvalidBillingRequest, {"method": "bitcoin"}),
        (InvalidBillingRequest, {"amount": D("0")}),
        (InvalidBillingRequest, {"amount": D("-5.00")}),
        (InvalidBillingRequest, {"invoice_ref": str(foreign.id)}),
        (NotFound, {"customer_ref": "nobody"}),
        (NotFound, {"invoice_ref": "not-an-id"}),
    ]
    with runtime.connection() as conn:
        before = row_counts(conn, book.id)
    for error, change in cases:
        args: dict[str, object] = {
            "customer_ref": str(customer.id),
            "amount": D("10.00"),
            "currency": "USD",
            "method": "bank_transfer",
        }
        args.update(change)
        extra = {"invoice_ref": args.pop("invoice_ref")} if "invoice_ref" in args else {}
        with pytest.raises(error), unit_of_work(runtime.connection) as uow:
            create_payment(
                uow.conn,
                book.id,
                str(args["customer_ref"]),
                args["amount"],  # type: ignore[arg-type]
                str(args["currency"]),
                str(args["method"]),
                JAN10,
                **extra,  # type: ignore[arg-type]
            )
            uow.commit()
    with runtime.connection() as conn:
        assert row_counts(conn, book.id) == before


@pytest.mark.slow
def test_concurrent_payments_on_one_invoice_do_not_over_allocate(
    runtime: Runtime, book: BookFixture
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0")
        invoice = new_invoice(uow.conn, book.id, customer, JAN10, [("100.00", None, None)])
        uow.commit()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def pay() -> None:
        try:
            barrier.wait()
            with unit_of_work(runtime.connection) as uow:
                create_payment(
                    uow.conn,
                    book.id,
                    str(customer.id),
                    D("30.00"),
                    "USD",
                    "bank_transfer",
                    FEB1,
                    invoice_ref=str(invoice.id),
                )
                uow.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=pay) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 3 payments fit (90.00), the 4th pays 10.00 and leaves 20.00 as credit; the
    # other 4 find the invoice paid (409) and write nothing.
    assert len(errors) == 4 and all(isinstance(e, DocumentState) for e in errors), errors
    with runtime.connection() as conn:
        final = get_invoice(conn, book.id, str(invoice.id))
        assert (final.amount_paid, final.amount_due, final.status) == (
            D("100.00"),
            D("0.00"),
            "paid",
        )
        assert credit_balance(conn, book.id, customer.id, "USD") == D("20.00")
        assert balances(conn, book.id, FEB1)["Assets:Bank:Operating"] == D("120.00")
        payments = conn.execute("select id from payments where book_id = %s", (book.id,)).fetchall()
        assert len(payments) == 4
        assert sum(get_payment(conn, book.id, str(p[0])).unapplied for p in payments) == D("20.00")
