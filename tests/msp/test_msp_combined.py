"""One client, every kind of MSP work in one cycle: managed services with devices,
a retainer that overruns, T&M hours accrued as WIP at month end, and an expense,
billed on one invoice whose lines trace to the time statement; the trial balance
and the Beancount export tie before and after the invoice relieves the WIP."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from adapters.runtime import Runtime
from adapters.services import verify_everything
from billing.postgres import msp, msp_expenses
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.sealer import seal_pending
from tests.conftest import BookFixture
from tests.integration.test_exports_beancount import (
    beanquery_balances,
    export_text,
    load,
    service_balances,
)
from tests.msp.test_msp_ledger import add_time, customer, invoice_postings, tx


def test_fixed_fee_devices_retainer_time_and_expense_on_one_invoice_that_ties(
    runtime: Runtime, book: BookFixture
) -> None:
    client = customer(runtime, book, "Northwind Clinic")
    start = date(2026, 9, 1)

    def contract(kind: str, terms: dict[str, str]) -> str:
        made = tx(runtime, lambda c: msp.create_contract(c, book.id, client, kind, start, terms))
        return str(made.id)

    managed = contract("managed_services", {"monthly_fee": "500.00", "unit_price": "5.00"})
    retainer = contract(
        "retainer", {"included_hours": "10", "hourly_rate": "120.00", "overage_rate": "150.00"}
    )
    hourly = contract("time_and_materials", {"hourly_rate": "100.00"})
    tx(runtime, lambda c: msp.record_count(c, book.id, managed, start, 40))
    september = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, start))
    assert [i.total for i in september.invoices] == [Decimal("1200.00")]  # retainer in advance

    add_time(runtime, book, retainer, date(2026, 9, 8), 660, notes="Server migration")
    add_time(runtime, book, hourly, date(2026, 9, 10), 150, ticket="T-7", notes="Printer")
    spec = msp_expenses.ExpenseSpec(
        hourly, "Dana", date(2026, 9, 12), "Toner", "42.50", markup_percent="10"
    )
    expense = tx(runtime, lambda c: msp_expenses.create_expense(c, book.id, spec))
    tx(runtime, lambda c: msp_expenses.approve_expense(c, book.id, str(expense.id)))
    wip = tx(runtime, lambda c: msp.accrue_wip(c, book.id, date(2026, 9, 30)))
    assert [w.amount for w in wip] == [Decimal("250.00")]

    october = tx(runtime, lambda c: msp.contract_billing_run(c, book.id, date(2026, 10, 1)))
    (invoice,) = october.invoices
    assert [(line.kind, line.description, line.amount) for line in invoice.lines] == [
        ("monthly_fee", "Managed services 2026-09-01–2026-09-30", Decimal("500.00")),
        ("devices", "Devices 2026-09-01–2026-09-30: 40 at cut-off", Decimal("200.00")),
        (
            "retainer_summary",
            "Retainer 2026-09-01–2026-09-30 draw-down: 10.00 h included, 0.00 h carried in,"
            " 10.00 h drawn, 1.00 h overage, 0.00 h carried over, 0.00 h expired",
            Decimal("0.00"),
        ),
        ("retainer_fee", "Retainer 2026-10-01–2026-10-31: 10 h included", Decimal("1200.00")),
        ("retainer_overage", "Retainer overage: 1.00 h at 150.00/h", Decimal("150.00")),
        (
            "time",
            "Time and materials 2026-09-01–2026-09-30: 2.50 h (accrued)",
            Decimal("250.00"),
        ),
        ("expense", "Expense 2026-09-12: Toner", Decimal("46.75")),
    ]
    assert invoice.total == Decimal("2346.75")
    with runtime.connection() as conn:
        assert invoice_postings(conn, book.id, invoice.id) == {
            ("Assets:Receivable:Trade", Decimal("2346.75")),
            ("Income:Services", Decimal("-500.00")),
            ("Income:Services", Decimal("-200.00")),
            ("Liabilities:Prepaid-Hours", Decimal("-1200.00")),
            ("Income:Services", Decimal("-150.00")),
            ("Assets:Receivable:Unbilled", Decimal("-250.00")),
            ("Income:Services", Decimal("-46.75")),
        }
        # Each time row traces to its line: the drawn hours to the summary (3), the
        # overage to the overage line (5)... here one entry is both: it goes to 5.
        traced = conn.execute(
            "select date, invoice_line from time_entries where book_id = %s order by date",
            (book.id,),
        ).fetchall()
        assert traced == [(date(2026, 9, 8), 5), (date(2026, 9, 10), 6)]
        statement = msp.time_statement(conn, book.id, invoice)
        expenses = msp_expenses.expense_statement(conn, book.id, invoice.id)
    columns = ("date", "ticket", "description", "hours", "rate", "amount")
    assert [tuple(r[k] for k in columns) for r in statement] == [
        ("2026-09-08", "", "Server migration (retainer: included)", "10.00", "120.00", "0.00"),
        ("2026-09-08", "", "Server migration (retainer: overage)", "1.00", "150.00", "150.00"),
        ("2026-09-10", "T-7", "Printer", "2.50", "100.00", "250.00"),
    ]
    assert [(e["date"], e["amount"]) for e in expenses] == [("2026-09-12", "46.75")]

    seal_pending(runtime.connection, book.id)
    with runtime.connection() as conn:
        assert verify_everything(conn, book.id) == []
        before = {
            line.account: line.balance
            for line in trial_balance_as_of(conn, book.id, date(2026, 9, 30))
        }
        after = {
            line.account: line.balance
            for line in trial_balance_as_of(conn, book.id, date(2026, 10, 31))
        }
    # 30 September: the WIP accrued, the retainer fee prepaid and drawn.
    assert {k: v for k, v in before.items() if v} == {
        "Assets:Receivable:Trade": Decimal("1200.00"),
        "Assets:Receivable:Unbilled": Decimal("250.00"),
        "Income:Services": Decimal("-1450.00"),
    }
    # After the invoice: Unbilled relieved, October's fee prepaid.
    assert {k: v for k, v in after.items() if v} == {
        "Assets:Receivable:Trade": Decimal("3546.75"),
        "Liabilities:Prepaid-Hours": Decimal("-1200.00"),
        "Income:Services": Decimal("-2346.75"),
    }
    entries, options = load(export_text(runtime, book.id))
    for day in (date(2026, 9, 30), date(2026, 10, 31)):
        ours = service_balances(runtime, book.id, day)
        assert beanquery_balances(entries, options, day) == {k: v for k, v in ours.items() if v}
