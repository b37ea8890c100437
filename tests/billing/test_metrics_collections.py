"""Collections metrics and the AR aging trend on a hand-built book (issue 12 item 2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.runtime import Runtime
from billing.collections import Settlement, average_days_late, cei, dso_countback, on_time_share
from tests.billing.insight_fixtures import customer, invoice, post
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import PROBLEM, auth, open_client
from tests.integration.test_cli import cli  # noqa: F401  (shared fixture)

D = Decimal


def test_dso_countback_walks_back_through_sales() -> None:
    # 450 open: this month's 15 days sold 300, last month (30 days) 300: 15 + 30 × 150/300.
    assert dso_countback(D(450), [(15, D(300)), (30, D(300)), (31, D(100))]) == D("30.00")
    assert dso_countback(D(0), [(15, D(300))]) == D("0.00")
    # A month without sales still adds its days while AR is left to explain.
    assert dso_countback(D(100), [(10, D(0)), (30, D(200))]) == D("25.00")


def test_cei_and_lateness() -> None:
    assert cei(D(100), D(500), D(200), D(150)) == D("0.8889")  # 400 / 450
    assert cei(D(0), D(0), D(0), D(0)) is None
    settled = [
        Settlement("i1", "a", "USD", date(2026, 1, 31), date(2026, 1, 20)),
        Settlement("i2", "a", "USD", date(2026, 1, 31), date(2026, 2, 10)),
        Settlement("i3", "b", "USD", date(2026, 1, 31), date(2026, 1, 31)),
    ]
    assert average_days_late(settled) == {("USD", "a"): D("5.00"), ("USD", "b"): D("0.00")}
    assert on_time_share(settled) == D("0.6667")
    assert on_time_share([]) is None


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture(scope="module")
def book(runtime: Runtime, client: Any) -> BookFixture:
    """A pays 100.00 on its due day; B pays 200.00 ten days late and owes 300.00 not
    yet due at the end of February (net 30 throughout)."""
    book = make_book(runtime, "USD", date(2026, 1, 1))
    key = book.admin_key
    a, b = customer(client, key, "A"), customer(client, key, "B")
    i1, i2 = invoice(client, key, a, "100.00"), invoice(client, key, b, "200.00")
    post(client, key, "/v1/clock", {"now": "2026-01-31"}, 200)
    pay = {"currency": "USD", "method": "bank_transfer"}
    post(client, key, "/v1/payments", {**pay, "customer": a, "amount": "100.00", "invoice": i1})
    post(client, key, "/v1/clock", {"now": "2026-02-01"}, 200)
    invoice(client, key, b, "300.00")
    post(client, key, "/v1/clock", {"now": "2026-02-10"}, 200)
    post(client, key, "/v1/payments", {**pay, "customer": b, "amount": "200.00", "invoice": i2})
    post(client, key, "/v1/clock", {"now": "2026-02-28"}, 200)
    return book


def test_collections_over_http(client: Any, book: BookFixture) -> None:
    r = client.get(
        "/v1/metrics/collections?from=2026-01-01&to=2026-02-28", headers=auth(book.admin_key)
    )
    assert r.status_code == 200, r.text
    document = r.json()
    [usd] = document["currencies"]
    assert usd == {
        "currency": "USD",
        "opening_ar": "0.00",
        "credit_sales": "600.00",
        "closing_ar": "300.00",
        "closing_current_ar": "300.00",
        "dso": "28.00",  # February's 28 days of sales explain the 300.00 open
        "cei": "1.0000",
        "invoices_settled": 2,
        "paid_on_time": 1,
        "share_paid_on_time": "0.5000",
    }
    assert [(c["name"], c["average_days_late"]) for c in document["customers"]] == [
        ("A", "0.00"),
        ("B", "10.00"),
    ]
    assert [(p["as_of"], p["current"], p["1-30"], p["total"]) for p in document["aging_trend"]] == [
        ("2026-01-31", "200.00", "0.00", "200.00"),
        ("2026-02-28", "300.00", "0.00", "300.00"),
    ]
    # In mid-February, B's 200.00 was 1-30 days past due on Feb 9.
    r = client.get(
        "/v1/metrics/collections?from=2026-02-01&to=2026-02-09", headers=auth(book.admin_key)
    )
    [point] = r.json()["aging_trend"]
    assert (point["as_of"], point["current"], point["1-30"]) == ("2026-02-09", "300.00", "200.00")


def test_collections_bad_range_refused(client: Any, book: BookFixture) -> None:
    for query in ("from=2026-03-01&to=2026-02-01", "from=2026-02-30", "to=x"):
        r = client.get(f"/v1/metrics/collections?{query}", headers=auth(book.admin_key))
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith(PROBLEM)


def test_collections_over_cli(cli: Any, client: Any, book: BookFixture) -> None:  # noqa: F811
    args = ("report", "collections", "--book", str(book.id))
    result = cli(*args, "--from", "2026-01-01", "--to", "2026-02-28", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    api = client.get(
        "/v1/metrics/collections?from=2026-01-01&to=2026-02-28", headers=auth(book.admin_key)
    ).json()
    assert {k: v for k, v in document.items() if k != "book_id"} == api
    text = cli(*args, "--from", "2026-01-01", "--to", "2026-02-28")
    assert "DSO 28.00 days" in text.stdout
    bad = cli(*args, "--from", "2026-03-01", "--to", "2026-02-01")
    assert bad.returncode == 2 and "before it starts" in bad.stderr
    forecast = cli("report", "cash-forecast", "--book", str(book.id), "--format", "json")
    assert forecast.returncode == 0, forecast.stderr
    api_cash = client.get("/v1/forecasts/cash", headers=auth(book.admin_key)).json()
    assert json.loads(forecast.stdout)["weeks"] == api_cash["weeks"]
    bad = cli("report", "cash-forecast", "--book", str(book.id), "--weeks", "0")
    assert bad.returncode == 2 and "weeks must be 1 to 104" in bad.stderr
