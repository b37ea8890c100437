"""Subscriptions: create, change (with proration), cancel, pause, resume; read back.

The rules are in `billing.subscriptions` (pure); periods are invoiced by
`billing.postgres.billing_runs.bill_subscriptions`, which the commands here
call first to catch up: a change, cancel or pause acts on the period that
contains the book's today, invoiced in full, never on a stale one.

Decisions recorded here:
- Items are versioned `[effective_from, effective_to)`; a change ends the
  versions in force and starts new ones on the effective date.
- Per-customer price overrides (`catalog.price_for_customer`) are resolved
  when items are set, and the override's id is stored on the item.
- `next_invoice` prorations wait in a draft invoice of the subscription
  marked `{"pending": "next_invoice"}` (visible in the invoice list); the
  billing run moves its lines onto the next period's invoice and deletes it.
- A cancellation credit, and `invoice_now` prorations, are a separate invoice
  finalized at once (`subscription_period_start` null) when they net to a
  charge. When they net to a credit (any proration mode) they are credit
  notes in the CN series on the invoice lines the credit takes back (the
  latest open or paid invoice of the subscription whose line of that price
  covers the credited days), split earned / unearned / tax from those
  lines' posted amounts (at most what a line still holds; days of a voided
  or written-off invoice get nothing back): credited to that invoice's
  receivable when it still owes the whole credit, else kept as customer
  credit and, unless the book turned `auto_apply_credit` off, applied to the
  customer's open invoices, oldest due date first.
- Coupons are attached at creation and count paid periods from the first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from billing.dunning import policy_of
from billing.errors import DocumentState, InvalidBillingRequest
from billing.periods import Period
from billing.postgres import billing_runs
from billing.postgres.catalog import Price, get_price, price_for_customer
from billing.postgres.credit_notes import CreditNote, create_credit_note, line_states
from billing.postgres.customers import Customer, get_customer
from billing.postgres.events import record_event
from billing.postgres.invoices import (
    Invoice,
    LineSpec,
    apply_credit_to_open_invoices,
    create_draft,
    finalize_invoice,
    get_invoice,
    receivable_amounts,
)
from billing.postgres.settings import read_settings
from billing.subscriptions import (
    Item,
    Line,
    Plan,
    ProrationMode,
    SubscriptionStatus,
    cancellation_credits,
    change_lines,
    check_items,
    coupon_of,
    credit_parts,
    nets_to_credit,
    status_on,
)
from ledger.errors import NotFound
from ledger.money import check_currency
from ledger.postgres.books import book_window

# What a change or cancellation issues at once: an invoice (nets to a charge), the credit
# notes (nets to a credit: one per invoice credited), or nothing.
Issued = Invoice | tuple[CreditNote, ...] | None

_COLUMNS = (
    "id, customer_id, status, currency, start_date, billing_anchor, interval, interval_count,"
    " trial_end, next_period_start, periods_billed, cancel_at, canceled_on, paused_on,"
    " coupon_id, metadata, created_at, suspended_on"
)


@dataclass(frozen=True, slots=True)
class ItemSpec:
    price: str
    quantity: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    customer: str
    items: Sequence[ItemSpec]
    start_date: date | None = None
    trial_end: date | None = None
    billing_anchor: date | None = None
    coupon: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubscriptionItem:
    id: uuid.UUID
    price_id: uuid.UUID
    quantity: Decimal
    effective_from: date
    effective_to: date | None


@dataclass(frozen=True, slots=True)
class Subscription:
    id: uuid.UUID
    customer_id: uuid.UUID
    status: SubscriptionStatus  # derived for the book's today
    currency: str
    start_date: date
    billing_anchor: date
    interval: str
    interval_count: int
    trial_end: date | None
    next_period_start: date
    periods_billed: int
    cancel_at: date | None
    canceled_on: date | None
    paused_on: date | None
    coupon_id: uuid.UUID | None
    metadata: dict[str, Any]
    current_period: Period | None
    items: tuple[SubscriptionItem, ...]  # in force now (effective_to null)


@dataclass(frozen=True, slots=True)
class CouponSpec:
    name: str
    duration: str  # once, repeating, forever
    percent_off: Decimal | None = None
    amount_off: Decimal | None = None
    currency: str | None = None
    duration_in_periods: int | None = None


def create_coupon(conn: psycopg.Connection, book_id: uuid.UUID, spec: CouponSpec) -> uuid.UUID:
    """A coupon (percent or amount; once, repeating N periods, forever)."""
    if not spec.name.strip():
        raise InvalidBillingRequest("a coupon needs a name")
    if spec.currency is not None:
        check_currency(spec.currency)
    try:
        coupon_of(
            spec.percent_off,
            spec.amount_off,
            spec.currency,
            spec.duration,
            spec.duration_in_periods,
        )
    except ValueError:
        raise InvalidBillingRequest("duration must be once, repeating or forever") from None
    if (spec.percent_off is None) == (spec.amount_off is None):
        raise InvalidBillingRequest("give percent_off or amount_off (with currency), not both")
    coupon_id = uuid.uuid4()
    conn.execute(
        "insert into coupons (book_id, id, name, percent_off, amount_off, currency, duration,"
        " duration_in_periods) values (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            coupon_id,
            spec.name,
            spec.percent_off,
            spec.amount_off,
            spec.currency,
            spec.duration,
            spec.duration_in_periods,
        ),
    )
    return coupon_id


# --- items ---------------------------------------------------------------------------


def resolve_items(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer: Customer,
    specs: Sequence[ItemSpec],
) -> list[tuple[Price, Decimal]]:
    """Prices (the customer's overrides applied) checked to form one subscription."""
    if not specs:
        raise InvalidBillingRequest("a subscription needs at least one item")
    if len(specs) > 100:
        raise InvalidBillingRequest("a subscription may have at most 100 items")
    resolved: list[tuple[Price, Decimal]] = []
    for index, spec in enumerate(specs):
        if not spec.quantity.is_finite() or spec.quantity < 0:
            raise InvalidBillingRequest(
                f"items[{index}]: quantity must be zero or more, got {spec.quantity}", item=index
            )
        price = price_for_customer(conn, book_id, get_price(conn, book_id, spec.price), customer.id)
        if not price.recurring:
            raise InvalidBillingRequest(
                f"items[{index}]: price {spec.price} is one-off; a subscription needs recurring"
                " prices (interval and interval_count)",
                item=index,
            )
        if not price.active:
            raise InvalidBillingRequest(f"items[{index}]: price {spec.price} is inactive")
        if price.currency != customer.currency:
            raise InvalidBillingRequest(
                f"items[{index}]: price {spec.price} is in {price.currency}, the customer bills"
                f" in {customer.currency}",
                item=index,
            )
        # A usage item carries no quantity: its usage is billed in arrears.
        resolved.append((price, Decimal(0) if price.metric is not None else spec.quantity))
    first = resolved[0][0]
    for index, (price, _) in enumerate(resolved):
        if (price.interval, price.interval_count) != (first.interval, first.interval_count):
            raise InvalidBillingRequest(
                f"items[{index}]: every item must bill on the same cycle; this price is every"
                f" {price.interval_count} {price.interval}, items[0] every"
                f" {first.interval_count} {first.interval}",
                item=index,
            )
    check_items(
        [Item(str(p.id), "", p.charge(), q) for p, q in resolved],
        customer.currency,
    )
    return resolved


def _insert_items(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    subscription_id: uuid.UUID,
    items: Sequence[tuple[Price, Decimal]],
    effective_from: date,
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into subscription_items (book_id, id, subscription_id, price_id, quantity,"
            " effective_from) values (%s, %s, %s, %s, %s, %s)",
            [(book_id, uuid.uuid4(), subscription_id, p.id, q, effective_from) for p, q in items],
        )


# --- reading -------------------------------------------------------------------------


def _row(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, *, lock: bool = False
) -> dict[str, Any]:
    try:
        subscription_id = uuid.UUID(ref)
    except (ValueError, TypeError):
        raise NotFound(f"subscription {ref!r} does not exist in this book") from None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_COLUMNS} from subscriptions where book_id = %s and id = %s"
            + (" for update" if lock else ""),
            (book_id, subscription_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"subscription {ref!r} does not exist in this book")
    return row


def current_period(conn: psycopg.Connection, book_id: uuid.UUID, row: dict[str, Any]) -> Period:
    """The period the subscription is in: the last one invoiced, or before any invoice the
    trial (or the first period, not yet invoiced)."""
    last = conn.execute(
        "select max(subscription_period_start) from invoices where book_id = %s"
        " and subscription_id = %s and subscription_period_start < %s",
        (book_id, row["id"], row["next_period_start"]),
    ).fetchone()
    if last is not None and last[0] is not None:
        return Period(last[0], row["next_period_start"])
    if row["next_period_start"] > row["start_date"]:
        return Period(row["start_date"], row["next_period_start"])
    first = billing_runs.plan_of(row).period_from(row["start_date"])
    return first or Period(row["start_date"], row["next_period_start"])


def _invoiced(conn: psycopg.Connection, book_id: uuid.UUID, row: dict[str, Any]) -> bool:
    found = conn.execute(
        "select 1 from invoices where book_id = %s and subscription_id = %s"
        " and subscription_period_start < %s limit 1",
        (book_id, row["id"], row["next_period_start"]),
    ).fetchone()
    return found is not None


def _overdue(conn: psycopg.Connection, book_id: uuid.UUID, sub_id: uuid.UUID, today: date) -> bool:
    """An invoice of it unpaid `dunning.past_due_after_days` (default 1) after its due date."""
    grace = policy_of(read_settings(conn, book_id)).past_due_after_days
    rows = conn.execute(
        "select id from invoices where book_id = %s and subscription_id = %s"
        " and status = 'open' and due_date + %s <= %s",
        (book_id, sub_id, grace, today),
    ).fetchall()
    if not rows:
        return False
    amounts = receivable_amounts(conn, book_id, [r[0] for r in rows])
    return any(a[0] > 0 for a in amounts.values())


def get_subscription(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, today: date
) -> Subscription:
    row = _row(conn, book_id, ref)
    items = conn.execute(
        "select id, price_id, quantity, effective_from, effective_to from subscription_items"
        " where book_id = %s and subscription_id = %s and effective_to is null"
        " order by effective_from, id",
        (book_id, row["id"]),
    ).fetchall()
    status = status_on(
        today,
        trial_end=row["trial_end"],
        cancel_at=row["cancel_at"],
        paused_on=row["paused_on"],
        overdue=_overdue(conn, book_id, row["id"], today),
        suspended_on=row["suspended_on"],
    )
    return Subscription(
        id=row["id"],
        customer_id=row["customer_id"],
        status=status,
        currency=row["currency"],
        start_date=row["start_date"],
        billing_anchor=row["billing_anchor"],
        interval=row["interval"],
        interval_count=row["interval_count"],
        trial_end=row["trial_end"],
        next_period_start=row["next_period_start"],
        periods_billed=row["periods_billed"],
        cancel_at=row["cancel_at"],
        canceled_on=row["canceled_on"],
        paused_on=row["paused_on"],
        coupon_id=row["coupon_id"],
        metadata=row["metadata"],
        current_period=current_period(conn, book_id, row),
        items=tuple(SubscriptionItem(*r) for r in items),
    )


def list_subscriptions(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    today: date,
    *,
    customer_id: uuid.UUID | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> list[Subscription]:
    rows = conn.execute(
        "select id from subscriptions where book_id = %s"
        " and (%s::uuid is null or customer_id = %s) and (%s::uuid is null or id > %s)"
        " order by id limit %s",
        (book_id, customer_id, customer_id, after, after, limit),
    ).fetchall()
    return [get_subscription(conn, book_id, str(r[0]), today) for r in rows]


# --- commands ------------------------------------------------------------------------


def create_subscription(
    conn: psycopg.Connection, book_id: uuid.UUID, spec: SubscriptionSpec, today: date
) -> Subscription:
    customer = get_customer(conn, book_id, spec.customer)
    items = resolve_items(conn, book_id, customer, spec.items)
    start = spec.start_date or today
    window = book_window(conn, book_id)
    window.check("start_date", start)
    window.check_optional("trial_end", spec.trial_end)
    window.check_optional("billing_anchor", spec.billing_anchor)
    if spec.trial_end is not None and spec.trial_end <= start:
        raise InvalidBillingRequest(
            f"trial_end {spec.trial_end} must be after start_date {start}",
            trial_end=spec.trial_end.isoformat(),
        )
    anchor = spec.billing_anchor or spec.trial_end or start
    coupon_id: uuid.UUID | None = None
    if spec.coupon is not None:
        try:
            coupon_id = uuid.UUID(spec.coupon)
        except ValueError:
            raise NotFound(f"coupon {spec.coupon!r} does not exist in this book") from None
        coupon = conn.execute(
            "select amount_off, currency from coupons where book_id = %s and id = %s",
            (book_id, coupon_id),
        ).fetchone()
        if coupon is None:
            raise NotFound(f"coupon {spec.coupon!r} does not exist in this book")
        if coupon[0] is not None and coupon[1] != customer.currency:
            raise InvalidBillingRequest(
                f"coupon {spec.coupon} takes {coupon[1]} off; the customer bills in"
                f" {customer.currency}"
            )
    price = items[0][0]
    subscription_id = uuid.uuid4()
    conn.execute(
        "insert into subscriptions (book_id, id, customer_id, status, currency, start_date,"
        " billing_anchor, interval, interval_count, trial_end, next_period_start, coupon_id,"
        " metadata) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            book_id,
            subscription_id,
            customer.id,
            "trialing" if spec.trial_end else "active",
            customer.currency,
            start,
            anchor,
            str(price.interval),
            price.interval_count,
            spec.trial_end,
            spec.trial_end or start,
            coupon_id,
            Jsonb(spec.metadata),
        ),
    )
    _insert_items(conn, book_id, subscription_id, items, start)
    created = get_subscription(conn, book_id, str(subscription_id), today)
    return record_event(conn, book_id, "subscription.created", created)


def _catch_up(conn: psycopg.Connection, book_id: uuid.UUID, sub_id: uuid.UUID, today: date) -> None:
    billing_runs.bill_subscriptions(conn, book_id, today, [sub_id])


def _live(row: dict[str, Any], today: date, action: str) -> None:
    if row["cancel_at"] is not None and row["cancel_at"] <= today:
        raise DocumentState(
            f"the subscription is canceled (since {row['cancel_at']}): cannot {action}"
        )
    if row["paused_on"] is not None:
        raise DocumentState(f"the subscription is paused: resume it before you {action}")


def _plan_now(conn: psycopg.Connection, book_id: uuid.UUID, row: dict[str, Any]) -> Plan:
    versions = conn.execute(
        "select price_id, quantity, effective_from, effective_to from subscription_items"
        " where book_id = %s and subscription_id = %s and effective_to is null"
        " order by effective_from, id",
        (book_id, row["id"]),
    ).fetchall()
    prices = billing_runs.load_prices(conn, book_id, list({v[0] for v in versions}))
    items = tuple(
        Item(
            str(p),
            prices[p].description,
            prices[p].charge,
            Decimal(q),
            prices[p].revenue_account,
            prices[p].usage,
        )
        for p, q, _, _ in versions
    )
    plan = billing_runs.plan_of(row)
    return Plan(plan.anchor, plan.interval, plan.count, plan.cancel_at, None, items)


def _line_specs(lines: Sequence[Line]) -> list[LineSpec]:
    return [
        LineSpec(
            line.description,
            line.quantity,
            line.unit_amount,
            line.service.start,
            line.service.end,
            line.revenue_account,
            line.kind,
            uuid.UUID(line.price_id) if line.price_id else None,
        )
        for line in lines
    ]


# The latest open or paid invoice line of the subscription, for a price, that covers a span.
_CREDITED_LINE = """
select i.id, l.line_no from invoice_lines l
  join invoices i on i.book_id = l.book_id and i.id = l.invoice_id
 where l.book_id = %(book)s and i.subscription_id = %(sub)s and i.status = 'open'
   and l.price_id = %(price)s and l.amount > 0
   and l.service_start <= %(start)s and l.service_end >= %(end)s
 order by i.issue_date desc, i.number desc, l.line_no desc
 limit 1
"""


def _credit_now(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    row: dict[str, Any],
    lines: Sequence[Line],
    today: date,
    memo: str,
) -> tuple[CreditNote, ...]:
    """Proration lines that net to a credit, as credit notes on the lines they take back.

    A line gives back at most what it still holds (an earlier credit note may have taken
    part of it); days whose invoice was voided or written off are owed nothing back.
    """
    by_invoice: dict[uuid.UUID, list[tuple[int, Decimal]]] = {}
    for part in credit_parts(lines):
        found = conn.execute(
            _CREDITED_LINE,
            {
                "book": book_id,
                "sub": row["id"],
                "price": uuid.UUID(part.price_id) if part.price_id else None,
                "start": part.service.start,
                "end": part.service.end,
            },
        ).fetchone()
        if found is not None:
            by_invoice.setdefault(found[0], []).append((found[1], part.amount.amount))
    notes: list[CreditNote] = []
    for invoice_id, wanted in by_invoice.items():
        left = {
            state.line_no: state.net_left.amount
            for state in line_states(conn, book_id, get_invoice(conn, book_id, str(invoice_id)))
        }
        requests = [(n, min(amount, left[n])) for n, amount in wanted if left[n] > 0]
        if requests:
            notes.append(
                create_credit_note(
                    conn,
                    book_id,
                    str(invoice_id),
                    today,
                    lines=requests,
                    reason=memo,
                    fallback_to_credit=True,
                )
            )
    auto_apply = read_settings(conn, book_id).get("auto_apply_credit", True)
    if auto_apply and any(n.credit_to == "customer_credit" for n in notes):
        apply_credit_to_open_invoices(conn, book_id, row["customer_id"], row["currency"], today)
    return tuple(notes)


def _invoice_now(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    row: dict[str, Any],
    lines: Sequence[Line],
    today: date,
    memo: str,
) -> Issued:
    if not lines:
        return None
    if nets_to_credit(lines):
        return _credit_now(conn, book_id, row, lines, today, memo)
    draft = create_draft(
        conn,
        book_id,
        str(row["customer_id"]),
        _line_specs(lines),
        memo=memo,
        subscription_id=row["id"],
    )
    assert draft is not None
    return finalize_invoice(conn, book_id, str(draft.id), today)


def change_subscription(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    ref: str,
    new_items: Sequence[ItemSpec],
    effective_date: date | None,
    proration: str,
    today: date,
) -> tuple[Subscription, Issued]:
    """Replace the items from `effective_date` (default today), prorating as asked."""
    try:
        mode = ProrationMode(proration)
    except ValueError:
        raise InvalidBillingRequest(
            "proration must be invoice_now, next_invoice or none", proration=proration
        ) from None
    row = _row(conn, book_id, ref, lock=True)
    on = book_window(conn, book_id).check("effective_date", effective_date or today)
    _live(row, today, "change it")
    customer = get_customer(conn, book_id, str(row["customer_id"]))
    resolved = resolve_items(conn, book_id, customer, new_items)
    price = resolved[0][0]
    if (str(price.interval), price.interval_count) != (row["interval"], row["interval_count"]):
        raise InvalidBillingRequest(
            f"the subscription bills every {row['interval_count']} {row['interval']}; the new"
            f" items bill every {price.interval_count} {price.interval}: cancel and create a new"
            " subscription to change the cycle"
        )
    _catch_up(conn, book_id, row["id"], today)
    before = get_subscription(conn, book_id, ref, today)  # for the event's previous_attributes
    row = _row(conn, book_id, ref, lock=True)
    current = current_period(conn, book_id, row)
    if not current.contains(on):
        raise InvalidBillingRequest(
            f"effective_date {on} is outside the current billing period {current}",
            effective_date=on.isoformat(),
            period_start=current.start.isoformat(),
            period_end=current.end.isoformat(),
        )
    latest = conn.execute(
        "select max(effective_from) from subscription_items where book_id = %s"
        " and subscription_id = %s and effective_to is null",
        (book_id, row["id"]),
    ).fetchone()
    if latest is not None and latest[0] is not None and on < latest[0]:
        raise InvalidBillingRequest(
            f"the items in force changed on {latest[0]}; a change cannot take effect before it"
        )
    plan = _plan_now(conn, book_id, row)
    lines: list[Line] = []
    if _invoiced(conn, book_id, row) and mode is not ProrationMode.NONE:
        named = billing_runs.load_prices(conn, book_id, [p.id for p, _ in resolved])
        new = [
            Item(
                str(p.id),
                named[p.id].description,
                named[p.id].charge,
                q,
                named[p.id].revenue_account,
                named[p.id].usage,
            )
            for p, q in resolved
        ]
        lines = change_lines(plan, new, current, on)
    # A version that has not started yet (a change on the same day) is simply replaced.
    conn.execute(
        "update subscription_items set effective_to = %s where book_id = %s"
        " and subscription_id = %s and effective_to is null",
        (on, book_id, row["id"]),
    )
    _insert_items(conn, book_id, row["id"], resolved, on)
    invoice: Issued = None
    if lines and (mode is ProrationMode.INVOICE_NOW or nets_to_credit(lines)):
        # A credit is owed now: it never waits in a pending draft (billing.subscriptions).
        invoice = _invoice_now(conn, book_id, row, lines, today, "Proration of a plan change")
    elif lines and mode is ProrationMode.NEXT_INVOICE:
        invoice = create_draft(
            conn,
            book_id,
            str(row["customer_id"]),
            _line_specs(lines),
            memo="Proration of a plan change, billed with the next period",
            metadata={billing_runs.PENDING: "next_invoice"},
            subscription_id=row["id"],
        )
    changed = get_subscription(conn, book_id, ref, today)
    return record_event(conn, book_id, "subscription.updated", changed, before), invoice


def cancel_subscription(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, at: str, today: date
) -> tuple[Subscription, Issued]:
    """Cancel `now`, at `period_end`, or on a date (today or later)."""
    row = _row(conn, book_id, ref, lock=True)
    if row["cancel_at"] is not None and row["cancel_at"] <= today:
        raise DocumentState(f"the subscription is already canceled (since {row['cancel_at']})")
    if row["paused_on"] is None:
        _catch_up(conn, book_id, row["id"], today)
        row = _row(conn, book_id, ref, lock=True)
    current = current_period(conn, book_id, row)
    if at == "now":
        on = today
    elif at == "period_end":
        on = current.end if current.end > today else row["next_period_start"]
    else:
        try:
            on = date.fromisoformat(at)
        except ValueError:
            raise InvalidBillingRequest(
                f"at must be now, period_end or a date (YYYY-MM-DD), got {at!r}"
            ) from None
        if on < today:
            raise InvalidBillingRequest(
                f"cannot cancel in the past: {on} is before the book's today ({today})",
                at=at,
            )
        book_window(conn, book_id).check("at", on)
    credits: list[Line] = []
    if _invoiced(conn, book_id, row) and on < row["next_period_start"]:
        credits = cancellation_credits(_plan_now(conn, book_id, row), current, on)
    conn.execute(
        "update subscriptions set cancel_at = %s, canceled_on = %s,"
        " status = case when %s <= %s then 'canceled' else status end"
        " where book_id = %s and id = %s",
        (on, today, on, today, book_id, row["id"]),
    )
    invoice: Issued = None
    if on <= row["next_period_start"]:
        # No further period will carry waiting prorations: they go on the final invoice.
        pending, drafts = billing_runs.take_pending(conn, book_id, [row["id"]])
        lines = [*pending.get(row["id"], []), *credits]
        billing_runs.drop_drafts(conn, book_id, list(drafts))
        invoice = _invoice_now(
            conn, book_id, row, lines, today, f"Cancellation on {on}: credit for unused time"
        )
    canceled = get_subscription(conn, book_id, ref, today)
    return record_event(conn, book_id, "subscription.canceled", canceled), invoice


def pause_subscription(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, today: date
) -> Subscription:
    """Stop invoicing from today; the period already invoiced runs out (no credit)."""
    row = _row(conn, book_id, ref, lock=True)
    _live(row, today, "pause it")
    _catch_up(conn, book_id, row["id"], today)
    conn.execute(
        "update subscriptions set paused_on = %s, status = 'paused' where book_id = %s and id = %s",
        (today, book_id, row["id"]),
    )
    return record_event(
        conn, book_id, "subscription.paused", get_subscription(conn, book_id, ref, today)
    )


def resume_subscription(
    conn: psycopg.Connection, book_id: uuid.UUID, ref: str, today: date
) -> Subscription:
    """Resume on the same anchor: the period resumed in is billed from today, by day."""
    row = _row(conn, book_id, ref, lock=True)
    if row["paused_on"] is None:
        raise DocumentState("the subscription is not paused")
    if row["cancel_at"] is not None and row["cancel_at"] <= today:
        raise DocumentState("the subscription is canceled")
    conn.execute(
        "update subscriptions set paused_on = null, next_period_start = greatest(next_period_start,"
        " %s), status = case when trial_end > %s then 'trialing' else 'active' end"
        " where book_id = %s and id = %s",
        (today, today, book_id, row["id"]),
    )
    return record_event(
        conn, book_id, "subscription.resumed", get_subscription(conn, book_id, ref, today)
    )
