"""Collecting invoices through gateways: pay now, auto-collection at
finalization, payouts and disputes as the book's clock moves, refunds back
through the gateway that took the money. Entries in billing.collection.

Attempts are an outbox. Paying an invoice records an attempt (`pending`)
under the customer's and the invoice's row locks, then executes it: the
gateway is called with the attempt's id as idempotency key, the outcome is
recorded on the attempt, and a success posts the payment (Clearing | AR via
billing.postgres.payments.create_payment) and the fee (a second entry,
Payment-Fees | Clearing). Finalizing an invoice of a `charge_automatically`
customer only records the pending attempt, in the finalize transaction; the
request executes it right after that commit, in a transaction of its own
(`collect_pending`), so a gateway call never runs inside the transaction
that posts the invoice. The fake gateway's "call" is a write to its own
tables on the same connection, atomic with the entries it causes. Stripe
(adapters/gateways/stripe.py) is called over the network under the same locks:
when its answer is lost the attempt stays pending (code `gateway_unavailable`,
nothing posted) and the next `pay` resumes it with the same idempotency key;
when our commit is lost after Stripe charged, its `payment_intent.succeeded`
webhook records the charge (adapters/gateways/stripe_webhooks.py). Either way
one payment per gateway charge: `payments.gateway_charge` is unique per book.

Concurrency: the customer row, then the invoice row, are locked before the
amount due is read, so concurrent attempts on one invoice run one after the
other; the second finds nothing due (409) and never charges or allocates.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from adapters.gateways.base import (
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    GatewayUnavailable,
    clearing_account,
)
from adapters.gateways.fake import FakeGateway, dispute_fee_setting, fee_setting
from adapters.gateways.stripe import StripeGateway
from billing.collection import (
    dispute_lost_entry,
    dispute_opened_entry,
    dispute_won_entry,
    fee_entry,
    payout_entry,
)
from billing.errors import DocumentState, InvalidBillingRequest
from billing.payment_methods import card_expired
from billing.payments import plan_dispute_loss
from billing.postgres.credit_notes import lock_customer, lock_invoices
from billing.postgres.customers import credit_balance, get_customer
from billing.postgres.dunning import lock_suspended, next_action_json, steps_json
from billing.postgres.events import record_event
from billing.postgres.ids import parse_id
from billing.postgres.invoices import invoice_id_of, receivable_amounts
from billing.postgres.payment_methods import PaymentMethod, get_payment_method
from billing.postgres.payments import (
    Payment,
    Refund,
    _refund_sources,
    create_payment,
    get_payment,
)
from billing.postgres.posting import post_entries
from billing.postgres.settings import read_settings
from ledger.errors import NotFound
from ledger.money import Money
from ledger.postgres.books import ensure_account
from ledger.postgres.unit_of_work import ConnectionSource

GATEWAYS = ("fake", "stripe")


@dataclass(frozen=True, slots=True)
class Attempt:
    id: uuid.UUID
    invoice_id: uuid.UUID
    payment_method_id: uuid.UUID
    amount: Decimal
    currency: str
    at: date
    outcome: str
    code: str | None
    charge_id: str | None
    payment_id: uuid.UUID | None


_ATTEMPT = (
    "id, invoice_id, payment_method_id, amount, currency, at, outcome, code, charge_id, payment_id"
)


def _stripe_settings(settings: dict[str, Any]) -> dict[str, Any]:
    found = settings.get("stripe")
    return found if isinstance(found, dict) else {}


def available_gateways(conn: psycopg.Connection, book_id: uuid.UUID) -> list[str]:
    """The fake gateway always; Stripe once the book has a `stripe.api_key`."""
    configured = bool(_stripe_settings(read_settings(conn, book_id)).get("api_key"))
    return ["fake", "stripe"] if configured else ["fake"]


def fake_gateway(conn: psycopg.Connection, book_id: uuid.UUID) -> FakeGateway:
    settings = read_settings(conn, book_id)
    return FakeGateway(conn, book_id, fee_setting(settings), dispute_fee_setting(settings))


def stripe_gateway(conn: psycopg.Connection, book_id: uuid.UUID) -> StripeGateway:
    """The book's Stripe account (settings `stripe.api_key`, `stripe.base_url`)."""
    conf = _stripe_settings(read_settings(conn, book_id))
    key = conf.get("api_key")
    if not isinstance(key, str) or not key:
        raise InvalidBillingRequest(
            "this book has no stripe.api_key: set it with PATCH /v1/book/settings to charge"
            " through Stripe",
            gateway="stripe",
        )
    return StripeGateway(conn, book_id, key, conf.get("base_url"), conf.get("webhook_secret"))


