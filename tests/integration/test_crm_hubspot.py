"""HubSpot round trips against a local stub answering the CRM v3 objects API's shapes,
its signed webhooks, the sync command, and the mapping and conflict rules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

from adapters.cli import main
from adapters.crm.signatures import hubspot_signature
from adapters.keys import Role
from adapters.runtime import Runtime
from tests.billing.test_http_invoices import draft, finalize, line
from tests.conftest import BookFixture, make_book
from tests.integration.crm_helpers import (
    Clock,
    customer,
    deliveries,
    log_kinds,
    monthly_price,
    post,
    settings,
    worker,
)
from tests.integration.crm_stubs import HubSpotStub, hubspot_stub
from tests.integration.http_fixtures import assert_problem, auth, new_key, open_client

SECRET = "hs-app-secret-7c1d"


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def book(runtime: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch) -> BookFixture:
    monkeypatch.setenv("DATABASE_URL", database_url)  # for the CLI
    return make_book(runtime, "USD", date(2026, 1, 10))


@pytest.fixture
def hs() -> Iterator[HubSpotStub]:
    with hubspot_stub() as stub:
        stub.add("contacts", "201", email="ap@umbrella.example", firstname="Alice", lastname="Pay")
        stub.add("companies", "101", {"contacts": ["201"]}, name="Umbrella", city="Raccoon City",
                 country="US", billing_terms_days="30")  # fmt: skip
        stub.add("companies", "102", name="Soylent", city="Chicago", country="US")
        stub.add("companies", "103", name="Tyrell", city="Los Angeles", country="US")
        stub.add("line_items", "301", hs_product_id="9001", quantity="1")
        stub.add("deals", "401", {"companies": ["101"], "line_items": ["301"]},
                 dealstage="closedwon", closedate="2026-01-07T00:00:00.000Z")  # fmt: skip
        stub.add("deals", "402", {"companies": ["102"], "line_items": ["301"]},
                 dealstage="appointmentscheduled", closedate=None)  # fmt: skip
        yield stub


def configure(client: Any, book: BookFixture, stub: HubSpotStub) -> None:
    settings(
        client,
        book,
        hubspot={
            "access_token": stub.token,
            "base_url": stub.url,
            "app_secret": SECRET,
            "allow_private_network": True,
        },
    )


def cli_sync(capsys: pytest.CaptureFixture[str], book: BookFixture, *extra: str) -> Any:
    code = main(["crm", "sync", "--provider", "hubspot", "--book", str(book.id),
                 "--format", "json", *extra])  # fmt: skip
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_company_to_customer_to_paid_invoice_shows_balance_zero_and_mrr_on_the_company(
    client: Any,
    runtime: Runtime,
    book: BookFixture,
    hs: HubSpotStub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(client, book, hs)
    price = monthly_price(client, book, "80.00")
    post(
        client, book, "/v1/crm/mappings", {"provider": "hubspot", "products": {"9001": price}}, 200
    )

    code, summary, err = cli_sync(capsys, book)
    assert code == 0, err
    assert "crm sync hubspot: 3 accounts (3 created" in err  # progress on stderr
    assert {k: summary[k] for k in ("accounts", "created", "deals", "subscriptions")} == {
        "accounts": 3, "created": 3, "deals": 1, "subscriptions": 1,
    }  # fmt: skip
    umbrella = customer(client, book, "101")
    assert (umbrella["name"], umbrella["email"]) == ("Umbrella", "ap@umbrella.example")
    assert umbrella["address"] == {"city": "Raccoon City", "country": "US"}

    w = worker(runtime, book)
    w.deliver_due()
    invoice = finalize(
        client, book, draft(client, book, umbrella["id"], line("Onboarding", "1", "20"))["id"]
    )
    w.deliver_due()
    assert hs.patches[-1].body["properties"]["activebilling_balance_due"] == "20.00"
    post(client, book, "/v1/payments",
         {"customer": umbrella["id"], "amount": "20.00", "currency": "USD",
          "method": "bank_transfer", "invoice": invoice["id"]})  # fmt: skip
    writes = len(hs.patches)
    w.deliver_due()
    assert len(hs.patches) == writes + 1
    company = hs.objects["companies"]["101"]["properties"]
    assert company["activebilling_balance_due"] == "0.00"
    assert company["activebilling_mrr"] == "80.00"
    assert company["activebilling_overdue"] == "false"
    assert company["activebilling_last_invoice_number"] == invoice["number"]
    assert company["activebilling_next_renewal_date"] == "2026-01-07"


def _headers(client: Any, book: BookFixture, body: bytes, *, stamp: int | None = None,
             secret: str = SECRET) -> dict[str, str]:  # fmt: skip
    """HubSpot's v3 headers for a POST of `body`: method + full URI + body + timestamp."""
    timestamp = str(stamp if stamp is not None else int(time.time() * 1000))
    uri = f"{client.base_url}/v1/webhooks/hubspot/{book.id}"
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": timestamp,
        "X-HubSpot-Signature-v3": hubspot_signature(secret, "POST", uri, body, timestamp),
    }


