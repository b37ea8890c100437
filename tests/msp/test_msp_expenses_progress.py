"""MSP expenses (markup, approval, billing, adjustment) and percent-complete
fixed-fee contracts (revenue by progress, Unbilled and Deferred-Revenue), on
real PostgreSQL with exact postings."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.errors import DocumentState, InvalidBillingRequest
from billing.msp import age_bucket, expense_billable_amount, recognized_to_date
from billing.postgres import msp, msp_expenses, msp_progress
from ledger.postgres.sealer import seal_pending
from tests.conftest import BookFixture
from tests.msp.test_msp_ledger import add_time, balance, customer, entry_postings, tx


def test_pure_rules_round_half_up_once() -> None:
    assert expense_billable_amount(Decimal("42.50"), Decimal("10"), "USD") == Decimal("46.75")
    # 19.99 × 1.15 = 22.9885 → 22.99; 0.05 × 1.10 = 0.055 → 0.06 (half up).
    assert expense_billable_amount(Decimal("19.99"), Decimal("15"), "USD") == Decimal("22.99")
    assert expense_billable_amount(Decimal("0.05"), Decimal("10"), "USD") == Decimal("0.06")
    assert expense_billable_amount(Decimal("1000"), None, "JPY") == Decimal("1000")
    # 12,345.67 × 33.3 % = 4,111.108… → 4,111.11
    assert recognized_to_date(Decimal("12345.67"), Decimal("33.3"), "USD") == Decimal("4111.11")
    assert [age_bucket(d) for d in (0, 30, 31, 60, 61, 90, 91)] == [
        "0-30",
        "0-30",
        "31-60",
        "31-60",
        "61-90",
        "61-90",
        "90+",
    ]


def invoice_lines_postings(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: Any
) -> list[tuple[str, Decimal]]:
    rows = conn.execute(
        "select a.name, sum(p.amount) from postings p join accounts a on a.id = p.account_id"
        " where p.book_id = %s and p.document = %s group by a.name order by a.name",
        (book_id, f"invoice:{invoice_id}"),
    ).fetchall()
    return [(a, Decimal(x)) for a, x in rows]


def expense(runtime: Runtime, book: BookFixture, contract: str, **kw: Any) -> Any:
    base: dict[str, Any] = {
        "contract": contract,
        "person": "Dana",
        "date": date(2026, 9, 10),
        "description": "Cable",
        "amount": "10.00",
    }
    base.update(kw)
    spec = msp_expenses.ExpenseSpec(**base)
    return tx(runtime, lambda c: msp_expenses.create_expense(c, book.id, spec))


def approve(runtime: Runtime, book: BookFixture, item: Any) -> Any:
    return tx(runtime, lambda c: msp_expenses.approve_expense(c, book.id, str(item.id)))


def test_expenses_bill_at_cost_plus_markup_traced_to_their_lines(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c, book.id, client, "time_and_materials", date(2026, 9, 1), {"hourly_rate": "100.00"}
        ),
    )
    cid = str(contract.id)
    add_time(runtime, book, cid, date(2026, 9, 9), 60, ticket="T-1")
    sha = "ab" * 32
    switch = approve(
        runtime,
        book,
        expense(
            runtime,
            book,
            cid,
            description="Switch",
            amount="42.50",
            markup_percent="10",
            receipt={
                "file_name": "r.pdf",
                "content_type": "application/pdf",
                "sha256": sha,
                "vendor": "Acme Supply",
            },
        ),
    )
    assert (switch.cost, switch.billable_amount, switch.status) == (
        Decimal("42.50"),
        Decimal("46.75"),
        "approved",
    )
    cables = approve(
        runtime,
        book,
        expense(
            runtime,
            book,
            cid,
            description="Cables",
            amount="19.99",
            markup_percent="15",
            date=date(2026, 9, 12),
        ),
    )
    mileage = approve(
        runtime,
        book,
        expense(
            runtime,
            book,
            cid,
            description="Mileage",
            amount="25.00",
            billable_amount="30.00",
            date=date(2026, 9, 14),
        ),
    )
    internal = approve(
        runtime,
        book,
        expense(runtime, book, cid, description="Lunch", amount="12.00", billable=False),
    )
    draft = expense(runtime, book, cid, description="Not approved", amount="99.00")
    with pytest.raises(DocumentState):  # approved: immutable
        tx(runtime, lambda c: msp_expenses.update_expense(c, book.id, str(switch.id), "x"))
    run = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    (invoice,) = run.invoices
    assert [(line.kind, line.description, line.amount) for line in invoice.lines] == [
        ("time", "Time and materials 2026-09-01–2026-09-30: 1.00 h", Decimal("100.00")),
        ("expense", "Expense 2026-09-10: Switch (Acme Supply)", Decimal("46.75")),
        ("expense", "Expense 2026-09-12: Cables", Decimal("22.99")),
        ("expense", "Expense 2026-09-14: Mileage", Decimal("30.00")),
    ]
    with runtime.connection() as conn:
        assert invoice_lines_postings(conn, book.id, invoice.id) == [
            ("Assets:Receivable:Trade", Decimal("199.74")),
            ("Income:Services", Decimal("-199.74")),
        ]
        states = {
            e.id: (e.status, e.invoice_line)
            for e in msp_expenses.list_expenses(conn, book.id, contract_ref=cid)
        }
        statement = msp.statement_csv(
            msp.time_statement(conn, book.id, invoice),
            msp_expenses.expense_statement(conn, book.id, invoice.id),
        )
    assert states == {
        switch.id: ("invoiced", 2),
        cables.id: ("invoiced", 3),
        mileage.id: ("invoiced", 4),
        internal.id: ("approved", None),  # not billable: never invoiced
        draft.id: ("draft", None),
    }
    assert statement.splitlines()[1:] == [
        "2026-09-09,Dana,,T-1,,1.00,100.00,100.00",
        "2026-09-10,Dana,,,Expense: Switch (Acme Supply),,,46.75",
        "2026-09-12,Dana,,,Expense: Cables,,,22.99",
        "2026-09-14,Dana,,,Expense: Mileage,,,30.00",
    ]
    # A correction after invoicing: +10.00 cost at the original 10 % → 11.00 next time.
    fix = expense(
        runtime,
        book,
        cid,
        description="Switch (price corrected)",
        amount="10.00",
        adjusts=str(switch.id),
        date=date(2026, 10, 2),
    )
    assert (fix.cost, fix.billable_amount, fix.markup_percent) == (
        Decimal("10.00"),
        Decimal("11.00"),
        Decimal("10"),
    )
    with pytest.raises(InvalidBillingRequest):  # more than the expense cost
        expense(runtime, book, cid, amount="-60.00", adjusts=str(switch.id), date=date(2026, 10, 2))
    approve(runtime, book, fix)
    november = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 11, 1)))
    assert [(line.description, line.amount) for line in november.invoices[0].lines] == [
        ("Expense 2026-10-02: Switch (price corrected)", Decimal("11.00"))
    ]
    again = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 11, 1)))
    assert again.invoices == []
    seal_pending(runtime.connection, book.id)
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []


def test_bad_expenses_are_refused_and_write_nothing(runtime: Runtime, book: BookFixture) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c,
            book.id,
            client,
            "time_and_materials",
            date(2026, 9, 1),
            {"hourly_rate": "100.00"},
            end_date=date(2026, 10, 1),
        ),
    )
    cid = str(contract.id)
    bad: list[tuple[type[Exception], dict[str, Any]]] = [
        (InvalidBillingRequest, {"amount": "-1.00"}),
        (InvalidBillingRequest, {"amount": "ten"}),
        (InvalidBillingRequest, {"markup_percent": "10", "billable_amount": "12.00"}),
        (InvalidBillingRequest, {"receipt": {"sha256": "not-a-hash"}}),
        (InvalidBillingRequest, {"receipt": {"url": "http://x"}}),
        (InvalidBillingRequest, {"currency": "EUR"}),
        (InvalidBillingRequest, {"description": " "}),
        (DocumentState, {"date": date(2026, 10, 5)}),  # the contract has ended
    ]
    for error, kw in bad:
        with pytest.raises(error):
            expense(runtime, book, cid, **kw)
    draft = expense(runtime, book, cid)
    with pytest.raises(DocumentState):  # a draft is changed, not adjusted
        expense(runtime, book, cid, amount="1.00", adjusts=str(draft.id))
    with runtime.connection() as conn:
        row = conn.execute("select count(*) from expenses where book_id = %s", (book.id,))
        assert row.fetchone() == (1,)


def test_percent_complete_recognizes_revenue_by_progress(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c, book.id, client, "fixed_fee", date(2026, 9, 1), {"fee": "10000.00"}
        ),
    )
    cid = str(contract.id)

    def progress(day: date, percent: str, adjustment: bool = False) -> Any:
        return tx(
            runtime,
            lambda c: msp_progress.record_progress(
                c, book.id, cid, day, percent, adjustment=adjustment
            ),
        )

    first = progress(date(2026, 9, 15), "30")
    assert (first.earned, first.billed) == (Decimal("3000.00"), Decimal(0))
    with pytest.raises(DocumentState):
        progress(date(2026, 9, 20), "20")  # down without saying it is an adjustment
    with pytest.raises(InvalidBillingRequest):
        progress(date(2026, 9, 20), "101")
    with pytest.raises(InvalidBillingRequest):
        progress(date(2026, 9, 10), "35")  # before the last update
    september = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 9, 30)))
    (invoice,) = september.invoices
    assert [(line.kind, line.description, line.amount) for line in invoice.lines] == [
        ("progress", "Progress: 30 % of 10000.00 complete", Decimal("3000.00"))
    ]
    with runtime.connection() as conn:
        assert invoice_lines_postings(conn, book.id, invoice.id) == [
            ("Assets:Receivable:Trade", Decimal("3000.00")),
            ("Assets:Receivable:Unbilled", Decimal("-3000.00")),
        ]
    # The estimate is revised down after billing 30 %: 500.00 billed is not earned.
    down = progress(date(2026, 10, 5), "25", adjustment=True)
    assert (down.kind, down.earned, down.billed) == (
        "adjustment",
        Decimal("2500.00"),
        Decimal("3000.00"),
    )
    progress(date(2026, 10, 20), "40")
    with runtime.connection() as conn:
        assert entry_postings(conn, book.id, "progress_recognized") == [
            (date(2026, 9, 15), "Assets:Receivable:Unbilled", Decimal("3000.00")),
            (date(2026, 9, 15), "Income:Services", Decimal("-3000.00")),
            (date(2026, 10, 5), "Income:Services", Decimal("500.00")),
            (date(2026, 10, 5), "Liabilities:Deferred-Revenue", Decimal("-500.00")),
            (date(2026, 10, 20), "Assets:Receivable:Unbilled", Decimal("1000.00")),
            (date(2026, 10, 20), "Income:Services", Decimal("-1500.00")),
            (date(2026, 10, 20), "Liabilities:Deferred-Revenue", Decimal("500.00")),
        ]
        seal_pending(runtime.connection, book.id)
        assert verify_everything(conn, book.id) == []
    october = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 31)))
    assert [line.amount for line in october.invoices[0].lines] == [Decimal("1000.00")]
    with runtime.connection() as conn:
        assert balance(conn, book.id, "Assets:Receivable:Unbilled") == Decimal("0.00")
        assert balance(conn, book.id, "Liabilities:Deferred-Revenue") == Decimal("0.00")
        assert balance(conn, book.id, "Income:Services") == Decimal("-4000.00")
        assert balance(conn, book.id, "Assets:Receivable:Trade") == Decimal("4000.00")
    assert (
        tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 31))).invoices
        == []
    )
    seal_pending(runtime.connection, book.id)
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []


def test_progress_is_only_for_percent_complete_contracts(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book)
    with pytest.raises(InvalidBillingRequest):  # milestones and a fee: which one?
        tx(
            runtime,
            lambda c: msp.create_contract(
                c,
                book.id,
                client,
                "fixed_fee",
                date(2026, 9, 1),
                {"fee": "100.00", "milestones": [{"name": "A", "amount": "100.00"}]},
            ),
        )
    hourly = tx(
        runtime,
        lambda c: msp.create_contract(
            c, book.id, client, "time_and_materials", date(2026, 9, 1), {"hourly_rate": "1.00"}
        ),
    )
    with pytest.raises(InvalidBillingRequest):
        tx(
            runtime,
            lambda c: msp_progress.record_progress(
                c, book.id, str(hourly.id), date(2026, 9, 5), "10"
            ),
        )
    with runtime.connection() as conn:
        row = conn.execute("select count(*) from contract_progress where book_id = %s", (book.id,))
        assert row.fetchone() == (0,)


def test_a_negative_expense_adjustment_never_stands_alone_on_an_invoice(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book)
    contract = tx(
        runtime,
        lambda c: msp.create_contract(
            c, book.id, client, "time_and_materials", date(2026, 9, 1), {"hourly_rate": "100.00"}
        ),
    )
    cid = str(contract.id)
    hotel = approve(
        runtime, book, expense(runtime, book, cid, description="Hotel", amount="200.00")
    )
    # Dated after the run's as_of, yet it bills with (and nets against) its original.
    fix = expense(
        runtime, book, cid, amount="-20.00", adjusts=str(hotel.id), date=date(2026, 10, 3)
    )
    assert (fix.cost, fix.billable_amount) == (Decimal("-20.00"), Decimal("-20.00"))
    approve(runtime, book, fix)
    run = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    assert [line.amount for line in run.invoices[0].lines] == [
        Decimal("200.00"),
        Decimal("-20.00"),
    ]
    assert run.invoices[0].total == Decimal("180.00")
    with pytest.raises(DocumentState):  # invoiced: a credit note gives money back
        expense(runtime, book, cid, amount="-10.00", adjusts=str(hotel.id), date=date(2026, 10, 4))
    more = expense(runtime, book, cid, amount="5.00", adjusts=str(hotel.id), date=date(2026, 10, 4))
    assert more.billable_amount == Decimal("5.00")
