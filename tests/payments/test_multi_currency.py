"""One customer billed and paying in several currencies, in a USD book: a USD
invoice (100.00 + 8 % tax) and a EUR invoice (1,000.00 + 8 % tax) issued at
EUR/USD 1.10; the USD one paid by bank transfer, the EUR one charged through
Stripe in euros when the rate is 1.08. Each payment settles only its own
currency's invoice; the EUR settlement realizes
round(1,080.00 × 1.08) − round(1,080.00 × 1.10) = 1,166.40 − 1,188.00 = −21.60 USD."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.runtime import Runtime
from adapters.services import verify_everything
from tests.conftest import BookFixture
from tests.integration.http_fixtures import assert_problem, auth, open_client
from tests.payments.helpers import entries_of_kind
from tests.payments.stripe_fixtures import CLEARING, stripe_customer
from tests.payments.stripe_stub import StripeStub

AR = "Assets:Receivable:Trade"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Any]:
    with open_client(runtime) as c:
        yield c


def _invoice(client: Any, key: str, customer: str, amount: str, currency: str) -> dict[str, Any]:
    body = {
        "customer": customer,
        "currency": currency,
        "lines": [{"description": "Consulting", "unit_amount": amount}],
        "auto_finalize": True,
    }
    created = client.post("/v1/invoices", json=body, headers=auth(key))
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def _entries_by_currency(
    runtime: Runtime, book: BookFixture, kind: str
) -> list[list[tuple[str, str, str]]]:
    with runtime.connection() as conn:
        rows = conn.execute(
            "select e.id, a.name, p.amount, p.currency from journal_entries e"
            " join postings p on p.book_id = e.book_id and p.entry_id = e.id"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " where e.book_id = %s and e.metadata->>'kind' = %s order by e.recorded_at, e.id",
            (book.id, kind),
        ).fetchall()
    out: dict[Any, list[tuple[str, str, str]]] = {}
    for entry_id, account, amount, currency in rows:
        out.setdefault(entry_id, []).append((account, f"{amount:.2f}", currency))
    return [sorted(v) for v in out.values()]


def test_one_customer_billed_and_paid_in_usd_and_eur_with_realized_fx(
    client: Any, runtime: Runtime, stripe_book: BookFixture, stub: StripeStub
) -> None:
    key = stripe_book.admin_key
    rates = [
        {"date": "2026-02-02", "base": "EUR", "quote": "USD", "rate": "1.10"},
        {"date": "2026-02-10", "base": "EUR", "quote": "USD", "rate": "1.08"},
    ]
    assert client.post("/v1/fx-rates", json=rates, headers=auth(key)).status_code == 201
    customer = stripe_customer(client, key)["id"]  # bills in USD by default
    usd = _invoice(client, key, customer, "100.00", "USD")
    eur = _invoice(client, key, customer, "1000.00", "EUR")
    assert (usd["currency"], usd["total"], eur["currency"], eur["total"]) == (
        "USD",
        "108.00",
        "EUR",
        "1080.00",
    )
    wrong = client.post(
        "/v1/payments",
        json={"customer": customer, "amount": "108.00", "currency": "EUR",
              "method": "bank_transfer", "invoice": usd["id"]},
        headers=auth(key),
    )  # fmt: skip
    assert_problem(wrong, 422, "currency_mismatch")
    paid_usd = client.post(
        "/v1/payments",
        json={"customer": customer, "amount": "108.00", "currency": "USD",
              "method": "bank_transfer"},
        headers=auth(key),
    )  # fmt: skip
    assert paid_usd.status_code == 201, paid_usd.text
    assert [a["invoice"] for a in paid_usd.json()["allocations"]] == [usd["id"]]

    moved = client.post("/v1/clock", json={"now": "2026-02-10"}, headers=auth(key))
    assert moved.status_code == 200, moved.text
    charged = client.post(f"/v1/invoices/{eur['id']}/pay", json={}, headers=auth(key))
    assert charged.status_code == 200, charged.text
    assert (charged.json()["status"], charged.json()["amount_paid"]) == ("paid", "1080.00")
    [intent] = [o for o in stub.objects.values() if o["object"] == "payment_intent"]
    assert (intent["amount"], intent["currency"]) == (108000, "eur")

    assert _entries_by_currency(runtime, stripe_book, "payment") == [
        [("Assets:Bank:Operating", "108.00", "USD"), (AR, "-108.00", "USD")],
        [(CLEARING, "1080.00", "EUR"), (AR, "-1080.00", "EUR")],
    ]
    assert _entries_by_currency(runtime, stripe_book, "payment_fee") == [
        [(CLEARING, "-31.62", "EUR"), ("Expenses:Payment-Fees", "31.62", "EUR")]
    ]
    assert _entries_by_currency(runtime, stripe_book, "fx_realized") == [
        [("Assets:Receivable:FX-Translation", "-21.60", "USD"),
         ("Income:FX:Realized", "21.60", "USD")]
    ]  # fmt: skip
    for invoice in (usd, eur):
        got = client.get(f"/v1/invoices/{invoice['id']}", headers=auth(key)).json()
        assert (got["status"], got["amount_due"]) == ("paid", "0.00")
    with runtime.connection() as conn:
        assert len(entries_of_kind(conn, stripe_book.id, "payment")) == 2
        assert verify_everything(conn, stripe_book.id) == []


def test_an_overpayment_in_a_second_currency_is_credit_in_that_currency(
    client: Any, runtime: Runtime, stripe_book: BookFixture
) -> None:
    key = stripe_book.admin_key
    customer = stripe_customer(client, key)["id"]
    usd = _invoice(client, key, customer, "100.00", "USD")
    eur = _invoice(client, key, customer, "50.00", "EUR")
    paid = client.post(
        "/v1/payments",
        json={"customer": customer, "amount": "100.00", "currency": "EUR",
              "method": "bank_transfer"},
        headers=auth(key),
    )  # fmt: skip
    assert paid.status_code == 201, paid.text
    assert ([a["invoice"] for a in paid.json()["allocations"]], paid.json()["unapplied"]) == (
        [eur["id"]],
        "46.00",
    )
    assert _entries_by_currency(runtime, stripe_book, "payment") == [
        [
            ("Assets:Bank:Operating", "100.00", "EUR"),
            (AR, "-54.00", "EUR"),
            ("Liabilities:Customer-Credit", "-46.00", "EUR"),
        ]
    ]
    got = client.get(f"/v1/invoices/{usd['id']}", headers=auth(key)).json()
    assert (got["status"], got["amount_due"]) == ("open", "108.00")  # untouched
    balances = client.get(f"/v1/customers/{customer}", headers=auth(key)).json()["balances"]
    assert balances == [
        {"currency": "USD", "balance_due": "108.00", "credit_balance": "0.00"},
        {"currency": "EUR", "balance_due": "0.00", "credit_balance": "46.00"},
    ]
