"""Billing runs: invoice every subscription period due by a date, exactly once.

One code path bills subscriptions, for one subscription (a command catching up
before a change, cancel or pause) or for a batch of hundreds (a run):

1. claim the subscriptions (`FOR UPDATE`; a run uses `SKIP LOCKED`, ordered by
   `next_period_start`, so concurrent runs share the work);
2. load their items, prices, customers, coupons and pending proration drafts
   with one query each;
3. build every due period's invoice in Python with the pure rules
   (`billing.subscriptions.period_lines`, `billing.invoicing.final_lines`,
   `billing.postings.finalization_entry`, `billing.invoicing.due_date`);
4. write them with a few set-based statements: periods that already have
   their invoice (the unique `(book_id, subscription_id,
   subscription_period_start)`; the claimed subscriptions are locked) are
   skipped, a block of numbers is taken from the gapless series at once for
   the rest, one `post_entries` call posts every finalization entry, then the
   lines and the invoices, inserted open and final (the lines' foreign key
   deferred for the two statements, so no draft row is written and updated),
   and the subscriptions advanced.

All of it is one transaction per batch, so a crash loses at most the open
batch (its numbers go back to the series with the rollback) and a re-run
resumes from the subscriptions' `next_period_start`. A subscription period is
invoiced on its first day (in advance) and the invoice is dated that day, so
a late or catch-up run produces the same documents as punctual ones.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import dict_row

from billing.errors import InvalidBillingRequest
from billing.invoicing import DraftLine, document_number, due_date, final_lines, tax_rate_of
from billing.periods import Interval, Period
from billing.postgres.catalog import charge_of
from billing.postgres.invoices import apply_credit
from billing.postings import CUSTOMER_CREDIT, FinalLine, finalization_entry
from billing.rating import Charge, ChargeModel
from billing.subscriptions import Coupon, Item, Line, Plan, coupon_of, due_periods, period_lines
from billing.tax import TaxRate
from ledger.entries import JournalEntry
from ledger.errors import NotFound
from ledger.money import Money
from ledger.postgres.posting import post_entries

ConnectionSource = Callable[[], AbstractContextManager[psycopg.Connection]]
Progress = Callable[[int, int, int], None]  # (subscriptions done, due at start, invoices)

DEFAULT_BATCH = 500
PENDING = "pending"  # metadata key of a draft holding proration lines for the next invoice

_DUE = (
    "book_id = %(book)s and next_period_start <= %(as_of)s and status <> 'canceled'"
    " and (cancel_at is null or next_period_start < cancel_at)"
    " and (paused_on is null or next_period_start < paused_on)"
)


@dataclass(frozen=True, slots=True)
class BillingRun:
    id: uuid.UUID
    as_of: date
    status: str
    invoices_created: int
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class BatchResult:
    subscriptions: int
    invoice_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class _Price:
    charge: Charge
    description: str
    revenue_account: str


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
    due: date
    number: str = ""
    entry: JournalEntry | None = None


# --- loading -------------------------------------------------------------------------


def load_prices(
    conn: psycopg.Connection, book_id: uuid.UUID, price_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, _Price]:
    rows = conn.execute(
        "select p.id, p.charge_model, p.currency, p.unit_amount, p.tiers, p.package_size,"
        " pr.name, pr.revenue_account from prices p"
        " join products pr on pr.book_id = p.book_id and pr.id = p.product_id"
        " where p.book_id = %s and p.id = any(%s)",
        (book_id, list(price_ids)),
    ).fetchall()
    return {
        r[0]: _Price(charge_of(ChargeModel(r[1]), r[2], r[3], r[4], r[5]), r[6], r[7]) for r in rows
    }


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


def items_on(
    versions: Sequence[tuple[uuid.UUID, Decimal, date, date | None]],
    prices: dict[uuid.UUID, _Price],
    day: date,
) -> tuple[Item, ...]:
    """The item versions in force on `day` (`[effective_from, effective_to)`)."""
    return tuple(
        Item(
            str(price_id),
            prices[price_id].description,
            prices[price_id].charge,
            Decimal(quantity),
            prices[price_id].revenue_account,
        )
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
        due_date(period.start, customer[3], customer[4]),
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


def bill_subscriptions(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    as_of: date,
    subscription_ids: Sequence[uuid.UUID] | None = None,
    *,
    claim: int = DEFAULT_BATCH,
    run_id: uuid.UUID | None = None,
) -> BatchResult:
    """Invoice every period due by `as_of` of the given subscriptions (locked, waiting), or of
    up to `claim` due ones (locked with SKIP LOCKED), in the caller's transaction."""
    params: dict[str, Any] = {"book": book_id, "as_of": as_of}
    with conn.cursor(row_factory=dict_row) as cur:
        if subscription_ids is None:
            params["limit"] = claim
            subs = cur.execute(
                f"select {_SUB_COLUMNS} from subscriptions where {_DUE}"
                " order by next_period_start, id limit %(limit)s for update skip locked",
                params,
            ).fetchall()
        else:
            params["ids"] = list(subscription_ids)
            subs = cur.execute(
                f"select {_SUB_COLUMNS} from subscriptions where {_DUE} and id = any(%(ids)s)"
                " order by id for update",
                params,
            ).fetchall()
    if not subs:
        return BatchResult(0, ())
    sub_ids = [s["id"] for s in subs]
    versions = _items(conn, book_id, sub_ids)
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
    settings_row = conn.execute("select settings from books where id = %s", (book_id,)).fetchone()
    settings: dict[str, Any] = dict(settings_row[0]) if settings_row else {}
    per_invoice_tax = settings.get("tax_level") == "per_invoice"
    pending, pending_drafts = take_pending(conn, book_id, sub_ids)

    built: list[_Built] = []
    advance: list[tuple[uuid.UUID, date, int]] = []
    used_pending: set[uuid.UUID] = set()
    for sub in subs:
        plan = plan_of(sub)
        periods = due_periods(plan, sub["next_period_start"], as_of)
        billed = sub["periods_billed"]
        coupon = coupons.get(sub["coupon_id"]) if sub["coupon_id"] else None
        rate = tax_rate_of(*customers[sub["customer_id"]][1:3])
        for period in periods:
            plan_now = Plan(
                plan.anchor,
                plan.interval,
                plan.count,
                plan.cancel_at,
                None,
                items_on(versions.get(sub["id"], []), prices, period.start),
            )
            extra = pending.get(sub["id"], []) if sub["id"] not in used_pending else []
            if extra:
                used_pending.add(sub["id"])
                lines = [*period_lines(plan_now, period, coupon=coupon, paid_index=billed), *extra]
                priced: _Priced | None = _price_lines(lines, rate, per_invoice_tax)
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
                    _build(uuid.uuid4(), sub, customers[sub["customer_id"]], period, priced)
                )
        if periods:
            advance.append((sub["id"], periods[-1].end, billed))
    if not advance:
        return BatchResult(len(subs), ())

    created = _write(conn, book_id, built, run_id)
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
    if settings.get("auto_apply_credit", True):
        _apply_credits(conn, book_id, [b for b in built if b.id in created])
    if run_id is not None and created:
        conn.execute(
            "update billing_runs set invoices_created = invoices_created + %s"
            " where book_id = %s and id = %s",
            (len(created), book_id, run_id),
        )
    return BatchResult(len(subs), tuple(b.id for b in built if b.id in created))


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
    done.sort(key=lambda b: (b.period.start, str(b.subscription_id)))
    by_year: dict[int, list[_Built]] = defaultdict(list)
    for b in done:
        by_year[b.period.start.year].append(b)
    for year, group in sorted(by_year.items()):
        for b, number in zip(group, _take_numbers(conn, book_id, year, len(group)), strict=True):
            b.number = number
    for b in done:
        b.entry = finalization_entry(b.id, b.number, str(b.customer_id), b.period.start, b.finals)
    with_entry = [b for b in done if b.entry is not None]
    posted = post_entries(conn, book_id, [b.entry for b in with_entry if b.entry is not None])
    entry_ids: dict[uuid.UUID, uuid.UUID] = {
        b.id: p.id for b, p in zip(with_entry, posted, strict=True)
    }
    metadata = json.dumps({"billing_run": str(run_id)} if run_id else {})
    conn.execute(f"set constraints {_LINES_FK} deferred")
    with conn.cursor() as cur:
        with cur.copy(_COPY_LINES) as copy:
            for b in done:
                for line, final in zip(b.lines, b.finals, strict=True):
                    copy.write_row(
                        (
                            book_id,
                            b.id,
                            final.line_no,
                            line.kind,
                            line.description,
                            line.quantity,
                            line.unit_amount,
                            line.amount.amount,
                            line.discount.amount if line.discount else 0,
                            b.tax_rate,
                            final.tax.amount,
                            line.service.start,
                            line.service.end,
                            line.price_id,
                            line.revenue_account,
                        )
                    )
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
                        b.period.start,
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


