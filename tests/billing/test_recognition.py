"""Worked examples of ACCOUNTING.md's revenue recognition, through the ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal

import psycopg
import pytest

from adapters.runtime import Runtime
from billing.errors import InvalidBillingRequest
from billing.postgres.credit_notes import create_credit_note
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.invoices import Invoice, LineSpec, create_draft, finalize_invoice
from billing.postgres.payments import create_payment, create_refund
from billing.postgres.recognition import recognition_entries, run_recognition
from billing.postgres.reports import deferred_revenue
from billing.postgres.write_offs import mark_uncollectible
from ledger.periods import PeriodStatus
from ledger.postgres.books import set_period_status
from ledger.postgres.posting import post_entries
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_payments import entry_lines, new_customer, new_invoice
from tests.conftest import BookFixture, make_book

D = Decimal


def invoice(
    runtime: Runtime,
    book: BookFixture,
    amount: str,
    start: date,
    end: date,
    tax_rate: str = "0",
    currency: str = "USD",
) -> None:
    with unit_of_work(runtime.connection) as uow:
        customer, _ = upsert_customer(
            uow.conn, book.id, CustomerSpec("C", currency, tax_rate=Decimal(tax_rate))
        )
        draft = create_draft(
            uow.conn,
            book.id,
            str(customer.id),
            [
                LineSpec(
                    "Plan",
                    Decimal(1),
                    Decimal(amount),
                    start,
                    end,
                    revenue_account="Income:Subscriptions",
                )
            ],
        )
        assert draft is not None
        finalize_invoice(uow.conn, book.id, str(draft.id), start)
        uow.commit()


def income(runtime: Runtime, book: BookFixture, as_of: date) -> Decimal:
    with runtime.connection() as conn:
        lines = trial_balance_as_of(conn, book.id, as_of)
    return -sum(
        (line.balance for line in lines if line.account == "Income:Subscriptions"), Decimal(0)
    )


def deferred(runtime: Runtime, book: BookFixture, as_of: date) -> Decimal:
    with runtime.connection() as conn:
        lines = trial_balance_as_of(conn, book.id, as_of)
    return -sum(
        (line.balance for line in lines if line.account == "Liabilities:Deferred-Revenue"),
        Decimal(0),
    )


def test_monthly_31_from_jan_15_recognizes_17_then_14(runtime: Runtime, book: BookFixture) -> None:
    invoice(runtime, book, "31.00", date(2026, 1, 15), date(2026, 2, 15))
    assert deferred(runtime, book, date(2026, 1, 15)) == Decimal("31.00")
    run_recognition(runtime.connection, book.id, date(2026, 1, 31), date(2026, 1, 31))
    assert income(runtime, book, date(2026, 1, 31)) == Decimal("17.00")
    run_recognition(runtime.connection, book.id, date(2026, 2, 28), date(2026, 2, 28))
    assert income(runtime, book, date(2026, 2, 28)) == Decimal("31.00")
    assert deferred(runtime, book, date(2026, 2, 28)) == Decimal("0.00")


def test_annual_365_recognizes_31_28_31(runtime: Runtime, book: BookFixture) -> None:
    invoice(runtime, book, "365.00", date(2026, 1, 1), date(2027, 1, 1))
    seen = []
    for month_end in (date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)):
        before = income(runtime, book, month_end)
        run_recognition(runtime.connection, book.id, month_end, month_end)
        seen.append(income(runtime, book, month_end) - before)
    assert seen == [Decimal("31.00"), Decimal("28.00"), Decimal("31.00")]


def test_annual_1200_with_tax_recognizes_net_only(runtime: Runtime, book: BookFixture) -> None:
    invoice(runtime, book, "1200.00", date(2026, 1, 1), date(2027, 1, 1), tax_rate="0.10")
    with runtime.connection() as conn:
        lines = {
            (line.account, line.balance)
            for line in trial_balance_as_of(conn, book.id, date(2026, 1, 1))
        }
    assert lines == {
        ("Assets:Receivable:Trade", Decimal("1320.00")),
        ("Liabilities:Deferred-Revenue", Decimal("-1200.00")),
        ("Liabilities:Tax-Payable", Decimal("-120.00")),
    }
    run_recognition(runtime.connection, book.id, date(2026, 1, 31), date(2026, 1, 31))
    assert income(runtime, book, date(2026, 1, 31)) == Decimal("101.92")
    run_recognition(runtime.connection, book.id, date(2026, 2, 28), date(2026, 2, 28))
    assert income(runtime, book, date(2026, 2, 28)) - Decimal("101.92") == Decimal("92.05")


def test_a_run_repeated_for_the_same_date_posts_nothing(
    runtime: Runtime, book: BookFixture
) -> None:
    invoice(runtime, book, "365.00", date(2026, 1, 1), date(2027, 1, 1))
    first = run_recognition(runtime.connection, book.id, date(2026, 1, 31), date(2026, 1, 31))
    again = run_recognition(runtime.connection, book.id, date(2026, 1, 31), date(2026, 1, 31))
    assert (first.entries, again.entries) == (1, 0)
    assert income(runtime, book, date(2026, 1, 31)) == Decimal("31.00")


def test_whole_schedule_sums_to_the_total_in_jpy(runtime: Runtime) -> None:
    jpy = make_book(runtime, "JPY")
    invoice(runtime, jpy, "10000", date(2026, 1, 17), date(2027, 1, 17), currency="JPY")
    month_ends = [date(2026, m, 28) for m in range(1, 13)] + [date(2027, 1, 31)]
    for day in month_ends:
        run_recognition(runtime.connection, jpy.id, day, day)
    assert income(runtime, jpy, date(2027, 1, 31)) == Decimal("10000")
    assert deferred(runtime, jpy, date(2027, 1, 31)) == Decimal("0")


def test_reports_over_http(runtime: Runtime, book: BookFixture) -> None:
    from litestar.testing import TestClient

    from adapters.http.app import create_app

    invoice(runtime, book, "1200.00", date(2026, 1, 1), date(2027, 1, 1), tax_rate="0.10")
    headers = {"Authorization": f"Bearer {book.admin_key}"}
    with TestClient(create_app(runtime, run_sealer=False)) as client:
        for through, amount in (("2026-01-31", "101.92"), ("2026-02-28", "92.05")):
            r = client.post(
                "/v1/revenue-recognition-runs", json={"through": through}, headers=headers
            )
            assert r.status_code == 201, r.text
            assert r.json()["recognized"] == {"USD": amount}
        r = client.get(
            "/v1/reports/deferred-revenue", params={"as_of": "2026-02-28"}, headers=headers
        )
        body = r.json()
        assert body["balances"] == [{"currency": "USD", "balance": "1006.03"}]
        assert body["waterfall"][0] == {"currency": "USD", "month": "2026-03", "amount": "101.92"}
        total = sum(Decimal(row["amount"]) for row in body["waterfall"])
        assert total == Decimal("1006.03")
        r = client.get(
            "/v1/reports/deferred-revenue/roll-forward",
            params={"from": "2026-01-01", "to": "2026-02-28"},
            headers=headers,
        )
        assert r.json()["currencies"]["USD"] == {
            "opening": "0.00",
            "billed": "1200.00",
            "recognized": "193.97",
            "other": "0.00",
            "closing": "1006.03",
        }
        r = client.get("/v1/reports/ar-aging", params={"as_of": "2026-03-15"}, headers=headers)
        aging = r.json()
        # Issued Jan 1 on net 30: due Jan 31, so 43 days past due on Mar 15.
        assert aging["totals"]["USD"] == {
            "current": "0.00",
            "1-30": "0.00",
            "31-60": "1320.00",
            "61-90": "0.00",
            "90+": "0.00",
            "total": "1320.00",
        }
        assert [i["bucket"] for i in aging["invoices"]] == ["31-60"]
        r = client.get("/v1/reports/ar-aging", params={"as_of": "2026-01-31"}, headers=headers)
        assert r.json()["totals"]["USD"]["current"] == "1320.00"
        r = client.get(
            "/v1/reports/revenue",
            params={"from": "2026-02-01", "to": "2026-02-28"},
            headers=headers,
        )
        assert r.json()["lines"] == [
            {
                "month": "2026-02",
                "account": "Income:Subscriptions",
                "product": None,
                "currency": "USD",
                "amount": "92.05",
            }
        ]
        r = client.get(
            "/v1/reports/revenue",
            params={"from": "2026-03-01", "to": "2026-02-28"},
            headers=headers,
        )
        assert r.status_code == 400


# --- catch-up runs (issue 7, item 3) and prospective changes (item 4)

JAN1, FEB1, APR1 = date(2026, 1, 1), date(2026, 2, 1), date(2026, 4, 1)
JAN31, FEB28, MAR31 = date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)


def recognition_lines(runtime: Runtime, book: BookFixture) -> list[tuple[str, str, str]]:
    """(date, account, amount) of every posting recognition runs made: debits +, credits −."""
    with runtime.connection() as conn:
        rows = conn.execute(
            "select p.effective_date, a.name, p.amount from postings p"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " where p.book_id = %s and p.dimensions->>'via' = 'recognition'"
            " order by p.effective_date, a.name, p.amount",
            (book.id,),
        ).fetchall()
    return [(day.isoformat(), account, str(amount)) for day, account, amount in rows]


def month_lines(*months: tuple[str, str]) -> list[tuple[str, str, str]]:
    """Deferred-Revenue debit and Income credit of `amount` on each day."""
    out = []
    for day, amount in months:
        out.append((day, "Income:Subscriptions", f"-{amount}"))
        out.append((day, "Liabilities:Deferred-Revenue", amount))
    return out


def test_one_run_through_mar_31_posts_31_28_31_on_each_month_end(
    runtime: Runtime, book: BookFixture
) -> None:
    invoice(runtime, book, "365.00", JAN1, date(2027, 1, 1))
    result = run_recognition(runtime.connection, book.id, MAR31, MAR31)
    assert (result.entries, result.lines, result.amount_by_currency) == (
        3,
        1,
        {"USD": Decimal("90.00")},
    )
    once = recognition_lines(runtime, book)
    assert once == month_lines(
        ("2026-01-31", "31.00"), ("2026-02-28", "28.00"), ("2026-03-31", "31.00")
    )
    # Identical to three month-end runs in another book.
    monthly = make_book(runtime)
    invoice(runtime, monthly, "365.00", JAN1, date(2027, 1, 1))
    for month_end in (JAN31, FEB28, MAR31):
        run_recognition(runtime.connection, monthly.id, month_end, month_end)
    assert recognition_lines(runtime, monthly) == once
    # Idempotent: running again posts nothing new.
    again = run_recognition(runtime.connection, book.id, MAR31, MAR31)
    assert again.entries == 0
    assert recognition_lines(runtime, book) == once


def test_monthly_31_from_jan_15_run_once_through_feb_28_posts_17_then_14(
    runtime: Runtime, book: BookFixture
) -> None:
    invoice(runtime, book, "31.00", date(2026, 1, 15), date(2026, 2, 15))
    run_recognition(runtime.connection, book.id, FEB28, FEB28)
    assert recognition_lines(runtime, book) == month_lines(
        ("2026-01-31", "17.00"), ("2026-02-28", "14.00")
    )


def test_a_closed_month_is_recognized_on_the_first_open_day(
    runtime: Runtime, book: BookFixture
) -> None:
    invoice(runtime, book, "365.00", JAN1, date(2027, 1, 1))
    with unit_of_work(runtime.connection) as uow:
        set_period_status(uow.conn, book.id, "2026-01", PeriodStatus.CLOSED)
        uow.commit()
    # Through a day of the closed month: nothing can be dated yet, and no error.
    assert run_recognition(runtime.connection, book.id, JAN31, JAN31).entries == 0
    run_recognition(runtime.connection, book.id, MAR31, MAR31)
    assert recognition_lines(runtime, book) == month_lines(
        ("2026-02-01", "31.00"), ("2026-02-28", "28.00"), ("2026-03-31", "31.00")
    )


def test_two_runs_from_the_same_state_post_once(runtime: Runtime, book: BookFixture) -> None:
    """Two runs through the same day that read the ledger before either posted
    (concurrent requests, a retried one) make the same entries: the second is
    a replay."""
    invoice(runtime, book, "365.00", JAN1, date(2027, 1, 1))
    with runtime.connection() as conn:
        planned = recognition_entries(conn, book.id, MAR31)
    run_recognition(runtime.connection, book.id, MAR31, MAR31)
    with unit_of_work(runtime.connection) as uow:
        posted = post_entries(uow.conn, book.id, planned)
        uow.commit()
    assert [entry.created for entry in posted] == [False, False, False]
    assert recognition_lines(runtime, book) == month_lines(
        ("2026-01-31", "31.00"), ("2026-02-28", "28.00"), ("2026-03-31", "31.00")
    )


def test_an_interrupted_run_resumes_where_it_stopped(
    runtime: Runtime, book: BookFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import billing.postgres.recognition as recognition

    invoice(runtime, book, "365.00", JAN1, date(2027, 1, 1))
    monkeypatch.setattr(recognition, "BATCH_INVOICES", 1)
    batches = 0

    @contextmanager
    def failing_third_batch() -> Iterator[psycopg.Connection]:
        nonlocal batches
        batches += 1
        if batches == 5:  # the lock guard, the read, then one connection per batch
            raise RuntimeError("killed")
        with runtime.connection() as conn:
            yield conn

    with pytest.raises(RuntimeError):
        run_recognition(failing_third_batch, book.id, MAR31, MAR31)
    assert recognition_lines(runtime, book) == month_lines(
        ("2026-01-31", "31.00"), ("2026-02-28", "28.00")
    )
    resumed = run_recognition(runtime.connection, book.id, MAR31, MAR31)
    assert resumed.entries == 1
    assert recognition_lines(runtime, book) == month_lines(
        ("2026-01-31", "31.00"), ("2026-02-28", "28.00"), ("2026-03-31", "31.00")
    )


def test_a_run_past_the_books_today_is_refused_and_writes_nothing(runtime: Runtime) -> None:
    from litestar.testing import TestClient

    from adapters.http.app import create_app

    simulated = make_book(runtime, "USD", MAR31)
    invoice(runtime, simulated, "365.00", JAN1, date(2027, 1, 1))
    with pytest.raises(InvalidBillingRequest):
        run_recognition(runtime.connection, simulated.id, date(2026, 4, 1), MAR31)
    headers = {"Authorization": f"Bearer {simulated.admin_key}"}
    with TestClient(create_app(runtime, run_sealer=False)) as client:
        r = client.post(
            "/v1/revenue-recognition-runs", json={"through": "2099-12-31"}, headers=headers
        )
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "2099-12-31" in r.json()["detail"]
        assert recognition_lines(runtime, simulated) == []
        # Without `through`, the book's today: catch-up through Mar 31.
        r = client.post("/v1/revenue-recognition-runs", json={}, headers=headers)
        assert r.status_code == 201, r.text
        assert r.json() == {
            "through": "2026-03-31",
            "entries": 3,
            "lines": 1,
            "recognized": {"USD": "90.00"},
        }
    assert recognition_lines(runtime, simulated) == month_lines(
        ("2026-01-31", "31.00"), ("2026-02-28", "28.00"), ("2026-03-31", "31.00")
    )


def quarter_paid_and_january_recognized(
    runtime: Runtime, book: BookFixture, paid: str = "90.00"
) -> tuple[Invoice, uuid.UUID]:
    """90.00 for Jan 1 → Apr 1 (no tax), `paid` on Jan 10, 31.00 recognized in January."""
    with unit_of_work(runtime.connection) as uow:
        customer = new_customer(uow.conn, book.id, tax_rate="0")
        quarter = new_invoice(
            uow.conn, book.id, customer, JAN1, [("90.00", JAN1, APR1)], "Income:Subscriptions"
        )
        payment = create_payment(
            uow.conn, book.id, str(customer.id), D(paid), "USD", "bank_transfer", date(2026, 1, 10)
        )
        uow.commit()
    run_recognition(runtime.connection, book.id, JAN31, JAN31)
    return quarter, payment.id


def lines_of(runtime: Runtime, book: BookFixture, entry_id: object) -> list[tuple[str, str]]:
    with runtime.connection() as conn:
        return entry_lines(conn, book.id, entry_id)


def after_the_change(runtime: Runtime, book: BookFixture) -> None:
    """The 14.00 left on Feb 1 spreads over the 59 days to Apr 1: 6.64 then 7.36,
    by one catch-up run or by month-end runs; the waterfall said so beforehand."""
    with runtime.connection() as conn:
        report = deferred_revenue(conn, book.id, FEB1)
    assert [(r["month"], str(r["amount"])) for r in report["waterfall"]] == [
        ("2026-02", "6.64"),
        ("2026-03", "7.36"),
    ]
    assert report["balances"] == {"USD": Decimal("14.00")}
    run_recognition(runtime.connection, book.id, MAR31, MAR31)
    assert recognition_lines(runtime, book) == month_lines(
        ("2026-01-31", "31.00"), ("2026-02-28", "6.64"), ("2026-03-31", "7.36")
    )
    assert deferred(runtime, book, MAR31) == Decimal("0.00")


def test_golden_credit_note_on_feb_1_recognizes_6_64_then_7_36(
    runtime: Runtime, book: BookFixture
) -> None:
    quarter, _ = quarter_paid_and_january_recognized(runtime, book)
    with unit_of_work(runtime.connection) as uow:
        note = create_credit_note(
            uow.conn, book.id, str(quarter.id), FEB1, amount=D("45.00"), credit_to="customer_credit"
        )
        uow.commit()
    # Unearned part first: all 45.00 comes out of deferred revenue.
    assert lines_of(runtime, book, note.entry_id) == [
        ("Liabilities:Customer-Credit", "-45.00"),
        ("Liabilities:Deferred-Revenue", "45.00"),
    ]
    after_the_change(runtime, book)


def test_refund_on_feb_1_recognizes_the_rest_ratably(runtime: Runtime, book: BookFixture) -> None:
    _, payment_id = quarter_paid_and_january_recognized(runtime, book)
    with unit_of_work(runtime.connection) as uow:
        refund = create_refund(uow.conn, book.id, D("45.00"), FEB1, payment_ref=str(payment_id))
        uow.commit()
    assert lines_of(runtime, book, refund.entry_id) == [
        ("Assets:Bank:Operating", "-45.00"),
        ("Liabilities:Deferred-Revenue", "45.00"),
    ]
    after_the_change(runtime, book)


def test_write_off_on_feb_1_recognizes_the_rest_ratably(
    runtime: Runtime, book: BookFixture
) -> None:
    quarter, _ = quarter_paid_and_january_recognized(runtime, book, paid="45.00")
    with unit_of_work(runtime.connection) as uow:
        written = mark_uncollectible(uow.conn, book.id, str(quarter.id), FEB1)
        entry_id = uow.conn.execute(
            "select id from journal_entries where book_id = %s and idempotency_key = %s",
            (book.id, f"invoice:{quarter.id}:write-off"),
        ).fetchone()
        uow.commit()
    assert written.status == "uncollectible"
    assert entry_id is not None
    assert lines_of(runtime, book, entry_id[0]) == [
        ("Assets:Receivable:Trade", "-45.00"),
        ("Liabilities:Deferred-Revenue", "45.00"),
    ]
    after_the_change(runtime, book)


def test_monthly_runs_after_a_credit_note_post_the_same(
    runtime: Runtime, book: BookFixture
) -> None:
    quarter, _ = quarter_paid_and_january_recognized(runtime, book)
    with unit_of_work(runtime.connection) as uow:
        create_credit_note(
            uow.conn, book.id, str(quarter.id), FEB1, amount=D("45.00"), credit_to="customer_credit"
        )
        uow.commit()
    run_recognition(runtime.connection, book.id, FEB28, FEB28)
    run_recognition(runtime.connection, book.id, MAR31, MAR31)
    assert recognition_lines(runtime, book) == month_lines(
        ("2026-01-31", "31.00"), ("2026-02-28", "6.64"), ("2026-03-31", "7.36")
    )


@pytest.mark.slow
def test_two_runs_at_once_through_days_of_one_month_recognize_once(runtime: Runtime) -> None:
    """Runs through Jan 20 and Jan 25 started together: 25.00 of a 31.00 January plan,
    never 20.00 + 25.00 (each planned from the same state before the lock)."""
    import threading

    for _ in range(4):
        book = make_book(runtime)
        invoice(runtime, book, "31.00", date(2026, 1, 1), date(2026, 2, 1))
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(
            through: date,
            book: BookFixture = book,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait()
                run_recognition(runtime.connection, book.id, through, date(2026, 1, 31))
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(date(2026, 1, d),)) for d in (20, 25)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert income(runtime, book, date(2026, 1, 31)) == Decimal("25.00")
