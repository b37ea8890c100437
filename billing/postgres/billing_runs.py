"""Billing runs: invoice every subscription period due by a date, exactly once.

One code path bills subscriptions, for one subscription (a command catching up
before a change, cancel or pause) or for a batch of hundreds (a run):

1. claim the subscriptions (`FOR UPDATE`; a run uses `SKIP LOCKED`, ordered by
   `next_period_start`, so concurrent runs share the work);
2. load their items, prices, customers, coupons and pending proration drafts
   with one query each;
3. build every due period's invoice in Python with the pure rules
   (`billing.subscriptions.period_lines`, `billing.invoicing.final_lines`,
   `billing.invoicing.due_date`);
4. write them with a few set-based statements: the subscriptions advanced;
   periods that already have their invoice (the unique `(book_id,
   subscription_id, subscription_period_start)`; the claimed subscriptions
   are locked) are skipped; the lines copied (their foreign key deferred
   until the invoices follow, so no draft row is written and updated); one
   finalization-entry template made per invoice shape
   (`billing.postings.finalization_template`); the `invoice.finalized`
   events rendered (once per invoice shape) with stand-ins for the numbers;
   then, as late as possible since the series' row stays locked until the
   commit, a block of numbers taken from the gapless series for the rest,
   one `post_entries` call posting every finalization entry, the invoices
   copied in open and final, and their events with the numbers put in.

A run's batches go one after another, or with `workers` side by side (a
connection each): one prices and writes while another holds the series. The
customers whose credit a batch applies are locked before it posts, as
payments lock a customer before they post (the same order: no deadlock).

All of it is one transaction per batch, so a crash loses at most the open
batch (its numbers go back to the series with the rollback) and a re-run
resumes from the subscriptions' `next_period_start`. A subscription period is
invoiced on its first day (in advance) and the invoice is dated that day, so
a late or catch-up run produces the same documents as punctual ones — unless
that day lies in a closed period: then the invoice is issued, and its entry
posted, on the first day of the first open period (ACCOUNTING.md), and keeps
its service period.

A run never stops on one subscription: a batch that fails is rolled back to
its savepoint and billed again one subscription per savepoint; a subscription
that still fails is left as it was (nothing of it written), reported on the
run (`failures`: id and reason) and not claimed again by that run. A run
holds a lease renewed with every batch; a run still `running` whose lease ran
out lost its worker and reads as `interrupted`, and the next run (for that
date or a later one) takes it over — same id, its count carried on, its
`as_of` moved to the new run's — instead of starting anew.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache, partial
from typing import Any

import psycopg
from psycopg.rows import dict_row

from billing.errors import InvalidBillingRequest
from billing.invoicing import DraftLine, document_number, due_date, final_lines, tax_rate_of
from billing.periods import Interval, Period, _index_after
from billing.postgres.catalog import charge_of
from billing.postgres.events import event_text, record_event_texts
from billing.postgres.invoices import InvoiceLine, _invoice, apply_credit
from billing.postgres.posting import post_entries
from billing.postgres.settings import read_settings
from billing.postgres.telecom_billing import (
    cdr_lines,
    mark_billed,
    rate_plan_items,
    unbilled_cdrs,
)
from billing.postgres.usage_accruals import (
    lock_accruals,
    outstanding_accruals,
    record_reliefs,
)
from billing.postgres.usage_billing import (
    UsageRecord,
    arrears,
    billed_ends,
    prefetch_arrears,
    previous_period,
    record_usages,
    unbilled_part,
    usage_price,
    usage_windows,
)
from billing.postings import (
    AR,
    CUSTOMER_CREDIT,
    FinalizationTemplate,
    FinalLine,
    finalization_template,
)
from billing.rating import Charge, ChargeModel
from billing.subscriptions import Coupon, Item, Line, Plan, coupon_of, due_periods, period_lines
from billing.tax import TaxRate
from billing.usage import UsagePrice
from billing.usage_accrual import ReliefLine, relief_by_line, relieve_unbilled
from ledger.entries import JournalEntry
from ledger.errors import NotFound
from ledger.money import Money
from ledger.periods import first_open_day
from ledger.postgres.books import book_window, closed_periods

ConnectionSource = Callable[[], AbstractContextManager[psycopg.Connection]]
Progress = Callable[[int, int, int], None]  # (subscriptions done, due at start, invoices)

DEFAULT_BATCH = 500
DEFAULT_LEASE_SECONDS = 300  # a batch renews it; a worker silent this long is taken for dead
PENDING = "pending"  # metadata key of a draft holding proration lines for the next invoice

_DUE = (
    "book_id = %(book)s and next_period_start <= %(as_of)s and status <> 'canceled'"
    " and (cancel_at is null or next_period_start < cancel_at)"
    " and (paused_on is null or next_period_start < paused_on)"
    " and (suspended_on is null or next_period_start < suspended_on)"  # dunning
)


@dataclass(frozen=True, slots=True)
class Failure:
    """A subscription a run could not bill, and why (nothing of it was written)."""

    subscription_id: uuid.UUID
    reason: str


@dataclass(frozen=True, slots=True)
class BillingRun:
    id: uuid.UUID
    as_of: date
    status: str  # running, interrupted (lease ran out), completed, failed
    invoices_created: int
    started_at: datetime
    finished_at: datetime | None
    heartbeat_at: datetime
    failures: tuple[Failure, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchResult:
    subscriptions: int
    invoice_ids: tuple[uuid.UUID, ...]
    failures: tuple[Failure, ...] = ()


@dataclass(frozen=True, slots=True)
class _Price:
    charge: Charge
    description: str
    revenue_account: str
    usage: UsagePrice | None = None
    # Its items by quantity (as text: 1 and 1.000000 are different quantities on a line),
    # made once: a batch has thousands of subscription items and a handful of prices.
    items: dict[str, Item] = field(default_factory=dict, compare=False)


@dataclass
class _Built:
    id: uuid.UUID
    subscription_id: uuid.UUID
    customer_id: uuid.UUID
    currency: str
    period: Period
    lines: list[Line]
    finals: list[FinalLine]
    tax_rate: Decimal
    subtotal: Money
    discount: Money
    tax: Money
    issue: date  # the period's first day, or the first open day when its period is closed
    due: date
    number: str = ""
    entry: JournalEntry | None = None
    usage: list[UsageRecord] = field(default_factory=list)  # what its usage lines billed
    relief: dict[int, Decimal] = field(default_factory=dict)  # line → out of Unbilled
    relieved: list[tuple[str, date, Decimal]] = field(default_factory=list)  # per accrual key
    cdrs: list[str] = field(default_factory=list)  # the rated CDRs it bills
    event: tuple[str | None, str] | None = None  # its invoice.finalized (events.event_text)


# --- loading -------------------------------------------------------------------------


def load_prices(
    conn: psycopg.Connection, book_id: uuid.UUID, price_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, _Price]:
    rows = conn.execute(
        "select p.id, p.charge_model, p.currency, p.unit_amount, p.tiers, p.package_size,"
        " pr.name, pr.revenue_account, p.metric, p.aggregation, p.free_units, p.minimum_amount"
        " from prices p"
        " join products pr on pr.book_id = p.book_id and pr.id = p.product_id"
        " where p.book_id = %s and p.id = any(%s)",
        (book_id, list(price_ids)),
    ).fetchall()
    out: dict[uuid.UUID, _Price] = {}
    for r in rows:
        charge = charge_of(ChargeModel(r[1]), r[2], r[3], r[4], r[5])
        out[r[0]] = _Price(charge, r[6], r[7], usage_price(charge, r[8], r[9], r[10], r[11]))
    return out


def _items(
    conn: psycopg.Connection, book_id: uuid.UUID, subscription_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[uuid.UUID, Decimal, date, date | None]]]:
    rows = conn.execute(
        "select subscription_id, price_id, quantity, effective_from, effective_to"
        " from subscription_items where book_id = %s and subscription_id = any(%s)"
        " order by subscription_id, effective_from, id",
        (book_id, list(subscription_ids)),
    ).fetchall()
    out: dict[uuid.UUID, list[tuple[uuid.UUID, Decimal, date, date | None]]] = defaultdict(list)
    for sub, price, quantity, start, end in rows:
        out[sub].append((price, quantity, start, end))
    return out


def item_of(prices: dict[uuid.UUID, _Price], price_id: uuid.UUID, quantity: Decimal) -> Item:
    price = prices[price_id]
    key = str(quantity)
    item = price.items.get(key)
    if item is None:
        item = price.items[key] = Item(
            str(price_id),
            price.description,
            price.charge,
            Decimal(quantity),
            price.revenue_account,
            price.usage,
        )
    return item


def items_on(
    versions: Sequence[tuple[uuid.UUID, Decimal, date, date | None]],
    prices: dict[uuid.UUID, _Price],
    day: date,
) -> tuple[Item, ...]:
    """The item versions in force on `day` (`[effective_from, effective_to)`)."""
    return tuple(
        item_of(prices, price_id, quantity)
        for price_id, quantity, start, end in versions
        if start <= day and (end is None or day < end)
    )


def _coupons(
    conn: psycopg.Connection, book_id: uuid.UUID, coupon_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Coupon]:
    if not coupon_ids:
        return {}
    rows = conn.execute(
        "select id, percent_off, amount_off, currency, duration, duration_in_periods"
        " from coupons where book_id = %s and id = any(%s)",
        (book_id, list(coupon_ids)),
    ).fetchall()
    return {r[0]: coupon_of(r[1], r[2], r[3], r[4], r[5]) for r in rows}


def take_pending(
    conn: psycopg.Connection, book_id: uuid.UUID, subscription_ids: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, list[Line]], dict[uuid.UUID, uuid.UUID]]:
    """Proration lines waiting for the next invoice, per subscription, and their drafts
    (draft id → subscription id).

    The drafts are locked; the caller deletes them (`drop_drafts`) once their
    lines are on a finalized invoice.
    """
    drafts = conn.execute(
        "select id, subscription_id, currency from invoices where book_id = %s"
        " and subscription_id = any(%s) and status = 'draft' and metadata ? %s"
        " order by created_at, id for update",
        (book_id, list(subscription_ids), PENDING),
    ).fetchall()
    if not drafts:
        return {}, {}
    owner = {d[0]: (d[1], d[2]) for d in drafts}
    rows = conn.execute(
        "select invoice_id, kind, description, quantity, unit_amount, amount, service_start,"
        " service_end, revenue_account, price_id from invoice_lines"
        " where book_id = %s and invoice_id = any(%s) order by invoice_id, line_no",
        (book_id, list(owner)),
    ).fetchall()
    by_draft: dict[uuid.UUID, list[Line]] = defaultdict(list)
    for r in rows:
        currency = owner[r[0]][1]
        by_draft[r[0]].append(
            Line(
                r[1],
                r[2],
                r[3],
                r[4],
                Money(r[5], currency),
                Period(r[6], r[7]),
                r[8],
                str(r[9]) if r[9] else None,
            )
        )
    out: dict[uuid.UUID, list[Line]] = defaultdict(list)
    for draft_id, _, _ in drafts:
        out[owner[draft_id][0]].extend(by_draft[draft_id])
    return out, {d[0]: d[1] for d in drafts}


def drop_drafts(
    conn: psycopg.Connection, book_id: uuid.UUID, draft_ids: Sequence[uuid.UUID]
) -> None:
    if draft_ids:
        ids = list(draft_ids)
        conn.execute(
            "delete from invoice_lines where book_id = %s and invoice_id = any(%s)", (book_id, ids)
        )
        conn.execute("delete from invoices where book_id = %s and id = any(%s)", (book_id, ids))


# --- building (pure apart from the rows handed in) -----------------------------------


@dataclass(frozen=True, slots=True)
class _Priced:
    lines: tuple[Line, ...]
    finals: tuple[FinalLine, ...]
    tax_rate: Decimal
    subtotal: Money
    discount: Money
    tax: Money


def _price_lines(lines: Sequence[Line], rate: TaxRate, per_invoice_tax: bool) -> _Priced:
    """Tax and totals of an invoice's lines (billing.invoicing, as finalize_invoice does)."""
    currency = lines[0].amount.currency
    drafts = [
        DraftLine(
            n,
            line.description,
            line.quantity,
            line.unit_amount,
            line.amount,
            line.revenue_account,
            line.service.start,
            line.service.end,
            line.discount,
        )
        for n, line in enumerate(lines, start=1)
    ]
    finals = final_lines(drafts, rate, per_invoice=per_invoice_tax)
    zero = Money.zero(currency).quantized()
    return _Priced(
        tuple(lines),
        tuple(finals),
        rate.percent / 100,
        sum((d.amount for d in drafts), zero),
        sum((d.discount or zero for d in drafts), zero),
        sum((f.tax for f in finals), zero),
    )