def gateway_for(
    conn: psycopg.Connection, book_id: uuid.UUID, name: str | None
) -> FakeGateway | StripeGateway:
    if name == "fake":
        return fake_gateway(conn, book_id)
    if name == "stripe":
        return stripe_gateway(conn, book_id)
    raise InvalidBillingRequest(
        f"gateway {name!r} is not available in this build: use fake or stripe", gateway=name
    )


def _due(conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID) -> Decimal:
    amounts = receivable_amounts(conn, book_id, [invoice_id])
    return Decimal(amounts.get(invoice_id, (Decimal(0),) * 4)[0])


def _lock(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str
) -> tuple[dict[str, Any], Decimal]:
    """The customer's suspended subscriptions (a payment resumes them: `lock_suspended`),
    customer row, then invoice row, locked; the invoice and what it still owes."""
    invoice_id = invoice_id_of(conn, book_id, invoice_ref)
    row = conn.execute(
        "select customer_id from invoices where book_id = %s and id = %s", (book_id, invoice_id)
    ).fetchone()
    if row is None:
        raise NotFound(f"invoice {invoice_ref!r} does not exist in this book")
    lock_suspended(conn, book_id, row[0])
    lock_customer(conn, book_id, row[0])
    with conn.cursor(row_factory=dict_row) as cur:
        invoice = cur.execute(
            "select id, customer_id, number, status, currency from invoices"
            " where book_id = %s and id = %s for update",
            (book_id, invoice_id),
        ).fetchone()
    assert invoice is not None
    return invoice, _due(conn, book_id, invoice_id)


def _record_attempt(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice: dict[str, Any],
    due: Decimal,
    pm_ref: str | None,
    on: date,
    amount: Decimal | None = None,
) -> uuid.UUID:
    label = invoice["number"] or invoice["id"]
    if invoice["status"] != "open" or due <= 0:
        raise DocumentState(
            f"invoice {label} has nothing to pay ({invoice['status']}, {due} due)",
            invoice=str(invoice["id"]),
        )
    if amount is not None:  # a partial capture: at most what is due, in whole minor units
        charge = Money.exact(amount, invoice["currency"]).amount
        if not 0 < charge <= due:
            raise InvalidBillingRequest(
                f"amount {amount} must be greater than zero and at most the {due} due",
                amount=str(amount),
                amount_due=str(due),
            )
        due = charge
    customer = get_customer(conn, book_id, str(invoice["customer_id"]))
    if pm_ref is None and customer.default_payment_method is None:
        raise InvalidBillingRequest(
            f"customer {customer.name} has no default payment method: name a payment_method",
            invoice=str(invoice["id"]),
        )
    pm = get_payment_method(
        conn, book_id, customer.id, pm_ref or str(customer.default_payment_method)
    )
    if pm.detached_at is not None:
        raise InvalidBillingRequest(f"payment method {pm.id} is detached")
    if pm.type != "card":
        raise InvalidBillingRequest(
            f"a {pm.type} payment method is collected by a collection run, not charged now",
            payment_method=str(pm.id),
        )
    gateway_for(conn, book_id, pm.gateway)  # refused before anything is written
    pending = conn.execute(
        "select id from payment_attempts where book_id = %s and invoice_id = %s"
        " and outcome = 'pending'",
        (book_id, invoice["id"]),
    ).fetchone()
    if pending is not None:
        # The outbox holds one already (queued at finalization, or its gateway could not
        # be reached): that one is resumed with its own idempotency key, never a second
        # charge whose key the gateway has not seen.
        resumed: uuid.UUID = pending[0]
        return resumed
    attempt_id = uuid.uuid4()
    conn.execute(
        "insert into payment_attempts (book_id, id, invoice_id, payment_method_id, amount,"
        " currency, at) values (%s, %s, %s, %s, %s, %s, %s)",
        (book_id, attempt_id, invoice["id"], pm.id, due, invoice["currency"], on),
    )
    return attempt_id


