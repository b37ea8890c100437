"""Reads what the MRR rules need (subscriptions, their item versions, prices and
coupons) as plain data for billing.metrics."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from billing.metrics import (
    ItemVersion,
    Key,
    MrrReport,
    SubscriptionFacts,
    month_end,
    months_between,
    report_from_changes,
    shape_changes,
)
from billing.periods import Interval
from billing.postgres.catalog import charge_of
from billing.rating import Charge, ChargeModel
from billing.subscriptions import Coupon, coupon_of


def _recurring_prices_and_coupons(
    conn: psycopg.Connection, book_id: uuid.UUID
) -> tuple[dict[str, Charge], dict[str, Coupon]]:
    """The book's recurring prices and its coupons, by id as text."""
    prices = {
        r[0]: charge_of(ChargeModel(r[1]), r[2], r[3], r[4], r[5])
        for r in conn.execute(
            "select id::text, charge_model, currency, unit_amount, tiers, package_size from prices"
            " where book_id = %s and interval is not null",
            (book_id,),
        )
    }
    coupons = {
        r[0]: coupon_of(r[1], r[2], r[3], r[4], r[5])
        for r in conn.execute(
            "select id::text, percent_off, amount_off, currency, duration, duration_in_periods"
            " from coupons where book_id = %s",
            (book_id,),
        )
    }
    return prices, coupons


def subscription_facts(
    conn: psycopg.Connection, book_id: uuid.UUID, through: date
) -> list[SubscriptionFacts]:
    """Every subscription that started by `through`, with all its item versions."""
    prices, coupons = _recurring_prices_and_coupons(conn, book_id)
    # fetchall and text ids: a book of 100,000 subscriptions is read row by row in Python,
    # where a cursor's per-row iteration and a UUID per row are a good part of the time.
    rows_of: dict[str, list[tuple[str, Decimal, date, date | None]]] = defaultdict(list)
    for sub, *version in conn.execute(
        "select subscription_id::text, price_id::text, quantity, effective_from, effective_to"
        " from subscription_items where book_id = %s and effective_from <= %s",
        (book_id, through),
    ).fetchall():
        rows_of[sub].append(tuple(version))
    # One tuple of item versions per distinct set of versions, shared by the
    # subscriptions that have it (billing.metrics rates each shape once).
    shared: dict[tuple[Any, ...], tuple[ItemVersion, ...]] = {}
    items: dict[str, tuple[ItemVersion, ...]] = {}
    for sub, versions in rows_of.items():
        raw = tuple(versions)
        found = shared.get(raw)
        if found is None:
            found = shared[raw] = tuple(
                ItemVersion(prices[price], quantity, start, end)
                for price, quantity, start, end in versions
            )
        items[sub] = found
    rows = conn.execute(
        "select id::text, customer_id::text, currency, start_date, billing_anchor, interval,"
        " interval_count, trial_end, cancel_at, paused_on, coupon_id::text from subscriptions"
        " where book_id = %s and start_date <= %s",
        (book_id, through),
    ).fetchall()
    intervals = {i.value: i for i in Interval}
    none: tuple[ItemVersion, ...] = ()
    return [
        SubscriptionFacts(  # customer, currency, start, anchor, interval, count, items, …
            r[1],
            r[2],
            r[3],
            r[4],
            intervals[r[5]],
            r[6],
            items.get(r[0], none),
            r[7],
            r[8],
            r[9],
            coupons[r[10]] if r[10] is not None else None,
        )
        for r in rows
    ]


# One row per subscription shape: its item versions as one text (price, quantity, and
# the dates as days from _EPOCH, whatever the session's DateStyle; one aggregate and
# sort per subscription, four array_aggs took twice as long) and its customers, one
# per subscription.
_SHAPES = (
    "with versions as ("
    "  select subscription_id as id,"
    "         string_agg(concat_ws(' ', price_id, quantity, effective_from - %(epoch)s,"
    "                              effective_to - %(epoch)s),"
    "                    ',' order by effective_from, id) as items"
    "    from subscription_items where book_id = %(book)s and effective_from <= %(through)s"
    "   group by subscription_id)"
    " select s.currency, s.start_date, s.billing_anchor, s.interval, s.interval_count,"
    "        s.trial_end, s.cancel_at, s.paused_on, s.coupon_id::text, v.items,"
    "        array_agg(s.customer_id::text)"
    "   from subscriptions s left join versions v on v.id = s.id"
    "  where s.book_id = %(book)s and s.start_date <= %(through)s"
    "  group by s.currency, s.start_date, s.billing_anchor, s.interval, s.interval_count,"
    "        s.trial_end, s.cancel_at, s.paused_on, s.coupon_id, v.items"
)


_EPOCH = date(2000, 1, 1)


def _version(prices: dict[str, Any], text: str) -> ItemVersion:
    """An item version from _SHAPES' "price quantity from [to]" (the quantity as
    PostgreSQL writes it, with its scale; the dates as days from _EPOCH)."""
    price, quantity, start, *end = text.split(" ")
    return ItemVersion(
        prices[price],
        Decimal(quantity),
        _EPOCH + timedelta(days=int(start)),
        _EPOCH + timedelta(days=int(end[0])) if end else None,
    )


def subscription_shapes(
    conn: psycopg.Connection, book_id: uuid.UUID, through: date
) -> tuple[list[SubscriptionFacts], dict[Key, list[int]]]:
    """The distinct shapes of the subscriptions that started by `through` (each a
    SubscriptionFacts with customer ""), and per (currency, customer) the shapes of
    its subscriptions, sorted. The same subscriptions as subscription_facts, grouped
    by PostgreSQL: one row per shape with its customers (one per subscription), not a
    row per subscription and item version (225,000 rows for a book of 100,000)."""
    prices, coupons = _recurring_prices_and_coupons(conn, book_id)
    rows = conn.execute(
        _SHAPES,
        {"book": book_id, "through": through, "epoch": _EPOCH},
    ).fetchall()
    intervals = {i.value: i for i in Interval}
    shapes: list[SubscriptionFacts] = []
    holders: dict[Key, list[int]] = defaultdict(list)
    for n, r in enumerate(rows):
        items = tuple(_version(prices, text) for text in r[9].split(",")) if r[9] else ()
        shapes.append(
            SubscriptionFacts(  # customer, currency, start, anchor, interval, count, items, …
                "",
                r[0],
                r[1],
                r[2],
                intervals[r[3]],
                r[4],
                items,
                r[5],
                r[6],
                r[7],
                coupons[r[8]] if r[8] is not None else None,
            )
        )
        currency = r[0]
        for customer in r[10]:
            holders[(currency, customer)].append(n)
    for held in holders.values():
        held.sort()
    return shapes, holders


def mrr(conn: psycopg.Connection, book_id: uuid.UUID, first: date, last: date) -> MrrReport:
    """MRR movements for the months `first`..`last` (first days of months): the figures
    of billing.metrics.mrr_report over subscription_facts, worked out per subscription
    shape (subscription_shapes, shape_changes)."""
    shapes, holders = subscription_shapes(conn, book_id, month_end(last))
    earliest = min([*(s.start for s in shapes), first])
    days = [month_end(m) for m in months_between(earliest, last)]
    return report_from_changes(shape_changes(shapes, holders.items(), days), earliest, first, last)