@lru_cache(maxsize=8192)
def _priced_period(
    plan: Plan,
    period: Period,
    coupon: Coupon | None,
    paid_index: int,
    rate: TaxRate,
    per_invoice_tax: bool,
) -> _Priced | None:
    """The in-advance invoice of one period, priced; the same for every subscription of the
    same shape (items, period, coupon state, tax rate), so a run computes each shape once."""
    lines = period_lines(plan, period, coupon=coupon, paid_index=paid_index)
    return _price_lines(lines, rate, per_invoice_tax) if lines else None


def _build(
    invoice_id: uuid.UUID,
    sub: dict[str, Any],
    customer: tuple[Any, ...],
    period: Period,
    priced: _Priced,
    issue: date,
) -> _Built:
    return _Built(
        invoice_id,
        sub["id"],
        sub["customer_id"],
        sub["currency"],
        period,
        list(priced.lines),
        list(priced.finals),
        priced.tax_rate,
        priced.subtotal,
        priced.discount,
        priced.tax,
        issue,
        due_date(issue, customer[3], customer[4]),
    )


def plan_of(sub: dict[str, Any], items: tuple[Item, ...] = ()) -> Plan:
    return Plan(
        sub["billing_anchor"],
        Interval(sub["interval"]),
        sub["interval_count"],
        sub["cancel_at"],
        sub["paused_on"],
        items,
    )


