"""Books for the insight tests (MRR, collections, forecast, console), built over HTTP."""

from __future__ import annotations

from datetime import date
from typing import Any

from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import auth


def post(client: Any, key: str, path: str, body: dict[str, Any], status: int = 201) -> Any:
    response = client.post(path, json=body, headers=auth(key))
    assert response.status_code == status, response.text
    return response.json()


def price(client: Any, key: str, amount: str, interval: str) -> str:
    product = post(client, key, "/v1/products", {"name": f"Plan {amount}/{interval}"})
    body = {
        "product": product["id"],
        "currency": "USD",
        "charge_model": "flat",
        "unit_amount": amount,
        "interval": interval,
    }
    return str(post(client, key, "/v1/prices", body)["id"])


def customer(client: Any, key: str, name: str, **extra: Any) -> str:
    return str(post(client, key, "/v1/customers", {"name": name, "currency": "USD", **extra})["id"])


def invoice(client: Any, key: str, customer_id: str, amount: str) -> str:
    body = {
        "customer": customer_id,
        "lines": [{"description": "Work", "quantity": "1", "unit_amount": amount}],
        "auto_finalize": True,
    }
    return str(post(client, key, "/v1/invoices", body)["id"])


def golden_book(runtime: Runtime, client: Any, second_name: str = "Second") -> BookFixture:
    """Issue 12's MRR book: a 100.00/month plan from Jan 10, upgraded to 150.00 on Mar 3,
    canceled at May 1; another customer's 1,200.00/year plan from Feb 1; the first
    customer back on a 100.00/month plan on Jul 6 (the book's today)."""
    book = make_book(runtime, "USD", date(2026, 1, 10))
    key = book.admin_key
    p100, p150 = price(client, key, "100.00", "month"), price(client, key, "150.00", "month")
    yearly = price(client, key, "1200.00", "year")
    first, second = customer(client, key, "First"), customer(client, key, second_name)
    sub = post(client, key, "/v1/subscriptions", {"customer": first, "items": [{"price": p100}]})
    post(client, key, "/v1/clock", {"now": "2026-02-01"}, 200)
    post(client, key, "/v1/subscriptions", {"customer": second, "items": [{"price": yearly}]})
    post(client, key, "/v1/clock", {"now": "2026-03-03"}, 200)
    change = {"items": [{"price": p150}], "effective_date": "2026-03-03", "proration": "none"}
    post(client, key, f"/v1/subscriptions/{sub['id']}/change", change, 200)
    post(client, key, f"/v1/subscriptions/{sub['id']}/cancel", {"at": "2026-05-01"}, 200)
    post(client, key, "/v1/clock", {"now": "2026-07-06"}, 200)
    post(client, key, "/v1/subscriptions", {"customer": first, "items": [{"price": p100}]})
    post(client, key, "/v1/billing-runs", {})
    return book
