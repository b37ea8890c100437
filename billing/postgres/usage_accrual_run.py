"""The month-end usage accrual run (`POST /v1/usage-accruals`, `activebilling usage
accrue --as-of`): rated usage not yet invoiced moves to Assets:Receivable:Unbilled
(rules in billing.usage_accrual).

1. Telecom: CDRs that started before the end of `as_of` (UTC) and are not yet
   rated are rated (`rate_through`): rating posts postpaid usage Unbilled /
   Income:Usage (and prepaid usage from the wallet), so rated CDRs are accrued.
2. Usage prices: for every subscription with a usage item, the billing period
   holding `as_of` and the one before it (when not yet invoiced), each item's
   window of it is rated on the usage up to the end of `as_of`; the difference
   from what is already accrued for it is posted, dated `as_of`, one entry per
   (subscription, price, period). A period already invoiced is left to the
   invoice (its late usage is recognized when billed, on the next invoice).

One transaction, one run per book at a time (an advisory lock); running the
same date again posts nothing.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import partial

import psycopg
from psycopg.rows import dict_row

from billing.errors import InvalidBillingRequest
from billing.periods import Interval, Period
from billing.postgres.billing_runs import _SUB_COLUMNS, _items, item_of, load_prices
from billing.postgres.posting import post_entries
from billing.postgres.telecom import rate_through
from billing.postgres.usage_accruals import lock_accruals, outstanding_accruals
from billing.postgres.usage_billing import _rate_period, usage_windows
from billing.subscriptions import cycle_period
from billing.usage_accrual import accrual_entry
from ledger.money import Money
from ledger.postgres.books import book_window

__all__ = ["AccrualRun", "accrue_usage"]


@dataclass(frozen=True, slots=True)
class AccrualRun:
    as_of: date
    cdrs_rated: int
    cdr_amounts: dict[str, Decimal]  # rated now (postpaid to Unbilled, prepaid from wallets)
    accrued: dict[str, Decimal]  # usage prices: net change of Unbilled per currency
    entries: int


def _windows(sub: dict[str, object], as_of: date) -> list[Period]:
    """The billing period holding `as_of` and the one before, cut at the first paid day
    and at a cancellation or pause, each only as far as it has started."""
    anchor, interval, count = sub["billing_anchor"], sub["interval"], sub["interval_count"]
    assert isinstance(anchor, date) and isinstance(count, int)
    start = sub["start_date"]
    trial = sub["trial_end"]
    assert isinstance(start, date)
    first = max(start, trial) if isinstance(trial, date) else start
    stops = [d for d in (sub["cancel_at"], sub["paused_on"]) if isinstance(d, date)]
    stop = min(stops) if stops else None
    current = cycle_period(anchor, Interval(str(interval)), count, as_of)
    before = cycle_period(anchor, Interval(str(interval)), count, current.start - timedelta(days=1))
    out = []
    for p in (before, current):
        lo, hi = max(p.start, first), min(p.end, stop) if stop else p.end
        if lo < hi and lo <= as_of:
            out.append(Period(lo, hi))
    return out


def accrue_usage(
    conn: psycopg.Connection, book_id: uuid.UUID, as_of: date, today: date
) -> AccrualRun:
    if as_of > today:
        raise InvalidBillingRequest(
            f"as_of {as_of} is after the book's today ({today}): usage is accrued once rated",
            as_of=as_of.isoformat(),
        )
    book_window(conn, book_id).check("as_of", as_of)
    lock_accruals(conn, book_id, exclusive=True)  # one run at a time, no invoice meanwhile
    end = as_of + timedelta(days=1)
    rating = rate_through(conn, book_id, end)
    with conn.cursor(row_factory=dict_row) as cur:
        subs = cur.execute(
            f"select {_SUB_COLUMNS} from subscriptions s where book_id = %s"
            " and start_date <= %s and exists (select 1 from subscription_items i"
            "   join prices p on p.book_id = i.book_id and p.id = i.price_id"
            "  where i.book_id = s.book_id and i.subscription_id = s.id"
            "    and p.metric is not null)"
            " order by id",
            (book_id, as_of),
        ).fetchall()
    sub_ids = [s["id"] for s in subs]
    versions = _items(conn, book_id, sub_ids)
    prices = load_prices(conn, book_id, list({v[0] for vs in versions.values() for v in vs}))
    accrued = outstanding_accruals(conn, book_id, sub_ids)
    counts = {
        (r[0], str(r[1]), r[2]): int(r[3])
        for r in conn.execute(
            "select subscription_id, price_id, period_start, count(*) from usage_accruals"
            " where book_id = %s and subscription_id = any(%s) group by 1, 2, 3",
            (book_id, sub_ids),
        ).fetchall()
    }
    billed = {
        (r[0], str(r[1]), r[2])
        for r in conn.execute(
            "select distinct subscription_id, price_id, period_start from usage_billings"
            " where book_id = %s and subscription_id = any(%s)",
            (book_id, sub_ids),
        ).fetchall()
    }
    rows: list[tuple[uuid.UUID, str, date, Decimal, str]] = []
    entries = []
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for sub in subs:
        for window in _windows(sub, as_of):
            for item, part in usage_windows(
                versions.get(sub["id"], []), partial(item_of, prices), window
            ):
                assert item.usage is not None
                key = (sub["id"], item.price_id, part.start)
                if key in billed:
                    continue
                upto = Period(part.start, min(part.end, end))
                rated, _ = _rate_period(conn, book_id, sub["customer_id"], item.usage, upto)
                amount = sum((r.amount.amount for r in rated), Decimal(0))
                delta = amount - accrued.get(sub["id"], {}).get((item.price_id, part.start), 0)
                if delta == 0:
                    continue
                money = Money(delta, sub["currency"])
                entries.append(
                    accrual_entry(
                        as_of,
                        str(sub["customer_id"]),
                        str(sub["id"]),
                        item.price_id,
                        part.start,
                        money,
                        counts.get(key, 0),
                    )
                )
                rows.append((sub["id"], item.price_id, part.start, delta, sub["currency"]))
                totals[sub["currency"]] += delta
    posted = post_entries(conn, book_id, entries) if entries else []
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "insert into usage_accruals (book_id, id, subscription_id, price_id,"
                " period_start, as_of, amount, currency, entry_id)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (book_id, uuid.uuid4(), s, p, start, as_of, amount, currency, e.id)
                    for (s, p, start, amount, currency), e in zip(rows, posted, strict=True)
                ],
            )
    return AccrualRun(as_of, rating.rated, rating.amounts, dict(totals), len(entries))