# --- writing -------------------------------------------------------------------------

_SUB_COLUMNS = (
    "id, customer_id, status, currency, start_date, billing_anchor, interval, interval_count,"
    " trial_end, next_period_start, periods_billed, cancel_at, paused_on, coupon_id"
)

# Finalized at once: lines first (their foreign key deferred), then the invoice, open,
# with its number and entry; no draft row to update. Lines that never get their
# invoice fail the key when it is checked again (`IMMEDIATE`) before the commit.
# COPY: the rows go as text, formatted by psycopg's C code, not as arrays of values.
_COPY_INVOICES = (
    "copy invoices (book_id, id, customer_id, subscription_id, subscription_period_start,"
    " status, number, currency, issue_date, due_date, supply_start, supply_end, subtotal,"
    " discount_total, tax_total, total, finalization_entry_id, metadata) from stdin"
)
_COPY_LINES = (
    "copy invoice_lines (book_id, invoice_id, line_no, kind, description, quantity,"
    " unit_amount, amount, discount_amount, tax_rate, tax_amount, service_start, service_end,"
    " price_id, revenue_account) from stdin"
)

_LINES_FK = "fk_invoice_lines_book_id_invoice_id_invoices"

# Periods of the claimed subscriptions that already have their invoice (a no-op then).
_INVOICED = """
select i.subscription_id, i.subscription_period_start
  from unnest(%(subs)s::uuid[], %(starts)s::date[]) as t(subscription_id, period_start)
  join invoices i on i.book_id = %(book)s and i.subscription_id = t.subscription_id
                 and i.subscription_period_start = t.period_start
"""

_ADVANCE = """
update subscriptions s set next_period_start = t.next_start, periods_billed = t.billed,
       status = case when s.status = 'trialing' then 'active' else s.status end
  from unnest(%(ids)s::uuid[], %(next)s::date[], %(billed)s::int[]) as t(id, next_start, billed)
 where s.book_id = %(book)s and s.id = t.id
"""


def _take_numbers(conn: psycopg.Connection, book_id: uuid.UUID, year: int, count: int) -> list[str]:
    """`count` consecutive numbers of the year's INV series, in this transaction."""
    row = conn.execute(
        "insert into number_series as s (book_id, series, last_value) values (%s, %s, %s)"
        " on conflict (book_id, series)"
        " do update set last_value = s.last_value + excluded.last_value"
        " returning last_value",
        (book_id, f"INV-{year:04d}", count),
    ).fetchone()
    assert row is not None
    last = int(row[0])
    return [document_number("INV", year, n) for n in range(last - count + 1, last + 1)]


def _claim(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    as_of: date,
    subscription_ids: Sequence[uuid.UUID] | None,
    claim: int,
    skip: Collection[uuid.UUID],
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"book": book_id, "as_of": as_of, "skip": list(skip)}
    with conn.cursor(row_factory=dict_row) as cur:
        if subscription_ids is None:
            params["limit"] = claim
            return cur.execute(
                f"select {_SUB_COLUMNS} from subscriptions where {_DUE}"
                " and id <> all(%(skip)s::uuid[])"
                " order by next_period_start, id limit %(limit)s for update skip locked",
                params,
            ).fetchall()
        params["ids"] = list(subscription_ids)
        return cur.execute(
            f"select {_SUB_COLUMNS} from subscriptions where {_DUE} and id = any(%(ids)s)"
            " order by id for update",
            params,
        ).fetchall()


def _isolable(conn: psycopg.Connection, exc: Exception) -> bool:
    """Whether a failure belongs to the subscriptions billed (roll them back, go on) rather
    than to the connection or the server (lost connection, timeout, deadlock: stop)."""
    return not (conn.broken or isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError))


def _reason(exc: Exception) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(getattr(exc, "message", None) or exc) or type(exc).__name__


def bill_subscriptions(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    as_of: date,
    subscription_ids: Sequence[uuid.UUID] | None = None,
    *,
    claim: int = DEFAULT_BATCH,
    run_id: uuid.UUID | None = None,
    skip: Collection[uuid.UUID] = (),
    isolate: bool = False,
) -> BatchResult:
    """Invoice every period due by `as_of` of the given subscriptions (locked, waiting), or of
    up to `claim` due ones not in `skip` (locked with SKIP LOCKED), in the caller's
    transaction.

    With `isolate`, a subscription whose billing fails is rolled back to a savepoint and
    reported in the result; the others are billed. Without it the error propagates.
    """
    subs = _claim(conn, book_id, as_of, subscription_ids, claim, skip)
    if not subs:
        return BatchResult(0, ())
    if not isolate:
        return BatchResult(len(subs), _bill_claimed(conn, book_id, as_of, subs, run_id))
    try:
        with conn.transaction():
            return BatchResult(len(subs), _bill_claimed(conn, book_id, as_of, subs, run_id))
    except Exception as exc:
        if not _isolable(conn, exc):
            raise
    # Something in the batch failed: bill each subscription in its own savepoint (the
    # claim's row locks were taken before, so they hold) to find and skip the culprits.
    created: list[uuid.UUID] = []
    failures: list[Failure] = []
    for sub in subs:
        try:
            with conn.transaction():
                created.extend(_bill_claimed(conn, book_id, as_of, [sub], run_id))
        except Exception as exc:
            if not _isolable(conn, exc):
                raise
            failures.append(Failure(sub["id"], _reason(exc)))
    return BatchResult(len(subs), tuple(created), tuple(failures))


def _pricing_inputs(
    conn: psycopg.Connection, book_id: uuid.UUID, subs: Sequence[dict[str, Any]]
) -> tuple[
    dict[uuid.UUID, list[tuple[uuid.UUID, Decimal, date, date | None]]],
    dict[uuid.UUID, _Price],
    dict[uuid.UUID, Coupon],
    dict[uuid.UUID, tuple[Any, ...]],
    dict[str, Any],
]:
    """What pricing the subscriptions' periods needs: their item versions, prices,
    coupons, customers (id, tax rate, treatment, terms, days) and the book's settings."""
    versions = _items(conn, book_id, [s["id"] for s in subs])
    prices = load_prices(conn, book_id, list({v[0] for vs in versions.values() for v in vs}))
    coupons = _coupons(conn, book_id, list({s["coupon_id"] for s in subs if s["coupon_id"]}))
    customers = {
        r[0]: r
        for r in conn.execute(
            "select id, tax_rate, tax_treatment, payment_terms, payment_terms_days"
            " from customers where book_id = %s and id = any(%s)",
            (book_id, list({s["customer_id"] for s in subs})),
        ).fetchall()
    }
    return versions, prices, coupons, customers, read_settings(conn, book_id)