def _signed(client: Any, book: BookFixture, body: bytes, **kwargs: Any) -> Any:
    headers = _headers(client, book, body, **kwargs)
    return client.post(f"/v1/webhooks/hubspot/{book.id}", content=body, headers=headers)


def test_a_signed_webhook_upserts_the_company_and_a_tampered_one_is_401_changing_nothing(
    client: Any, book: BookFixture, hs: HubSpotStub, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(client, book, hs)
    assert cli_sync(capsys, book)[0] == 0
    hs.change("companies", "102", name="Soylent Green Inc", city="Newark")
    event = [{"eventId": 1, "subscriptionId": 7, "portalId": 62515, "appId": 1,
              "occurredAt": int(time.time() * 1000), "subscriptionType": "company.propertyChange",
              "attemptNumber": 0, "objectId": 102, "propertyName": "name",
              "propertyValue": "Soylent Green Inc", "changeSource": "CRM_UI"}]  # fmt: skip
    body = json.dumps(event).encode()

    tampered = _signed(client, book, body, secret="not-the-secret")
    assert_problem(tampered, 401, "invalid_signature")
    stale = _signed(client, book, body, stamp=int(time.time() * 1000) - 6 * 60 * 1000)
    assert_problem(stale, 401, "invalid_signature")
    forged = client.post(f"/v1/webhooks/hubspot/{book.id}", content=body.replace(b"102", b"103"),
                         headers=_headers(client, book, body))  # fmt: skip
    assert_problem(forged, 401, "invalid_signature")
    assert customer(client, book, "102")["name"] == "Soylent"  # nothing changed

    ok = _signed(client, book, body)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"object": "crm_webhook", "received": 1, "synced": {"102": "updated"}}
    found = customer(client, book, "102")
    assert (found["name"], found["address"]["city"]) == ("Soylent Green Inc", "Newark")


def test_billing_terms_conflict_keeps_billings_value_and_is_logged(
    client: Any,
    book: BookFixture,
    hs: HubSpotStub,
    capsys: pytest.CaptureFixture[str],
    owner_conn: psycopg.Connection,
) -> None:
    configure(client, book, hs)
    post(client, book, "/v1/crm/mappings", {"provider": "hubspot", "fields": {
        "name": "name", "city": "address.city", "billing_terms_days": "payment_terms_days",
    }}, 200)  # fmt: skip
    assert cli_sync(capsys, book)[0] == 0
    assert customer(client, book, "101")["payment_terms_days"] == 30
    r = client.post("/v1/customers/101", json={"payment_terms_days": 45},
                    headers=auth(book.admin_key))  # fmt: skip
    assert r.status_code == 200, r.text
    hs.change("companies", "101", billing_terms_days="60", name="Umbrella Corp")

    code, summary, _ = cli_sync(capsys, book)
    assert (code, summary["accounts"], summary["conflicts"]) == (0, 1, 1)
    found = customer(client, book, "101")
    assert found["payment_terms_days"] == 45  # billing owns its terms
    assert found["name"] == "Umbrella Corp"  # changed only in the CRM: taken
    [conflict] = log_kinds(owner_conn, book.id, "conflict")
    assert conflict["field"] == "payment_terms_days"
    assert (conflict["crm_value"], conflict["billing_value"]) == ("60", "45")
    assert conflict["resolution"] == "billing_wins"

    # The CRM's value did not change again: the next sync leaves billing's alone.
    hs.change("companies", "101", city="Arklay")
    code, summary, _ = cli_sync(capsys, book)
    assert (code, summary["conflicts"]) == (0, 0)
    assert customer(client, book, "101")["payment_terms_days"] == 45
    log = client.get("/v1/crm/sync-log?kind=conflict", headers=auth(book.admin_key)).json()
    assert [e["field"] for e in log["data"]] == ["payment_terms_days"]


