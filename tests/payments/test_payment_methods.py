"""Payment methods per customer: cards as tokens only, SEPA mandates (IBAN/BIC
checked with schwifty), US bank accounts (ABA checksum); default, detach;
customers' collection_method and default_payment_method; bad input writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from adapters.runtime import Runtime
from tests.conftest import BookFixture, make_book
from tests.integration.http_fixtures import assert_problem, auth, open_client
from tests.payments.helpers import add_card, create_customer, table_counts


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


@pytest.fixture
def sim_book(runtime: Runtime) -> BookFixture:
    return make_book(runtime, "USD", date(2026, 2, 2))


def test_card_is_stored_as_token_brand_last4_and_becomes_default(
    client: Any, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key)
    assert (customer["collection_method"], customer["default_payment_method"]) == (
        "send_invoice",
        None,
    )
    card = add_card(client, key, customer["id"])
    assert (card["type"], card["gateway"], card["token"], card["brand"], card["last4"]) == (
        "card",
        "fake",
        "pm_card_visa",
        "visa",
        "4242",
    )
    assert card["default"] is True
    got = client.get(f"/v1/customers/{customer['id']}", headers=auth(key)).json()
    assert got["default_payment_method"] == card["id"]
    second = add_card(client, key, customer["id"], "pm_card_chargeDeclined", default=False)
    listed = client.get(f"/v1/customers/{customer['id']}/payment-methods", headers=auth(key))
    assert [(p["id"], p["default"]) for p in listed.json()["data"]] == [
        (card["id"], True),
        (second["id"], False),
    ]
    # set the default through the customer update; then detach it: no default is left
    updated = client.post(
        f"/v1/customers/{customer['id']}",
        json={"default_payment_method": second["id"], "collection_method": "charge_automatically"},
        headers=auth(key),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["default_payment_method"] == second["id"]
    detached = client.delete(
        f"/v1/customers/{customer['id']}/payment-methods/{second['id']}", headers=auth(key)
    )
    assert detached.status_code == 200 and detached.json()["detached_at"] is not None
    got = client.get(f"/v1/customers/{customer['id']}", headers=auth(key)).json()
    assert (got["default_payment_method"], got["collection_method"]) == (
        None,
        "charge_automatically",
    )
    listed = client.get(f"/v1/customers/{customer['id']}/payment-methods", headers=auth(key))
    assert [p["id"] for p in listed.json()["data"]] == [card["id"]]


def test_upsert_by_external_id_keeps_collection_method_and_default_when_omitted(
    client: Any, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key, "charge_automatically", external_id="crm-1")
    card = add_card(client, key, customer["id"])
    again = client.post(
        "/v1/customers",
        json={"name": "Renamed", "currency": "USD", "external_id": "crm-1"},
        headers=auth(key),
    )
    assert again.status_code == 200, again.text
    assert (
        again.json()["name"],
        again.json()["collection_method"],
        again.json()["default_payment_method"],
    ) == ("Renamed", "charge_automatically", card["id"])


@pytest.mark.parametrize(
    "body",
    [
        {"type": "card", "gateway": "fake", "token": "pm_card_visa", "number": "4242424242424242"},
        {"type": "card", "gateway": "fake", "token": "4000 0566 5566 5556"},
        {
            "type": "card",
            "gateway": "fake",
            "token": "pm_card_visa",
            "metadata": {"note": "card 5555-5555-5555-4444"},
        },
    ],
)
def test_a_card_number_anywhere_is_refused_and_nothing_is_stored(
    client: Any, runtime: Runtime, sim_book: BookFixture, body: dict[str, Any]
) -> None:
    customer = create_customer(client, sim_book.admin_key)
    with runtime.connection() as conn:
        before = table_counts(conn, sim_book.id)
    refused = client.post(
        f"/v1/customers/{customer['id']}/payment-methods",
        json=body,
        headers=auth(sim_book.admin_key),
    )
    body_ = assert_problem(refused, 422)
    assert "card number" in body_["detail"]
    with runtime.connection() as conn:
        assert table_counts(conn, sim_book.id) == before


def test_sepa_mandate_with_valid_iban_and_bic(client: Any, sim_book: BookFixture) -> None:
    customer = create_customer(client, sim_book.admin_key)
    created = client.post(
        f"/v1/customers/{customer['id']}/payment-methods",
        json={
            "type": "sepa_debit",
            "iban": "DE89 3704 0044 0532 0130 00",
            "bic": "COBADEFFXXX",
            "mandate_id": "MANDATE-1",
            "mandate_date": "2026-01-15",
        },
        headers=auth(sim_book.admin_key),
    )
    assert created.status_code == 201, created.text
    pm = created.json()
    assert pm["last4"] == "3000"
    assert pm["details"] == {
        "iban": "DE89370400440532013000",
        "bic": "COBADEFFXXX",
        "mandate_id": "MANDATE-1",
        "mandate_date": "2026-01-15",
        "sequence": "FRST",
        "mandate_status": "active",
    }


def test_us_bank_account_keeps_last4_and_a_fingerprint_only(
    client: Any, runtime: Runtime, sim_book: BookFixture
) -> None:
    customer = create_customer(client, sim_book.admin_key)
    created = client.post(
        f"/v1/customers/{customer['id']}/payment-methods",
        json={
            "type": "us_bank_account",
            "routing_number": "110000000",
            "account_number": "000123456789",
            "account_type": "savings",
            "account_holder_type": "company",
        },
        headers=auth(sim_book.admin_key),
    )
    assert created.status_code == 201, created.text
    pm = created.json()
    assert pm["last4"] == "6789"
    assert pm["details"]["account_type"] == "savings"
    assert pm["details"]["account_holder_type"] == "company"
    assert len(pm["details"]["account_fingerprint"]) == 64
    with runtime.connection() as conn:
        stored = conn.execute(
            "select count(*) from payment_methods where book_id = %s"
            " and details::text like '%%000123456789%%'",
            (sim_book.id,),
        ).fetchone()
    assert stored == (0,)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "type": "sepa_debit",
                "iban": "DE89370400440532013001",
                "mandate_id": "M-1",
                "mandate_date": "2026-01-15",
            },
            "iban",
        ),
        (
            {
                "type": "sepa_debit",
                "iban": "DE89370400440532013000",
                "bic": "NOTABIC",
                "mandate_id": "M-1",
                "mandate_date": "2026-01-15",
            },
            "bic",
        ),
        (
            {"type": "us_bank_account", "routing_number": "110000001", "account_number": "1234"},
            "routing_number",
        ),
        ({"type": "card", "gateway": "paypal", "token": "x"}, "gateway"),
        ({"type": "wire"}, "type"),
        # The book's today is 2026-02-02: January's cards have expired.
        (
            {
                "type": "card",
                "gateway": "fake",
                "token": "pm_card_visa",
                "exp_month": 1,
                "exp_year": 2026,
            },
            "exp_month",
        ),
        ({"type": "card", "gateway": "fake", "token": "pm_card_visa", "exp_month": 3}, "exp_year"),
        (
            {
                "type": "card",
                "gateway": "fake",
                "token": "pm_card_visa",
                "exp_month": 13,
                "exp_year": 2030,
            },
            "exp_month",
        ),
    ],
)
def test_invalid_iban_bic_routing_gateway_or_type_is_422_and_writes_nothing(
    client: Any, runtime: Runtime, sim_book: BookFixture, body: dict[str, Any], field: str
) -> None:
    customer = create_customer(client, sim_book.admin_key)
    with runtime.connection() as conn:
        before = table_counts(conn, sim_book.id)
    refused = client.post(
        f"/v1/customers/{customer['id']}/payment-methods",
        json=body,
        headers=auth(sim_book.admin_key),
    )
    problem = assert_problem(refused, 422)
    assert field in problem["detail"]
    with runtime.connection() as conn:
        assert table_counts(conn, sim_book.id) == before


def test_default_payment_method_must_be_the_customers_own(
    client: Any, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    one = create_customer(client, key)
    other = create_customer(client, key)
    card = add_card(client, key, other["id"])
    refused = client.post(
        f"/v1/customers/{one['id']}", json={"default_payment_method": card["id"]}, headers=auth(key)
    )
    assert_problem(refused, 422)
    refused = client.post(
        f"/v1/customers/{one['id']}", json={"collection_method": "sometimes"}, headers=auth(key)
    )
    assert_problem(refused, 422)


def test_a_card_is_good_through_its_expiry_month_and_its_expiry_is_optional(
    client: Any, sim_book: BookFixture
) -> None:
    key = sim_book.admin_key
    customer = create_customer(client, key)
    url = f"/v1/customers/{customer['id']}/payment-methods"
    body = {"type": "card", "gateway": "fake", "token": "pm_card_visa"}
    this_month = client.post(
        url, json={**body, "exp_month": 2, "exp_year": 2026}, headers=auth(key)
    )
    assert this_month.status_code == 201, this_month.text
    assert (this_month.json()["exp_month"], this_month.json()["exp_year"]) == (2, 2026)
    unknown = client.post(url, json=body, headers=auth(key))  # the gateway's token knows it
    assert unknown.status_code == 201, unknown.text
    assert (unknown.json()["exp_month"], unknown.json()["exp_year"]) == (None, None)