def _bill_claimed(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    as_of: date,
    subs: list[dict[str, Any]],
    run_id: uuid.UUID | None,
) -> tuple[uuid.UUID, ...]:
    """Invoice the due periods of claimed subscriptions; the ids of the invoices written."""
    sub_ids = [s["id"] for s in subs]
    lock_accruals(conn, book_id, exclusive=False)
    versions, prices, coupons, customers, settings = _pricing_inputs(conn, book_id, subs)
    per_invoice_tax = settings.get("tax_level") == "per_invoice"
    closed = closed_periods(conn, book_id)
    pending, pending_drafts = take_pending(conn, book_id, sub_ids)

    built: list[_Built] = []
    advance: list[tuple[uuid.UUID, date, int]] = []
    used_pending: set[uuid.UUID] = set()
    unbilled_usage: list[tuple[uuid.UUID, list[UsageRecord]]] = []
    rated_items = rate_plan_items(conn, book_id, sub_ids)
    cdrs = unbilled_cdrs(conn, book_id, list(rated_items.values()), as_of)
    accrued = outstanding_accruals(conn, book_id, sub_ids)
    already = billed_ends(
        conn,
        book_id,
        [
            (s["id"], s["next_period_start"])
            for s in subs
            if any(prices[v[0]].usage for v in versions.get(s["id"], []))
        ],
    )
    # The usage windows of every due period first, so that their usage is read for the
    # whole batch at once (prefetch_arrears) rather than subscription by subscription.
    due: dict[uuid.UUID, list[Period]] = {}
    windows_of: dict[tuple[uuid.UUID, int], list[tuple[Item, Period]]] = {}
    requests = []
    for sub in subs:
        plan = plan_of(sub)
        periods = due[sub["id"]] = due_periods(plan, sub["next_period_start"], as_of)
        if not any(prices[v[0]].usage for v in versions.get(sub["id"], [])):
            continue
        first_day = max(sub["start_date"], sub["trial_end"] or sub["start_date"])
        for n, period in enumerate(periods):
            ended = previous_period(plan, first_day, period)
            windows = windows_of[sub["id"], n] = unbilled_part(
                usage_windows(versions.get(sub["id"], []), partial(item_of, prices), ended),
                sub["id"],
                already,
            )
            requests.append((sub["customer_id"], sub["id"], windows, n == 0))
    prefetched = prefetch_arrears(conn, book_id, requests)
    for sub in subs:
        plan = plan_of(sub)
        periods = due[sub["id"]]
        billed = sub["periods_billed"]
        coupon = coupons.get(sub["coupon_id"]) if sub["coupon_id"] else None
        rate = tax_rate_of(*customers[sub["customer_id"]][1:3])
        metered = any(prices[v[0]].usage for v in versions.get(sub["id"], []))
        rate_plan = rated_items.get(sub["id"])
        first_day = max(sub["start_date"], sub["trial_end"] or sub["start_date"])
        for n, period in enumerate(periods):
            plan_now = Plan(
                plan.anchor,
                plan.interval,
                plan.count,
                plan.cancel_at,
                None,
                items_on(versions.get(sub["id"], []), prices, period.start),
            )
            usage_lines: list[Line] = []
            usage: list[UsageRecord] = []
            if metered:  # the usage of the period just ended, and late usage once
                usage_lines, usage = arrears(
                    conn,
                    book_id,
                    sub["customer_id"],
                    sub["id"],
                    windows_of[sub["id"], n],
                    late=n == 0,
                    prefetched=prefetched,
                )
            billed_cdrs: list[str] = []
            if rate_plan is not None:  # its subscriber's rated CDRs, in arrears
                ended = previous_period(plan, first_day, period)
                more, billed_cdrs = cdr_lines(
                    cdrs.get(sub["id"], []),
                    rate_plan,
                    period.start,
                    ended.start if ended else None,
                    sub["currency"],
                )
                usage_lines = [*usage_lines, *more]
            extra = pending.get(sub["id"], []) if sub["id"] not in used_pending else []
            if extra or usage_lines:
                if extra:
                    used_pending.add(sub["id"])
                lines = [
                    *period_lines(
                        plan_now, period, coupon=coupon, paid_index=billed, arrears=usage_lines
                    ),
                    *extra,
                ]
                priced: _Priced | None = _price_lines(lines, rate, per_invoice_tax)
                if (
                    priced is not None
                    and (priced.subtotal - priced.discount + priced.tax).amount < 0
                ):
                    # Credits are never negative invoices; pending drafts only hold charges
                    # since credits are issued at once, so only an older draft gets here.
                    raise InvalidBillingRequest(
                        f"the pending proration of subscription {sub['id']} nets the"
                        f" {period} invoice below zero; issue that credit as a credit note"
                        " and delete the pending draft"
                    )
            else:
                applies = coupon is not None and coupon.applies_to(billed)
                priced = _priced_period(
                    plan_now,
                    period,
                    coupon if applies else None,
                    0,
                    rate,
                    per_invoice_tax,
                )
            billed += 1
            if priced is not None:
                built.append(
                    _build(
                        uuid.uuid4(),
                        sub,
                        customers[sub["customer_id"]],
                        period,
                        priced,
                        first_open_day(period.start, closed),
                    )
                )
                built[-1].usage = usage
                built[-1].cdrs = billed_cdrs
                _relief(built[-1], accrued.get(sub["id"], {}))
            elif usage:
                unbilled_usage.append((sub["id"], usage))
        if periods:
            advance.append((sub["id"], periods[-1].end, billed))
    if not advance:
        return ()

    # What needs no invoice number goes first: from the numbers on, the series' row is
    # locked until the commit, and another run of the book waits for it.
    conn.execute(
        _ADVANCE,
        {
            "book": book_id,
            "ids": [a[0] for a in advance],
            "next": [a[1] for a in advance],
            "billed": [a[2] for a in advance],
        },
    )
    drop_drafts(conn, book_id, [d for d, s in pending_drafts.items() if s in used_pending])
    # Customers before the ledger, as payments lock them: the credit's holders are
    # locked here, before the finalization entries take this session's balance rows;
    # locking them after (as applying the credit does) waited for a payment that was
    # itself waiting for those rows: a deadlock.
    holders = (
        _lock_credit_holders(conn, book_id, built)
        if settings.get("auto_apply_credit", True)
        else set()
    )
    created = write_built(conn, book_id, built, unbilled_usage, run_id)
    if holders:
        _apply_credits(conn, book_id, [b for b in built if b.id in created], holders)
    return tuple(b.id for b in built if b.id in created)


def write_built(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    built: list[_Built],
    unbilled_usage: Sequence[tuple[uuid.UUID, list[UsageRecord]]],
    run_id: uuid.UUID | None,
) -> set[uuid.UUID]:
    """Write the built invoices (those whose period has none yet) and what their usage
    billed: usage records, the CDRs they bill, the accruals they relieve."""
    created = _write(conn, book_id, built, run_id)
    written = [b for b in built if b.id in created]
    record_event_texts(
        conn, book_id, "invoice.finalized", [b.event for b in written if b.event is not None]
    )
    record_usages(
        conn,
        book_id,
        [
            *((b.subscription_id, b.usage, b.id) for b in written if b.usage),
            *((sub_id, records, None) for sub_id, records in unbilled_usage),
        ],
    )
    mark_billed(conn, book_id, {b.id: b.cdrs for b in written if b.cdrs})
    record_reliefs(
        conn,
        book_id,
        [(b.subscription_id, b.id, b.currency, b.issue, b.relieved) for b in written if b.relieved],
    )
    return created


