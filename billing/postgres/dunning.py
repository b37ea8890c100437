"""Dunning's persistence: which invoices are in dunning, the steps done on them,
and the steps themselves (reminder messages into the outbox, late-fee
invoices, past due, suspension and resumption, write-off). The rules are
billing/dunning.py's; card retries go through the gateway path (adapters),
which calls in here for everything else.

Each step is marked once in `dunning_steps` (primary key: invoice, step key)
in the transaction that does it, so a run repeated for the same day finds
every step done and creates nothing. A reminder is a row in `messages`
(rendered by the caller's `Render`, sent after commit by adapters/messages).

Late fees post to `Income:Late-Fees` (opened on first use, beside the other
Income accounts): a one-off invoice of one line, no service period, so its
finalization posts AR | Income:Late-Fees (and Tax-Payable if the customer is
taxed, like any invoice of theirs).

Suspension and resumption: a subscription is suspended on the day its invoice
reaches `suspend_after_days`; billing runs invoice no period starting on or
after that day. It resumes on the day none of its invoices is left unpaid
past due (open with something due, or written off): periods that started
while it was suspended and ended before that day are skipped (no service,
no invoice); the period the resumption falls in is billed in full by the
next run — suspended time is never prorated or credited.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing import dunning as rules
from billing.periods import Interval
from billing.postgres.events import record_event
from billing.postgres.invoices import (
    Invoice,
    LineSpec,
    create_draft,
    finalize_invoice,
    get_invoice,
    receivable_amounts,
)
from billing.postgres.settings import read_settings
from billing.postgres.subscriptions import get_subscription
from billing.subscriptions import cycle_period
from ledger.money import Money
from ledger.postgres.books import ensure_account

__all__ = [
    "LATE_FEES",
    "Render",
    "candidates",
    "charge_late_fee",
    "done_steps",
    "facts_of",
    "lock_suspended",
    "mark_step",
    "next_action_json",
    "queue_message",
    "resume_settled",
    "steps_json",
    "suspend",
]

LATE_FEES = "Income:Late-Fees"

# (message kind, context) → (subject, body); adapters render with Jinja.
Render = Callable[[str, Mapping[str, Any]], tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Candidate:
    invoice_id: uuid.UUID
    customer_id: uuid.UUID
    subscription_id: uuid.UUID | None = None


def candidates(conn: psycopg.Connection, book_id: uuid.UUID, as_of: date) -> list[Candidate]:
    """Open invoices issued by `as_of` with something still due, oldest due first."""
    rows = conn.execute(
        "select id, customer_id, subscription_id from invoices where book_id = %s"
        " and status = 'open'"
        " and due_date is not null and issue_date <= %s order by due_date, id",
        (book_id, as_of),
    ).fetchall()
    due = receivable_amounts(conn, book_id, [r[0] for r in rows])
    return [Candidate(*r) for r in rows if due.get(r[0], (Decimal(0),))[0] > 0]


def done_steps(conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID) -> set[str]:
    rows = conn.execute(
        "select step from dunning_steps where book_id = %s and invoice_id = %s",
        (book_id, invoice_id),
    ).fetchall()
    return {r[0] for r in rows}


def mark_step(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice_id: uuid.UUID,
    step: rules.Step,
    as_of: date,
    outcome: str = "done",
    detail: Mapping[str, Any] | None = None,
) -> bool:
    """Mark a step done (or skipped); False if it already was (nothing written)."""
    row = conn.execute(
        "insert into dunning_steps (book_id, invoice_id, step, kind, on_date, as_of, outcome,"
        " detail) values (%s, %s, %s, %s, %s, %s, %s, %s) on conflict do nothing returning 1",
        (book_id, invoice_id, step.key, step.kind, step.on, as_of, outcome, Jsonb(detail or {})),
    ).fetchone()
    return row is not None


def _attempts(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID
) -> tuple[tuple[date, str], ...]:
    rows = conn.execute(
        "select at, outcome from payment_attempts where book_id = %s and invoice_id = %s"
        " order by created_at, id",
        (book_id, invoice_id),
    ).fetchall()
    return tuple((r[0], r[1]) for r in rows)


def facts_of(conn: psycopg.Connection, book_id: uuid.UUID, invoice: Invoice) -> rules.InvoiceFacts:
    assert invoice.issue_date is not None and invoice.due_date is not None
    return rules.InvoiceFacts(
        issue_date=invoice.issue_date,
        due_date=invoice.due_date,
        amount_due=invoice.amount_due if invoice.status == "open" else Decimal(0),
        has_subscription=invoice.subscription_id is not None,
        is_late_fee=invoice.metadata.get("dunning") == "late_fee",
        attempts=_attempts(conn, book_id, invoice.id),
    )


def steps_json(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The dunning steps done (or skipped) on an invoice, by day."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select step, kind, on_date, as_of, outcome, detail from dunning_steps"
            " where book_id = %s and invoice_id = %s order by on_date, created_at, step",
            (book_id, invoice_id),
        ).fetchall()
    return [
        {
            "step": r["step"],
            "kind": r["kind"],
            "on": r["on_date"].isoformat(),
            "as_of": r["as_of"].isoformat(),
            "outcome": r["outcome"],
            "detail": r["detail"],
        }
        for r in rows
    ]


def next_action_json(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_id: uuid.UUID
) -> dict[str, str] | None:
    """`next_action` of an invoice (API.md), from the same schedule a run follows."""
    invoice = get_invoice(conn, book_id, str(invoice_id))
    if invoice.status != "open" or invoice.due_date is None or invoice.amount_due <= 0:
        return None
    policy = rules.policy_of(read_settings(conn, book_id))
    found = rules.next_action(
        facts_of(conn, book_id, invoice), policy, done_steps(conn, book_id, invoice_id)
    )
    return {"type": found[0], "on": found[1].isoformat()} if found else None


def queue_message(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    invoice: Invoice,
    kind: str,
    render: Render,
    context: Mapping[str, Any],
) -> uuid.UUID | None:
    """A reminder into the outbox; None when the customer has no e-mail address."""
    row = conn.execute(
        "select email, name from customers where book_id = %s and id = %s",
        (book_id, invoice.customer_id),
    ).fetchone()
    if row is None or not row[0]:
        return None
    subject, body = render(kind, {**context, "customer_name": row[1]})
    message_id = uuid.uuid4()
    stored = conn.execute(
        "insert into messages (book_id, id, customer_id, invoice_id, kind, recipient, subject,"
        " body) values (%s, %s, %s, %s, %s, %s, %s, %s) on conflict do nothing returning id",
        (book_id, message_id, invoice.customer_id, invoice.id, kind, row[0], subject, body),
    ).fetchone()
    if stored is None:  # queued before (the step's own mark makes this rare): that one
        stored = conn.execute(
            "select id from messages where book_id = %s and invoice_id = %s and kind = %s",
            (book_id, invoice.id, kind),
        ).fetchone()
    assert stored is not None
    message: uuid.UUID = stored[0]
    return message


def charge_late_fee(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice: Invoice, fee: Money, on: date
) -> Invoice | None:
    """The late fee as its own one-off invoice, finalized on `on` (None for a zero fee)."""
    if fee.amount <= 0:
        return None
    ensure_account(conn, book_id, LATE_FEES)
    label = invoice.number or str(invoice.id)
    draft = create_draft(
        conn,
        book_id,
        str(invoice.customer_id),
        [
            LineSpec(
                f"Late fee on invoice {label}", Decimal(1), fee.amount, revenue_account=LATE_FEES
            )
        ],
        memo=f"Late fee: invoice {label} was not paid by {invoice.due_date}",
        metadata={"dunning": "late_fee", "late_fee_for": str(invoice.id)},
    )
    assert draft is not None
    return finalize_invoice(conn, book_id, str(draft.id), on)


def mark_past_due(
    conn: psycopg.Connection, book_id: uuid.UUID, subscription_id: uuid.UUID, today: date
) -> None:
    sub = get_subscription(conn, book_id, str(subscription_id), today)
    record_event(conn, book_id, "subscription.past_due", sub)


def suspend(
    conn: psycopg.Connection, book_id: uuid.UUID, subscription_id: uuid.UUID, on: date, today: date
) -> bool:
    """Suspend from `on` (kept if already suspended); True if it was suspended now."""
    row = conn.execute(
        "update subscriptions set suspended_on = %s where book_id = %s and id = %s"
        " and suspended_on is null and status <> 'canceled' returning 1",
        (on, book_id, subscription_id),
    ).fetchone()
    if row is None:
        return False
    record_event(
        conn,
        book_id,
        "subscription.suspended",
        get_subscription(conn, book_id, str(subscription_id), today),
    )
    return True


_BLOCKING = """
select i.id from invoices i
 where i.book_id = %s and i.subscription_id = %s and i.due_date < %s
   and i.status in ('open', 'uncollectible')
