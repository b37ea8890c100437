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
        # the industry customers, through the HTTP API
        "card_attempts_succeeded",
        "sepa_debits",
        "usage_accruals",
        "vouchers_redeemed",
        "card_attempts_failed",
        "disputes_won",
        "disputes_lost",
        "usage_events",
        "cdrs",
        "cdr_rating_runs",
        "prepaid_sessions",
        "claims_paid",
        "claims_denied",
        "claims_partially_paid",
        "secondary_claims",
        "secondary_remittances",
        "remittances",
        "patient_statements",
        "patient_payments",
        "msp_invoices",
        "time_entries_approved",
        "milestones_completed",
    ):
        assert activity.get(kind, 0) > 0, kind


@pytest.mark.slow
def test_the_demos_card_payments_are_paid_out_to_the_bank(
    runtime: Runtime, demo_book: dict[str, object]
) -> None:
    """The fake gateway pays settled charges out net of fees as the demo's clock moves."""
    book_id = uuid.UUID(str(demo_book["book_id"]))
    with runtime.connection() as conn:
        paid, entries = conn.execute(
            "select count(*) filter (where status = 'paid'),"
            " count(*) filter (where entry_id is not null)"
            " from payouts where book_id = %s",
            (book_id,),
        ).fetchone() or (0, 0)
        fees = conn.execute(
            "select coalesce(sum(p.amount), 0) from postings p join accounts a"
            " on a.book_id = p.book_id and a.id = p.account_id"
            " where p.book_id = %s and a.name = 'Expenses:Payment-Fees'",
            (book_id,),
        ).fetchone()
    assert paid > 0 and entries > 0
    assert fees is not None and fees[0] > 0


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
def test_the_healthcare_practice_ends_with_every_claim_state_it_simulates(
    runtime: Runtime, demo_book: dict[str, object]
) -> None:
    """Paid, partially paid (a non-covered line) and denied primary claims; Medigap
    claims answered by their own 835 and paid, their payer AR back to zero."""
    book_id = uuid.UUID(str(demo_book["book_id"]))
    with runtime.connection() as conn:
        states = dict(
            conn.execute(
                "select v.priority || ':' || c.status, count(*) from claims c join coverages v"
                " on v.book_id = c.book_id and v.id = c.coverage_id where c.book_id = %s"
                " group by 1",
                (book_id,),
            ).fetchall()
        )
        (secondary_ar,) = conn.execute(
            "select coalesce(sum(p.amount), 0) from postings p join accounts a"
            " on a.book_id = p.book_id and a.id = p.account_id join claims c"
            " on c.book_id = p.book_id and p.document = 'claim:' || c.id::text"
            " join coverages v on v.book_id = c.book_id and v.id = c.coverage_id"
            " where p.book_id = %s and a.name = 'Assets:Receivable:Payer'"
            " and v.priority = 'secondary' and c.status = 'paid'",
            (book_id,),
        ).fetchone() or (None,)
    for state in ("primary:paid", "primary:partially_paid", "primary:denied", "secondary:paid"):
        assert states.get(state, 0) > 0, (state, states)
    assert secondary_ar == 0


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
    # Per currency; FX gains and losses are income but no product's revenue.
    income: dict[str, Decimal] = {}
    for line in lines:
        if line.account.startswith("Income:") and not line.account.startswith("Income:FX:"):
            income[line.currency] = income.get(line.currency, Decimal(0)) - line.balance
    by_product: dict[str, Decimal] = {}
    for row in rows:
        by_product[row["currency"]] = by_product.get(row["currency"], Decimal(0)) + row["amount"]
    assert by_product == income
    assert set(income) == {"USD", "EUR", "GBP"}


def _book_fingerprint(runtime: Runtime, book_id: uuid.UUID) -> list[tuple[object, ...]]:
    """Every entry as (date, memo, postings), with ids and document numbers blanked:
    a billing run numbers one run's invoices in subscription-id order, and ids are random."""
    import re

    blank = re.compile(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(INV|CN)-\d+-\d+"
        r"|[0-9a-f]{20,32}",  # gateway ids, wallet sub-accounts, claim numbers: random hex
        re.IGNORECASE,
    )
    with runtime.connection() as conn:
        rows = conn.execute(
            "select e.id, e.effective_date, e.memo, a.name, p.amount, p.currency"
            " from journal_entries e"
            " join postings p on p.book_id = e.book_id and p.entry_id = e.id"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " where e.book_id = %s",
            (book_id,),
        ).fetchall()
    entries: dict[object, tuple[object, str, list[tuple[str, Decimal, str]]]] = {}
    for entry_id, day, memo, account, amount, currency in rows:
        entries.setdefault(entry_id, (day, blank.sub("#", memo), []))[2].append(
            (blank.sub("#", account), amount, currency)
        )
    return sorted((day, memo, tuple(sorted(p))) for day, memo, p in entries.values())


@pytest.mark.slow
def test_the_same_seed_gives_the_same_book(runtime: Runtime) -> None:
    runs = [
        run_demo(runtime, customers_count=8, months=4, seed=3, start=date(2026, 1, 1))
        for _ in range(2)
    ]
    first, second = (_book_fingerprint(runtime, uuid.UUID(str(r["book_id"]))) for r in runs)
    assert runs[0]["activity"] == runs[1]["activity"]
    assert len(first) == runs[0]["entries"] > 50
    assert first == second