def _relief(b: _Built, accrued: dict[tuple[str, date], Decimal]) -> None:
    """What of the invoice's usage lines comes out of Unbilled (billing.usage_accrual):
    a usage price's lines take what was accrued for their period; a CDR line (no price)
    was accrued in full when its CDRs were rated."""
    lines: list[ReliefLine] = []
    owed: dict[Any, Decimal] = {}
    for n, line in enumerate(b.lines, start=1):
        if line.kind != "usage":
            continue
        if line.price_id is None:
            owed[("cdr", n)] = line.amount.amount
            lines.append(ReliefLine(n, ("cdr", n), line.amount.amount))
        else:
            key = (line.price_id, line.service.start)
            if key not in owed:
                owed[key] = accrued.pop(key, Decimal(0))
            lines.append(ReliefLine(n, key, line.amount.amount))
    b.relief = relief_by_line(lines, owed)
    b.relieved = [
        (key[0], key[1], amount) for key, amount in owed.items() if key[0] != "cdr" and amount != 0
    ]


def _write(
    conn: psycopg.Connection, book_id: uuid.UUID, built: list[_Built], run_id: uuid.UUID | None
) -> set[uuid.UUID]:
    if not built:
        return set()
    invoiced = {
        (r[0], r[1])
        for r in conn.execute(
            _INVOICED,
            {
                "book": book_id,
                "subs": [b.subscription_id for b in built],
                "starts": [b.period.start for b in built],
            },
        )
    }
    done = [b for b in built if (b.subscription_id, b.period.start) not in invoiced]
    if not done:
        return set()
    # Numbers: a block per year, in order of issue date then subscription; taken only for
    # the invoices written below, so none is burnt.
    done.sort(key=lambda b: (b.issue, b.period.start, str(b.subscription_id)))
    metadata = json.dumps({"billing_run": str(run_id)} if run_id else {})
    conn.execute(f"set constraints {_LINES_FK} deferred")
    with conn.cursor() as cur:
        # The lines need no number: written before the numbers are taken.
        # Each line's values as the table stores them, kept for the events below.
        copied: list[tuple[InvoiceLine, ...]] = []
        with cur.copy(_COPY_LINES) as copy:
            for b in done:
                rows = []
                for line, final in zip(b.lines, b.finals, strict=True):
                    values = (
                        final.line_no,
                        line.kind,
                        line.description,
                        _stored(line.quantity),
                        _stored(line.unit_amount),
                        _stored(line.amount.amount),
                        _stored(line.discount.amount if line.discount else _ZERO),
                        _stored(b.tax_rate),
                        _stored(final.tax.amount),
                        line.service.start,
                        line.service.end,
                        uuid.UUID(line.price_id) if line.price_id else None,
                        line.revenue_account,
                    )
                    copy.write_row((book_id, b.id, *values))
                    row = InvoiceLine(*values)
                    rows.append(row)
                copied.append(tuple(rows))
        # One entry template per invoice shape (issue date, final lines), also built
        # before the numbers: from the numbers to the commit the series' row is locked.
        shapes: dict[tuple[date, tuple[FinalLine, ...]], FinalizationTemplate] = {}
        templates: list[FinalizationTemplate] = []
        for b in done:
            shape = (b.issue, tuple(b.finals))
            template = shapes.get(shape)
            if template is None:
                template = shapes[shape] = finalization_template(b.issue, b.finals)
            templates.append(template)
        # The invoice.finalized events too: the invoices as get_invoices reads them back
        # (_invoice of the same values), rendered now with a stand-in for the number.
        now = conn.execute("select now()").fetchone()
        assert now is not None
        meta = json.loads(metadata)
        # Invoices alike but for their ids and customer differ only there: one rendering
        # per such shape, with stand-ins put in by text (no stored text holds a NUL).
        rendered: dict[tuple[Any, ...], tuple[str | None, str]] = {}
        for b, template, lines in zip(done, templates, copied, strict=True):
            invoice = _invoice_row(b, book_id, _NUMBER_STAND_IN, meta, now[0])
            receivable = _receivable(template)
            key = (*(invoice[k] for k in _SHAPE_COLUMNS), lines, receivable)
            shape_event = rendered.get(key)
            if shape_event is None:
                invoice.update(_STAND_INS)
                shape_event = rendered[key] = event_text(
                    "invoice.finalized",
                    _invoice(invoice, (receivable, _ZERO, _ZERO, _ZERO), lines),
                )
            text = shape_event[1]
            for column, stand_in in _QUOTED_STAND_INS:
                text = text.replace(stand_in, json.dumps(str(getattr(b, column))), 1)
            b.event = (str(b.id), text)
        by_year: dict[int, list[_Built]] = defaultdict(list)
        for b in done:
            by_year[b.issue.year].append(b)
        for year, group in sorted(by_year.items()):
            numbers = _take_numbers(conn, book_id, year, len(group))
            for b, number in zip(group, numbers, strict=True):
                b.number = number
                if b.event is not None:
                    quoted = json.dumps(number)
                    b.event = (b.event[0], b.event[1].replace(_QUOTED_NUMBER, quoted, 1))
        for b, template in zip(done, templates, strict=True):
            b.entry = template.entry_for(b.id, b.number, str(b.customer_id))
            if b.relief and b.entry is not None:
                b.entry = relieve_unbilled(b.entry, b.relief)
        with_entry = [b for b in done if b.entry is not None]
        posted = post_entries(conn, book_id, [b.entry for b in with_entry if b.entry is not None])
        entry_ids: dict[uuid.UUID, uuid.UUID] = {
            b.id: p.id for b, p in zip(with_entry, posted, strict=True)
        }
        with cur.copy(_COPY_INVOICES) as copy:
            for b in done:
                copy.write_row(
                    (
                        book_id,
                        b.id,
                        b.customer_id,
                        b.subscription_id,
                        b.period.start,
                        "open",
                        b.number,
                        b.currency,
                        b.issue,
                        b.due,
                        min(x.service.start for x in b.lines),
                        max(x.service.end for x in b.lines),
                        b.subtotal.amount,
                        b.discount.amount,
                        b.tax.amount,
                        (b.subtotal - b.discount + b.tax).amount,
                        entry_ids.get(b.id),
                        metadata,
                    )
                )
    # Every line has its invoice now: check the key here, not at the commit.
    conn.execute(f"set constraints {_LINES_FK} immediate")
    return {b.id for b in done}