def test_a_mapping_to_an_unknown_field_is_422_and_stores_nothing(
    client: Any, book: BookFixture
) -> None:
    bad = client.post("/v1/crm/mappings", json={"provider": "hubspot", "fields": {
        "name": "nmae", "domain": "metadata.domain"}}, headers=auth(book.admin_key))  # fmt: skip
    body = assert_problem(bad, 422, "invalid_request")
    assert "'name' maps to 'nmae', which is not a customer field" in body["detail"]
    bad = client.post("/v1/crm/mappings", json={"provider": "hubspot",
        "outbound": {"arr": "activebilling_arr"}, "products": {"9001": "price_missing"}},
        headers=auth(book.admin_key))  # fmt: skip
    body = assert_problem(bad, 422, "invalid_request")
    assert "'arr' is not a billing status field" in body["detail"]
    assert "price 'price_missing', which does not exist" in body["detail"]
    stored = client.get("/v1/crm/mappings/hubspot", headers=auth(book.admin_key)).json()
    assert stored["fields"]["name"] == "name" and stored["products"] == {}  # the defaults
    unknown = client.post("/v1/crm/mappings", json={"provider": "pipedrive"},
                          headers=auth(book.admin_key))  # fmt: skip
    assert_problem(unknown, 422)


def test_unreachable_or_private_hubspot_is_a_clear_error_from_the_cli(
    client: Any, book: BookFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    settings(client, book, hubspot={"access_token": "t", "base_url": "http://192.168.1.20"})
    code, out, err = cli_sync(capsys, book)
    assert (code, out) == (2, None)
    assert "192.168.1.20" in err and "hubspot.allow_private_network" in err
    settings(
        client, book, hubspot={"base_url": "http://127.0.0.1:9", "allow_private_network": True}
    )
    code, out, err = cli_sync(capsys, book)
    assert (code, out) == (2, None)
    assert "cannot reach HubSpot at http://127.0.0.1:9" in err
    shown = client.get("/v1/book", headers=auth(book.admin_key)).json()["settings"]["hubspot"]
    assert shown["access_token"] == "****"  # write-only


def test_a_deal_won_later_arrives_by_webhook_as_one_subscription(
    client: Any, book: BookFixture, hs: HubSpotStub, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(client, book, hs)
    price = monthly_price(client, book, "80.00")
    post(
        client, book, "/v1/crm/mappings", {"provider": "hubspot", "products": {"9001": price}}, 200
    )
    assert cli_sync(capsys, book)[1]["subscriptions"] == 1  # deal 401; 402 is not won yet
    hs.change("deals", "402", dealstage="closedwon", closedate="2026-01-09T00:00:00.000Z")
    event = [{"eventId": 2, "subscriptionType": "deal.propertyChange", "objectId": 402,
              "propertyName": "dealstage", "propertyValue": "closedwon",
              "occurredAt": int(time.time() * 1000)}]  # fmt: skip
    body = json.dumps(event).encode()
    first = _signed(client, book, body)
    assert first.status_code == 200, first.text
    assert first.json()["synced"] == {"402": "created"}
    assert _signed(client, book, body).json()["synced"] == {"402": "exists"}  # once per deal
    subs = client.get("/v1/subscriptions", params={"customer": "102"},
                      headers=auth(book.admin_key)).json()["data"]  # fmt: skip
    assert [(s["start_date"], s["metadata"]) for s in subs] == [
        ("2026-01-09", {"crm_provider": "hubspot", "crm_deal": "402"})
    ]


def test_a_write_back_that_keeps_failing_is_given_up_after_the_schedule(
    client: Any,
    runtime: Runtime,
    book: BookFixture,
    hs: HubSpotStub,
    capsys: pytest.CaptureFixture[str],
    owner_conn: psycopg.Connection,
) -> None:
    configure(client, book, hs)
    settings(client, book, webhook_retry_seconds=[1])  # one retry, a second later
    assert cli_sync(capsys, book)[0] == 0
    tyrell = customer(client, book, "103")
    hs.fail_patches = 5
    finalize(client, book, draft(client, book, tyrell["id"], line("Replicant", "1", "10"))["id"])
    clock = Clock()
    w = worker(runtime, book, clock)
    assert w.deliver_due() == 1
    clock.advance(1)
    assert w.deliver_due() == 1
    clock.advance(3600)
    assert w.deliver_due() == 0  # given up: nothing left to try
    assert deliveries(owner_conn, book.id) == [("failed", 2)]
    assert len(hs.patches) == 2


def test_only_billing_writers_may_sync_and_only_admins_may_map(
    client: Any, runtime: Runtime, book: BookFixture
) -> None:
    auditor = new_key(runtime, book.id, Role.AUDITOR)
    operator = new_key(runtime, book.id, Role.OPERATOR)
    sync = client.post("/v1/crm/sync", json={"provider": "hubspot"}, headers=auth(auditor))
    assert_problem(sync, 403)
    mapping = client.post("/v1/crm/mappings", json={"provider": "hubspot"}, headers=auth(operator))
    assert_problem(mapping, 403)