def _execute(conn: psycopg.Connection, book_id: uuid.UUID, attempt_id: uuid.UUID) -> Attempt:
    """Run a pending attempt (the invoice is locked by the caller): charge, record, post."""
    attempt = get_attempt(conn, book_id, attempt_id, lock=True)
    if attempt.outcome != "pending":
        return attempt
    due = _due(conn, book_id, attempt.invoice_id)
    pm = get_payment_method(conn, book_id, None, str(attempt.payment_method_id))
    if due <= 0:  # paid some other way since it was queued: nothing to charge
        conn.execute(
            "update payment_attempts set outcome = 'failed', code = 'nothing_due'"
            " where book_id = %s and id = %s",
            (book_id, attempt.id),
        )
        return get_attempt(conn, book_id, attempt.id)
    if card_expired(pm.exp_month, pm.exp_year, attempt.at):
        # As a gateway would decline it (Stripe: expired_card), without asking: the
        # dunning schedule retries, and a new card from the customer is what helps.
        conn.execute(
            "update payment_attempts set outcome = 'failed', code = 'expired_card'"
            " where book_id = %s and id = %s",
            (book_id, attempt.id),
        )
        return get_attempt(conn, book_id, attempt.id)
    # The amount queued stays the amount charged: a resumed attempt must send the
    # gateway the same request under the same idempotency key.
    amount = Money(min(due, attempt.amount), attempt.currency)
    gateway = gateway_for(conn, book_id, pm.gateway)
    request = ChargeRequest(
        attempt.id,
        pm.token or "",
        amount,
        attempt.at,
        metadata={
            "book": str(book_id),
            "invoice": str(attempt.invoice_id),
            "customer": str(pm.customer_id),
        },
        customer=_gateway_customer(pm),
    )
    try:
        result = gateway.charge(request)
    except GatewayUnavailable:
        # Unknown outcome: nothing posts; the attempt stays pending (the next pay or
        # the gateway's webhook settles it) and says why.
        conn.execute(
            "update payment_attempts set code = %s where book_id = %s and id = %s",
            (GatewayUnavailable.code, book_id, attempt.id),
        )
        return get_attempt(conn, book_id, attempt.id)
    payment_id = None
    if result.outcome is ChargeOutcome.SUCCEEDED:
        payment_id = record_charge_payment(
            conn, book_id, gateway.name, pm.customer_id, attempt, amount, result
        )
    conn.execute(
        "update payment_attempts set outcome = %s, code = %s, charge_id = %s, payment_id = %s"
        " where book_id = %s and id = %s",
        (result.outcome.value, result.code, result.charge_id, payment_id, book_id, attempt.id),
    )
    return get_attempt(conn, book_id, attempt.id)


def _gateway_customer(pm: PaymentMethod) -> str | None:
    """The gateway's own customer a stored card belongs to (metadata.stripe_customer)."""
    meta = pm.details.get("metadata") if isinstance(pm.details, dict) else None
    found = meta.get("stripe_customer") if isinstance(meta, dict) else None
    return found if isinstance(found, str) and found else None