_ZERO = Decimal(0)
# In an event rendered before the numbers, where the invoice's number goes; and where
# its id, customer and subscription go in the one rendering of invoices of a shape.
_NUMBER_STAND_IN = "\x00number"
_QUOTED_NUMBER = json.dumps(_NUMBER_STAND_IN)
_STAND_INS = {
    "id": "\x00id",
    "customer_id": "\x00customer",
    "subscription_id": "\x00subscription",
}
_QUOTED_STAND_INS = (
    ("id", json.dumps(_STAND_INS["id"])),
    ("customer_id", json.dumps(_STAND_INS["customer_id"])),
    ("subscription_id", json.dumps(_STAND_INS["subscription_id"])),
)
# What else of an invoices row its event shows (book, status, memo, metadata, the time
# and the number stand-in are the batch's).
_SHAPE_COLUMNS = (
    "currency",
    "issue_date",
    "due_date",
    "supply_start",
    "supply_end",
    "subtotal",
    "discount_total",
    "tax_total",
    "total",
)


def _stored(value: Decimal) -> Decimal:
    """A value as an unconstrained NUMERIC column gives it back (1E+1: 10; digits kept)."""
    return Decimal(format(value, "f"))


def _receivable(template: FinalizationTemplate) -> Decimal:
    """What the template's entries put on receivables (relief moves revenue only)."""
    if template.entry is None:
        return _ZERO
    return sum((p.amount for p in template.entry.postings if p.account == AR), _ZERO)


def _invoice_row(
    b: _Built, book_id: uuid.UUID, number: str, metadata: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The invoices row _write copies for `b`, as `select *` reads it back."""
    return {
        "id": b.id,
        "book_id": book_id,
        "customer_id": b.customer_id,
        "subscription_id": b.subscription_id,
        "status": "open",
        "number": number,
        "currency": b.currency,
        "issue_date": b.issue,
        "due_date": b.due,
        "supply_start": min(x.service.start for x in b.lines),
        "supply_end": max(x.service.end for x in b.lines),
        "subtotal": _stored(b.subtotal.amount),
        "discount_total": _stored(b.discount.amount),
        "tax_total": _stored(b.tax.amount),
        "total": _stored((b.subtotal - b.discount + b.tax).amount),
        "memo": "",
        "metadata": metadata,
        "created_at": now,
    }


def _lock_credit_holders(
    conn: psycopg.Connection, book_id: uuid.UUID, built: list[_Built]
) -> set[str]:
    """The customers of positive invoices who hold credit, locked (by id, as payments
    lock a customer: `lock_customer`) for `_apply_credits`."""
    positive = {str(b.customer_id) for b in built if (b.subtotal - b.discount + b.tax).amount > 0}
    if not positive:
        return set()
    rows = conn.execute(
        "select p.customer_id from postings p"
        " where p.book_id = %s and p.account_id = (select id from accounts"
        "   where book_id = %s and name = %s) and p.customer_id = any(%s)"
        " group by p.customer_id, p.currency having sum(p.amount) < 0",
        (book_id, book_id, CUSTOMER_CREDIT, list(positive)),
    ).fetchall()
    holders = sorted({r[0] for r in rows})
    if holders:
        conn.execute(
            "select 1 from customers where book_id = %s and id = any(%s::uuid[])"
            " order by id for update",
            (book_id, holders),
        )
    return set(holders)


def _apply_credits(
    conn: psycopg.Connection, book_id: uuid.UUID, invoices: list[_Built], holders: set[str]
) -> None:
    """Customer credit goes to the new invoices (book setting), as finalize_invoice does;
    `holders` are the customers with credit, already locked."""
    positive = [b for b in invoices if (b.subtotal - b.discount + b.tax).amount > 0]
    for b in sorted(positive, key=lambda b: b.number):
        if str(b.customer_id) in holders:
            apply_credit(conn, book_id, str(b.id), b.issue)


# --- runs ----------------------------------------------------------------------------


def count_due(conn: psycopg.Connection, book_id: uuid.UUID, as_of: date) -> int:
    row = conn.execute(
        f"select count(*) from subscriptions where {_DUE}", {"book": book_id, "as_of": as_of}
    ).fetchone()
    return int(row[0]) if row else 0


def _run(row: dict[str, Any]) -> BillingRun:
    failures = tuple(
        Failure(uuid.UUID(f["subscription"]), str(f["reason"])) for f in row.pop("failures")
    )
    return BillingRun(**row, failures=failures)


# A running run whose lease ran out lost its worker: it reads as interrupted.
_RUN_COLUMNS = (
    "id, as_of, case when status = 'running' and lease_until < clock_timestamp()"
    " then 'interrupted' else status end as status, invoices_created, started_at,"
    " finished_at, heartbeat_at, failures"
)

_LEASE = "clock_timestamp() + make_interval(secs => %(lease)s)"

# Take over the oldest interrupted run up to this date (SKIP LOCKED: one taker); it goes on
# to this date, which covers what it had left to do.
_TAKE_OVER = f"""
update billing_runs set lease_until = {_LEASE}, heartbeat_at = clock_timestamp(),
       failures = '[]'::jsonb, as_of = %(as_of)s
 where book_id = %(book)s and id = (
       select id from billing_runs
        where book_id = %(book)s and as_of <= %(as_of)s and status = 'running'
          and lease_until < clock_timestamp()
        order by started_at, id limit 1 for update skip locked)
returning {_RUN_COLUMNS}
"""

_START = f"""
insert into billing_runs (book_id, id, as_of, status, lease_until)
values (%(book)s, %(id)s, %(as_of)s, 'running', {_LEASE})
returning {_RUN_COLUMNS}
"""

# Renewed in each batch's transaction, with what the batch did.
_RENEW = f"""
update billing_runs set lease_until = {_LEASE}, heartbeat_at = clock_timestamp(),
       invoices_created = invoices_created + %(created)s,
       failures = failures || %(failures)s::jsonb
 where book_id = %(book)s and id = %(id)s
"""


def get_run(conn: psycopg.Connection, book_id: uuid.UUID, ref: str) -> BillingRun:
    try:
        run_id = uuid.UUID(ref)
    except ValueError:
        raise NotFound(f"billing run {ref!r} does not exist in this book") from None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"select {_RUN_COLUMNS} from billing_runs where book_id = %s and id = %s",
            (book_id, run_id),
        ).fetchone()
    if row is None:
        raise NotFound(f"billing run {ref!r} does not exist in this book")
    return _run(row)


def check_as_of(as_of: date, today: date) -> None:
    """A run bills in advance up to the book's today, never beyond it."""
    if as_of > today:
        raise InvalidBillingRequest(
            f"as_of {as_of} is after the book's today ({today}); advance the clock first"
            " (POST /v1/clock) or bill up to today",
            as_of=as_of.isoformat(),
            today=today.isoformat(),
        )


def _start_run(conn: psycopg.Connection, book_id: uuid.UUID, as_of: date, lease: int) -> BillingRun:
    """The oldest interrupted run up to this date, taken over, or a new one."""
    params = {"book": book_id, "as_of": as_of, "lease": lease, "id": uuid.uuid4()}
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_TAKE_OVER, params).fetchone()
        if row is None:
            row = cur.execute(_START, params).fetchone()
    assert row is not None
    return _run(row)


