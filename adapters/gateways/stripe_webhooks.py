"""Stripe's webhooks for a book (`POST /v1/webhooks/stripe/{book_id}`), verified,
stored once per event id and acted on in the same transaction:

- `payment_intent.succeeded`: posts the payment (and the fee from the charge's
  balance transaction) unless the charge's synchronous answer already did —
  a payment names its gateway charge, unique per book, so exactly once;
- `payment_intent.payment_failed`: a still-pending attempt is marked failed
  with Stripe's decline code (nothing posts);
- `charge.refunded`: a refund made in Stripe's dashboard (more refunded there
  than in the books) is posted as a refund, never sent back to Stripe;
- `charge.dispute.created` / `charge.dispute.closed`: the dispute entries of the
  fake gateway (opened, then won or lost), with Stripe's fee and due date;
- `payout.paid`: the payout (fetched with its balance transactions) moves the
  net from Assets:Clearing:Stripe to the bank.

An event about something that is not this book's (no attempt of ours in the
PaymentIntent's metadata, an unknown charge) is stored and changes nothing. A
replayed event id changes nothing: the insert of the event is the first write,
so a second delivery, even a concurrent one, waits for the first and stops.
Entries a webhook posts are dated the book's today (the day it learns of
them); a payout on its arrival date.

Lock order is the charge path's: customer, then invoice, then the attempt.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from adapters.gateways.base import ChargeOutcome, ChargeResult, WebhookRejected, clearing_account
from adapters.gateways.collection import (
    Attempt,
    _lock,
    close_dispute,
    get_attempt,
    record_charge_payment,
    record_dispute,
    stripe_gateway,
)
from adapters.gateways.stripe import NAME, day_of, fee_of, from_minor
from adapters.gateways.stripe_signature import verify_signature
from billing.collection import payout_entry
from billing.postgres.credit_notes import lock_customer
from billing.postgres.payments import Payment, create_refund, get_payment
from billing.postgres.posting import post_entries
from billing.postgres.settings import read_settings
from ledger.errors import NotFound
from ledger.money import Money
from ledger.postgres.books import ensure_account

__all__ = ["HANDLED", "receive_stripe_event"]

Handler = Callable[[psycopg.Connection, uuid.UUID, dict[str, Any], date], None]


def receive_stripe_event(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    payload: bytes,
    header: str | None,
    now: int,
    today: date,
) -> tuple[str, bool]:
    """Verify a Stripe webhook with the book's `stripe.webhook_secret`, store it once
    and act on it: (event id, whether it was a replay). A bad or stale signature
    raises WebhookRejected before anything is written."""
    stripe = read_settings(conn, book_id).get("stripe") or {}
    secret = stripe.get("webhook_secret") if isinstance(stripe, dict) else None
    if not isinstance(secret, str) or not secret:
        raise WebhookRejected("this book has no stripe.webhook_secret: it takes no Stripe events")
    verify_signature(payload, header, secret, now)
    try:
        event = json.loads(payload)
    except ValueError:
        raise WebhookRejected("the webhook body is not JSON") from None
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
    ):
        raise WebhookRejected("a Stripe event is an object with an id and a type")
    stored = conn.execute(
        "insert into webhook_events (book_id, provider, event_id, type, payload)"
        " values (%s, 'stripe', %s, %s, %s) on conflict do nothing returning 1",
        (book_id, event["id"], event["type"], Jsonb(event)),
    ).fetchone()
    if stored is None:
        return event["id"], True
    handler = HANDLED.get(event["type"])
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if handler is not None and isinstance(obj, dict):
        handler(conn, book_id, obj, today)
    return event["id"], False


# --- payment intents ----------------------------------------------------------------


def _attempt_of(
    conn: psycopg.Connection, book_id: uuid.UUID, intent: Mapping[str, Any], today: date
) -> Attempt | None:
    """Our attempt named in the PaymentIntent's metadata, locked after its customer and
    invoice. Recreated from the metadata when the transaction that made it rolled
    back after Stripe had charged (the money was taken: it must be recorded)."""
    meta = intent.get("metadata") or {}
    if meta.get("book") != str(book_id):
        return None
    try:
        attempt_id = uuid.UUID(str(meta.get("attempt")))
        invoice_id = uuid.UUID(str(meta.get("invoice")))
    except ValueError:
        return None
    try:
        _lock(conn, book_id, str(invoice_id))
    except NotFound:
        return None
    try:
        return get_attempt(conn, book_id, attempt_id, lock=True)
    except NotFound:
        pass
    pm = conn.execute(
        "select pm.id from payment_methods pm join invoices i on i.book_id = pm.book_id"
        " and i.customer_id = pm.customer_id where pm.book_id = %s and i.id = %s"
        " and pm.gateway = %s and pm.token = %s order by pm.created_at limit 1",
        (book_id, invoice_id, NAME, intent.get("payment_method")),
    ).fetchone()
    if pm is None:
        return None
    amount = from_minor(int(intent["amount"]), str(intent["currency"]))
    conn.execute(
        "insert into payment_attempts (book_id, id, invoice_id, payment_method_id, amount,"
        " currency, at) select %s, %s, %s, %s, %s, %s, %s",
        (book_id, attempt_id, invoice_id, pm[0], amount.amount, amount.currency, today),
    )
    return get_attempt(conn, book_id, attempt_id, lock=True)


def _charge_id(intent: Mapping[str, Any]) -> str:
    latest = intent.get("latest_charge")
    if isinstance(latest, Mapping):
        return str(latest["id"])
    return str(latest or intent["id"])


def intent_succeeded(
    conn: psycopg.Connection, book_id: uuid.UUID, intent: dict[str, Any], today: date
) -> None:
    attempt = _attempt_of(conn, book_id, intent, today)
    if attempt is None or attempt.payment_id is not None:
        return  # not ours, or the charge's own answer posted it already
    gateway = stripe_gateway(conn, book_id)
    charge_id = _charge_id(intent)
    charge = gateway.retrieve_charge(charge_id)
    fee = fee_of(charge)
    received = intent.get("amount_received") or intent["amount"]
    amount = from_minor(int(received), str(intent["currency"]))
    token = str(intent.get("payment_method") or "")
    gateway.mirror_charge(charge_id, attempt.id, token, amount, fee, "succeeded", None, attempt.at)
    customer = conn.execute(
        "select customer_id from invoices where book_id = %s and id = %s",
        (book_id, attempt.invoice_id),
    ).fetchone()
    assert customer is not None  # _attempt_of locked it
    payment_id = record_charge_payment(
        conn,
        book_id,
        NAME,
        customer[0],
        attempt,
        amount,
        ChargeResult(charge_id, ChargeOutcome.SUCCEEDED, None, fee),
        {"payment_intent": str(intent["id"])},
    )
    conn.execute(
        "update payment_attempts set outcome = 'succeeded', code = null, charge_id = %s,"
        " payment_id = %s where book_id = %s and id = %s",
        (charge_id, payment_id, book_id, attempt.id),
    )


def intent_failed(
    conn: psycopg.Connection, book_id: uuid.UUID, intent: dict[str, Any], today: date
) -> None:
    attempt = _attempt_of(conn, book_id, intent, today)
    if attempt is None or attempt.outcome != "pending":
        return  # the charge's answer recorded the outcome already
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code") or "card_declined"
    outcome = "requires_action" if code == "authentication_required" else "failed"
    conn.execute(
        "update payment_attempts set outcome = %s, code = %s, charge_id = %s"
        " where book_id = %s and id = %s",
        (outcome, code, _charge_id(intent), book_id, attempt.id),
    )


# --- charges: refunds and disputes ----------------------------------------------------


def _payment_locked(conn: psycopg.Connection, book_id: uuid.UUID, charge_id: str) -> Payment | None:
    found = conn.execute(
        "select id, customer_id from payments where book_id = %s and gateway_charge = %s",
        (book_id, charge_id),
    ).fetchone()
    if found is None:
        return None
    lock_customer(conn, book_id, found[1])
    return get_payment(conn, book_id, str(found[0]))


def charge_refunded(
    conn: psycopg.Connection, book_id: uuid.UUID, charge: dict[str, Any], today: date
) -> None:
    payment = _payment_locked(conn, book_id, str(charge["id"]))
    if payment is None:
        return
    in_stripe = from_minor(int(charge.get("amount_refunded") or 0), str(charge["currency"]))
    missing = in_stripe.amount - payment.refunded
    if missing <= 0:
        return  # refunded through the API: posted when it was sent
    create_refund(
        conn,
        book_id,
        missing,
        today,
        payment_ref=str(payment.id),
        reason=f"refunded in Stripe ({charge['id']})",
    )


def _dispute_fee(dispute: Mapping[str, Any], currency: str) -> Money:
    """Stripe's dispute fee, from the dispute's balance transactions."""
    fee = Money.zero(currency)
    for txn in dispute.get("balance_transactions") or []:
        if isinstance(txn, Mapping) and txn.get("fee"):
            fee = fee + fee_of({"currency": currency, "balance_transaction": txn})
    return fee


def dispute_created(
    conn: psycopg.Connection, book_id: uuid.UUID, dispute: dict[str, Any], today: date
) -> None:
    charge_id = str(dispute.get("charge"))
    payment = _payment_locked(conn, book_id, charge_id)
    if payment is None:
        return
    opened = conn.execute(
        "select 1 from disputes where book_id = %s and charge_id = %s", (book_id, charge_id)
    ).fetchone()
    if opened is not None:
        return
    amount = from_minor(int(dispute["amount"]), str(dispute["currency"]))
    evidence = dispute.get("evidence_details") or {}
    ensure_account(conn, book_id, clearing_account(NAME))
    record_dispute(
        conn,
        book_id,
        NAME,
        charge_id,
        uuid.uuid5(uuid.NAMESPACE_URL, f"stripe:dispute:{dispute['id']}"),
        amount,
        _dispute_fee(dispute, amount.currency),
        today,
        day_of(evidence.get("due_by")),
    )


def dispute_closed(
    conn: psycopg.Connection, book_id: uuid.UUID, dispute: dict[str, Any], today: date
) -> None:
    outcome = dispute.get("status")
    if outcome not in ("won", "lost"):
        return  # warning_closed: an inquiry that never took funds
    found = conn.execute(
        "select id, status from disputes where book_id = %s and charge_id = %s",
        (book_id, str(dispute.get("charge"))),
    ).fetchone()
    if found is None or found[1] != "needs_response":
        return
    close_dispute(conn, book_id, str(found[0]), str(outcome), today, by_gateway=True)


# --- payouts -------------------------------------------------------------------------


def payout_paid(
    conn: psycopg.Connection, book_id: uuid.UUID, payout: dict[str, Any], today: date
) -> None:
    fetched = stripe_gateway(conn, book_id).fetch_payout(str(payout["id"]))
    info = fetched.info
    inserted = conn.execute(
        "insert into payouts (book_id, id, gateway, amount, currency, arrival_date, status)"
        " values (%s, %s, %s, %s, %s, %s, 'paid') on conflict (book_id, id) do nothing"
        " returning id",
        (
            book_id,
            info.payout_id,
            NAME,
            info.amount.amount,
            info.amount.currency,
            info.arrival_date,
        ),
    ).fetchone()
    if inserted is None or info.amount.is_zero():
        return
    clearing = clearing_account(NAME)
    ensure_account(conn, book_id, clearing)
    entry = payout_entry(
        info.payout_id, info.arrival_date, clearing, info.amount, fetched.stripe_id
    )
    posted = post_entries(conn, book_id, [entry])[0]
    conn.execute(
        "update payouts set entry_id = %s where book_id = %s and id = %s",
        (posted.id, book_id, info.payout_id),
    )


HANDLED: dict[str, Handler] = {
    "payment_intent.succeeded": intent_succeeded,
    "payment_intent.payment_failed": intent_failed,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": dispute_created,
    "charge.dispute.closed": dispute_closed,
    "payout.paid": payout_paid,
}