def _apply_credits(conn: psycopg.Connection, book_id: uuid.UUID, invoices: list[_Built]) -> None:
    """Customer credit goes to the new invoices (book setting), as finalize_invoice does."""
    positive = [b for b in invoices if (b.subtotal - b.discount + b.tax).amount > 0]
    if not positive:
        return
    rows = conn.execute(
        "select p.customer_id from postings p"
        " where p.book_id = %s and p.account_id = (select id from accounts"
        "   where book_id = %s and name = %s) and p.customer_id = any(%s)"
        " group by p.customer_id, p.currency having sum(p.amount) < 0",
        (book_id, book_id, CUSTOMER_CREDIT, list({str(b.customer_id) for b in positive})),
    ).fetchall()
    with_credit = {r[0] for r in rows}
    for b in sorted(positive, key=lambda b: b.number):
        if str(b.customer_id) in with_credit:
            apply_credit(conn, book_id, str(b.id), b.period.start)


# --- runs ----------------------------------------------------------------------------


def count_due(conn: psycopg.Connection, book_id: uuid.UUID, as_of: date) -> int:
    row = conn.execute(
        f"select count(*) from subscriptions where {_DUE}", {"book": book_id, "as_of": as_of}
    ).fetchone()
    return int(row[0]) if row else 0


