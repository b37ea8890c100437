"""The `stripe` gateway against a local Stripe stub server, with exact entries:
a 108.00 invoice (100.00 + 8.00 tax) charged through a PaymentIntent posts
Clearing:Stripe 108.00 | AR 108.00 and its fee from the balance transaction
(2.9 % + 0.30 → 3.43) Payment-Fees 3.43 | Clearing:Stripe 3.43; declines post
nothing; refunds go through the Refunds API; an unreachable Stripe leaves the
attempt pending and the retry sends the same Idempotency-Key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from adapters.gateways.collection import pay_invoice
from adapters.gateways.stripe import fee_of, from_minor, to_minor
from adapters.runtime import Runtime
from billing.errors import DocumentState, InvalidBillingRequest
from ledger.money import Money
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture
from tests.integration.http_fixtures import assert_problem, auth, open_client
from tests.payments.helpers import (
    account_balance,
    create_invoice,
    entries_of_kind,
    table_counts,
)
from tests.payments.stripe_fixtures import CLEARING, TODAY, payment_rows, stripe_customer
from tests.payments.stripe_stub import StripeStub

AR = "Assets:Receivable:Trade"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _pay(client: Any, key: str, invoice: str) -> dict[str, Any]:
    paid = client.post(f"/v1/invoices/{invoice}/pay", json={}, headers=auth(key))
    assert paid.status_code == 200, paid.text
    result: dict[str, Any] = paid.json()
    return result


def test_a_108_charge_posts_gross_and_the_fee_of_its_balance_transaction(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    paid = _pay(client, key, invoice["id"])
    assert (paid["status"], paid["amount_paid"], paid["amount_due"]) == ("paid", "108.00", "0.00")
    [attempt] = paid["attempts"]
    assert (attempt["outcome"], attempt["code"], attempt["amount"]) == ("succeeded", None, "108.00")
    assert stub.keys_seen == [f"attempt-{attempt['id']}"]  # Stripe's Idempotency-Key
    [intent] = [o for o in stub.objects.values() if o["object"] == "payment_intent"]
    assert (intent["amount"], intent["currency"], intent["payment_method"]) == (
        10800,
        "usd",
        "pm_card_visa",
    )
    assert intent["metadata"]["invoice"] == invoice["id"]
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "payment") == [
            [(CLEARING, "108.00"), (AR, "-108.00")]
        ]
        assert entries_of_kind(conn, stripe_book.id, "payment_fee") == [
            [(CLEARING, "-3.43"), ("Expenses:Payment-Fees", "3.43")]
        ]
        assert account_balance(conn, stripe_book.id, CLEARING) == "104.57"
        assert payment_rows(conn, stripe_book.id) == [(intent["latest_charge"], "108.00", "stripe")]


def test_finalizing_for_a_charge_automatically_customer_charges_through_stripe(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    customer = stripe_customer(client, key, collection_method="charge_automatically")
    invoice = create_invoice(client, key, customer["id"])
    assert (invoice["status"], [a["outcome"] for a in invoice["attempts"]]) == (
        "paid",
        ["succeeded"],
    )
    assert stub.intents_created == 1


@pytest.mark.parametrize(
    ("token", "outcome", "code"),
    [
        ("pm_card_chargeDeclined", "failed", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "failed", "insufficient_funds"),
        ("pm_card_authenticationRequired", "requires_action", "authentication_required"),
        ("pm_card_threeDSecureRequired", "requires_action", "authentication_required"),
        ("pm_unknown", "failed", "resource_missing"),
    ],
)
def test_a_decline_is_a_recorded_attempt_and_posts_nothing(
    client: Any,
    runtime: Runtime,
    stripe_book: BookFixture,
    stub: StripeStub,
    token: str,
    outcome: str,
    code: str,
) -> None:
    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key, token)["id"])
    with runtime.connection() as conn:
        before = table_counts(conn, stripe_book.id)
    tried = _pay(client, key, invoice["id"])
    assert (tried["status"], tried["amount_due"]) == ("open", "108.00")
    assert [(a["outcome"], a["code"]) for a in tried["attempts"]] == [(outcome, code)]
    assert tried["next_action"] == {"type": "retry", "on": "2026-02-05"}
    with runtime.connection() as conn:
        after = table_counts(conn, stripe_book.id)
        assert after[3:] == before[3:]  # no entry, no payment
        assert after[1] == before[1] + 1  # the attempt


def test_a_refund_goes_through_the_refunds_api_with_exact_entries(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    _pay(client, key, invoice["id"])
    payment = client.get("/v1/payments", headers=auth(key)).json()["data"][0]
    refunded = client.post(
        "/v1/refunds", json={"payment": payment["id"], "amount": "108.00"}, headers=auth(key)
    )
    assert refunded.status_code == 201, refunded.text
    [charge] = [o for o in stub.objects.values() if o["object"] == "charge"]
    assert (charge["amount_refunded"], charge["refunded"]) == (10800, True)
    [stripe_refund] = charge["refunds"]["data"]
    assert stripe_refund["amount"] == 10800
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "refund") == [
            [
                (CLEARING, "-108.00"),
                ("Income:Contra:Refunds", "100.00"),
                ("Liabilities:Tax-Payable", "8.00"),
            ]
        ]
        assert account_balance(conn, stripe_book.id, CLEARING) == "-3.43"
    again = client.post(
        "/v1/refunds", json={"payment": payment["id"], "amount": "1.00"}, headers=auth(key)
    )
    assert_problem(again, 422)  # nothing left to refund: refused before Stripe is asked
    assert len(charge["refunds"]["data"]) == 1


def test_a_refund_stripe_refuses_writes_nothing(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    _pay(client, key, invoice["id"])
    [charge] = [o for o in stub.objects.values() if o["object"] == "charge"]
    stub.refund_in_dashboard(charge["id"], 10800)  # Stripe has refunded it all already
    payment = client.get("/v1/payments", headers=auth(key)).json()["data"][0]
    with runtime.connection() as conn:
        before = table_counts(conn, stripe_book.id)
    refused = client.post(
        "/v1/refunds", json={"payment": payment["id"], "amount": "10.00"}, headers=auth(key)
    )
    assert_problem(refused, 422)
    with runtime.connection() as conn:
        assert table_counts(conn, stripe_book.id) == before
        assert entries_of_kind(conn, stripe_book.id, "refund") == []


def test_stripe_unreachable_leaves_the_attempt_pending_and_the_retry_reuses_its_key(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    stub.fault = "drop"  # Stripe charges, but its answer never arrives
    first = _pay(client, key, invoice["id"])
    assert (first["status"], first["amount_due"]) == ("open", "108.00")
    [attempt] = first["attempts"]
    assert (attempt["outcome"], attempt["code"]) == ("pending", "gateway_unavailable")
    assert first["next_action"] == {"type": "retry", "on": "2026-02-02"}  # pay again now
    with runtime.connection() as conn:
        assert table_counts(conn, stripe_book.id)[4] == 0  # nothing posted
    retried = _pay(client, key, invoice["id"])
    assert retried["status"] == "paid"
    assert [(a["id"], a["outcome"]) for a in retried["attempts"]] == [(attempt["id"], "succeeded")]
    assert stub.keys_seen == [f"attempt-{attempt['id']}"] * 2
    assert stub.intents_created == 1  # the same PaymentIntent came back: charged once
    with runtime.connection() as conn:
        assert len(entries_of_kind(conn, stripe_book.id, "payment")) == 1
        assert len(entries_of_kind(conn, stripe_book.id, "payment_fee")) == 1


def test_a_stripe_500_is_retryable_and_charges_once(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    stub.fault = "500"
    first = _pay(client, key, invoice["id"])
    assert [(a["outcome"], a["code"]) for a in first["attempts"]] == [
        ("pending", "gateway_unavailable")
    ]
    assert _pay(client, key, invoice["id"])["status"] == "paid"
    assert stub.intents_created == 1
    with runtime.connection() as conn:
        assert payment_rows(conn, stripe_book.id)[0][1:] == ("108.00", "stripe")


def test_a_card_on_stripe_without_an_api_key_is_422_and_writes_nothing(
    client: Any, runtime: Runtime, stripe_book: BookFixture
) -> None:
    key = stripe_book.admin_key
    customer = stripe_customer(client, key)
    invoice = create_invoice(client, key, customer["id"])
    cleared = client.patch(
        "/v1/book/settings", json={"stripe": {"api_key": None}}, headers=auth(key)
    )
    assert cleared.status_code == 200, cleared.text
    refused = client.post(f"/v1/invoices/{invoice['id']}/pay", json={}, headers=auth(key))
    assert_problem(refused, 422)
    with runtime.connection() as conn:
        assert table_counts(conn, stripe_book.id)[1] == 0


def test_a_yen_charge_uses_stripes_zero_decimal_amounts(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    customer = stripe_customer(client, key, currency="JPY")
    invoice = create_invoice(client, key, customer["id"], "1000")
    assert invoice["total"] == "1080"
    assert _pay(client, key, invoice["id"])["status"] == "paid"
    [intent] = [o for o in stub.objects.values() if o["object"] == "payment_intent"]
    assert (intent["amount"], intent["currency"]) == (1080, "jpy")
    with runtime.connection() as conn:  # fee 3.6 % of 1080 = 38.88 → 39
        assert entries_of_kind(conn, stripe_book.id, "payment_fee") == [
            [(CLEARING, "-39.00"), ("Expenses:Payment-Fees", "39.00")]
        ]


def test_minor_units_follow_stripes_table() -> None:
    assert to_minor(Money(Decimal("108.00"), "USD")) == 10800
    assert to_minor(Money(Decimal("1080"), "JPY")) == 1080
    assert to_minor(Money(Decimal("12.340"), "KWD")) == 12340
    with pytest.raises(InvalidBillingRequest):
        to_minor(Money(Decimal("12.345"), "KWD"))  # Stripe takes KWD in whole hundredths
    assert from_minor(10800, "usd") == Money(Decimal("108.00"), "USD")
    assert from_minor(1080, "jpy") == Money(Decimal("1080"), "JPY")
    assert str(from_minor(12340, "kwd").amount) == "12.340"


def test_a_fee_settled_in_another_currency_is_converted_at_stripes_rate() -> None:
    charge = {
        "currency": "eur",
        "balance_transaction": {"id": "txn_1", "fee": 343, "currency": "usd",
                                "exchange_rate": "1.08"},
    }  # fmt: skip
    assert fee_of(charge) == Money(Decimal("3.18"), "EUR")  # 3.43 / 1.08 = 3.1759…
    assert fee_of({"currency": "usd", "balance_transaction": None}) == Money.zero("USD")


def test_64_concurrent_pays_of_one_invoice_charge_stripe_once_and_never_over_allocate(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    barrier = threading.Barrier(64)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait()
        try:
            with unit_of_work(runtime.connection) as uow:
                pay_invoice(uow.conn, stripe_book.id, invoice["id"], None, TODAY)
                uow.commit()
            outcomes.append("paid")
        except DocumentState:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["paid"] + ["refused"] * 63
    assert stub.intents_created == 1
    got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(key)).json()
    assert (got["amount_paid"], got["amount_due"]) == ("108.00", "0.00")
    with runtime.connection() as conn:
        assert table_counts(conn, stripe_book.id)[1:3] == (1, 1)  # one attempt, one charge
        assert entries_of_kind(conn, stripe_book.id, "payment") == [
            [(CLEARING, "108.00"), (AR, "-108.00")]
        ]


def test_payouts_are_fetched_with_their_balance_transactions(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    from datetime import UTC, date, datetime

    from adapters.gateways.collection import stripe_gateway

    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    _pay(client, key, invoice["id"])
    payout = stub.payout(int(datetime(2026, 2, 4, tzinfo=UTC).timestamp()))
    with runtime.connection() as conn:
        gateway = stripe_gateway(conn, stripe_book.id)
        fetched = gateway.fetch_payout(payout["id"])
        listed = gateway.payouts(date(2026, 2, 4))
        assert gateway.payouts(date(2026, 2, 3)) == []
    assert (fetched.info.amount, fetched.info.arrival_date, fetched.info.status) == (
        Money(Decimal("104.57"), "USD"),
        date(2026, 2, 4),
        "paid",
    )
    assert sorted((t["type"], t["amount"], t["fee"]) for t in fetched.balance_transactions) == [
        ("charge", 10800, 343),
        ("payout", -10457, 0),
    ]
    assert listed == [fetched.info]


def test_a_refund_whose_answer_is_lost_is_retried_without_a_second_stripe_refund(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    invoice = create_invoice(client, key, stripe_customer(client, key)["id"])
    _pay(client, key, invoice["id"])
    payment = client.get("/v1/payments", headers=auth(key)).json()["data"][0]
    body = {"payment": payment["id"], "amount": "40.00"}
    stub.fault = "drop"  # Stripe refunds, its answer never arrives
    lost = client.post("/v1/refunds", json=body, headers=auth(key))
    assert_problem(lost, 503, "gateway_unavailable")
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "refund") == []  # rolled back
    retried = client.post("/v1/refunds", json=body, headers=auth(key))
    assert retried.status_code == 201, retried.text
    [charge] = [o for o in stub.objects.values() if o["object"] == "charge"]
    assert (len(charge["refunds"]["data"]), charge["amount_refunded"]) == (1, 4000)
    assert stub.keys_seen[-2] == stub.keys_seen[-1]  # the same Idempotency-Key twice
    with runtime.connection() as conn:
        assert entries_of_kind(conn, stripe_book.id, "refund") == [
            [
                (CLEARING, "-40.00"),
                ("Income:Contra:Refunds", "37.04"),
                ("Liabilities:Tax-Payable", "2.96"),
            ]
        ]


def test_a_card_saved_to_a_stripe_customer_is_charged_with_that_customer(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    from tests.payments.helpers import create_customer

    key = stripe_book.admin_key
    customer = create_customer(client, key)
    body = {"type": "card", "gateway": "stripe", "token": "pm_card_visa", "last4": "4242",
            "default": True, "metadata": {"stripe_customer": "cus_stub42"}}  # fmt: skip
    added = client.post(
        f"/v1/customers/{customer['id']}/payment-methods", json=body, headers=auth(key)
    )
    assert added.status_code == 201, added.text
    invoice = create_invoice(client, key, customer["id"])
    assert _pay(client, key, invoice["id"])["status"] == "paid"
    [intent] = [o for o in stub.objects.values() if o["object"] == "payment_intent"]
    assert (intent["customer"], intent["payment_method"]) == ("cus_stub42", "pm_card_visa")