def record_charge_payment(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    gateway: str,
    customer_id: uuid.UUID,
    attempt: Attempt,
    amount: Money,
    result: ChargeResult,
    extra: dict[str, str] | None = None,
) -> uuid.UUID:
    """The payment of a succeeded charge and its fee, once per charge: whoever comes
    second (the charge's answer or its webhook, both under the customer's and the
    invoice's locks) finds the first one's payment. payments.gateway_charge is unique
    per book, so the database refuses a second payment even if that were missed."""
    found = conn.execute(
        "select id from payments where book_id = %s and gateway_charge = %s",
        (book_id, result.charge_id),
    ).fetchone()
    if found is not None:
        existing: uuid.UUID = found[0]
        return existing
    clearing = clearing_account(gateway)
    ensure_account(conn, book_id, clearing)
    status = conn.execute(
        "select status from invoices where book_id = %s and id = %s",
        (book_id, attempt.invoice_id),
    ).fetchone()
    payable = status is not None and status[0] in ("open", "uncollectible")
    payment = create_payment(
        conn,
        book_id,
        str(customer_id),
        amount.amount,
        amount.currency,
        gateway,
        attempt.at,
        # money the gateway took is recorded even when the invoice was settled some
        # other way meanwhile: it is allocated oldest first, the rest kept as credit
        invoice_ref=str(attempt.invoice_id) if payable else None,
        reference=result.charge_id,
        metadata={"charge": result.charge_id, "attempt": str(attempt.id), **(extra or {})},
        gateway_charge=result.charge_id,
    )
    if not result.fee.is_zero():
        entry = fee_entry(
            payment.id, str(customer_id), attempt.at, clearing, result.fee, result.charge_id
        )
        post_entries(conn, book_id, [entry])
    return payment.id


def pay_invoice(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice_ref: str,
    payment_method: str | None,
    on: date,
    amount: Decimal | None = None,
) -> Attempt:
    """Charge what the invoice still owes now, or `amount` of it (a partial capture:
    the payment and its fee post for that amount; the rest stays due)
    (`POST /v1/invoices/{id}/pay`)."""
    invoice, due = _lock(conn, book_id, invoice_ref)
    attempt_id = _record_attempt(conn, book_id, invoice, due, payment_method, on, amount)
    return _execute(conn, book_id, attempt_id)


def queue_auto_collection(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str, on: date
) -> uuid.UUID | None:
    """In the finalize transaction: the outbox row of a `charge_automatically`
    customer's invoice (nothing for send_invoice customers or when nothing is due)."""
    invoice, due = _lock(conn, book_id, invoice_ref)
    customer = get_customer(conn, book_id, str(invoice["customer_id"]))
    if customer.collection_method != "charge_automatically" or due <= 0:
        return None
    if customer.default_payment_method is None:
        return None  # nothing to charge: the invoice waits for a payment (send_invoice way)
    pm = get_payment_method(conn, book_id, customer.id, str(customer.default_payment_method))
    if pm.type != "card" or pm.gateway not in available_gateways(conn, book_id):
        return None  # debits go by collection runs; an unavailable gateway waits for `pay`
    return _record_attempt(conn, book_id, invoice, due, None, on)


def collect_pending(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str
) -> list[Attempt]:
    """After the finalize commit: execute the invoice's pending attempts."""
    invoice, _ = _lock(conn, book_id, invoice_ref)
    ids = [
        r[0]
        for r in conn.execute(
            "select id from payment_attempts where book_id = %s and invoice_id = %s"
            " and outcome = 'pending' order by created_at, id",
            (book_id, invoice["id"]),
        )
    ]
    return [_execute(conn, book_id, i) for i in ids]


