"""The final usage invoice of a canceled or paused subscription.

A subscription's usage is billed in arrears on the next period's invoice, but a
canceled or paused subscription has no next period: the usage of its last,
partial period — from that period's start (or the first paid day) to the
cancellation or pause date S — would never be billed. Once a billing run
reaches S (and every in-advance period before S is invoiced), it issues a final
invoice dated S that carries that usage (usage prices, and the subscriber's
rated CDRs that started before S in the plan's time zone), the late usage of
earlier periods, and relieves what was accrued, exactly as a period invoice
does. Its `subscription_period_start` is S, so it is issued once. A window that
an invoice already billed (a pause on a period boundary) is not billed again.
Usage after S is not billed (the subscription has stopped); CDRs rated after
the final invoice wait for the subscription to resume. A subscription with
nothing to bill writes nothing, so runs look at it again — only while S is
within 400 days of the run's date, which bounds that cost.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import date, timedelta
from functools import partial
from typing import Any

import psycopg
from psycopg.rows import dict_row

from billing.invoicing import tax_rate_of
from billing.periods import Interval, Period
from billing.postgres.billing_runs import (
    _SUB_COLUMNS,
    Failure,
    _apply_credits,
    _build,
    _Built,
    _isolable,
    _lock_credit_holders,
    _price_lines,
    _pricing_inputs,
    _reason,
    _relief,
    item_of,
    write_built,
)
from billing.postgres.telecom_billing import cdr_lines, rate_plan_items, unbilled_cdrs
from billing.postgres.usage_accruals import lock_accruals, outstanding_accruals
from billing.postgres.usage_billing import arrears, usage_windows
from billing.subscriptions import cycle_period
from ledger.periods import first_open_day
from ledger.postgres.books import closed_periods

__all__ = ["bill_final_usage"]

_STOP = "least(s.cancel_at, s.paused_on)"

# Stopped subscriptions with usage whose final invoice is due and not issued.
_DUE_FINAL = f"""
select {_SUB_COLUMNS}, {_STOP} as stop from subscriptions s
 where s.book_id = %(book)s and {_STOP} <= %(as_of)s and s.next_period_start >= {_STOP}
   and {_STOP} > %(as_of)s::date - 400
   and s.id <> all(%(skip)s::uuid[])
   and (exists (select 1 from subscription_items i
                  join prices p on p.book_id = i.book_id and p.id = i.price_id
                 where i.book_id = s.book_id and i.subscription_id = s.id
                   and p.metric is not null)
        or exists (select 1 from subscription_rate_plans r
                    where r.book_id = s.book_id and r.subscription_id = s.id))
   and not exists (select 1 from invoices v where v.book_id = s.book_id
                      and v.subscription_id = s.id and v.subscription_period_start = {_STOP})
   and not exists (select 1 from usage_billings u where u.book_id = s.book_id
                      and u.subscription_id = s.id and u.period_end = {_STOP}
                      and u.invoice_id is null)
 order by s.id limit %(limit)s for update skip locked
"""


def _last_window(sub: dict[str, Any]) -> Period | None:
    stop: date = sub["stop"]
    first = max(sub["start_date"], sub["trial_end"] or sub["start_date"])
    cycle = cycle_period(
        sub["billing_anchor"], Interval(sub["interval"]), sub["interval_count"], stop - timedelta(1)
    )
    start = max(cycle.start, first)
    return Period(start, stop) if start < stop else None


def bill_final_usage(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    as_of: date,
    *,
    run_id: uuid.UUID | None = None,
    limit: int = 500,
    skip: Collection[uuid.UUID] = (),
) -> tuple[list[uuid.UUID], list[uuid.UUID], list[Failure]]:
    """Issue the due final usage invoices of up to `limit` stopped subscriptions (each in
    a savepoint: one that fails is reported and left as it was); (claimed, invoices,
    failures). A subscription with nothing to bill issues nothing and may be claimed
    again by a later run: the caller skips what it claimed."""
    with conn.cursor(row_factory=dict_row) as cur:
        subs = cur.execute(
            _DUE_FINAL, {"book": book_id, "as_of": as_of, "limit": limit, "skip": list(skip)}
        ).fetchall()
    if not subs:
        return [], [], []
    created: list[uuid.UUID] = []
    failures: list[Failure] = []
    for sub in subs:
        try:
            with conn.transaction():
                created.extend(_final(conn, book_id, sub, run_id))
        except Exception as exc:
            if not _isolable(conn, exc):
                raise
            failures.append(Failure(sub["id"], _reason(exc)))
    return [s["id"] for s in subs], created, failures


def _final(
    conn: psycopg.Connection, book_id: uuid.UUID, sub: dict[str, Any], run_id: uuid.UUID | None
) -> list[uuid.UUID]:
    lock_accruals(conn, book_id, exclusive=False)
    versions, prices, _, customers, settings = _pricing_inputs(conn, book_id, [sub])
    stop: date = sub["stop"]
    window = _last_window(sub)
    billed = {
        (str(r[0]), r[1])
        for r in conn.execute(
            "select price_id, period_start from usage_billings"
            " where book_id = %s and subscription_id = %s",
            (book_id, sub["id"]),
        ).fetchall()
    }
    windows = [
        (item, part)
        for item, part in usage_windows(
            versions.get(sub["id"], []), partial(item_of, prices), window
        )
        if (item.price_id, part.start) not in billed
    ]
    lines, usage = arrears(conn, book_id, sub["customer_id"], sub["id"], windows)
    plan = rate_plan_items(conn, book_id, [sub["id"]]).get(sub["id"])
    cdr_ids: list[str] = []
    if plan is not None:
        pending = unbilled_cdrs(conn, book_id, [plan], stop).get(sub["id"], [])
        more, cdr_ids = cdr_lines(
            pending, plan, stop, window.start if window else None, sub["currency"]
        )
        lines = [*lines, *more]
    if not lines:
        if usage:  # rated at nothing: recorded so it is not looked at again
            write_built(conn, book_id, [], [(sub["id"], usage)], run_id)
        return []
    customer = customers[sub["customer_id"]]
    priced = _price_lines(
        lines, tax_rate_of(customer[1], customer[2]), settings.get("tax_level") == "per_invoice"
    )
    built: _Built = _build(
        uuid.uuid4(),
        sub,
        customer,
        Period(stop, stop + timedelta(days=1)),  # the key: one final invoice, dated S
        priced,
        first_open_day(stop, closed_periods(conn, book_id)),
    )
    built.usage = usage
    built.cdrs = cdr_ids
    _relief(built, outstanding_accruals(conn, book_id, [sub["id"]]).get(sub["id"], {}))
    # The credit's holder is locked before the entry is posted (billing_runs' order).
    holders = (
        _lock_credit_holders(conn, book_id, [built])
        if settings.get("auto_apply_credit", True)
        else set()
    )
    created = write_built(conn, book_id, [built], [], run_id)
    if created and holders:
        _apply_credits(conn, book_id, [built], holders)
    return list(created)
