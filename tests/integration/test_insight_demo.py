"""Insight on the demo book (a year of mixed business): every MRR month adds up,
collections and the forecast answer, the back-test runs and reports its error,
and the console's dashboard renders the API's figures."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.demo import run_demo
from adapters.keys import Role
from adapters.runtime import Runtime
from tests.integration.http_fixtures import auth, new_key, open_client
from tests.integration.test_console import sign_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(runtime: Runtime) -> Iterator[tuple[Any, str]]:
    made = run_demo(runtime, customers_count=12, months=12, seed=7, start=date(2026, 1, 1))
    key = new_key(runtime, uuid.UUID(str(made["book_id"])), Role.ADMIN)
    with open_client(runtime) as client:
        yield client, key


def test_mrr_adds_up_every_month(demo: tuple[Any, str]) -> None:
    client, key = demo
    r = client.get("/v1/metrics/mrr?from=2026-01&to=2026-12", headers=auth(key))
    assert r.status_code == 200, r.text
    months = r.json()["months"]
    assert len({m["month"] for m in months}) == 12
    moves = ("new", "expansion", "contraction", "churn", "reactivation")
    for m in months:
        assert Decimal(m["start"]) + sum(Decimal(m[k]) for k in moves) == Decimal(m["end"]), m
        assert Decimal(m["contraction"]) <= 0 and Decimal(m["churn"]) <= 0
    assert any(Decimal(m["end"]) > 0 for m in months)


def test_collections_forecast_and_backtest_answer(demo: tuple[Any, str]) -> None:
    client, key = demo
    collections = client.get(
        "/v1/metrics/collections?from=2026-01-01&to=2026-12-31", headers=auth(key)
    )
    assert collections.status_code == 200, collections.text
    assert collections.json()["currencies"]
    forecast = client.get("/v1/forecasts/cash?weeks=13", headers=auth(key))
    assert forecast.status_code == 200, forecast.text
    backtest = client.get("/v1/forecasts/cash/backtest?from=2026-09-30", headers=auth(key))
    assert backtest.status_code == 200, backtest.text
    document = backtest.json()
    assert document["weeks_compared"] == 13
    for overall in document["overall"]:
        assert Decimal(overall["error"]) == Decimal(overall["forecast"]) - Decimal(
            overall["actual"]
        )
        assert Decimal(overall["actual"]) > 0  # the demo's customers paid in Q4


def test_console_dashboard_on_the_demo(demo: tuple[Any, str]) -> None:
    client, key = demo
    sign_in(client, key)
    page = client.get("/console/")
    assert page.status_code == 200
    api = client.get("/v1/metrics/mrr", headers=auth(key)).json()
    ends = re.findall(r'data-field="end" data-amount="([-0-9.]+)"', page.text)
    book_currency = re.search(r"<small>[^<]+ · ([A-Z]{3})</small>", page.text)
    assert book_currency is not None
    # The book's own currency first, then (the demo has EUR and GBP customers and an FX
    # rate table) the months in the functional currency at each month-end's rate.
    assert ends == [m["end"] for m in api["months"] if m["currency"] == book_currency.group(1)] + [
        t["end"] for t in api.get("totals", [])
    ]
    assert api.get("totals"), "the demo book has foreign-currency subscriptions and FX rates"
    for path in ("/console/customers", "/console/invoices", "/console/audit"):
        assert client.get(path).status_code == 200, path