def collect_unattempted(
    connect: ConnectionSource,
    book_id: uuid.UUID,
    today: date,
) -> list[Attempt]:
    """After a billing run: charge each open invoice of a `charge_automatically`
    customer with a card by default that no attempt has tried yet, one
    transaction per invoice. The invoices themselves are the outbox here (the
    run finalizes in set-based batches): a run cut short is picked up by the
    next call, and an invoice is never tried twice (checked under its lock)."""
    with connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "select i.id from invoices i"
                " join customers c on c.book_id = i.book_id and c.id = i.customer_id"
                " join payment_methods pm on pm.book_id = c.book_id"
                "   and pm.id = c.default_payment_method"
                " where i.book_id = %s and i.status = 'open' and i.issue_date <= %s"
                " and c.collection_method = 'charge_automatically' and pm.type = 'card'"
                " and pm.gateway = any(%s)"
                " and pm.detached_at is null and not exists (select 1 from payment_attempts a"
                "   where a.book_id = i.book_id and a.invoice_id = i.id)"
                " order by i.issue_date, i.id",
                (book_id, today, available_gateways(conn, book_id)),
            )
        ]
        conn.rollback()
    done: list[Attempt] = []
    for invoice_id in ids:
        with connect() as conn:
            invoice, due = _lock(conn, book_id, str(invoice_id))
            tried = conn.execute(
                "select 1 from payment_attempts where book_id = %s and invoice_id = %s",
                (book_id, invoice_id),
            ).fetchone()
            if tried is None and due > 0:
                attempt_id = _record_attempt(conn, book_id, invoice, due, None, today)
                done.append(_execute(conn, book_id, attempt_id))
            conn.commit()
    return done


def get_attempt(
    conn: psycopg.Connection, book_id: uuid.UUID, attempt_id: uuid.UUID, *, lock: bool = False
) -> Attempt:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_ATTEMPT} from payment_attempts where book_id = %s and id = %s"
            + (" for update" if lock else ""),
            (book_id, attempt_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"payment attempt {attempt_id} does not exist in this book")
    return Attempt(**row)


def attempts_of(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID
) -> list[Attempt]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_ATTEMPT} from payment_attempts where book_id = %s and invoice_id = %s"
            " order by created_at, id",
            (book_id, invoice_id),
        ).fetchall()
    return [Attempt(**r) for r in rows]


def collection_view(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID, still_due: bool
) -> dict[str, Any]:
    """`attempts` and `next_action` of an invoice (API.md)."""
    attempts = attempts_of(conn, book_id, invoice_id)
    return {
        "attempts": [
            {
                "id": str(a.id),
                "at": a.at.isoformat(),
                "payment_method": str(a.payment_method_id),
                "outcome": a.outcome,
                "code": a.code,
                "amount": str(a.amount),
                "payment": str(a.payment_id) if a.payment_id else None,
            }
            for a in attempts
        ],
        # retry, reminder, suspend or write_off: billing/dunning.py's schedule
        "next_action": _next_action(conn, book_id, invoice_id, attempts) if still_due else None,
        "dunning_steps": steps_json(conn, book_id, invoice_id),
    }


def _next_action(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID, attempts: list[Attempt]
) -> dict[str, Any] | None:
    last = attempts[-1] if attempts else None
    if last is not None and last.outcome == "pending" and last.code == GatewayUnavailable.code:
        # the gateway's answer was lost: `pay` again resumes the same attempt (same key)
        return {"type": "retry", "on": last.at.isoformat()}
    action: dict[str, Any] | None = next_action_json(conn, book_id, invoice_id)
    return action


# --- the clock: payouts and disputes -------------------------------------------------


def on_clock_moved(conn: psycopg.Connection, book_id: uuid.UUID, today: date) -> dict[str, int]:
    """What the fake gateway does as the book's clock passes: disputes open, payouts arrive."""
    gateway = fake_gateway(conn, book_id)
    opened = 0
    for charge in gateway.disputes_due(today):
        if open_dispute(conn, book_id, gateway, charge) is not None:
            opened += 1
    paid = 0
    clearing = clearing_account(gateway.name)
    for payout in gateway.payouts(today):
        if payout.status != "pending":
            continue
        entry_id = None
        if not payout.amount.is_zero():
            ensure_account(conn, book_id, clearing)
            posted = post_entries(
                conn,
                book_id,
                [payout_entry(payout.payout_id, payout.arrival_date, clearing, payout.amount)],
            )
            entry_id = posted[0].id
        conn.execute(
            "update payouts set status = 'paid', entry_id = %s where book_id = %s and id = %s",
            (entry_id, book_id, payout.payout_id),
        )
        paid += 1
    return {"disputes_opened": opened, "payouts_paid": paid}


