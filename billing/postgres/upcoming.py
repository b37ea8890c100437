"""The upcoming invoice (Stripe's name): what a customer's next subscription invoice
would be if it were issued now — the next period in advance, the usage of the
current period so far and any late usage, pending prorations, coupon and tax —
built with the billing run's own rules and written nowhere (the caller rolls
back; the pending prorations' drafts are only read, under the run's lock)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any

import psycopg
from psycopg.rows import dict_row

from billing.invoicing import tax_rate_of
from billing.periods import Period
from billing.postgres import billing_runs as runs
from billing.postgres.customers import get_customer
from billing.postgres.settings import read_settings
from billing.postgres.telecom_billing import cdr_lines, rate_plan_items, unbilled_cdrs
from billing.postgres.usage_billing import arrears, previous_period, usage_windows
from billing.postings import FinalLine
from billing.subscriptions import Line, Plan, period_lines
from ledger.errors import NotFound
from ledger.money import Money

__all__ = ["Upcoming", "upcoming_invoice"]


@dataclass(frozen=True, slots=True)
class Upcoming:
    customer_id: uuid.UUID
    subscription_id: uuid.UUID
    currency: str
    issue_date: date
    period: Period
    lines: tuple[Line, ...]
    finals: tuple[FinalLine, ...]
    subtotal: Money
    discount: Money
    tax: Money

    @property
    def total(self) -> Money:
        return self.subtotal - self.discount + self.tax


def upcoming_invoice(
    conn: psycopg.Connection, book_id: uuid.UUID, customer_ref: str, subscription: str | None
) -> Upcoming:
    customer = get_customer(conn, book_id, customer_ref)
    params: dict[str, Any] = {"book": book_id, "customer": customer.id}
    where = (
        "book_id = %(book)s and customer_id = %(customer)s and status <> 'canceled'"
        " and (cancel_at is null or next_period_start < cancel_at)"
        " and (paused_on is null or next_period_start < paused_on)"
    )
    if subscription is not None:
        try:
            params["sub"] = uuid.UUID(subscription)
        except ValueError:
            raise NotFound(f"subscription {subscription!r} does not exist") from None
        where += " and id = %(sub)s"
    with conn.cursor(row_factory=dict_row) as cur:
        sub = cur.execute(
            f"select {runs._SUB_COLUMNS} from subscriptions where {where}"
            " order by next_period_start, id limit 1",
            params,
        ).fetchone()
    if sub is None:
        raise NotFound(
            f"customer {customer_ref!r} has no subscription with an invoice to come",
            customer=customer_ref,
        )
    plan = runs.plan_of(sub)
    period = plan.period_from(sub["next_period_start"])
    if period is None:
        raise NotFound(f"subscription {sub['id']} has no period to come")
    versions = runs._items(conn, book_id, [sub["id"]]).get(sub["id"], [])
    prices = runs.load_prices(conn, book_id, list({v[0] for v in versions}))
    plan_now = Plan(
        plan.anchor,
        plan.interval,
        plan.count,
        plan.cancel_at,
        None,
        runs.items_on(versions, prices, period.start),
    )
    usage: list[Line] = []
    if any(prices[v[0]].usage for v in versions):
        first_day = max(sub["start_date"], sub["trial_end"] or sub["start_date"])
        ended = previous_period(plan, first_day, period)
        windows = usage_windows(versions, partial(runs.item_of, prices), ended)
        usage, _ = arrears(conn, book_id, customer.id, sub["id"], windows)
    rate_plan = rate_plan_items(conn, book_id, [sub["id"]]).get(sub["id"])
    if rate_plan is not None:  # the subscriber's rated CDRs not yet invoiced
        first_day = max(sub["start_date"], sub["trial_end"] or sub["start_date"])
        ended = previous_period(plan, first_day, period)
        found = unbilled_cdrs(conn, book_id, [rate_plan], period.start)
        more, _ = cdr_lines(
            found.get(sub["id"], []),
            rate_plan,
            period.start,
            ended.start if ended else None,
            sub["currency"],
        )
        usage = [*usage, *more]
    coupons = runs._coupons(conn, book_id, [sub["coupon_id"]] if sub["coupon_id"] else [])
    coupon = coupons.get(sub["coupon_id"]) if sub["coupon_id"] else None
    pending, _ = runs.take_pending(conn, book_id, [sub["id"]])
    lines = [
        *period_lines(
            plan_now, period, coupon=coupon, paid_index=sub["periods_billed"], arrears=usage
        ),
        *pending.get(sub["id"], []),
    ]
    per_invoice = read_settings(conn, book_id).get("tax_level") == "per_invoice"
    rate = tax_rate_of(customer.tax_rate, customer.tax_treatment)
    zero = Money.zero(sub["currency"]).quantized()
    if not lines:
        return Upcoming(
            customer.id, sub["id"], sub["currency"], period.start, period, (), (), zero, zero, zero
        )
    priced = runs._price_lines(lines, rate, per_invoice)
    return Upcoming(
        customer.id,
        sub["id"],
        sub["currency"],
        period.start,
        period,
        priced.lines,
        priced.finals,
        priced.subtotal,
        priced.discount,
        priced.tax,
    )
