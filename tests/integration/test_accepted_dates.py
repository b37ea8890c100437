"""Dates a book accepts (issue 7, item 11; ACCOUNTING.md): every effective
date, service date and run date lies within the window around the book's
today — by default 10 years before to 2 years after — and anything else is a
422 `date_not_accepted` with nothing written, in the API, the CLI and, for
entries, in PostgreSQL itself. Reports over any accepted range total."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from adapters.cli import main
from adapters.runtime import Runtime
from ledger.dates import AcceptedDates, accepted_dates, accepted_window
from ledger.entries import Posting, build_entry
from ledger.errors import DateNotAccepted
from ledger.money import Money
from ledger.postgres.posting import post_entry
from ledger.postgres.unit_of_work import unit_of_work
from tests.billing.test_http_invoices import billing_counts
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, entry_body, open_client

TODAY = date(2026, 4, 1)  # window 2016-04-01 .. 2028-04-01
FIRST, LAST = date(2016, 4, 1), date(2028, 4, 1)


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", TODAY)


def _set_window(conn: psycopg.Connection, book_id: uuid.UUID, setting: dict[str, Any]) -> None:
    conn.execute(
        "update books set settings = settings || jsonb_build_object('accepted_dates', %s::jsonb)"
        " where id = %s",
        (json.dumps(setting), book_id),
    )


def _refused(
    client: Any,
    conn: psycopg.Connection,
    book: BookFixture,
    method: str,
    path: str,
    field: str,
    **request: Any,
) -> dict[str, Any]:
    before = billing_counts(conn, book.id)
    r = client.request(method, path, headers=auth(book.admin_key), **request)
    body = assert_problem(r, 422, "date_not_accepted")
    assert body["field"] == field, body
    assert (body["first"], body["last"]) == (FIRST.isoformat(), LAST.isoformat())
    assert billing_counts(conn, book.id) == before
    return body


def _post(client: Any, book: BookFixture, path: str, body: dict[str, Any]) -> Any:
    r = client.post(path, json=body, headers=auth(book.admin_key))
    assert r.status_code in (200, 201), r.text
    return r.json()


# --- reports and exports: refused before anything is computed or streamed --------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/reports/income-statement?from=0001-01-01&to=9999-12-31&by=month", "from"),
        ("/v1/reports/income-statement?from=2026-01-01&to=9999-12-31&by=month", "to"),
        ("/v1/reports/deferred-revenue?as_of=9999-12-31", "as_of"),
        ("/v1/reports/balance-sheet?as_of=0001-01-01", "as_of"),
        ("/v1/reports/trial-balance?as_of=2028-04-02", "as_of"),
        ("/v1/exports/beancount?from=0001-01-01", "from"),
        ("/v1/exports/beancount?to=9999-12-31", "to"),
        ("/v1/journal-entries?from=2016-03-31", "from"),
    ],
)
def test_report_ranges_outside_the_window_are_refused(
    client: Any, sim: BookFixture, owner_conn: psycopg.Connection, path: str, field: str
) -> None:
    body = _refused(client, owner_conn, sim, "GET", path, f"query parameter {field}")
    assert "accepted_dates" in body["detail"]


def test_reports_answer_on_the_window_edges(
    client: Any, sim: BookFixture, owner_conn: psycopg.Connection
) -> None:
    key = auth(sim.admin_key)
    _post(client, sim, "/v1/journal-entries", entry_body(effective_date=FIRST.isoformat()))
    _post(client, sim, "/v1/journal-entries", entry_body(effective_date=LAST.isoformat()))
    for path in (
        f"/v1/reports/income-statement?from={FIRST}&to={LAST}&by=month",
        f"/v1/reports/deferred-revenue?as_of={LAST}",
        f"/v1/reports/ar-aging?as_of={LAST}",
        f"/v1/reports/balance-sheet?as_of={FIRST}",
        f"/v1/reports/trial-balance?as_of={LAST}",
        f"/v1/reports/revenue?from={FIRST}&to={LAST}",
    ):
        r = client.get(path, headers=key)
        assert r.status_code == 200, (path, r.text)
    r = client.get(f"/v1/exports/beancount?from={FIRST}&to={LAST}", headers=key)
    assert r.status_code == 200, r.text
    # Whole: both entries and the closing balance assertions are there.
    assert f"{FIRST} *" in r.text and f"{LAST} *" in r.text
    assert "balance Assets:Bank:Operating" in r.text


def test_income_statement_by_month_over_twelve_years_totals(
    client: Any, sim: BookFixture, owner_conn: psycopg.Connection
) -> None:
    _set_window(owner_conn, sim.id, {"years_before": 12, "years_after": 2})
    first = date(2014, 4, 1)
    for day, amount in ((first, "10.00"), (date(2020, 2, 29), "20.00"), (LAST, "30.00")):
        _post(client, sim, "/v1/journal-entries", entry_body(day.isoformat(), amount))
    r = client.get(
        f"/v1/reports/income-statement?from={first}&to={LAST}&by=month",
        headers=auth(sim.admin_key),
    )
    assert r.status_code == 200, r.text
    document = r.json()
    periods = document["periods"]
    assert len(periods) == 14 * 12 + 1  # 2014-04 .. 2028-04
    assert (periods[0]["from"], periods[-1]["to"]) == (first.isoformat(), LAST.isoformat())
    monthly = [Decimal(p["currencies"]["USD"]["net_income"]) for p in periods if p["currencies"]]
    assert sorted(monthly) == [Decimal("10.00"), Decimal("20.00"), Decimal("30.00")]
    assert Decimal(document["currencies"]["USD"]["net_income"]) == Decimal("60.00")


# --- entries: refused by the API and by PostgreSQL ---------------------------------------


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "2016-03-31", "2028-04-02"])
def test_entries_outside_the_window_are_refused(
    client: Any, sim: BookFixture, owner_conn: psycopg.Connection, day: str
) -> None:
    before = billing_counts(owner_conn, sim.id)
    r = client.post("/v1/journal-entries", json=entry_body(day), headers=auth(sim.admin_key))
    body = assert_problem(r, 422, "date_not_accepted")
    assert day in body["detail"] and body["field"] == "effective_date"
    batch = {"entries": [entry_body("2026-03-01"), entry_body(day)]}
    r = client.post("/v1/journal-entries/batch", json=batch, headers=auth(sim.admin_key))
    assert_problem(r, 422, "date_not_accepted")
    assert billing_counts(owner_conn, sim.id) == before


def test_the_database_refuses_an_entry_outside_the_window(
    runtime: Runtime, sim: BookFixture, owner_conn: psycopg.Connection
) -> None:
    def entry(day: date) -> Any:
        return build_entry(
            day,
            "direct",
            [
                Posting("Assets:Bank:Operating", Money.of("1.00", "USD")),
                Posting("Income:Services", Money.of("-1.00", "USD")),
            ],
        )

    with pytest.raises(DateNotAccepted), unit_of_work(runtime.connection) as uow:
        post_entry(uow.conn, sim.id, entry(date(2000, 1, 1)))
        uow.commit()
    # The book's own setting moves the window: one year back is now too far.
    _set_window(owner_conn, sim.id, {"years_before": 0, "years_after": 0})
    with pytest.raises(DateNotAccepted), unit_of_work(runtime.connection) as uow:
        post_entry(uow.conn, sim.id, entry(date(2026, 3, 31)))
        uow.commit()
    with unit_of_work(runtime.connection) as uow:
        post_entry(uow.conn, sim.id, entry(TODAY))
        uow.commit()


@pytest.mark.parametrize(
    ("today", "setting"),
    [
        (date(2028, 2, 29), {"accepted_dates": {"years_before": 10, "years_after": 3}}),
        (date(2026, 11, 30), {}),
        (date(2026, 11, 30), {"accepted_dates": {"years_before": "5", "years_after": 1.5}}),
        (date(2026, 11, 30), {"accepted_dates": {"years_before": 10**9, "years_after": -1}}),
        (date(2026, 11, 30), {"accepted_dates": {"years_before": True, "years_after": 0}}),
    ],
)
def test_python_and_the_database_agree_on_the_window(
    owner_conn: psycopg.Connection, today: date, setting: dict[str, Any]
) -> None:
    row = owner_conn.execute(
        "select * from ab_accepted_window(%s, %s::jsonb)", (today, json.dumps(setting))
    ).fetchone()
    assert row is not None
    assert tuple(row) == tuple(accepted_window(today, accepted_dates(setting)))


# --- subscriptions, invoices, runs, periods, clock ---------------------------------------


def _plan(client: Any, book: BookFixture) -> tuple[str, str]:
    product = _post(client, book, "/v1/products", {"name": "Plan"})
    price = _post(
        client,
        book,
        "/v1/prices",
        {
            "product": product["id"],
            "currency": "USD",
            "charge_model": "flat",
            "unit_amount": "10.00",
            "interval": "month",
        },
    )
    customer = _post(client, book, "/v1/customers", {"name": "Acme", "currency": "USD"})
    return customer["id"], price["id"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"start_date": "0001-01-01"}, "start_date"),
        ({"start_date": "9999-12-31"}, "start_date"),
        ({"trial_end": "2030-01-01"}, "trial_end"),
        ({"billing_anchor": "2000-01-01"}, "billing_anchor"),
    ],
)
def test_subscription_dates_outside_the_window_are_refused(
    client: Any, sim: BookFixture, owner_conn: psycopg.Connection, extra: dict[str, str], field: str
) -> None:
    customer, price = _plan(client, sim)
    body = {"customer": customer, "items": [{"price": price}], **extra}
    _refused(client, owner_conn, sim, "POST", "/v1/subscriptions", field, json=body)


def test_subscription_change_and_cancel_dates_outside_the_window_are_refused(
    client: Any, sim: BookFixture, owner_conn: psycopg.Connection
) -> None:
    customer, price = _plan(client, sim)
    sub = _post(
        client, sim, "/v1/subscriptions", {"customer": customer, "items": [{"price": price}]}
    )
    path = f"/v1/subscriptions/{sub['id']}"
    change = {"items": [{"price": price}], "effective_date": "9999-12-31", "proration": "none"}
    _refused(client, owner_conn, sim, "POST", f"{path}/change", "effective_date", json=change)
    _refused(client, owner_conn, sim, "POST", f"{path}/cancel", "at", json={"at": "2040-01-01"})


def test_billing_and_recognition_runs_outside_the_window_are_refused(
    client: Any, sim: BookFixture, owner_conn: psycopg.Connection
) -> None:
    _refused(
        client, owner_conn, sim, "POST", "/v1/billing-runs", "as_of", json={"as_of": "0001-01-01"}
    )
    _refused(
        client,
        owner_conn,
        sim,
        "POST",
        "/v1/revenue-recognition-runs",
        "through",
        json={"through": "2000-01-31"},
    )


def test_invoice_service_dates_outside_the_window_are_refused(
    client: Any, sim: BookFixture, owner_conn: psycopg.Connection
) -> None:
    customer, _ = _plan(client, sim)
    line = {
        "description": "Support",
        "unit_amount": "10.00",
        "service_start": "2026-04-01",
        "service_end": "9999-12-31",
    }
    body = {"customer": customer, "lines": [line]}
    _refused(client, owner_conn, sim, "POST", "/v1/invoices", "lines[0].service_end", json=body)


@pytest.mark.parametrize("period", ["0000-01", "2016-03", "2028-05"])
def test_periods_outside_the_window_cannot_be_closed_or_reopened(
    client: Any, sim: BookFixture, owner_conn: psycopg.Connection, period: str
) -> None:
    for action in ("close", "reopen"):
        _refused(client, owner_conn, sim, "POST", f"/v1/periods/{period}/{action}", "period")
    # The window's first and last months are fine.
    for edge in ("2016-04", "2028-04"):
        r = client.post(f"/v1/periods/{edge}/close", headers=auth(sim.admin_key))
        assert r.status_code == 200, r.text


def test_the_clock_moves_only_within_the_window(
    client: Any, sim: BookFixture, owner_conn: psycopg.Connection
) -> None:
    _refused(client, owner_conn, sim, "POST", "/v1/clock", "now", json={"now": "9999-12-31"})
    _post(client, sim, "/v1/clock", {"now": LAST.isoformat()})


# --- the CLI: a clear error and exit code 2, no traceback --------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "income-statement", "--from", "0001-01-01", "--to", "9999-12-31"],
        ["report", "balance-sheet", "--as-of", "9999-12-31"],
        ["report", "trial-balance", "--as-of", "0001-01-01"],
        ["export", "beancount", "--from", "0001-01-01"],
    ],
)
def test_cli_refuses_dates_outside_the_window(
    runtime: Runtime, database_url: str, capsys: Any, monkeypatch: Any, argv: list[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    book = make_book(runtime, "USD", TODAY)
    assert main([*argv, "--book", str(book.id)]) == 2
    captured = capsys.readouterr()
    assert "outside the dates this book accepts" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_the_default_window_is_ten_years_back_and_two_ahead() -> None:
    assert accepted_window(TODAY, accepted_dates(None)) == (FIRST, LAST)
    assert accepted_dates({"accepted_dates": {"years_before": 1}}) == AcceptedDates(1, 2)
