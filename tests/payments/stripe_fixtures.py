"""Shared steps of the Stripe tests: a book on the simulated clock whose `stripe`
settings point at a local stub server, customers with Stripe cards, and webhook
deliveries (through HTTP, or straight into the handler from several threads)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import psycopg

from adapters.gateways.stripe_webhooks import receive_stripe_event
from adapters.runtime import Runtime
from ledger.postgres.unit_of_work import unit_of_work
from tests.conftest import BookFixture
from tests.integration.http_fixtures import auth
from tests.payments.helpers import create_customer
from tests.payments.stripe_stub import StripeStub

CLEARING = "Assets:Clearing:Stripe"
TODAY = date(2026, 2, 2)  # a Monday


def stripe_customer(
    client: Any,
    key: str,
    token: str = "pm_card_visa",
    collection_method: str = "send_invoice",
    **extra: Any,
) -> dict[str, Any]:
    customer = create_customer(client, key, collection_method, **extra)
    body = {"type": "card", "gateway": "stripe", "token": token, "last4": "4242", "default": True}
    added = client.post(
        f"/v1/customers/{customer['id']}/payment-methods", json=body, headers=auth(key)
    )
    assert added.status_code == 201, added.text
    return customer


def deliver(client: Any, book: BookFixture, stub: StripeStub, payload: bytes) -> dict[str, Any]:
    """POST a signed event to the book's webhook endpoint, as Stripe would."""
    answered = client.post(
        f"/v1/webhooks/stripe/{book.id}",
        content=payload,
        headers={"Content-Type": "application/json", "Stripe-Signature": stub.signature(payload)},
    )
    assert answered.status_code == 200, answered.text
    result: dict[str, Any] = answered.json()
    return result


def deliver_direct(
    runtime: Runtime, book_id: uuid.UUID, stub: StripeStub, payload: bytes
) -> tuple[str, bool]:
    """What the endpoint does, on a connection of its own (for concurrent deliveries)."""
    with unit_of_work(runtime.connection) as uow:
        done = receive_stripe_event(
            uow.conn, book_id, payload, stub.signature(payload), _now(), TODAY
        )
        uow.commit()
    return done


def _now() -> int:
    import time

    return int(time.time())


def payment_rows(conn: psycopg.Connection, book_id: uuid.UUID) -> list[tuple[str, str, str]]:
    """(gateway charge, amount, method) of each payment."""
    rows = conn.execute(
        "select gateway_charge, amount, method from payments where book_id = %s order by 1",
        (book_id,),
    ).fetchall()
    return [(r[0], f"{r[1]:.2f}", r[2]) for r in rows]
