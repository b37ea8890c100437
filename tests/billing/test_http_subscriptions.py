"""Subscriptions and billing runs over HTTP: the golden upgrade, cancel, pause, and
bad input answered with a problem and nothing written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

from adapters.keys import Role
from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import PROBLEM, auth, new_key, open_client


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim_book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 4, 1))


def _post(client: Any, key: str, path: str, body: dict[str, Any], status: int = 201) -> Any:
    response = client.post(path, json=body, headers=auth(key))
    assert response.status_code == status, response.text
    return response.json()


def _price(
    client: Any, key: str, amount: str, currency: str = "USD", interval: str | None = "month"
) -> str:
    product = _post(client, key, "/v1/products", {"name": f"Plan {amount}"})
    body: dict[str, Any] = {
        "product": product["id"],
        "currency": currency,
        "charge_model": "flat",
        "unit_amount": amount,
    }
    if interval:
        body["interval"] = interval
    return str(_post(client, key, "/v1/prices", body)["id"])


def _customer(client: Any, key: str, currency: str = "USD") -> str:
    return str(_post(client, key, "/v1/customers", {"name": "Acme", "currency": currency})["id"])


def _rows(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, int]:
    tables = ("subscriptions", "subscription_items", "invoices", "invoice_lines", "journal_entries")
    return {
        t: int(
            conn.execute(f"select count(*) from {t} where book_id = %s", (book_id,)).fetchone()[0]  # type: ignore[index]
        )
        for t in tables
    }


def test_golden_upgrade_over_http(client: Any, sim_book: BookFixture) -> None:
    key = sim_book.admin_key
    plan90, plan120 = _price(client, key, "90.00"), _price(client, key, "120.00")
    who = _customer(client, key)
    sub = _post(client, key, "/v1/subscriptions", {"customer": who, "items": [{"price": plan90}]})
    assert (sub["status"], sub["start_date"], sub["next_period_start"]) == (
        "active",
        "2026-04-01",
        "2026-04-01",
    )
    run = _post(client, key, "/v1/billing-runs", {})
    assert (run["as_of"], run["status"], run["invoices_created"]) == ("2026-04-01", "completed", 1)
    assert client.get(f"/v1/billing-runs/{run['id']}", headers=auth(key)).json() == run
    _post(client, key, "/v1/clock", {"now": "2026-04-21"}, 200)
    changed = _post(
        client,
        key,
        f"/v1/subscriptions/{sub['id']}/change",
        {"items": [{"price": plan120}], "effective_date": "2026-04-21", "proration": "invoice_now"},
        200,
    )
    invoice = changed["invoice"]
    assert [
        (line["amount"], line["service_start"], line["service_end"]) for line in invoice["lines"]
    ] == [("-30.00", "2026-04-21", "2026-05-01"), ("40.00", "2026-04-21", "2026-05-01")]
    assert (invoice["number"], invoice["total"], invoice["status"]) == (
        "INV-2026-000002",
        "10.00",
        "open",
    )
    assert changed["current_period_start"] == "2026-04-01"
    assert [i["price"] for i in changed["items"]] == [plan120]
    # The trial balance on Apr 30: AR 100.00 against deferred revenue.
    tb = client.get("/v1/reports/trial-balance?as_of=2026-04-30", headers=auth(key)).json()
    assert {(line["account"], line["balance"]) for line in tb["lines"]} == {
        ("Assets:Receivable:Trade", "100.00"),
        ("Liabilities:Deferred-Revenue", "-100.00"),
    }
    # Cancel now on May 11: May is billed first (catch-up), then 20 unused days credited.
    _post(client, key, "/v1/clock", {"now": "2026-05-11"}, 200)
    canceled = _post(client, key, f"/v1/subscriptions/{sub['id']}/cancel", {"at": "now"}, 200)
    assert canceled["status"] == "canceled" and canceled["cancel_at"] == "2026-05-11"
    # 120.00 × 21 / 31 for May 11 → Jun 1 = 81.29: a credit note on May's invoice, not a
    # negative invoice.
    assert canceled["invoice"] is None
    [note] = canceled["credit_notes"]
    assert (note["number"], note["total"], note["credit_to"]) == (
        "CN-2026-000001",
        "81.29",
        "receivable",
    )
    document = client.get(f"/v1/credit-notes/{note['id']}/document", headers=auth(key))
    assert document.status_code == 200
    assert "<h1>Credit note CN-2026-000001</h1>" in document.text
    listed = client.get(f"/v1/subscriptions?customer={who}", headers=auth(key)).json()
    assert [s["id"] for s in listed["data"]] == [sub["id"]]


def test_pause_resume_trial_and_coupon_over_http(client: Any, sim_book: BookFixture) -> None:
    key = sim_book.admin_key
    price = _price(client, key, "30.00")
    who = _customer(client, key)
    coupon = _post(
        client, key, "/v1/coupons", {"name": "Half", "duration": "once", "percent_off": "50"}
    )
    sub = _post(
        client,
        key,
        "/v1/subscriptions",
        {
            "customer": who,
            "items": [{"price": price, "quantity": 2}],
            "trial_end": "2026-04-08",
            "coupon": coupon["id"],
        },
    )
    assert (sub["status"], sub["billing_anchor"]) == ("trialing", "2026-04-08")
    _post(client, key, "/v1/clock", {"now": "2026-04-08"}, 200)
    assert _post(client, key, "/v1/billing-runs", {"as_of": "2026-04-08"})["invoices_created"] == 1
    paused = _post(client, key, f"/v1/subscriptions/{sub['id']}/pause", {}, 200)
    assert paused["status"] == "paused"
    _post(client, key, "/v1/clock", {"now": "2026-06-01"}, 200)
    assert _post(client, key, "/v1/billing-runs", {})["invoices_created"] == 0
    resumed = _post(client, key, f"/v1/subscriptions/{sub['id']}/resume", {}, 200)
    assert resumed["next_period_start"] == "2026-06-01"
    assert _post(client, key, "/v1/billing-runs", {})["invoices_created"] == 1
    invoices = client.get(f"/v1/invoices?customer={who}", headers=auth(key)).json()["data"]
    totals = sorted((i["supply_start"], i["total"]) for i in invoices)
    # April: 2 × 30.00 − 50 % once; then the stub June 1 → June 8 of the cycle
    # [May 8, June 8): 60.00 × 7 / 31 = 13.55, no coupon any more.
    assert totals == [("2026-04-08", "30.00"), ("2026-06-01", "13.55")]


def test_bad_input_gets_a_problem_and_writes_nothing(
    client: Any, runtime: Runtime, sim_book: BookFixture, app_conn: psycopg.Connection
) -> None:
    key = sim_book.admin_key
    monthly = _price(client, key, "90.00")
    yearly = _price(client, key, "900.00", interval="year")
    one_off = _price(client, key, "5.00", interval=None)
    eur = _price(client, key, "90.00", currency="EUR")
    who = _customer(client, key)
    sub = _post(client, key, "/v1/subscriptions", {"customer": who, "items": [{"price": monthly}]})
    _post(client, key, "/v1/billing-runs", {})
    before = _rows(app_conn, sim_book.id)
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/v1/subscriptions", {"customer": who, "items": [{"price": str(uuid.uuid4())}]}, 404, ""),
        (
            "/v1/subscriptions",
            {"customer": str(uuid.uuid4()), "items": [{"price": monthly}]},
            404,
            "",
        ),
        ("/v1/subscriptions", {"customer": who, "items": [{"price": eur}]}, 422, "EUR"),
        (
            "/v1/subscriptions",
            {"customer": who, "items": [{"price": monthly, "quantity": "-1"}]},
            422,
            "quantity",
        ),
        ("/v1/subscriptions", {"customer": who, "items": [{"price": one_off}]}, 422, "recurring"),
        (
            "/v1/subscriptions",
            {"customer": who, "items": [{"price": monthly}, {"price": yearly}]},
            422,
            "same cycle",
        ),
        ("/v1/subscriptions", {"customer": who, "items": []}, 422, "at least one"),
        (
            "/v1/subscriptions",
            {"customer": who, "items": [{"price": monthly}], "trial_end": "2026-03-01"},
            422,
            "trial_end",
        ),
        (
            f"/v1/subscriptions/{sub['id']}/change",
            {"items": [{"price": yearly}], "effective_date": "2026-04-10"},
            422,
            "cycle",
        ),
        (
            f"/v1/subscriptions/{sub['id']}/change",
            {"items": [{"price": monthly, "quantity": 2}], "effective_date": "2026-05-01"},
            422,
            "outside the current billing period",
        ),
        (
            f"/v1/subscriptions/{sub['id']}/change",
            {"items": [{"price": monthly}], "proration": "sometimes"},
            422,
            "proration",
        ),
        (f"/v1/subscriptions/{sub['id']}/cancel", {"at": "2026-03-01"}, 422, "past"),
        (f"/v1/subscriptions/{sub['id']}/cancel", {"at": "tomorrow"}, 422, "period_end"),
        (f"/v1/subscriptions/{sub['id']}/resume", {}, 409, "not paused"),
        (f"/v1/subscriptions/{uuid.uuid4()}/pause", {}, 404, ""),
        ("/v1/billing-runs", {"as_of": "2026-04-02"}, 422, "advance the clock"),
        ("/v1/subscriptions", {"customer": who, "items": [{"price": monthly}], "x": 1}, 400, ""),
    ]
    for path, body, status, text in cases:
        response = client.post(path, json=body, headers=auth(key))
        assert response.status_code == status, (path, body, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        assert text in response.json()["detail"], response.json()
    assert _rows(app_conn, sim_book.id) == before
    assert app_conn.execute(
        "select count(*) from billing_runs where book_id = %s", (sim_book.id,)
    ).fetchone() == (1,)
    auditor = new_key(runtime, sim_book.id, Role.AUDITOR)
    response = client.post("/v1/billing-runs", json={}, headers=auth(auditor))
    assert response.status_code == 403


def test_subscriptions_in_jpy(client: Any, runtime: Runtime) -> None:
    book = make_book(runtime, "JPY", date(2026, 1, 1))
    key = book.admin_key
    price = _price(client, key, "980", currency="JPY")
    who = _customer(client, key, "JPY")
    _post(
        client,
        key,
        "/v1/subscriptions",
        {"customer": who, "items": [{"price": price, "quantity": 3}], "start_date": "2026-01-01"},
    )
    _post(client, key, "/v1/clock", {"now": "2026-02-01"}, 200)
    assert _post(client, key, "/v1/billing-runs", {})["invoices_created"] == 2
    invoices = client.get("/v1/invoices", headers=auth(key)).json()["data"]
    assert sorted(i["total"] for i in invoices) == ["2940", "2940"]  # 3 × 980, no minor unit


def test_a_closed_month_does_not_wedge_the_billing_run_over_http(
    client: Any, runtime: Runtime
) -> None:
    book = make_book(runtime, "USD", date(2026, 2, 15))
    key = book.admin_key
    price = _price(client, key, "31.00")
    who = _customer(client, key)
    body = {"customer": who, "items": [{"price": price}], "start_date": "2026-01-10"}
    _post(client, key, "/v1/subscriptions", body)
    closed = client.post("/v1/periods/2026-01/close", headers=auth(key))
    assert closed.status_code in (200, 201), closed.text
    run = _post(client, key, "/v1/billing-runs", {})
    assert (run["status"], run["invoices_created"], run["failures"]) == ("completed", 2, [])
    assert client.get(f"/v1/billing-runs/{run['id']}", headers=auth(key)).json() == run
    invoices = client.get(f"/v1/invoices?customer={who}", headers=auth(key)).json()["data"]
    assert sorted((i["issue_date"], i["supply_start"], i["supply_end"]) for i in invoices) == [
        ("2026-02-01", "2026-01-10", "2026-02-10"),
        ("2026-02-10", "2026-02-10", "2026-03-10"),
    ]