"""


_SUSPENDED = (
    "select id, suspended_on, next_period_start, billing_anchor, interval, interval_count"
    " from subscriptions where book_id = %s and suspended_on is not null"
    " and (%s::uuid is null or customer_id = %s) order by id for update"
)


def lock_suspended(conn: psycopg.Connection, book_id: uuid.UUID, customer_id: uuid.UUID) -> None:
    """Lock the customer's suspended subscriptions, for `resume_settled`, before the
    customer is locked: a billing run locks the subscriptions it bills, then their
    customers (credit holders); the other order deadlocks with it."""
    conn.execute(_SUSPENDED, (book_id, customer_id, customer_id))


def resume_settled(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_id: uuid.UUID | None, today: date
) -> list[uuid.UUID]:
    """Resume the suspended subscriptions (of one customer, or all) that nothing past
    due holds any more (module docstring); the ids resumed. For one customer, whose
    row the caller holds, those locked by `lock_suspended` before it: one suspended
    since (and locked elsewhere) is not waited for, the next dunning run resumes it."""
    with conn.cursor(row_factory=dict_row) as cur:
        subs = cur.execute(
            _SUSPENDED + (" skip locked" if customer_id is not None else ""),
            (book_id, customer_id, customer_id),
        ).fetchall()
    resumed: list[uuid.UUID] = []
    for sub in subs:
        ids = [r[0] for r in conn.execute(_BLOCKING, (book_id, sub["id"], today)).fetchall()]
        amounts = receivable_amounts(conn, book_id, ids)
        statuses: dict[uuid.UUID, str] = dict(
            conn.execute(
                "select id, status from invoices where book_id = %s and id = any(%s)",
                (book_id, ids),
            ).fetchall()
        )
        if any(statuses[i] == "uncollectible" or amounts.get(i, (Decimal(0),))[0] > 0 for i in ids):
            continue
        start = sub["next_period_start"]
        if start >= sub["suspended_on"]:
            cycle = cycle_period(
                sub["billing_anchor"], Interval(sub["interval"]), sub["interval_count"], today
            )
            start = max(start, cycle.start)
        conn.execute(
            "update subscriptions set suspended_on = null, next_period_start = %s"
            " where book_id = %s and id = %s",
            (start, book_id, sub["id"]),
        )
        record_event(
            conn,
            book_id,
            "subscription.resumed",
            get_subscription(conn, book_id, str(sub["id"]), today),
        )
        resumed.append(sub["id"])
    return resumed
