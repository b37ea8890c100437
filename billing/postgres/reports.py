"""Billing reports, each a query over postings (plus the documents' own dates)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg

from billing.postgres.ids import invoice_id_sql
from billing.postgres.recognition import deferred_lines
from billing.postings import AR, DEFERRED
from billing.reports import AGING_BUCKETS, aging_bucket, waterfall


@dataclass(frozen=True, slots=True)
class AgingLine:
    invoice_id: uuid.UUID
    number: str
    customer_id: uuid.UUID
    customer_name: str
    currency: str
    due_date: date | None
    amount_due: Decimal
    bucket: str


def ar_aging(conn: psycopg.Connection, book_id: uuid.UUID, as_of: date) -> list[AgingLine]:
    rows = conn.execute(
        "with due as ("
        "  select p.document, sum(p.amount) as amount from postings p"
        "   where p.book_id = %(book)s and p.effective_date <= %(as_of)s"
        "     and p.account_id = (select id from accounts where book_id = %(book)s"
        "                          and name = %(ar)s)"
        "     and p.document like 'invoice:%%'"
        "   group by p.document having sum(p.amount) <> 0"
        ")"
        " select i.id, i.number, i.customer_id, c.name, i.currency, i.due_date, d.amount"
        "   from due d"
        f"   join invoices i on i.book_id = %(book)s and i.id = {invoice_id_sql('d.document')}"
        "   join customers c on c.book_id = i.book_id and c.id = i.customer_id"
        "  order by c.name, i.due_date, i.number",
        {"book": book_id, "as_of": as_of, "ar": AR},
    ).fetchall()
    return [
        AgingLine(r[0], r[1], r[2], r[3], r[4], r[5], r[6], aging_bucket(as_of, r[5])) for r in rows
    ]


def aging_summary(lines: list[AgingLine]) -> dict[str, dict[str, Decimal]]:
    """Per currency: total per bucket and overall."""
    out: dict[str, dict[str, Decimal]] = {}
    for line in lines:
        buckets = out.setdefault(line.currency, {b: Decimal(0) for b in (*AGING_BUCKETS, "total")})
        buckets[line.bucket] += line.amount_due
        buckets["total"] += line.amount_due
    return out


def deferred_revenue(conn: psycopg.Connection, book_id: uuid.UUID, as_of: date) -> dict[str, Any]:
    """Deferred revenue at the end of `as_of`: balance per currency and revenue
    account, and the waterfall of when it will be recognized."""
    balance_rows = conn.execute(
        "select p.currency, coalesce(-sum(p.amount), 0) from postings p"
        " where p.book_id = %(book)s and p.effective_date <= %(as_of)s"
        "   and p.account_id = (select id from accounts where book_id = %(book)s"
        "                        and name = %(deferred)s) group by p.currency",
        {"book": book_id, "as_of": as_of, "deferred": DEFERRED},
    ).fetchall()
    by_account: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    schedule: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    for line in deferred_lines(conn, book_id, as_of):
        currency = line.progress.total.currency
        by_account[(currency, line.revenue_account)] += line.progress.remaining.amount
        for month, amount in waterfall(line.progress, as_of):
            schedule[(currency, month)] += amount.amount
    return {
        "as_of": as_of,
        "balances": {currency: amount for currency, amount in sorted(balance_rows)},
        "by_revenue_account": [
            {"currency": c, "account": a, "amount": v} for (c, a), v in sorted(by_account.items())
        ],
        "waterfall": [
            {"currency": c, "month": m.strftime("%Y-%m"), "amount": v}
            for (c, m), v in sorted(schedule.items())
        ],
    }


def revenue(
    conn: psycopg.Connection, book_id: uuid.UUID, date_from: date, date_to: date
) -> list[dict[str, Any]]:
    """Recognized revenue (income accounts, contra-revenue included) by month,
    account and product; the product comes from the invoice line's price."""
    rows = conn.execute(
        "select to_char(p.effective_date, 'YYYY-MM'), a.name, pr.name, p.currency,"
        "       -sum(p.amount)"
        "  from postings p join accounts a on a.book_id = p.book_id and a.id = p.account_id"
        "  left join invoice_lines l on l.book_id = p.book_id"
        f"   and l.invoice_id = {invoice_id_sql('p.document')}"
        "   and l.line_no = (p.dimensions->>'line')::smallint"
        "  left join prices pc on pc.book_id = l.book_id and pc.id = l.price_id"
        "  left join products pr on pr.book_id = pc.book_id and pr.id = pc.product_id"
        " where p.book_id = %s and a.type = 'income' and p.effective_date between %s and %s"
        "   and a.name not like 'Income:FX:%%'"
        " group by 1, 2, 3, 4 order by 1, 2, 3 nulls first, 4",
        (book_id, date_from, date_to),
    ).fetchall()
    return [
        {"month": m, "account": a, "product": product, "currency": c, "amount": v}
        for m, a, product, c, v in rows
    ]


def deferred_roll_forward(
    conn: psycopg.Connection, book_id: uuid.UUID, date_from: date, date_to: date
) -> dict[str, dict[str, Decimal]]:
    """Opening + billed − recognized − credited = closing, per currency; every
    figure is a sum of Deferred-Revenue postings, so it ties by construction."""
    rows = conn.execute(
        "select p.currency,"
        " coalesce(-sum(p.amount) filter (where p.effective_date < %(from)s), 0),"
        " coalesce(-sum(p.amount) filter (where p.effective_date between %(from)s and %(to)s"
        "   and p.dimensions->>'via' = 'finalization'), 0),"
        " coalesce(sum(p.amount) filter (where p.effective_date between %(from)s and %(to)s"
        "   and p.dimensions->>'via' = 'recognition'), 0),"
        " coalesce(sum(p.amount) filter (where p.effective_date between %(from)s and %(to)s"
        "   and coalesce(p.dimensions->>'via', '') not in ('finalization', 'recognition')), 0),"
        " coalesce(-sum(p.amount) filter (where p.effective_date <= %(to)s), 0)"
        "  from postings p"
        " where p.book_id = %(book)s"
        "   and p.account_id = (select id from accounts where book_id = %(book)s"
        "                        and name = %(deferred)s)"
        " group by p.currency",
        {"book": book_id, "from": date_from, "to": date_to, "deferred": DEFERRED},
    ).fetchall()
    return {
        currency: {
            "opening": opening,
            "billed": billed,
            "recognized": recognized,
            "other": other,
            "closing": closing,
        }
        for currency, opening, billed, recognized, other, closing in rows
    }