def _final_usage(
    connect: ConnectionSource,
    book_id: uuid.UUID,
    as_of: date,
    run_id: uuid.UUID,
    batch_size: int,
    lease_seconds: int,
) -> int:
    """The final usage invoices of subscriptions canceled or paused by `as_of`
    (billing.postgres.final_usage), a batch per transaction."""
    from billing.postgres.final_usage import bill_final_usage  # it builds on this module

    seen: set[uuid.UUID] = set()
    invoices = 0
    while True:
        with connect() as conn:
            try:
                claimed, created, failures = bill_final_usage(
                    conn, book_id, as_of, run_id=run_id, limit=batch_size, skip=seen
                )
                if claimed:
                    conn.execute(
                        _RENEW,
                        {
                            "book": book_id,
                            "id": run_id,
                            "lease": lease_seconds,
                            "created": len(created),
                            "failures": json.dumps(
                                [
                                    {"subscription": str(f.subscription_id), "reason": f.reason}
                                    for f in failures
                                ]
                            ),
                        },
                    )
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        if not claimed:
            return invoices
        seen.update(claimed)
        invoices += len(created)


def run_billing(
    connect: ConnectionSource,
    book_id: uuid.UUID,
    as_of: date,
    today: date,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    workers: int = 1,
) -> BillingRun:
    """Bill every due subscription period, a batch per transaction; resumable (an
    interrupted run of the same date is taken over); a subscription that cannot be billed
    is reported on the run and the others are billed.

    `workers` batches go side by side, each on its own connection from `connect`: a
    batch prices, advances and writes its lines while another holds the invoice series
    (from its numbers to its commit), so on two cores two workers overlap most of the
    work. Numbers stay gapless: a batch takes its block under the series' row lock."""
    check_as_of(as_of, today)
    if batch_size < 1:
        raise InvalidBillingRequest("batch size must be at least 1")
    if workers < 1:
        raise InvalidBillingRequest("workers must be at least 1")
    with connect() as conn:
        book_window(conn, book_id).check("as_of", as_of)
        total = count_due(conn, book_id, as_of)
        run = _start_run(conn, book_id, as_of, lease_seconds)
        conn.commit()
    state = _Progress(total, progress)
    try:
        if workers == 1:
            _work(connect, book_id, as_of, run.id, batch_size, lease_seconds, state)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="billing-run") as pool:
                done = [
                    pool.submit(
                        _work, connect, book_id, as_of, run.id, batch_size, lease_seconds, state
                    )
                    for _ in range(workers)
                ]
                for future in done:
                    future.exception()  # wait for all: one failing stops the others
                for future in done:
                    future.result()
        _final_usage(connect, book_id, as_of, run.id, batch_size, lease_seconds)
    except Exception:
        with connect() as conn:
            conn.execute(
                "update billing_runs set status = 'failed', finished_at = now()"
                " where book_id = %s and id = %s",
                (book_id, run.id),
            )
            conn.commit()
        raise
    with connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        final = cur.execute(
            "update billing_runs set status = 'completed', finished_at = now()"
            f" where book_id = %s and id = %s returning {_RUN_COLUMNS}",
            (book_id, run.id),
        ).fetchone()
        conn.commit()
    assert final is not None
    return _run(final)


class _Progress:
    """What a run's workers share: the subscriptions that failed (no worker claims them
    again), the counts, the progress callback (called by one worker at a time), and
    whether a worker failed (the others stop after their batch)."""

    def __init__(self, total: int, callback: Progress | None) -> None:
        self.total = total
        self.callback = callback
        self.failed: set[uuid.UUID] = set()
        self.done = 0
        self.invoices = 0
        self.stopped = False
        self.lock = threading.Lock()
        if callback is not None:
            callback(0, total, 0)

    def skip(self) -> list[uuid.UUID]:
        with self.lock:
            return list(self.failed)

    def failures(self, failures: Sequence[Failure]) -> None:
        with self.lock:
            self.failed.update(f.subscription_id for f in failures)

    def batch(self, subscriptions: int, invoices: int) -> None:
        with self.lock:
            self.done += subscriptions
            self.invoices += invoices
            if self.callback is not None:
                total = max(self.total, self.done)
                self.callback(min(self.done, total), total, self.invoices)


def _work(
    connect: ConnectionSource,
    book_id: uuid.UUID,
    as_of: date,
    run_id: uuid.UUID,
    batch_size: int,
    lease_seconds: int,
    state: _Progress,
) -> None:
    """One worker: claim and bill batches until none is left."""
    try:
        while not state.stopped:
            with connect() as conn:
                try:
                    result = bill_subscriptions(
                        conn,
                        book_id,
                        as_of,
                        claim=batch_size,
                        run_id=run_id,
                        skip=state.skip(),
                        isolate=True,
                    )
                    if result.subscriptions:
                        conn.execute(
                            _RENEW,
                            {
                                "book": book_id,
                                "id": run_id,
                                "lease": lease_seconds,
                                "created": len(result.invoice_ids),
                                "failures": json.dumps(
                                    [
                                        {"subscription": str(f.subscription_id), "reason": f.reason}
                                        for f in result.failures
                                    ]
                                ),
                            },
                        )
                    # Known to the other workers before the commit lets them claim these.
                    state.failures(result.failures)
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
            if result.subscriptions == 0:
                return
            state.batch(result.subscriptions, len(result.invoice_ids))
    except BaseException:
        state.stopped = True
        raise


# --- what billing runs will invoice (the cash forecast reads it) ---------------------


@dataclass(frozen=True, slots=True)
class ScheduledInvoice:
    subscription_id: uuid.UUID
    customer_id: uuid.UUID
    currency: str
    issue: date
    due: date
    total: Money  # after the coupon, with tax, as a run would invoice it


