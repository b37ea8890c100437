"""Postpaid telecom subscriptions: a rate plan as a subscription item, and the rated
CDRs its invoices bill in arrears.

A subscription item names `rate_plan` instead of `price`, and the subscription
carries the `subscriber` (MSISDN or account) its CDRs name: the subscriber is
created (or, when it exists for the same customer without a wallet, moved to
that plan) and tied to the subscription (`subscription_rate_plans`). Its
allowances run per billing period of the subscription (not per calendar
month), in the plan's time zone.

The invoice of period P (issued on P's first day) bills every rated CDR of
the subscriber not yet invoiced that started before P's first day (midnight
in the plan's time zone) — the period just ended, and any CDR of an older
period that arrived or was rated after that period was invoiced, which is how
late CDRs reach the next invoice and never edit the old one. Unrated CDRs
wait for a rating run (`POST /v1/cdr-ratings`, or the accrual run).

Lines: one per (event type, zone), quantity = the number of records, the
description saying the billed units and the part an allowance included
(allowance overage is what the line charges). Their amounts were accrued to
Unbilled when rated, so the invoice relieves Unbilled for all of them
(billing.usage_accrual). `GET /v1/invoices/{id}/usage-detail` lists the CDRs
an invoice billed.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from billing.errors import DocumentState, InvalidBillingRequest
from billing.periods import Period
from billing.postgres.telecom import create_subscriber, plan_versions
from billing.subscriptions import Line
from billing.usage_accrual import USAGE
from ledger.errors import NotFound
from ledger.money import Money

__all__ = [
    "RatePlanItem",
    "attach_rate_plan",
    "cdr_lines",
    "invoice_usage_detail",
    "mark_billed",
    "rate_plan_items",
    "unbilled_cdrs",
]

# Any zone's local midnight of a day is within 14 hours of UTC midnight; the exact cut
# is made per period in Python (`cdr_lines`).
_WIDEST = timedelta(hours=14)
_UNITS = {"voice": "s", "sms": "messages", "data": "bytes"}


@dataclass(frozen=True, slots=True)
class RatePlanItem:
    subscription_id: uuid.UUID
    subscriber: str
    rate_plan: str
    time_zone: str


def attach_rate_plan(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    subscription_id: uuid.UUID,
    customer_id: uuid.UUID,
    currency: str,
    subscriber: str,
    rate_plan: str,
) -> RatePlanItem:
    """Tie the postpaid `subscriber` on `rate_plan` to the subscription."""
    subscriber = subscriber.strip()
    versions = plan_versions(conn, book_id, rate_plan)
    if any(v.currency != currency for v in versions):
        raise InvalidBillingRequest(
            f"rate_plan: {rate_plan!r} rates in {versions[0].currency}; the customer bills"
            f" in {currency}"
        )
    found = conn.execute(
        "select customer_id, wallet_id from telecom_subscribers"
        " where book_id = %s and subscriber = %s for update",
        (book_id, subscriber),
    ).fetchone()
    if found is None:
        create_subscriber(conn, book_id, subscriber, str(customer_id), rate_plan)
    else:
        if found[0] != customer_id:
            raise InvalidBillingRequest(f"subscriber: {subscriber!r} belongs to another customer")
        if found[1] is not None:
            raise InvalidBillingRequest(
                f"subscriber: {subscriber!r} is prepaid (it has a wallet); a subscription"
                " bills postpaid subscribers"
            )
        conn.execute(
            "update telecom_subscribers set rate_plan = %s where book_id = %s and subscriber = %s",
            (rate_plan, book_id, subscriber),
        )
    row = conn.execute(
        "insert into subscription_rate_plans (book_id, subscription_id, subscriber, rate_plan)"
        " values (%s, %s, %s, %s) on conflict do nothing returning subscription_id",
        (book_id, subscription_id, subscriber, rate_plan),
    ).fetchone()
    if row is None:
        raise DocumentState(f"subscriber {subscriber!r} is already on a subscription")
    return RatePlanItem(subscription_id, subscriber, rate_plan, versions[-1].time_zone)


def rate_plan_items(
    conn: psycopg.Connection, book_id: uuid.UUID, subscription_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RatePlanItem]:
    rows = conn.execute(
        "select s.subscription_id, s.subscriber, s.rate_plan, r.time_zone"
        " from subscription_rate_plans s"
        " join lateral (select time_zone from rate_plans r where r.book_id = s.book_id"
        "   and r.name = s.rate_plan order by effective_from desc limit 1) r on true"
        " where s.book_id = %s and s.subscription_id = any(%s)",
        (book_id, list(subscription_ids)),
    ).fetchall()
    return {r[0]: RatePlanItem(r[0], r[1], r[2], r[3]) for r in rows}


@dataclass
class _Cdr:
    id: str
    start: datetime
    event_type: str
    zone: str | None
    billed: Decimal
    included: Decimal
    amount: Decimal


def unbilled_cdrs(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    items: Sequence[RatePlanItem],
    before: date,
) -> dict[uuid.UUID, list[_Cdr]]:
    """Per subscription: its subscriber's rated CDRs not yet invoiced that started before
    `before` (in the plan's zone), in event-time order. Not row-locked: the caller holds
    the subscription; `cdr_invoices`' key refuses a CDR billed twice all the same."""
    if not items:
        return {}
    by_subscriber = {i.subscriber: i for i in items}
    rows = conn.execute(
        "select c.subscriber, c.id, c.start, c.event_type, r.zone, r.billed_quantity,"
        " r.included, r.amount from cdrs c"
        " join cdr_ratings r on r.book_id = c.book_id and r.cdr_id = c.id"
        " where c.book_id = %s and c.subscriber = any(%s) and c.start < %s"
        " and not exists (select 1 from cdr_invoices b where b.book_id = c.book_id"
        "                 and b.cdr_id = c.id)"
        " order by c.subscriber, c.start, c.id",
        (book_id, list(by_subscriber), datetime.combine(before, time(0), UTC) + _WIDEST),
    ).fetchall()
    out: dict[uuid.UUID, list[_Cdr]] = defaultdict(list)
    for subscriber, cid, start, event_type, zone, billed, included, amount in rows:
        item = by_subscriber[subscriber]
        out[item.subscription_id].append(
            _Cdr(cid, start, event_type, zone, Decimal(billed), Decimal(included), Decimal(amount))
        )
    return out


def cdr_lines(
    pending: list[_Cdr], item: RatePlanItem, before: date, service_start: date | None, currency: str
) -> tuple[list[Line], list[str]]:
    """The lines billing `pending`'s CDRs that started before `before` (local midnight),
    taken out of `pending`; and their ids."""
    cut = datetime.combine(before, time(0), ZoneInfo(item.time_zone))
    taken = [c for c in pending if c.start < cut]
    if not taken:
        return [], []
    pending[:] = [c for c in pending if c.start >= cut]
    tz = ZoneInfo(item.time_zone)
    first = min(c.start.astimezone(tz).date() for c in taken)
    service = Period(min(first, service_start or first), before)
    groups: dict[tuple[str, str], list[_Cdr]] = defaultdict(list)
    for c in taken:
        groups[(c.event_type, c.zone or "")].append(c)
    lines = []
    for (event_type, zone), cdrs in sorted(groups.items()):
        count = Decimal(len(cdrs))
        amount = sum((c.amount for c in cdrs), Decimal(0))
        billed = sum((c.billed for c in cdrs), Decimal(0))
        included = sum((c.included for c in cdrs), Decimal(0))
        unit = _UNITS[event_type]
        where = f" to {zone}" if zone else ""
        text = (
            f"{item.rate_plan} — {event_type}{where}, {item.subscriber}: {len(cdrs)} records,"
            f" {billed.normalize():f} {unit} billed"
            + (f" ({included.normalize():f} {unit} included)" if included else "")
            + f", {service}"
        )
        unit_amount = (amount / count).quantize(Decimal("1e-12")).normalize()
        lines.append(
            Line("usage", text, count, unit_amount, Money(amount, currency), service, USAGE)
        )
    return lines, [c.id for c in taken]


def mark_billed(
    conn: psycopg.Connection, book_id: uuid.UUID, billed: dict[uuid.UUID, list[str]]
) -> None:
    """Record which invoice billed each CDR."""
    pairs = [(cid, invoice) for invoice, ids in billed.items() for cid in ids]
    if not pairs:
        return
    conn.execute(
        "insert into cdr_invoices (book_id, cdr_id, invoice_id)"
        " select %s, u.id, u.invoice from unnest(%s::text[], %s::uuid[]) as u(id, invoice)",
        (book_id, [p[0] for p in pairs], [p[1] for p in pairs]),
    )


def invoice_usage_detail(
    conn: psycopg.Connection, book_id: uuid.UUID, invoice_ref: str
) -> list[dict[str, Any]]:
    """The CDRs an invoice billed (its itemized call detail), in event-time order."""
    try:
        invoice_id = uuid.UUID(invoice_ref)
    except ValueError:
        raise NotFound(f"invoice {invoice_ref!r} does not exist in this book") from None
    if (
        conn.execute(
            "select 1 from invoices where book_id = %s and id = %s", (book_id, invoice_id)
        ).fetchone()
        is None
    ):
        raise NotFound(f"invoice {invoice_ref!r} does not exist in this book")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select c.id, c.start, c.event_type, c.destination, r.zone, r.band, c.quantity,"
            " r.billed_quantity, r.amount, r.currency from cdrs c"
            " join cdr_ratings r on r.book_id = c.book_id and r.cdr_id = c.id"
            " join cdr_invoices b on b.book_id = c.book_id and b.cdr_id = c.id"
            " where c.book_id = %s and b.invoice_id = %s order by c.start, c.id",
            (book_id, invoice_id),
        ).fetchall()
