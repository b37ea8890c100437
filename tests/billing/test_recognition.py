"""Worked examples of ACCOUNTING.md's revenue recognition, through the ledger."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from adapters.runtime import Runtime
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.invoices import LineSpec, create_draft, finalize_invoice
from billing.postgres.recognition import run_recognition
from ledger.postgres.queries import trial_balance_as_of
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture


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
    run_recognition(runtime.connection, book.id, date(2026, 1, 31))
    assert income(runtime, book, date(2026, 1, 31)) == Decimal("17.00")
    run_recognition(runtime.connection, book.id, date(2026, 2, 28))
    assert income(runtime, book, date(2026, 2, 28)) == Decimal("31.00")
    assert deferred(runtime, book, date(2026, 2, 28)) == Decimal("0.00")


def test_annual_365_recognizes_31_28_31(runtime: Runtime, book: BookFixture) -> None:
    invoice(runtime, book, "365.00", date(2026, 1, 1), date(2027, 1, 1))
    seen = []
    for month_end in (date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)):
        before = income(runtime, book, month_end)
        run_recognition(runtime.connection, book.id, month_end)
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
    run_recognition(runtime.connection, book.id, date(2026, 1, 31))
    assert income(runtime, book, date(2026, 1, 31)) == Decimal("101.92")
    run_recognition(runtime.connection, book.id, date(2026, 2, 28))
    assert income(runtime, book, date(2026, 2, 28)) - Decimal("101.92") == Decimal("92.05")


def test_a_run_repeated_for_the_same_date_posts_nothing(
    runtime: Runtime, book: BookFixture
) -> None:
    invoice(runtime, book, "365.00", date(2026, 1, 1), date(2027, 1, 1))
    first = run_recognition(runtime.connection, book.id, date(2026, 1, 31))
    again = run_recognition(runtime.connection, book.id, date(2026, 1, 31))
    assert (first.entries, again.entries) == (1, 0)
    assert income(runtime, book, date(2026, 1, 31)) == Decimal("31.00")


def test_whole_schedule_sums_to_the_total_in_jpy(runtime: Runtime) -> None:
    from tests.conftest import make_book

    jpy = make_book(runtime, "JPY")
    invoice(runtime, jpy, "10000", date(2026, 1, 17), date(2027, 1, 17), currency="JPY")
    month_ends = [date(2026, m, 28) for m in range(1, 13)] + [date(2027, 1, 31)]
    for day in month_ends:
        run_recognition(runtime.connection, jpy.id, day)
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
