"""The events a subscription's life and an invoice's end write to the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from adapters.runtime import Runtime
from tests.billing.test_http_invoices import draft, finalize, line
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import auth, open_client


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _post(client: Any, book: BookFixture, path: str, body: Any = None, status: int = 201) -> Any:
    response = client.post(path, json=body or {}, headers=auth(book.admin_key))
    assert response.status_code == status, response.text
    return response.json()


def _events(client: Any, book: BookFixture, kind: str) -> list[dict[str, Any]]:
    page = client.get("/v1/events", params={"limit": "1000"}, headers=auth(book.admin_key)).json()
    return [e for e in page["data"][::-1] if e["type"].startswith(kind)]


def _price(client: Any, book: BookFixture, amount: str) -> str:
    product = _post(client, book, "/v1/products", {"name": f"Plan {amount}"})
    body = {"product": product["id"], "currency": "USD", "charge_model": "flat",
            "unit_amount": amount, "interval": "month"}  # fmt: skip
    return str(_post(client, book, "/v1/prices", body)["id"])


def test_a_subscription_upgraded_paused_resumed_and_canceled_tells_each_step(
    client: Any, runtime: Runtime
) -> None:
    book = make_book(runtime, "USD", date(2026, 4, 1))
    plan90, plan120 = _price(client, book, "90.00"), _price(client, book, "120.00")
    who = _post(client, book, "/v1/customers", {"name": "Subscriber", "currency": "USD"})["id"]
    sub = _post(client, book, "/v1/subscriptions", {"customer": who, "items": [{"price": plan90}]})
    _post(client, book, "/v1/billing-runs", {})
    _post(client, book, "/v1/clock", {"now": "2026-04-21"}, 200)
    change = {"items": [{"price": plan120}], "effective_date": "2026-04-21",
              "proration": "invoice_now"}  # fmt: skip
    _post(client, book, f"/v1/subscriptions/{sub['id']}/change", change, 200)
    _post(client, book, f"/v1/subscriptions/{sub['id']}/pause", {}, 200)
    _post(client, book, f"/v1/subscriptions/{sub['id']}/resume", {}, 200)
    _post(client, book, f"/v1/subscriptions/{sub['id']}/cancel", {"at": "now"}, 200)

    subs = _events(client, book, "subscription.")
    assert [e["type"] for e in subs] == [
        "subscription.created",
        "subscription.updated",
        "subscription.paused",
        "subscription.resumed",
        "subscription.canceled",
    ]
    assert {e["data"]["object"]["id"] for e in subs} == {sub["id"]}
    updated = subs[1]["data"]
    assert [i["price_id"] for i in updated["previous_attributes"]["items"]] == [plan90]
    assert (subs[2]["data"]["object"]["status"], subs[4]["data"]["object"]["status"]) == (
        "paused",
        "canceled",
    )
    # The billing run's invoice and the upgrade's proration invoice.
    finalized = _events(client, book, "invoice.finalized")
    assert [e["data"]["object"]["number"] for e in finalized] == [
        "INV-2026-000001",
        "INV-2026-000002",
    ]
    assert [e["data"]["object"]["total"] for e in finalized] == ["90.00", "10.00"]
    assert all(e["data"]["object"]["object"] == "invoice" for e in finalized)
    assert [e["type"] for e in _events(client, book, "credit_note.")] == ["credit_note.created"]


def test_void_and_uncollectible_invoices_are_announced(client: Any, runtime: Runtime) -> None:
    book = make_book(runtime, "USD", date(2026, 1, 10))
    who = _post(client, book, "/v1/customers", {"name": "Late Payer", "currency": "USD"})["id"]
    voided = finalize(client, book, draft(client, book, who, line("Oops", "1", "5.00"))["id"])
    _post(client, book, f"/v1/invoices/{voided['id']}/void", {}, 200)
    lost = finalize(client, book, draft(client, book, who, line("Work", "1", "50.00"))["id"])
    _post(client, book, f"/v1/invoices/{lost['id']}/mark-uncollectible", {}, 200)
    events = _events(client, book, "invoice.")
    assert [(e["type"], e["data"]["object"]["id"]) for e in events] == [
        ("invoice.finalized", voided["id"]),
        ("invoice.voided", voided["id"]),
        ("invoice.finalized", lost["id"]),
        ("invoice.marked_uncollectible", lost["id"]),
    ]
    assert events[1]["data"]["previous_attributes"]["status"] == "open"
    assert events[3]["data"]["object"]["status"] == "uncollectible"


def test_an_imported_statement_is_announced_once(client: Any, runtime: Runtime) -> None:
    from tests.integration.test_reconciliation_statements import OFX, upload

    book = make_book(runtime, "CAD")
    data = (OFX / "bank_medium.ofx").read_bytes()
    created = upload(client, book, data).json()
    assert upload(client, book, data).status_code == 200  # the same file again: nothing new
    [event] = _events(client, book, "statement.")
    assert event["type"] == "statement.imported"
    assert event["data"]["object"] == {
        "object": "statement",
        "id": created["id"],
        "account": "Assets:Bank:Operating",
        "created": True,
        "new_lines": 3,
        "duplicate_lines": 0,
    }


def test_customer_credit_applied_at_finalization_pays_the_invoice(
    client: Any, runtime: Runtime
) -> None:
    book = make_book(runtime, "USD", date(2026, 1, 10))
    who = _post(client, book, "/v1/customers", {"name": "Prepaid", "currency": "USD"})["id"]
    payment = {"customer": who, "amount": "80.00", "currency": "USD", "method": "bank_transfer"}
    _post(client, book, "/v1/payments", payment)  # no invoice yet: all to customer credit
    half = finalize(client, book, draft(client, book, who, line("Work", "1", "50.00"))["id"])
    rest = finalize(client, book, draft(client, book, who, line("More", "1", "50.00"))["id"])
    paid = _events(client, book, "invoice.paid")
    assert [e["data"]["object"]["id"] for e in paid] == [half["id"]]  # 30.00 left on the other
    assert (half["status"], rest["amount_due"]) == ("paid", "20.00")


def test_an_upsert_that_changes_nothing_announces_nothing(client: Any, runtime: Runtime) -> None:
    book = make_book(runtime, "USD", date(2026, 1, 10))
    body = {"name": "Same", "currency": "USD", "external_id": "crm-same", "tax_rate": "0.10"}
    _post(client, book, "/v1/customers", body)
    _post(client, book, "/v1/customers", body, 200)
    _post(client, book, "/v1/customers", {**body, "tax_rate": "0.2"}, 200)
    events = _events(client, book, "customer.")
    assert [e["type"] for e in events] == ["customer.created", "customer.updated"]
    assert events[1]["data"]["previous_attributes"] == {"tax_rate": "0.10"}
