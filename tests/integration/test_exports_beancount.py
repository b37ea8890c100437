"""The Beancount export, read back by beancount's own loader and beanquery.

Nothing here reads the file with our code: the loader must report zero
errors (it checks every `balance` assertion we wrote), and beanquery's
balances at every month end must equal the service's trial balance.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from beancount import loader
from beancount.core import data
from beanquery.query import run_query

from adapters.cli import main as cli_main
from adapters.exports.beancount import (
    ExportRange,
    beancount_account,
    begin_snapshot,
    export_beancount,
)
from adapters.runtime import Runtime
from ledger.postgres.queries import trial_balance_as_of
from tests.conftest import BookFixture
from tests.integration.http_fixtures import assert_problem, auth, open_client
from tests.integration.ledger_demo import demo_book

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(runtime: Runtime) -> BookFixture:
    return demo_book(runtime)


def export_text(runtime: Runtime, book_id: uuid.UUID, export: ExportRange | None = None) -> str:
    with runtime.connection() as conn:
        begin_snapshot(conn)
        text = "".join(export_beancount(conn, book_id, export or ExportRange()))
        conn.rollback()
    return text


def month_ends(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
        if end <= last:
            yield end
        day = end + timedelta(days=1)


def load(text: str) -> tuple[list[Any], dict[str, Any]]:
    entries, errors, options = loader.load_string(text)
    assert errors == [], [str(e.message) for e in errors[:5]]
    return entries, options


def beanquery_balances(
    entries: list[Any], options: dict[str, Any], on: date
) -> dict[tuple[str, str], Decimal]:
    _, rows = run_query(
        entries,
        options,
        f"SELECT account, currency, sum(number) AS total WHERE date <= {on.isoformat()}"
        " GROUP BY account, currency",
    )
    return {(r[0], r[1]): r[2] for r in rows if r[2] != 0}


def service_balances(
    runtime: Runtime, book_id: uuid.UUID, on: date
) -> dict[tuple[str, str], Decimal]:
    with runtime.connection() as conn:
        lines = trial_balance_as_of(conn, book_id, on)
    return {(beancount_account(line.account), line.currency): line.balance for line in lines}


def assert_round_trip(
    runtime: Runtime, book_id: uuid.UUID, first: date, last: date, export: ExportRange
) -> list[Any]:
    entries, options = load(export_text(runtime, book_id, export))
    checked = 0
    for end in month_ends(first, last):
        ours = service_balances(runtime, book_id, end)
        theirs = beanquery_balances(entries, options, end)
        assert theirs == ours, end
        assert ours, end  # the comparison is not vacuous
        checked += 1
    assert checked == len(list(month_ends(first, last)))
    return entries


def test_full_export_loads_and_matches_the_trial_balance_every_month(
    runtime: Runtime, demo: BookFixture
) -> None:
    entries = assert_round_trip(
        runtime, demo.id, date(2025, 1, 1), date(2025, 12, 31), ExportRange()
    )
    balances = [e for e in entries if isinstance(e, data.Balance)]
    # One assertion per account and currency held, at each of the 12 month ends.
    dates = {b.date for b in balances}
    assert dates == {date(2025, m, 1) for m in range(2, 13)} | {date(2026, 1, 1)}
    jan = {(b.account, b.amount.currency) for b in balances if b.date == date(2026, 1, 1)}
    assert ("Assets:Bank:JPY", "JPY") in jan and ("Assets:Bank:KWD", "KWD") in jan
    # Beancount's assertion covers sub-accounts: the parent's includes its child.
    ours = service_balances(runtime, demo.id, date(2025, 12, 31))
    parent = next(
        b
        for b in balances
        if b.date == date(2026, 1, 1)
        and b.account == "Assets:Clearing"
        and b.amount.currency == "USD"
    )
    assert parent.amount.number == ours.get(("Assets:Clearing", "USD"), 0) + ours.get(
        ("Assets:Clearing:Manual", "USD"), 0
    )


def test_every_transaction_carries_its_identity_and_exact_amounts(
    runtime: Runtime, demo: BookFixture
) -> None:
    entries, _ = load(export_text(runtime, demo.id))
    transactions = [e for e in entries if isinstance(e, data.Transaction)]
    with runtime.connection() as conn:
        row = conn.execute(
            "select count(*), (select count(*) from postings where book_id = %s)"
            " from journal_entries where book_id = %s",
            (demo.id, demo.id),
        ).fetchone()
        seal = conn.execute(
            "select s.seq, s.hash, e.id::text from seals s join journal_entries e"
            " on e.book_id = s.book_id and e.id = s.entry_id"
            " where s.book_id = %s and e.reverses_entry_id is not null order by s.seq limit 1",
            (demo.id,),
        ).fetchone()
    assert row is not None and seal is not None
    assert len(transactions) == row[0]
    assert sum(len(t.postings) for t in transactions) == row[1]
    by_id = {t.meta["entry-id"]: t for t in transactions}
    reversal = by_id[seal[2]]
    assert reversal.meta["seq"] == seal[0]
    assert reversal.meta["seal-hash"] == seal[1]
    assert "reversal" in reversal.tags
    assert isinstance(reversal.meta["recorded-at"], str)
    for t in transactions:
        assert all(p.units is not None and p.units.number is not None for p in t.postings)
        assert "effective-date" in t.meta
    invoice = next(t for t in transactions if "invoice" in t.tags and t.payee)
    assert invoice.payee.startswith("cus_")
    assert any(link.startswith("INV-2025-") for link in invoice.links)
    # JPY amounts are whole, KWD amounts carry three places, as posted.
    jpy = [p.units.number for t in transactions for p in t.postings if p.units.currency == "JPY"]
    kwd = [p.units.number for t in transactions for p in t.postings if p.units.currency == "KWD"]
    assert jpy and all(n == n.to_integral_value() for n in jpy)
    assert kwd and all(n.as_tuple().exponent == -3 for n in kwd)
    closes = [e for e in entries if isinstance(e, data.Close)]
    assert [c.account for c in closes] == ["Assets:Bank:Old"]
    opens = {e.account: e for e in entries if isinstance(e, data.Open)}
    assert opens["Assets:Bank:JPY"].currencies == ["JPY"]
    assert opens["Assets:Bank:Old"].date <= date(2025, 1, 10)
    assert {e.currency for e in entries if isinstance(e, data.Commodity)} == {
        "USD",
        "EUR",
        "JPY",
        "KWD",
    }


def test_range_export_brings_balances_forward(runtime: Runtime, demo: BookFixture) -> None:
    export = ExportRange(date(2025, 4, 1), date(2025, 9, 15))
    entries = assert_round_trip(runtime, demo.id, date(2025, 4, 1), date(2025, 9, 15), export)
    opening = [e for e in entries if isinstance(e, data.Transaction) and e.date < date(2025, 4, 1)]
    assert len(opening) == 1 and opening[0].date == date(2025, 3, 31)
    assert "opening-balances" in opening[0].tags
    # The range ends mid-month: a closing assertion on the day after `to`.
    last = max(e.date for e in entries if isinstance(e, data.Balance))
    assert last == date(2025, 9, 16)
    assert max(e.date for e in entries if isinstance(e, data.Transaction)) <= date(2025, 9, 15)
    # Balances at `to` match too.
    ours = service_balances(runtime, demo.id, date(2025, 9, 15))
    entries_text, options = load(export_text(runtime, demo.id, export))
    assert beanquery_balances(entries_text, options, date(2025, 9, 15)) == ours


def test_a_wrong_assertion_fails_the_loader(runtime: Runtime, demo: BookFixture) -> None:
    """The assertions are really checked: one cent off in one of them is an error."""
    text = export_text(runtime, demo.id)
    marker = " balance Assets:Bank:Operating  "
    start = text.index(marker) + len(marker)
    end = text.index(" ", start)
    tampered = text[:start] + str(Decimal(text[start:end]) + Decimal("0.01")) + text[end:]
    _, errors, _ = loader.load_string(tampered)
    assert len(errors) == 1
    assert "Balance failed" in str(errors[0].message)


def test_empty_book_exports_a_loadable_file(runtime: Runtime, book: BookFixture) -> None:
    entries, _ = load(export_text(runtime, book.id))
    assert not [e for e in entries if isinstance(e, data.Transaction)]
    assert len([e for e in entries if isinstance(e, data.Open)]) >= 30


def test_http_export_streams_the_same_file(runtime: Runtime, demo: BookFixture) -> None:
    with open_client(runtime) as client:
        r = client.get(
            "/v1/exports/beancount",
            params={"from": "2025-02-01", "to": "2025-06-30"},
            headers=auth(demo.admin_key),
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text == export_text(
            runtime, demo.id, ExportRange(date(2025, 2, 1), date(2025, 6, 30))
        )
        bad = client.get(
            "/v1/exports/beancount",
            params={"from": "2025-06-01", "to": "2025-05-31"},
            headers=auth(demo.admin_key),
        )
        assert_problem(bad, 400, "invalid_range")


def test_cli_export_writes_a_loadable_file(
    runtime: Runtime, demo: BookFixture, database_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    out = tmp_path / "book.beancount"
    code = cli_main(
        ["export", "beancount", "--book", str(demo.id), "--to", "2025-12-31", "--out", str(out)]
    )
    assert code == 0
    entries, errors, _ = loader.load_file(str(out))
    assert errors == []
    assert len([e for e in entries if isinstance(e, data.Transaction)]) > 300
    assert (
        cli_main(
            [
                "export",
                "beancount",
                "--book",
                str(demo.id),
                "--from",
                "2025-03-01",
                "--to",
                "2025-02-01",
            ]
        )
        == 2
    )


def test_account_name_mapping_is_stable() -> None:
    assert beancount_account("Assets:Bank:Operating") == "Assets:Bank:Operating"
    assert beancount_account("Income:Contra:Credit-Notes") == "Income:Contra:Credit-Notes"
    assert beancount_account("Assets:bank acct:€uro") == "Assets:Bank-acct:X-uro"
    once = beancount_account("Expenses:fees_2024")
    assert beancount_account(once) == once


def test_a_twelve_month_billing_demo_book_round_trips(runtime: Runtime) -> None:
    """Issue 4's round trip on the billing demo: invoices, payments, credit notes,
    refunds, recognition; zero loader errors and equal balances every month end."""
    from adapters.demo import run_demo

    summary = run_demo(runtime, customers_count=10, months=12, seed=3, start=date(2026, 1, 1))
    book_id = uuid.UUID(str(summary["book_id"]))
    entries = assert_round_trip(
        runtime, book_id, date(2026, 1, 1), date(2026, 12, 31), ExportRange()
    )
    assert sum(isinstance(e, data.Transaction) for e in entries) == summary["entries"]
