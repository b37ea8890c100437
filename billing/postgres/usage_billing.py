"""Usage billed in arrears: the lines a subscription's usage items add to an invoice.

A subscription's invoice for period P (issued on P's first day, in advance)
carries the usage of the period just ended, `previous_period` — from the
later of the subscription's start and its trial end — rated by billing.usage
(one line per meter and group, the minimum commitment's shortfall on its own
line), to `Income:Usage`. What each (subscription, price, period) was billed
is kept in `usage_billings` (also when it was nothing), stamped with when.
A billing run reads a batch's usage set-based (`prefetch_arrears`: one
aggregation per meter over all the batch's windows, one statement for their
late periods) and records it in one statement (`record_usages`).

Late usage: an event of an already billed period that arrived after that
period was billed makes the next invoice carry, as its own line, the period's
whole usage rated again less what was billed for it (tiers stay right); the
old invoice is never touched. A period rated at no more than was billed adds
no line, but is recorded so its late events are not looked at again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from billing.periods import Period
from billing.postgres.catalog import charge_of
from billing.postgres.usage import Meter, aggregate, aggregate_many, list_meters, meter_for
from billing.rating import ChargeModel
from billing.subscriptions import Item, Line, Plan, cycle_period
from billing.usage import (
    USAGE_ACCOUNT,
    Aggregation,
    MeterSpec,
    UsagePrice,
    UsageTerms,
    late_amount,
    rate_usage,
    usage_lines,
)
from ledger.money import Money

__all__ = [
    "Prefetched",
    "UsageRecord",
    "arrears",
    "billed_ends",
    "prefetch_arrears",
    "previous_period",
    "record_usage",
    "record_usages",
    "unbilled_part",
    "usage_price",
    "usage_windows",
]


@dataclass(frozen=True, slots=True)
class UsageRecord:
    price_id: str
    period: Period
    group: dict[str, Any]
    quantity: Decimal
    amount: Decimal


def usage_price(
    charge: Any,
    metric: str | None,
    aggregation: str | None,
    free_units: Decimal | None,
    minimum: Decimal | None,
) -> UsagePrice | None:
    if metric is None or aggregation is None:
        return None
    return UsagePrice(metric, aggregation, UsageTerms(charge, free_units or Decimal(0), minimum))


def usage_windows(
    versions: Sequence[tuple[Any, Decimal, date, date | None]],
    items: Callable[[Any, Decimal], Item],
    ended: Period | None,
) -> list[tuple[Item, Period]]:
    """Each usage item version in force during `ended`, with the part of `ended` it
    covers (an item added or removed mid-period bills only its own days' usage)."""
    if ended is None:
        return []
    out = []
    for price_id, quantity, start, end in versions:
        first, last = max(start, ended.start), min(end or ended.end, ended.end)
        item = items(price_id, quantity)
        if item.usage is not None and first < last:
            out.append((item, Period(first, last)))
    return out


def billed_ends(
    conn: psycopg.Connection, book_id: uuid.UUID, subs: Sequence[tuple[uuid.UUID, date]]
) -> dict[tuple[uuid.UUID, str, date], date]:
    """How far each recent (subscription, price, window start) was billed — for the
    windows (subscription id, next period start) a run is about to bill. A final usage
    invoice (billing.postgres.final_usage) bills a window only up to a pause; after a
    resume in the same period, the period's invoice bills the rest, not it again."""
    if not subs:
        return {}
    rows = conn.execute(
        "select u.subscription_id, u.price_id, u.period_start, max(u.period_end)"
        " from usage_billings u join unnest(%s::uuid[], %s::date[]) as t(sub, next_start)"
        "   on u.subscription_id = t.sub"
        " where u.book_id = %s and u.period_start >= t.next_start - 400"
        " group by 1, 2, 3",
        ([s[0] for s in subs], [s[1] for s in subs], book_id),
    ).fetchall()
    return {(r[0], str(r[1]), r[2]): r[3] for r in rows}


def unbilled_part(
    windows: Sequence[tuple[Item, Period]],
    sub_id: uuid.UUID,
    billed: dict[tuple[uuid.UUID, str, date], date],
) -> list[tuple[Item, Period]]:
    """The windows less what was already billed of them (from their start)."""
    out = []
    for item, part in windows:
        end = billed.get((sub_id, item.price_id, part.start))
        if end is None or end <= part.start:
            out.append((item, part))
        elif end < part.end:
            out.append((item, Period(end, part.end)))
    return out


def previous_period(plan: Plan, first_day: date, period: Period) -> Period | None:
    """The period that ends where `period` starts (cut at `first_day`: the start, or
    the trial end), or None when `period` is the first."""
    if period.start <= first_day:
        return None
    cycle = cycle_period(plan.anchor, plan.interval, plan.count, period.start - timedelta(days=1))
    return Period(max(cycle.start, first_day), period.start)


def _average(amount: Decimal, quantity: Decimal) -> tuple[Decimal, Decimal]:
    if quantity <= 0:
        return Decimal(1), amount
    return quantity, (amount / quantity).quantize(Decimal("1e-12")).normalize()


def _rate_period(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_id: uuid.UUID,
    usage: UsagePrice,
    period: Period,
    prefetched: Prefetched | None = None,
) -> tuple[list[Any], Money | None]:
    key = (customer_id, usage.metric, usage.aggregation, period.start, period.end)
    groups = prefetched.quantities.get(key) if prefetched is not None else None
    if groups is None:
        meter = meter_for(conn, book_id, usage.metric, usage.aggregation)
        groups = aggregate(conn, book_id, customer_id, meter.spec, period.start, period.end)
    return rate_usage(usage.terms, groups)


_Window = tuple[uuid.UUID, str, str, date, date]  # customer, metric, aggregation, start, end


@dataclass(frozen=True, slots=True)
class Prefetched:
    """What `arrears` reads, read for many subscriptions at once: each window's
    aggregated quantities (as `aggregate` gives them) and each subscription's late
    rows (as `_LATE` gives them). A window not in it is read as before."""

    quantities: dict[_Window, list[tuple[dict[str, str | None], Decimal]]]
    late: dict[uuid.UUID, list[tuple[Any, ...]]]


def _spec(meters: dict[str, Meter], metric: str, aggregation: str) -> MeterSpec | None:
    """`meter_for`'s answer from the book's meters; None where it would raise."""
    meter = meters.get(metric)
    if meter is not None:
        return meter.spec
    if aggregation == Aggregation.UNIQUE_COUNT:
        return None
    return MeterSpec(metric, Aggregation(aggregation))


def prefetch_arrears(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    requests: Sequence[tuple[uuid.UUID, uuid.UUID, Sequence[tuple[Item, Period]], bool]],
) -> Prefetched:
    """Read, set-based, what `arrears` of each (customer, subscription, windows, late)
    will read: one statement for the late rows of all of them, then one aggregation per
    meter over all their windows (the periods just ended and the late periods)."""
    late_subs = [(customer, sub) for customer, sub, _, late in requests if late]
    late: dict[uuid.UUID, list[tuple[Any, ...]]] = {sub: [] for _, sub in late_subs}
    if late_subs:
        for row in conn.execute(
            _LATE_MANY,
            {
                "book": book_id,
                "subs": [s for _, s in late_subs],
                "customers": [c for c, _ in late_subs],
            },
        ):
            late[row[0]].append(row[1:])
    wanted: set[_Window] = set()
    for customer, _, windows, _ in requests:
        for item, part in windows:
            if item.usage is not None:
                wanted.add(
                    (customer, item.usage.metric, item.usage.aggregation, part.start, part.end)
                )
    customer_of = {sub: customer for customer, sub in late_subs}
    for sub, rows in late.items():
        for row in rows:  # price_id, start, end, quantity, amount, metric, aggregation, …
            wanted.add((customer_of[sub], row[5], row[6], row[1], row[2]))
    quantities: dict[_Window, list[tuple[dict[str, str | None], Decimal]]] = {}
    if wanted:
        meters = {m.spec.metric: m for m in list_meters(conn, book_id)}
        by_meter: dict[tuple[str, str], list[_Window]] = {}
        for window in wanted:
            by_meter.setdefault((window[1], window[2]), []).append(window)
        for (metric, aggregation), keys in by_meter.items():
            spec = _spec(meters, metric, aggregation)
            if spec is None:  # read one by one, where meter_for says why not
                continue
            found = aggregate_many(conn, book_id, spec, [(w[0], w[3], w[4]) for w in keys])
            quantities.update(zip(keys, found, strict=True))
    return Prefetched(quantities, late)


def arrears(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_id: uuid.UUID,
    subscription_id: uuid.UUID,
    items: Sequence[tuple[Item, Period]],
    *,
    late: bool = True,
    prefetched: Prefetched | None = None,
) -> tuple[list[Line], list[UsageRecord]]:
    """The usage lines of the period just ended — each usage item over the part of it
    the item was in force (`usage_windows`) — and the late usage of periods billed
    before; with what to record for each. With `prefetched` (`prefetch_arrears` of the
    same arguments) it reads nothing more."""
    lines: list[Line] = []
    records: list[UsageRecord] = []
    for item, ended in items:
        if item.usage is None:
            continue
        rated, shortfall = _rate_period(conn, book_id, customer_id, item.usage, ended, prefetched)
        for u in usage_lines(item.description, item.usage.terms, ended, rated, shortfall):
            lines.append(
                Line(
                    "usage",
                    u.description,
                    u.quantity,
                    u.unit_amount,
                    u.amount,
                    u.service,
                    USAGE_ACCOUNT,
                    item.price_id,
                )
            )
        kept = [
            UsageRecord(item.price_id, ended, r.group, r.quantity, r.amount.amount) for r in rated
        ]
        if shortfall is not None:
            kept.append(
                UsageRecord(
                    item.price_id, ended, {"minimum": "shortfall"}, Decimal(0), shortfall.amount
                )
            )
        records.extend(kept or [UsageRecord(item.price_id, ended, {}, Decimal(0), Decimal(0))])
    if not late:
        return lines, records
    late_lines, late_records = _late(conn, book_id, customer_id, subscription_id, prefetched)
    return [*lines, *late_lines], [*records, *late_records]


# Billed periods of a subscription with events that arrived after they were billed.
_LATE = """
with billed as (
  select price_id, period_start, period_end, sum(quantity) as quantity,
         sum(amount) as amount, max(billed_at) as billed_at
    from usage_billings where book_id = %(book)s and subscription_id = %(sub)s
   group by price_id, period_start, period_end
)
select b.price_id, b.period_start, b.period_end, b.quantity, b.amount, p.metric,
       p.aggregation, p.charge_model, p.currency, p.unit_amount, p.tiers, p.package_size,
       p.free_units, p.minimum_amount, pr.name
  from billed b
  join prices p on p.book_id = %(book)s and p.id = b.price_id
  join products pr on pr.book_id = p.book_id and pr.id = p.product_id
 where exists (
   select 1 from usage_events e
    where e.book_id = %(book)s and e.customer_id = %(customer)s and e.metric = p.metric
      and e.occurred_at >= (b.period_start::timestamp at time zone 'UTC')
      and e.occurred_at < (b.period_end::timestamp at time zone 'UTC')
      and e.received_at > b.billed_at)
 order by b.period_start, b.price_id
"""


# `_LATE` for many (subscription, customer) pairs at once, each one's rows in its order.
_LATE_MANY = """
with subs as (
  select * from unnest(%(subs)s::uuid[], %(customers)s::uuid[]) as s(sub, customer)
), billed as (
  select u.subscription_id, s.customer, u.price_id, u.period_start, u.period_end,
         sum(u.quantity) as quantity, sum(u.amount) as amount, max(u.billed_at) as billed_at
    from usage_billings u join subs s on s.sub = u.subscription_id
   where u.book_id = %(book)s
   group by u.subscription_id, s.customer, u.price_id, u.period_start, u.period_end
)
select b.subscription_id, b.price_id, b.period_start, b.period_end, b.quantity, b.amount,
       p.metric, p.aggregation, p.charge_model, p.currency, p.unit_amount, p.tiers,
       p.package_size, p.free_units, p.minimum_amount, pr.name
  from billed b
  join prices p on p.book_id = %(book)s and p.id = b.price_id
  join products pr on pr.book_id = p.book_id and pr.id = p.product_id
 where exists (
   select 1 from usage_events e
    where e.book_id = %(book)s and e.customer_id = b.customer and e.metric = p.metric
      and e.occurred_at >= (b.period_start::timestamp at time zone 'UTC')
      and e.occurred_at < (b.period_end::timestamp at time zone 'UTC')
      and e.received_at > b.billed_at)
 order by b.subscription_id, b.period_start, b.price_id
"""


def _late(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    customer_id: uuid.UUID,
    sub_id: uuid.UUID,
    prefetched: Prefetched | None = None,
) -> tuple[list[Line], list[UsageRecord]]:
    known = prefetched.late.get(sub_id) if prefetched is not None else None
    rows = (
        known
        if known is not None
        else conn.execute(
            _LATE, {"book": book_id, "sub": sub_id, "customer": customer_id}
        ).fetchall()
    )
    lines: list[Line] = []
    records: list[UsageRecord] = []
    for (
        price_id,
        start,
        end,
        billed_quantity,
        billed_amount,
        metric,
        aggregation,
        model,
        currency,
        unit_amount,
        tiers,
        package_size,
        free_units,
        minimum,
        name,
    ) in rows:
        charge = charge_of(ChargeModel(model), currency, unit_amount, tiers, package_size)
        usage = usage_price(charge, metric, aggregation, free_units, minimum)
        assert usage is not None
        period = Period(start, end)
        rated, shortfall = _rate_period(conn, book_id, customer_id, usage, period, prefetched)
        more = sum((r.quantity for r in rated), Decimal(0)) - billed_quantity
        amount = late_amount(rated, shortfall, billed_amount)
        billed = max(amount, Decimal(0))  # credits are never negative invoices
        records.append(UsageRecord(str(price_id), period, {"late": True}, more, billed))
        if billed > 0:
            quantity, unit = _average(billed, more)
            lines.append(
                Line(
                    "usage",
                    f"{name} — late usage, {more.normalize():f} more units, {period}",
                    quantity,
                    unit,
                    Money(billed, currency),
                    period,
                    USAGE_ACCOUNT,
                    str(price_id),
                )
            )
    return lines, records


def record_usage(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    subscription_id: uuid.UUID,
    records: Sequence[UsageRecord],
    invoice_id: uuid.UUID | None,
) -> None:
    """What the invoice (or, with None, no invoice) billed for each period's usage."""
    record_usages(conn, book_id, [(subscription_id, records, invoice_id)])


def record_usages(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    billed: Sequence[tuple[uuid.UUID, Sequence[UsageRecord], uuid.UUID | None]],
) -> None:
    """`record_usage` of many (subscription, records, invoice) in one statement: a
    billing run's batch wrote one per invoice, a sixth of the run."""
    rows = [
        {
            "subscription_id": str(sub),
            "invoice_id": str(invoice) if invoice is not None else None,
            "price_id": r.price_id,
            "period_start": r.period.start.isoformat(),
            "period_end": r.period.end.isoformat(),
            "group_key": r.group,
            "quantity": str(r.quantity),
            "amount": str(r.amount),
        }
        for sub, records, invoice in billed
        for r in records
    ]
    if not rows:
        return
    conn.execute(
        "insert into usage_billings (book_id, id, subscription_id, price_id, period_start,"
        " period_end, group_key, quantity, amount, invoice_id)"
        " select %(book)s, gen_random_uuid(), t.subscription_id, t.price_id, t.period_start,"
        " t.period_end, t.group_key, t.quantity, t.amount, t.invoice_id"
        " from jsonb_to_recordset(%(rows)s::jsonb) as t(subscription_id uuid, invoice_id uuid,"
        " price_id uuid, period_start date, period_end date, group_key jsonb, quantity numeric,"
        " amount numeric)",
        {"book": book_id, "rows": json.dumps(rows)},
    )