def scheduled_invoices(
    conn: psycopg.Connection, book_id: uuid.UUID, known_on: date, through: date, *, replay: bool
) -> list[ScheduledInvoice]:
    """The in-advance invoices of periods starting by `through`, priced as a run
    prices them (items in force at each period's start, coupon, the customer's tax
    rate and terms; proration drafts left out).

    Live (`replay=False`): from each subscription's next period to invoice.
    Replay: only what was known on `known_on` (subscriptions started and
    cancellations recorded by then, item versions in force then), periods starting
    after it: a past forecast rebuilt without hindsight."""
    with conn.cursor(row_factory=dict_row) as cur:
        subs = cur.execute(
            f"select {_SUB_COLUMNS}, canceled_on from subscriptions where book_id = %s"
            " and start_date <= %s",
            (book_id, known_on if replay else through),
        ).fetchall()
    if replay:
        for s in subs:
            if s["canceled_on"] is None or s["canceled_on"] > known_on:
                s["cancel_at"] = None
            if s["paused_on"] is not None and s["paused_on"] > known_on:
                s["paused_on"] = None
    else:
        subs = [s for s in subs if s["status"] != "canceled"]
    if not subs:
        return []
    versions, prices, coupons, customers, settings = _pricing_inputs(conn, book_id, subs)
    per_invoice_tax = settings.get("tax_level") == "per_invoice"
    out: list[ScheduledInvoice] = []
    for sub in subs:
        plan = plan_of(sub)
        first_paid = sub["trial_end"] or sub["start_date"]
        start = sub["next_period_start"] if not replay else first_paid
        coupon = coupons.get(sub["coupon_id"]) if sub["coupon_id"] else None
        customer = customers[sub["customer_id"]]
        rate = tax_rate_of(customer[1], customer[2])
        as_known = known_on if replay else None
        first_index = _index_after(plan.anchor, first_paid, plan.interval, plan.count)
        for period in due_periods(plan, start, through):
            if replay and period.start <= known_on:
                continue
            index = _index_after(plan.anchor, period.start, plan.interval, plan.count) - first_index
            in_force = items_on(versions.get(sub["id"], []), prices, as_known or period.start)
            plan_now = Plan(plan.anchor, plan.interval, plan.count, plan.cancel_at, None, in_force)
            applies = coupon is not None and coupon.applies_to(index)
            priced = _priced_period(
                plan_now, period, coupon if applies else None, 0, rate, per_invoice_tax
            )
            if priced is None:
                continue
            total = priced.subtotal - priced.discount + priced.tax
            out.append(
                ScheduledInvoice(
                    sub["id"],
                    sub["customer_id"],
                    sub["currency"],
                    period.start,
                    due_date(period.start, customer[3], customer[4]),
                    total,
                )
            )
    return out


# Live subscriptions grouped by everything the pricing of their next periods depends on:
# the schedule, the coupon (and the first paid day it counts periods from), the
# customer's tax and terms, and the item versions that can be in force on a period start
# in [next_period_start, through] — a version's bounds are kept only where they fall in
# that window (outside it they decide nothing), so subscriptions differing only in old
# history share a group. The filters are due_periods' stops: a subscription whose next
# period starts after `through`, on or after its cancel date or its pause has none.
_SCHEDULE_GROUPS = """
with s as (
  select s.id, s.customer_id, s.currency, s.billing_anchor, s.interval, s.interval_count,
         s.cancel_at, s.paused_on, s.next_period_start, s.coupon_id,
         case when s.coupon_id is not null then coalesce(s.trial_end, s.start_date) end
           as first_paid,
         c.tax_rate, c.tax_treatment, c.payment_terms, c.payment_terms_days
    from subscriptions s
    join customers c on c.book_id = s.book_id and c.id = s.customer_id
   where s.book_id = %(book)s and s.start_date <= %(through)s and s.status <> 'canceled'
     and s.next_period_start <= %(through)s
     and (s.cancel_at is null or s.next_period_start < s.cancel_at)
     and (s.paused_on is null or s.next_period_start < s.paused_on)
)
select s.currency, s.billing_anchor, s.interval, s.interval_count, s.cancel_at, s.paused_on,
       s.next_period_start, s.coupon_id, s.first_paid, s.tax_rate, s.tax_treatment,
       s.payment_terms, s.payment_terms_days, coalesce(v.items, ''),
       array_agg(s.customer_id::text)
  from s
  left join (
    select s.id, string_agg(
             i.price_id::text || ' ' || i.quantity::text
             || ' ' || case when i.effective_from <= s.next_period_start then ''
                            else to_char(i.effective_from, 'YYYY-MM-DD') end
             || ' ' || case when i.effective_to is null or i.effective_to > %(through)s then ''
                            else to_char(i.effective_to, 'YYYY-MM-DD') end,
             ',' order by i.effective_from, i.id) as items
      from s
      join subscription_items i on i.book_id = %(book)s and i.subscription_id = s.id
       and i.effective_from <= %(through)s
       and (i.effective_to is null or i.effective_to > s.next_period_start)
     group by s.id
  ) v on v.id = s.id
 group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14
"""


def _versions(signature: str) -> list[tuple[uuid.UUID, Decimal, date, date | None]]:
    """A group's item versions as items_on reads them (an open bound: always in force)."""
    out: list[tuple[uuid.UUID, Decimal, date, date | None]] = []
    for part in signature.split(",") if signature else ():
        price, quantity, start, end = part.split(" ")
        out.append(
            (
                uuid.UUID(price),
                Decimal(quantity),
                date.fromisoformat(start) if start else date.min,
                date.fromisoformat(end) if end else None,
            )
        )
    return out


def _same(customer: str, currency: str) -> str:
    return customer


def scheduled_receipts(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    through: date,
    key: Callable[[str, str], str] = _same,
) -> dict[tuple[str, str, date], Decimal]:
    """What `scheduled_invoices(…, replay=False)` gives, summed per (customer, currency,
    due date) over the invoices with a positive total — all the cash forecast needs.
    `key(customer id, currency)` may name a class of customers to sum instead.

    The same rules price the periods, but once per group of subscriptions that bill
    alike (_SCHEDULE_GROUPS) instead of once per subscription: a book of 100,000
    subscriptions has a few thousand such groups."""
    groups = conn.execute(_SCHEDULE_GROUPS, {"book": book_id, "through": through}).fetchall()
    if not groups:
        return {}
    parsed = [_versions(g[13]) for g in groups]
    prices = load_prices(conn, book_id, list({v[0] for vs in parsed for v in vs}))
    coupons = _coupons(conn, book_id, list({g[7] for g in groups if g[7] is not None}))
    per_invoice_tax = read_settings(conn, book_id).get("tax_level") == "per_invoice"
    out: dict[tuple[str, str, date], Decimal] = defaultdict(Decimal)
    for group, versions in zip(groups, parsed, strict=True):
        (currency, anchor, interval, count, cancel_at, paused_on, start, coupon_id) = group[:8]
        first_paid, tax_rate, treatment, terms, days, _, customers = group[8:]
        plan = Plan(anchor, Interval(interval), count, cancel_at, paused_on, ())
        coupon = coupons.get(coupon_id) if coupon_id else None
        rate = tax_rate_of(tax_rate, treatment)
        first_index = (
            _index_after(anchor, first_paid, plan.interval, count) if coupon is not None else 0
        )
        invoices: list[tuple[date, Decimal]] = []
        for period in due_periods(plan, start, through):
            in_force = items_on(versions, prices, period.start)
            plan_now = Plan(anchor, plan.interval, count, cancel_at, None, in_force)
            applies = coupon is not None and coupon.applies_to(
                _index_after(anchor, period.start, plan.interval, count) - first_index
            )
            priced = _priced_period(
                plan_now, period, coupon if applies else None, 0, rate, per_invoice_tax
            )
            if priced is None:
                continue
            total = (priced.subtotal - priced.discount + priced.tax).amount
            if total > 0:
                invoices.append((due_date(period.start, terms, days), total))
        if not invoices:
            continue
        how_many: dict[str, int] = defaultdict(int)
        for customer in customers:
            how_many[key(customer, currency)] += 1
        for name, n in how_many.items():
            for due, total in invoices:
                out[(name, currency, due)] += total * n  # = n additions, exactly
    return dict(out)
