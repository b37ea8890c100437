"""MRR across currencies (issue 12 item 1, "currencies converted at the book's
rate"): per currency as before, plus a total in the functional currency at the
rate in force on each month's last day, with start + movements + fx_effect = end.

The book (USD): a 100.00 USD/month customer from Jan 10; a 200.00 EUR/month
customer from Feb 1, upgraded to 300.00 EUR on Mar 3. EUR→USD rates: 1.12 from
Feb 15, 1.0850 from Mar 20, 1.0900 from Apr 2 (none in January: no EUR MRR then).

  month  start   new     expansion  fx_effect  end      rate (EUR, month end)
  Jan      0.00  100.00    0.00       0.00     100.00   —
  Feb    100.00  224.00    0.00       0.00     324.00   1.12    (200 × 1.12)
  Mar    324.00    0.00  108.50      -7.00     425.50   1.0850  (100 × 1.085; 200 × −0.035)
  Apr    425.50    0.00    0.00       1.50     427.00   1.0900  (300 × 0.005)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.runtime import Runtime
from billing.metrics import MonthMrr, converted_totals
from tests.billing.insight_fixtures import post
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import auth, open_client
from tests.integration.test_cli import cli  # noqa: F401  (shared fixture)

FIELDS = ("month", "start", "new", "expansion", "contraction", "churn", "reactivation",
          "fx_effect", "end", "arr")  # fmt: skip
TOTALS = [
    ("2026-01", "0.00", "100.00", "0.00", "0.00", "0.00", "0.00", "0.00", "100.00", "1200.00"),
    ("2026-02", "100.00", "224.00", "0.00", "0.00", "0.00", "0.00", "0.00", "324.00", "3888.00"),
    ("2026-03", "324.00", "0.00", "108.50", "0.00", "0.00", "0.00", "-7.00", "425.50", "5106.00"),
    ("2026-04", "425.50", "0.00", "0.00", "0.00", "0.00", "0.00", "1.50", "427.00", "5124.00"),
]


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _price(client: Any, key: str, amount: str, currency: str) -> str:
    product = post(client, key, "/v1/products", {"name": f"Plan {amount} {currency}"})
    body = {"product": product["id"], "currency": currency, "charge_model": "flat",
            "unit_amount": amount, "interval": "month"}  # fmt: skip
    return str(post(client, key, "/v1/prices", body)["id"])


@pytest.fixture(scope="module")
def book(runtime: Runtime, client: Any) -> BookFixture:
    book = make_book(runtime, "USD", date(2026, 1, 10))
    key = book.admin_key
    usd, eur200, eur300 = (_price(client, key, "100.00", "USD"),
                           _price(client, key, "200.00", "EUR"),
                           _price(client, key, "300.00", "EUR"))  # fmt: skip
    us = post(client, key, "/v1/customers", {"name": "Dollar", "currency": "USD"})["id"]
    eu = post(client, key, "/v1/customers", {"name": "Euro", "currency": "EUR"})["id"]
    post(client, key, "/v1/subscriptions", {"customer": us, "items": [{"price": usd}]})
    post(client, key, "/v1/clock", {"now": "2026-02-01"}, 200)
    sub = post(client, key, "/v1/subscriptions", {"customer": eu, "items": [{"price": eur200}]})
    post(client, key, "/v1/clock", {"now": "2026-03-03"}, 200)
    change = {"items": [{"price": eur300}], "effective_date": "2026-03-03", "proration": "none"}
    post(client, key, f"/v1/subscriptions/{sub['id']}/change", change, 200)
    post(client, key, "/v1/clock", {"now": "2026-04-06"}, 200)
    rates = [
        {"date": "2026-02-15", "base": "EUR", "quote": "USD", "rate": "1.12"},
        {"date": "2026-03-20", "base": "EUR", "quote": "USD", "rate": "1.0850"},
        {"date": "2026-04-02", "base": "EUR", "quote": "USD", "rate": "1.0900"},
    ]
    post(client, key, "/v1/fx-rates", rates)  # type: ignore[arg-type]
    return book


def test_mrr_totals_in_the_functional_currency_over_http(client: Any, book: BookFixture) -> None:
    r = client.get("/v1/metrics/mrr?from=2026-01&to=2026-04", headers=auth(book.admin_key))
    assert r.status_code == 200, r.text
    document = r.json()
    # Per currency, unconverted, as before.
    eur = [(m["month"], m["start"], m["new"], m["expansion"], m["end"])
           for m in document["months"] if m["currency"] == "EUR"]  # fmt: skip
    assert eur == [
        ("2026-02", "0.00", "200.00", "0.00", "200.00"),
        ("2026-03", "200.00", "0.00", "100.00", "300.00"),
        ("2026-04", "300.00", "0.00", "0.00", "300.00"),
    ]
    assert document["functional_currency"] == "USD"
    assert [tuple(t[f] for f in FIELDS) for t in document["totals"]] == TOTALS
    assert [(t["rate_date"], t["rates"]) for t in document["totals"]] == [
        ("2026-01-31", {"USD": "1"}),
        ("2026-02-28", {"EUR": "1.12", "USD": "1"}),
        ("2026-03-31", {"EUR": "1.0850", "USD": "1"}),
        ("2026-04-30", {"EUR": "1.0900", "USD": "1"}),
    ]
    assert document["missing_rates"] == []
    for t in document["totals"]:
        moved = sum(Decimal(t[f]) for f in FIELDS[2:8])
        assert Decimal(t["start"]) + moved == Decimal(t["end"])
    assert any("month's last day" in rule for rule in document["rules"])


def test_dashboard_shows_the_totals(client: Any, book: BookFixture) -> None:
    from tests.integration.test_console import sign_in

    sign_in(client, book.admin_key)
    page = client.get("/console/").text
    march = page.split('<tr data-total-month="2026-03">', 1)[1].split("</tr>", 1)[0]
    assert 'data-field="fx_effect" data-amount="-7.00">-$7.00<' in march
    assert 'data-field="end" data-amount="425.50">$425.50<' in march
    client.cookies.clear()


def test_mrr_totals_over_cli(cli: Any, book: BookFixture) -> None:  # noqa: F811
    args = ("report", "mrr", "--book", str(book.id), "--from", "2026-01", "--to", "2026-04")
    result = cli(*args, "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [tuple(t[f] for f in FIELDS) for t in document["totals"]] == TOTALS
    text = cli(*args)
    assert "fx effect -7.00" in text.stdout


def test_a_month_without_a_rate_has_no_total() -> None:
    jan, feb = date(2026, 1, 1), date(2026, 2, 1)
    months = [
        MonthMrr(jan, "EUR", Decimal(0), new=Decimal("10.00"), end=Decimal("10.00"), customers=1),
        MonthMrr(feb, "EUR", Decimal("10.00"), end=Decimal("10.00"), customers=1),
        MonthMrr(feb, "USD", Decimal(0), new=Decimal("5.00"), end=Decimal("5.00"), customers=1),
    ]
    rates = {date(2026, 2, 28): Decimal("1.2345")}

    def rate(currency: str, day: date) -> Decimal | None:
        return Decimal(1) if currency == "USD" else rates.get(day)

    totals, missing = converted_totals(months, "USD", rate)
    # No EUR rate on Jan 31: January's end and February's start cannot be converted.
    assert (totals, missing) == ([], [(jan, "EUR"), (feb, "EUR")])
    rates[date(2026, 1, 31)] = Decimal("1.2")
    totals, missing = converted_totals(months, "USD", rate)
    # February: EUR 10.00 at 1.2345 = 12.345, half-up 12.35; its start at Jan's 1.2 = 12.00.
    assert missing == []
    assert [(t.month, t.start, t.new, t.fx_effect, t.end) for t in totals] == [
        (jan, Decimal("0.00"), Decimal("12.00"), Decimal("0.00"), Decimal("12.00")),
        (feb, Decimal("12.00"), Decimal("5.00"), Decimal("0.35"), Decimal("17.35")),
    ]
