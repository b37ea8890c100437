"""Payments and refunds: records, allocation, recovery after a write-off,
and their entries (rules in billing.payments).

A payment's allocations, its unapplied part and what was refunded of it are
read from postings: AR postings `via = payment:<id>` (one per invoice), the
Customer-Credit posting `via = payment:<id>`, and the refunds' postings
`via = refund:<id>`.

Concurrency: a payment, refund, credit note or write-off locks the customer
row first, then the invoice rows it touches in id order, so two payments for
the same invoice run one after the other and the second sees what the first
settled; nothing is over-allocated.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.errors import DocumentState, ExceedsAvailable, InvalidBillingRequest
from billing.payments import (
    OpenInvoice,
    RefundableInvoice,
    RefundPlan,
    allocate_payment,
    cash_account_of,
    plan_refund,
    recovery_entry,
    refund_entry,
)
from billing.postgres.credit_notes import line_states, lock_customer, lock_invoices
from billing.postgres.customers import credit_balance, get_customer
from billing.postgres.dunning import lock_suspended, resume_settled
from billing.postgres.events import record_event
from billing.postgres.fx import realized_for_payment
from billing.postgres.ids import parse_id
from billing.postgres.invoices import get_invoice, invoice_id_of, receivable_amounts, record_paid
from billing.postgres.posting import post_entries
from billing.postings import AR, CUSTOMER_CREDIT, invoice_doc, payment_entry
from ledger.entries import JournalEntry
from ledger.errors import CurrencyMismatch, NotFound
from ledger.money import Money


@dataclass(frozen=True, slots=True)
class PaymentAllocation:
    invoice_id: uuid.UUID
    number: str | None
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Payment:
    id: uuid.UUID
    customer_id: uuid.UUID
    amount: Decimal
    currency: str
    method: str
    received_on: date
    reference: str | None
    status: str
    entry_id: uuid.UUID | None
    metadata: dict[str, Any]
    created_at: datetime
    allocations: tuple[PaymentAllocation, ...] = field(default=())
    unapplied: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Refund:
    id: uuid.UUID
    customer_id: uuid.UUID
    payment_id: uuid.UUID | None
    amount: Decimal
    currency: str
    reason: str
    refunded_on: date
    entry_id: uuid.UUID | None
    created_at: datetime


def _recovered(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Decimal]:
    rows = conn.execute(
        "select p.document, sum(p.amount) from postings p"
        " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " where p.book_id = %s and p.document = any(%s) and a.name = %s"
        " and p.dimensions->>'via' like 'recovery:%%' group by p.document",
        (book_id, [invoice_doc(i) for i in invoice_ids], AR),
    ).fetchall()
    return {uuid.UUID(r[0].split(":", 1)[1]): Decimal(r[1]) for r in rows}


def create_payment(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_ref: str,
    amount: Decimal,
    currency: str,
    method: str,
    received_on: date,
    *,
    invoice_ref: str | None = None,
    allocations: Sequence[tuple[str, Decimal]] | None = None,
    reference: str | None = None,
    metadata: dict[str, Any] | None = None,
    gateway_charge: str | None = None,
) -> Payment:
    """Record a manual payment and post it (see billing.payments for allocation).
    `gateway_charge`: the gateway charge it records, unique per book (0017)."""
    customer = get_customer(conn, book_id, customer_ref)
    # A customer billed in several currencies pays each invoice in its own: a payment
    # is allocated among the customer's invoices in the payment's currency only.
    money = Money.exact(amount, currency)
    if money.amount <= 0:
        raise InvalidBillingRequest("a payment amount must be greater than zero")
    cash_account = cash_account_of(method)
    if invoice_ref is not None and allocations:
        raise InvalidBillingRequest("give invoice or allocations, not both")
    if reference is not None and len(reference) > 500:
        raise InvalidBillingRequest("reference is longer than 500 characters")
    requested: list[tuple[str, Money | None]] | None = None
    if invoice_ref is not None:
        requested = [(str(invoice_id_of(conn, book_id, invoice_ref)), None)]
    elif allocations:
        requested = [
            (str(invoice_id_of(conn, book_id, ref)), Money.exact(value, currency))
            for ref, value in allocations
        ]
    lock_suspended(conn, book_id, customer.id)  # subscriptions before the customer
    lock_customer(conn, book_id, customer.id)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select id, number, issue_date, due_date, status from invoices"
            " where book_id = %s and customer_id = %s and status in ('open', 'uncollectible')"
            " and currency = %s order by id for update",
            (book_id, customer.id, currency),
        ).fetchall()
    ids = [r["id"] for r in rows]
    amounts = receivable_amounts(conn, book_id, ids)
    recovered = _recovered(conn, book_id, [r["id"] for r in rows if r["status"] != "open"])
    zero = Decimal(0)
    invoices = [
        OpenInvoice(
            invoice_id=str(r["id"]),
            number=r["number"] or "",
            issue_date=r["issue_date"],
            due_date=r["due_date"] or r["issue_date"],
            amount_due=Money(amounts.get(r["id"], (zero,) * 4)[0], currency),
            uncollectible=r["status"] == "uncollectible",
            recoverable=Money(
                amounts.get(r["id"], (zero,) * 4)[3] - recovered.get(r["id"], zero), currency
            ),
        )
        for r in rows
    ]
    if requested:
        known = {i.invoice_id for i in invoices}
        for ref, _ in requested:
            if ref not in known:  # say why: unknown, someone else's, or not payable
                other = get_invoice(conn, book_id, ref)
                if other.customer_id != customer.id:
                    raise InvalidBillingRequest(
                        f"invoice {other.number or ref} belongs to another customer", invoice=ref
                    )
                if other.currency != currency:
                    raise CurrencyMismatch(
                        f"invoice {other.number or ref} is in {other.currency}: pay it in"
                        f" {other.currency}, not {currency}",
                        currency=currency,
                        invoice_currency=other.currency,
                    )
                raise DocumentState(
                    f"invoice {other.number or ref} is {other.status}: it cannot be paid",
                    invoice=ref,
                )
    chosen = allocate_payment(money, invoices, requested)
    by_id = {i.invoice_id: i for i in invoices}
    recoveries = [a for a in chosen if by_id[a.invoice_id].uncollectible]
    payment_id = uuid.uuid4()
    conn.execute(
        "insert into payments (book_id, id, customer_id, amount, currency, method, received_on,"
        " reference, metadata, gateway_charge) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            payment_id,
            customer.id,
            money.amount,
            currency,
            method,
            received_on,
            reference,
            Jsonb(metadata or {}),
            gateway_charge,
        ),
    )
    entries: list[JournalEntry] = []
    if recoveries:
        entries.append(recovery_entry(payment_id, str(customer.id), received_on, recoveries))
    entries.append(
        payment_entry(
            payment_id,
            str(customer.id),
            received_on,
            money,
            cash_account,
            chosen,
            reference,
            invoice_numbers=[
                by_id[a.invoice_id].number for a in chosen if by_id[a.invoice_id].number
            ],
            customer_name=customer.name,
        )
    )
    posted = post_entries(conn, book_id, entries)
    conn.execute(
        "update payments set entry_id = %s where book_id = %s and id = %s",
        (posted[-1].id, book_id, payment_id),
    )
    # A payment in a foreign currency at another rate than its invoices' (billing.fx);
    # nothing for the functional currency or a book without rates.
    fx = realized_for_payment(
        conn,
        book_id,
        payment_id,
        str(customer.id),
        received_on,
        currency,
        [
            (a, by_id[a.invoice_id].issue_date)
            for a in chosen
            if not by_id[a.invoice_id].uncollectible
        ],
    )
    if fx is not None:
        post_entries(conn, book_id, [fx])
    # A written-off invoice recovered in full is settled again: it reads as paid.
    done = [uuid.UUID(a.invoice_id) for a in recoveries if a.amount == by_id[a.invoice_id].capacity]
    if done:
        conn.execute(
            "update invoices set status = 'open' where book_id = %s and id = any(%s)",
            (book_id, done),
        )
    payment = get_payment(conn, book_id, str(payment_id))
    record_event(conn, book_id, "payment.succeeded", payment)
    record_paid(conn, book_id, [a.invoice_id for a in payment.allocations])
    resume_settled(conn, book_id, customer.id, received_on)  # suspended by dunning, now paid
    return payment


_PAYMENT_COLUMNS = (
    "id, customer_id, amount, currency, method, received_on, reference, status, entry_id,"
    " metadata, created_at"
)


def _payments(
    conn: psycopg.Connection, book_id: uuid.UUID, rows: list[dict[str, Any]]
) -> list[Payment]:
    if not rows:
        return []
    vias = [f"payment:{r['id']}" for r in rows]
    allocs: dict[str, list[PaymentAllocation]] = {}
    unapplied: dict[str, Decimal] = {}
    for via, account, document, total, number in conn.execute(
        "select p.dimensions->>'via', a.name, p.document, sum(p.amount), i.number"
        " from postings p join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        " left join invoices i on i.book_id = p.book_id and p.document = 'invoice:' || i.id::text"
        " where p.book_id = %s and p.dimensions->>'via' = any(%s) and a.name = any(%s)"
        " group by 1, 2, 3, 5 order by 5",
        (book_id, vias, [AR, CUSTOMER_CREDIT]),
    ):
        if account == AR:
            allocs.setdefault(via, []).append(
                PaymentAllocation(uuid.UUID(document.split(":", 1)[1]), number, -Decimal(total))
            )
        else:
            unapplied[via] = unapplied.get(via, Decimal(0)) - Decimal(total)
    refunded: dict[uuid.UUID, Decimal] = dict(
        conn.execute(
            "select payment_id, sum(amount) from refunds where book_id = %s"
            " and payment_id = any(%s) group by 1",
            (book_id, [r["id"] for r in rows]),
        ).fetchall()
    )
    out = []
    for r in rows:
        via = f"payment:{r['id']}"
        out.append(
            Payment(
                **r,
                allocations=tuple(allocs.get(via, ())),
                unapplied=unapplied.get(via, Decimal(0)),
                refunded=Decimal(refunded.get(r["id"], 0)),
            )
        )
    return out


def get_payment(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Payment:
    payment_id = parse_id(ref, "payment")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_PAYMENT_COLUMNS} from payments where book_id = %s and id = %s",
            (book_id, payment_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"payment {ref!r} does not exist in this book")
    return _payments(conn, book_id, [row])[0]


def list_payments(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    *,
    customer_id: uuid.UUID | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> list[Payment]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"select {_PAYMENT_COLUMNS} from payments where book_id = %s"
            " and (%s::uuid is null or customer_id = %s)"
            " and (%s::uuid is null or id > %s) order by id limit %s",
            (book_id, customer_id, customer_id, after, after, limit),
        ).fetchall()
    return _payments(conn, book_id, rows)


def _refuse_disputed(conn: psycopg.Connection, book_id: uuid.UUID, payment_id: uuid.UUID) -> None:
    """A charge under dispute is not refunded (card networks and Stripe refuse it:
    `charge_disputed`): the money already left clearing for Disputed-Funds, and a lost
    dispute gives it back to the cardholder. After a won dispute a refund is fine."""
    row = conn.execute(
        "select status from disputes where book_id = %s and payment_id = %s"
        " and status in ('needs_response', 'lost') limit 1",
        (book_id, payment_id),
    ).fetchone()
    if row is not None:
        raise DocumentState(
            f"payment {payment_id} has a dispute that is {row[0]}: it cannot be refunded",
            payment=str(payment_id),
        )


def _refund_sources(
    conn: psycopg.Connection, book_id: uuid.UUID, payment: Payment
) -> tuple[Money, list[RefundableInvoice]]:
    """What of a payment is still refundable: its unapplied credit, and per invoice."""
    currency = payment.currency
    vias = [
        f"refund:{r[0]}"
        for r in conn.execute(
            "select id from refunds where book_id = %s and payment_id = %s",
            (book_id, payment.id),
        )
    ]
    taken: dict[str, Decimal] = {}
    if vias:
        for document, account, total in conn.execute(
            "select p.document, a.name, sum(p.amount) from postings p"
            " join accounts a on a.book_id = p.book_id and a.id = p.account_id"
            " where p.book_id = %s and p.dimensions->>'via' = any(%s)"
            " and (a.name = %s or p.dimensions ? 'line') group by 1, 2",
            (book_id, vias, CUSTOMER_CREDIT),
        ):
            key = "credit" if account == CUSTOMER_CREDIT else document
            taken[key] = taken.get(key, Decimal(0)) + Decimal(total)
    unapplied = Money(payment.unapplied - taken.get("credit", Decimal(0)), currency)
    balance = Money(credit_balance(conn, book_id, payment.customer_id, currency), currency)
    unapplied = unapplied if unapplied <= balance else balance
    invoices = []
    for allocation in payment.allocations:
        invoice = get_invoice(conn, book_id, str(allocation.invoice_id))
        if invoice.status == "void" or invoice.issue_date is None:
            continue
        left = allocation.amount - taken.get(invoice_doc(invoice.id), Decimal(0))
        invoices.append(
            RefundableInvoice(
                invoice_id=str(invoice.id),
                number=invoice.number or "",
                issue_date=invoice.issue_date,
                paid_by_payment=Money(left, currency),
                lines=line_states(conn, book_id, invoice),
            )
        )
    return unapplied, invoices


def create_refund(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    amount: Decimal,
    refunded_on: date,
    *,
    payment_ref: str | None = None,
    customer_ref: str | None = None,
    currency: str | None = None,
    method: str | None = None,
    reason: str = "",
) -> Refund:
    """Refund (part of) a payment, or a customer's credit balance (billing.payments).

    Never more than the payment has left to refund, or than the credit
    balance: anything more is `exceeds_available`. The invoices stay paid.
    """
    if (payment_ref is None) == (customer_ref is None):
        raise InvalidBillingRequest("give either payment or customer")
    if len(reason) > 1000:
        raise InvalidBillingRequest("reason is longer than 1000 characters")
    payment = None
    if payment_ref is not None:
        payment = get_payment(conn, book_id, payment_ref)
        customer_id = payment.customer_id
        cur_currency = payment.currency
    else:
        customer = get_customer(conn, book_id, customer_ref or "")
        customer_id = customer.id
        cur_currency = currency or customer.currency  # credit is held per currency
    if currency is not None and currency != cur_currency:
        raise CurrencyMismatch(
            f"this refund is in {cur_currency}, not {currency}", currency=currency
        )
    money = Money.exact(amount, cur_currency)
    if money.amount <= 0:
        raise InvalidBillingRequest("a refund amount must be greater than zero")
    lock_customer(conn, book_id, customer_id)
    if payment is not None:
        payment = get_payment(conn, book_id, str(payment.id))  # under the lock
        _refuse_disputed(conn, book_id, payment.id)
        lock_invoices(conn, book_id, [a.invoice_id for a in payment.allocations])
        cash_account = cash_account_of(method or payment.method)
        unapplied, invoices = _refund_sources(conn, book_id, payment)
        plan = plan_refund(money, unapplied, invoices)
    else:
        cash_account = cash_account_of(method or "bank_transfer")
        balance = credit_balance(conn, book_id, customer_id, cur_currency)
        if money.amount > balance:
            raise ExceedsAvailable(
                f"{money} is more than the customer's credit balance of {balance} {cur_currency}",
                available=str(balance),
            )
        plan = RefundPlan(money, ())
    refund_id = uuid.uuid4()
    entry = refund_entry(
        refund_id,
        str(customer_id),
        refunded_on,
        cash_account,
        plan,
        payment_id=payment.id if payment else None,
        reason=reason,
    )
    posted = post_entries(conn, book_id, [entry])[0]
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "insert into refunds (book_id, id, customer_id, payment_id, amount, currency, reason,"
            " refunded_on, entry_id) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " returning id, customer_id, payment_id, amount, currency, reason, refunded_on,"
            " entry_id, created_at",
            (
                book_id,
                refund_id,
                customer_id,
                payment.id if payment else None,
                money.amount,
                cur_currency,
                reason,
                refunded_on,
                posted.id,
            ),
        ).fetchone()
    assert row is not None
    return record_event(conn, book_id, "payment.refunded", Refund(**row))


def get_refund(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> Refund:
    refund_id = parse_id(ref, "refund")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "select id, customer_id, payment_id, amount, currency, reason, refunded_on,"
            " entry_id, created_at from refunds where book_id = %s and id = %s",
            (book_id, refund_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"refund {ref!r} does not exist in this book")
    return Refund(**row)