def _run(row: dict[str, Any]) -> BillingRun:
    return BillingRun(**row)


_RUN_COLUMNS = "id, as_of, status, invoices_created, started_at, finished_at"


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


def run_billing(
    connect: ConnectionSource,
    book_id: uuid.UUID,
    as_of: date,
    today: date,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> BillingRun:
    """Bill every due subscription period, a batch per transaction; resumable."""
    check_as_of(as_of, today)
    if batch_size < 1:
        raise InvalidBillingRequest("batch size must be at least 1")
    with connect() as conn:
        total = count_due(conn, book_id, as_of)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "insert into billing_runs (book_id, id, as_of, status) values (%s, %s, %s,"
                f" 'running') returning {_RUN_COLUMNS}",
                (book_id, uuid.uuid4(), as_of),
            ).fetchone()
        conn.commit()
    assert row is not None
    run = _run(row)
    done = invoices = 0
    if progress is not None:
        progress(done, total, invoices)
    try:
        while True:
            with connect() as conn:
                try:
                    result = bill_subscriptions(
                        conn, book_id, as_of, claim=batch_size, run_id=run.id
                    )
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
            if result.subscriptions == 0:
                break
            done += result.subscriptions
            invoices += len(result.invoice_ids)
            if progress is not None:
                progress(min(done, max(total, done)), max(total, done), invoices)
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
