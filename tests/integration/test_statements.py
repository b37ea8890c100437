"""Financial statements with exact figures, and "as recorded at" a past time."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import pytest

from adapters.cli import main as cli_main
from adapters.exports import statements
from adapters.runtime import Runtime
from ledger.entries import Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import post_entries
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client

pytestmark = pytest.mark.slow  # CLI runs open their own pools


def entry(day: str, memo: str, *legs: tuple[str, str, str]) -> Any:
    return build_entry(
        date.fromisoformat(day),
        memo,
        [Posting(account, Money.exact(amount, currency)) for account, amount, currency in legs],
    )


def post(runtime: Runtime, book: BookFixture, *entries: Any) -> None:
    with unit_of_work(runtime.connection) as uow:
        post_entries(uow.conn, book.id, list(entries))
        uow.commit()


@pytest.fixture(scope="module")
def ledger(runtime: Runtime) -> tuple[BookFixture, datetime]:
    """A small book; returns it and a time after the first batch was recorded."""
    book = make_book(runtime, "USD", date(2026, 3, 1))
    post(
        runtime,
        book,
        entry(
            "2026-01-05",
            "capital",
            ("Assets:Bank:Operating", "1000.00", "USD"),
            ("Equity:Opening-Balances", "-1000.00", "USD"),
        ),
        entry(
            "2026-01-10",
            "invoice",
            ("Assets:Receivable:Trade", "108.00", "USD"),
            ("Income:Subscriptions", "-100.00", "USD"),
            ("Liabilities:Tax-Payable", "-8.00", "USD"),
        ),
        entry(
            "2026-01-15",
            "eur sale",
            ("Assets:Bank:Operating", "200.00", "EUR"),
            ("Income:Services", "-200.00", "EUR"),
        ),
        entry(
            "2026-01-20",
            "payment",
            ("Assets:Bank:Operating", "108.00", "USD"),
            ("Assets:Receivable:Trade", "-108.00", "USD"),
        ),
        entry(
            "2026-02-03",
            "fee",
            ("Expenses:Payment-Fees", "3.43", "USD"),
            ("Assets:Bank:Operating", "-3.43", "USD"),
        ),
        entry(
            "2026-02-15",
            "services",
            ("Assets:Receivable:Trade", "50.00", "USD"),
            ("Income:Services", "-50.00", "USD"),
        ),
        entry(
            "2026-02-20",
            "refund",
            ("Income:Contra:Refunds", "10.00", "USD"),
            ("Assets:Bank:Operating", "-10.00", "USD"),
        ),
    )
    with runtime.connection() as conn:
        row = conn.execute("select clock_timestamp()").fetchone()
    assert row is not None
    recorded = row[0]
    # Recorded later, dated back into January.
    post(
        runtime,
        book,
        entry(
            "2026-01-25",
            "late fee",
            ("Expenses:Payment-Fees", "5.00", "USD"),
            ("Assets:Bank:Operating", "-5.00", "USD"),
        ),
    )
    return book, recorded


def test_balance_sheet_balances_with_exact_figures(
    runtime: Runtime, ledger: tuple[BookFixture, datetime]
) -> None:
    book, _ = ledger
    with runtime.connection() as conn:
        jan = statements.balance_sheet(conn, book.id, date(2026, 1, 31))
        feb = statements.balance_sheet(conn, book.id, date(2026, 2, 28))
    usd = jan["currencies"]["USD"]
    assert usd["assets"] == [
        {"account": "Assets:Bank:Operating", "code": "1000", "amount": "1103.00"}
    ]
    assert usd["liabilities"] == [
        {"account": "Liabilities:Tax-Payable", "code": "2100", "amount": "8.00"}
    ]
    assert usd["equity"] == [
        {"account": "Equity:Opening-Balances", "code": "3000", "amount": "1000.00"}
    ]
    assert (usd["current_earnings"], usd["total_assets"]) == ("95.00", "1103.00")
    assert usd["total_liabilities_and_equity"] == "1103.00" and usd["balanced"] is True
    usd = feb["currencies"]["USD"]
    assert [(line["account"], line["amount"]) for line in usd["assets"]] == [
        ("Assets:Bank:Operating", "1089.57"),
        ("Assets:Receivable:Trade", "50.00"),
    ]
    assert usd["total_assets"] == "1139.57"
    assert usd["current_earnings"] == "131.57"  # 100 + 50 - 10 - 3.43 - 5
    assert usd["total_equity"] == "1131.57"
    assert usd["total_liabilities_and_equity"] == "1139.57"
    eur = feb["currencies"]["EUR"]
    assert (eur["total_assets"], eur["current_earnings"], eur["balanced"]) == (
        "200.00",
        "200.00",
        True,
    )


def test_income_statement_range_and_by_month(
    runtime: Runtime, ledger: tuple[BookFixture, datetime]
) -> None:
    book, _ = ledger
    with runtime.connection() as conn:
        doc = statements.income_statement(
            conn, book.id, date(2026, 1, 1), date(2026, 2, 28), by="month"
        )
    usd = doc["currencies"]["USD"]
    assert [(line["account"], line["amount"]) for line in usd["income"]] == [
        ("Income:Contra:Refunds", "-10.00"),
        ("Income:Services", "50.00"),
        ("Income:Subscriptions", "100.00"),
    ]
    assert (usd["total_income"], usd["total_expenses"], usd["net_income"]) == (
        "140.00",
        "8.43",
        "131.57",
    )
    months = [(p["from"], p["to"], p["currencies"]["USD"]["net_income"]) for p in doc["periods"]]
    assert months == [("2026-01-01", "2026-01-31", "95.00"), ("2026-02-01", "2026-02-28", "36.57")]
    assert doc["periods"][0]["currencies"]["EUR"]["net_income"] == "200.00"
    assert "EUR" not in doc["periods"][1]["currencies"]


def test_as_recorded_at_ignores_later_back_dated_entries(
    runtime: Runtime, ledger: tuple[BookFixture, datetime]
) -> None:
    book, recorded = ledger
    with runtime.connection() as conn:
        then = statements.trial_balance_lines(conn, book.id, date(2026, 1, 31), recorded)
        now = statements.trial_balance_lines(conn, book.id, date(2026, 1, 31))
        sheet = statements.balance_sheet(conn, book.id, date(2026, 1, 31), recorded)
        income = statements.income_statement(
            conn, book.id, date(2026, 1, 1), date(2026, 1, 31), recorded_at=recorded
        )
    bank = ("Assets:Bank:Operating", "USD")
    assert {(t.account, t.currency): t.balance for t in then}[bank] == 1108
    assert {(t.account, t.currency): t.balance for t in now}[bank] == 1103
    assert ("Expenses:Payment-Fees", "USD") not in {(t.account, t.currency) for t in then}
    assert sheet["currencies"]["USD"]["total_assets"] == "1108.00"
    assert sheet["currencies"]["USD"]["current_earnings"] == "100.00"
    assert income["currencies"]["USD"]["total_expenses"] == "0"
    assert income["currencies"]["USD"]["net_income"] == "100.00"


def test_http_reports(runtime: Runtime, ledger: tuple[BookFixture, datetime]) -> None:
    book, recorded = ledger
    headers = auth(book.admin_key)
    with open_client(runtime) as client:
        r = client.get("/v1/reports/balance-sheet", params={"as_of": "2026-02-28"}, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["currencies"]["USD"]["total_assets"] == "1139.57"
        # Without as_of: the book's (simulated) today, 2026-03-01.
        assert client.get("/v1/reports/balance-sheet", headers=headers).json()["as_of"] == (
            "2026-03-01"
        )
        r = client.get(
            "/v1/reports/income-statement",
            params={"from": "2026-02-01", "to": "2026-02-28"},
            headers=headers,
        )
        assert r.json()["currencies"]["USD"]["net_income"] == "36.57"
        r = client.get(
            "/v1/reports/trial-balance/as-recorded",
            params={"as_of": "2026-01-31", "as_recorded_at": recorded.isoformat()},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        lines = {(x["account"], x["currency"]): x for x in r.json()["lines"]}
        assert lines[("Assets:Bank:Operating", "USD")]["debit"] == "1108.00"
        assert r.json()["totals"]["USD"] == {"debit": "1108.00", "credit": "1108.00"}
        assert_problem(
            client.get(
                "/v1/reports/income-statement",
                params={"from": "2026-02-01", "to": "2026-01-31"},
                headers=headers,
            ),
            400,
            "invalid_range",
        )


def test_cli_reports(
    runtime: Runtime,
    ledger: tuple[BookFixture, datetime],
    database_url: str,
    monkeypatch: Any,
    capsys: Any,
) -> None:
    book, _ = ledger
    monkeypatch.setenv("DATABASE_URL", database_url)
    base = ["report", "balance-sheet", "--book", str(book.id), "--as-of", "2026-01-31"]
    assert cli_main([*base, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["currencies"]["USD"]["total_assets"] == "1103.00"
    assert cli_main(base) == 0
    assert "Total assets" in capsys.readouterr().out
    inc = ["report", "income-statement", "--book", str(book.id), "--from", "2026-01-01"]
    assert cli_main([*inc, "--to", "2026-02-28", "--by", "month", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["currencies"]["USD"]["net_income"] for p in doc["periods"]] == ["95.00", "36.57"]
    assert cli_main([*inc, "--to", "2025-12-31"]) == 2
    assert "before it starts" in capsys.readouterr().err