def list_payouts(conn: psycopg.Connection, book_id: uuid.UUID) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select id, gateway, amount, currency, arrival_date, status, entry_id from payouts"
            " where book_id = %s order by arrival_date, id",
            (book_id,),
        ).fetchall()


def _payment_of_charge(conn: psycopg.Connection, book_id: uuid.UUID, charge_id: str) -> Payment:
    row = conn.execute(
        "select id from payments where book_id = %s and gateway_charge = %s",
        (book_id, charge_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no payment was recorded for charge {charge_id}")
    return get_payment(conn, book_id, str(row[0]))


def open_dispute(
    conn: psycopg.Connection, book_id: uuid.UUID, gateway: FakeGateway, charge: dict[str, Any]
) -> uuid.UUID | None:
    """The fake gateway's dispute, opened on its day with the book's dispute fee (none
    when the charge was refunded in full before)."""
    payment = _payment_of_charge(conn, book_id, charge["id"])
    on: date = charge["dispute_on"]
    # The cardholder disputes what they were not already given back.
    amount = Money(charge["amount"], charge["currency"]) - Money(
        payment.refunded, charge["currency"]
    )
    if amount.amount <= 0:  # nothing left to dispute: the dispute never opens
        conn.execute(
            "update gateway_charges set dispute_on = null where book_id = %s and id = %s",
            (book_id, charge["id"]),
        )
        return None
    fee = Money(gateway.dispute_fee, charge["currency"]).quantized()
    dispute_id = record_dispute(
        conn, book_id, gateway.name, charge["id"], uuid.uuid4(), amount, fee, on, None
    )
    gateway.dispute_moved(f"dp_{dispute_id.hex}", "dispute", charge["id"], -(amount + fee), on)
    return dispute_id


def record_dispute(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    gateway: str,
    charge_id: str,
    dispute_id: uuid.UUID,
    amount: Money,
    fee: Money,
    on: date,
    evidence_due: date | None,
) -> uuid.UUID:
    """Disputed-Funds + Dispute-Fees | Clearing, on the day the dispute opens; the
    evidence is due when the gateway says, else 21 days after (the fake)."""
    payment = _payment_of_charge(conn, book_id, charge_id)
    clearing = clearing_account(gateway)
    entry = dispute_opened_entry(
        dispute_id, payment.id, str(payment.customer_id), on, clearing, amount, fee
    )
    posted = post_entries(conn, book_id, [entry])[0]
    conn.execute(
        "insert into disputes (book_id, id, gateway, charge_id, payment_id, amount, fee,"
        " currency, opened_on, evidence_due, entry_id)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            dispute_id,
            gateway,
            charge_id,
            payment.id,
            amount.amount,
            fee.amount,
            amount.currency,
            on,
            evidence_due or on + timedelta(days=21),
            posted.id,
        ),
    )
    record_event(conn, book_id, "dispute.created", get_dispute(conn, book_id, str(dispute_id)))
    return dispute_id


_DISPUTE = (
    "id, gateway, charge_id, payment_id, amount, fee, currency, opened_on, evidence_due, status,"
    " closed_on, entry_id, closing_entry_id"
)


def list_disputes(conn: psycopg.Connection, book_id: uuid.UUID) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"select {_DISPUTE} from disputes where book_id = %s order by opened_on, id",
            (book_id,),
        ).fetchall()


def get_dispute(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> dict[str, Any]:
    dispute_id = parse_id(ref, "dispute")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_DISPUTE} from disputes where book_id = %s and id = %s",
            (book_id, dispute_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"dispute {ref!r} does not exist in this book")
    return row


def close_dispute(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    ref: str,
    outcome: str,
    on: date,
    *,
    by_gateway: bool = False,
) -> dict[str, Any]:
    """The fake gateway's decision, told by the operator: `won` or `lost`. A real
    gateway's dispute is closed only by the gateway (`by_gateway`, its webhook)."""
    if outcome not in ("won", "lost"):
        raise InvalidBillingRequest("outcome must be won or lost", outcome=outcome)
    found = get_dispute(conn, book_id, ref)
    if found["gateway"] != "fake" and not by_gateway:
        raise DocumentState(
            f"dispute {ref} is decided by {found['gateway']}: it closes when"
            " charge.dispute.closed arrives",
            dispute=ref,
        )
    payment = get_payment(conn, book_id, str(found["payment_id"]))
    lock_customer(conn, book_id, payment.customer_id)
    lock_invoices(conn, book_id, [a.invoice_id for a in payment.allocations])
    dispute = get_dispute(conn, book_id, ref)
    if dispute["status"] != "needs_response":
        raise DocumentState(f"dispute {ref} is already {dispute['status']}", dispute=ref)
    amount = Money(dispute["amount"], dispute["currency"])
    customer = str(payment.customer_id)
    if outcome == "won":
        entry = dispute_won_entry(
            dispute["id"], payment.id, customer, on, clearing_account(dispute["gateway"]), amount
        )
        if dispute["gateway"] == "fake":  # Stripe keeps its balance itself
            fake_gateway(conn, book_id).dispute_moved(
                f"dw_{dispute['id'].hex}", "dispute_won", dispute["charge_id"], amount, on
            )
    else:
        unapplied, invoices = _refund_sources(conn, book_id, payment)
        credit = Money(
            credit_balance(conn, book_id, payment.customer_id, amount.currency), amount.currency
        )
        plan, unrecovered = plan_dispute_loss(amount, unapplied, credit, invoices)
        entry = dispute_lost_entry(
            dispute["id"],
            payment.id,
            customer,
            on,
            amount,
            plan.invoices,
            plan.from_credit,
            unrecovered,
        )
    posted = post_entries(conn, book_id, [entry])[0]
    conn.execute(
        "update disputes set status = %s, closed_on = %s, closing_entry_id = %s"
        " where book_id = %s and id = %s",
        (outcome, on, posted.id, book_id, dispute["id"]),
    )
    return record_event(conn, book_id, "dispute.closed", get_dispute(conn, book_id, ref))


# --- refunds ---------------------------------------------------------------------------


def refund_through_gateway(
    conn: psycopg.Connection, book_id: uuid.UUID, refund: Refund
) -> str | None:
    """Send a refund of a gateway payment back through its gateway (same transaction for
    the fake one, whose refund is a row of its own); None for other payments."""
    if refund.payment_id is None:
        return None
    payment = get_payment(conn, book_id, str(refund.payment_id))
    charge = payment.metadata.get("charge") if isinstance(payment.metadata, dict) else None
    if payment.method not in GATEWAYS or not isinstance(charge, str):
        return None
    gateway = gateway_for(conn, book_id, payment.method)
    # The key the gateway sees is derived from the payment and how much of it is
    # refunded with this refund, not from the refund's fresh id: a request retried
    # after a timeout (its transaction rolled back) sends the same key, and the
    # gateway answers with the refund it already made instead of a second one.
    key = uuid.uuid5(refund.payment_id, f"refund:{payment.refunded}:{refund.amount}")
    done = gateway.refund(charge, Money(refund.amount, refund.currency), key, refund.refunded_on)
    return done.refund_id


__all__ = [
    "Attempt",
    "close_dispute",
    "collect_pending",
    "collection_view",
    "list_disputes",
    "list_payouts",
    "on_clock_moved",
    "pay_invoice",
    "queue_auto_collection",
    "record_charge_payment",
    "record_dispute",
    "refund_through_gateway",
]
