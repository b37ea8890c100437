"""Collections metrics and the AR aging trend, read from the receivable's postings
(`invoice:<id>` documents on the AR account, as billing/postgres/reports.py reads
AR aging)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from billing import collections as rules
from billing.metrics import month_end, months_between
from billing.postgres.ids import invoice_id_sql
from billing.postgres.reports import aging_summary, ar_aging
from billing.postings import AR

_AR = "(select id from accounts where book_id = %(book)s and name = %(ar)s)"


def ar_balances(
    conn: psycopg.Connection, book_id: uuid.UUID, day: date
) -> dict[str, tuple[Decimal, Decimal]]:
    """Per currency at the end of `day`: (invoices' receivable, the part not yet due)."""
    rows = conn.execute(
        "select p.currency, sum(p.amount),"
        " coalesce(sum(p.amount) filter (where i.due_date is null or i.due_date >= %(day)s), 0)"
        "  from postings p"
        f"  join invoices i on i.book_id = p.book_id and i.id = {invoice_id_sql('p.document')}"
        f" where p.book_id = %(book)s and p.account_id = {_AR}"
        "   and p.document like 'invoice:%%' and p.effective_date <= %(day)s"
        " group by p.currency",
        {"book": book_id, "ar": AR, "day": day},
    ).fetchall()
    return {c: (total, current) for c, total, current in rows}


def credit_sales(
    conn: psycopg.Connection, book_id: uuid.UUID, first: date, last: date
) -> dict[str, Decimal]:
    """Receivable debits on invoices between the two days, per currency."""
    rows = conn.execute(
        "select p.currency, sum(p.amount) from postings p"
        f" where p.book_id = %(book)s and p.account_id = {_AR}"
        "   and p.document like 'invoice:%%' and p.amount > 0"
        "   and p.effective_date between %(first)s and %(last)s group by p.currency",
        {"book": book_id, "ar": AR, "first": first, "last": last},
    ).fetchall()
    return dict(rows)


def settlements(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    through: date,
    since: date | None = None,
) -> list[rules.Settlement]:
    """Invoices (not void) whose receivable is zero at the end of `through`, settled on
    or after `since`; settled on the last day a posting moved it. Only postings
    effective by `through` count, so a past day sees what was recorded for it then."""
    rows = conn.execute(
        "with ar as ("
        "  select p.document, sum(p.amount) as due, max(p.effective_date) as last_day"
        "    from postings p"
        f"   where p.book_id = %(book)s and p.account_id = {_AR}"
        "     and p.document like 'invoice:%%' and p.effective_date <= %(through)s"
        "   group by p.document"
        ")"
        " select i.id, i.customer_id, i.currency, i.due_date, ar.last_day from ar"
        f"  join invoices i on i.book_id = %(book)s and i.id = {invoice_id_sql('ar.document')}"
        " where ar.due = 0 and i.status <> 'void' and i.due_date is not null"
        "   and ar.last_day >= %(since)s"
        " order by ar.last_day, i.id",
        {"book": book_id, "ar": AR, "through": through, "since": since or date.min},
    ).fetchall()
    return [rules.Settlement(str(r[0]), str(r[1]), r[2], r[3], r[4]) for r in rows]


def _windows(
    conn: psycopg.Connection, book_id: uuid.UUID, last: date
) -> dict[str, list[tuple[int, Decimal]]]:
    """(days, credit sales) per currency, newest first: `last`'s month through
    `last`, then whole months before it."""
    first = date(last.year - 2, last.month, 1)
    rows = conn.execute(
        "select p.currency, date_trunc('month', p.effective_date)::date, sum(p.amount)"
        "  from postings p"
        f" where p.book_id = %(book)s and p.account_id = {_AR}"
        "   and p.document like 'invoice:%%' and p.amount > 0"
        "   and p.effective_date between %(first)s and %(last)s group by 1, 2",
        {"book": book_id, "ar": AR, "first": first, "last": last},
    ).fetchall()
    sales: dict[str, dict[date, Decimal]] = defaultdict(dict)
    for currency, month, amount in rows:
        sales[currency][month] = amount
    months = list(reversed(months_between(first, last)))
    out: dict[str, list[tuple[int, Decimal]]] = {}
    for currency, by_month in sales.items():
        out[currency] = [
            (
                last.day if m == months[0] else month_end(m).day,
                by_month.get(m, Decimal(0)),
            )
            for m in months
        ]
    return out


def aging_trend(
    conn: psycopg.Connection, book_id: uuid.UUID, first: date, last: date
) -> list[dict[str, Any]]:
    """AR aging buckets at each month end from `first`'s month through `last`'s."""
    out: list[dict[str, Any]] = []
    for month in months_between(first, last):
        day = min(month_end(month), last)
        for currency, buckets in sorted(aging_summary(ar_aging(conn, book_id, day)).items()):
            out.append({"as_of": day, "currency": currency, "buckets": buckets})
    return out


def collections(
    conn: psycopg.Connection, book_id: uuid.UUID, first: date, last: date
) -> dict[str, Any]:
    """The period's collections metrics per currency and per customer, and the
    month-end aging trend."""
    opening = ar_balances(conn, book_id, first - timedelta(days=1))
    closing = ar_balances(conn, book_id, last)
    sales = credit_sales(conn, book_id, first, last)
    windows = _windows(conn, book_id, last)
    settled = settlements(conn, book_id, last, first)
    late = rules.average_days_late(settled)
    names: dict[str, str] = dict(
        conn.execute(
            "select id::text, name from customers where book_id = %s", (book_id,)
        ).fetchall()
    )
    currencies: list[dict[str, Any]] = []
    for currency in sorted(opening.keys() | closing.keys() | sales.keys()):
        start = opening.get(currency, (Decimal(0), Decimal(0)))[0]
        end, end_current = closing.get(currency, (Decimal(0), Decimal(0)))
        sold = sales.get(currency, Decimal(0))
        mine = [s for s in settled if s.currency == currency]
        currencies.append(
            {
                "currency": currency,
                "opening_ar": start,
                "credit_sales": sold,
                "closing_ar": end,
                "closing_current_ar": end_current,
                "dso": rules.dso_countback(end, windows.get(currency, [])),
                "cei": rules.cei(start, sold, end, end_current),
                "invoices_settled": len(mine),
                "paid_on_time": sum(1 for s in mine if s.days_late == 0),
                "share_paid_on_time": rules.on_time_share(mine),
            }
        )
    return {
        "from": first,
        "to": last,
        "rules": list(rules.RULES),
        "currencies": currencies,
        "customers": [
            {
                "customer": customer,
                "name": names.get(customer, ""),
                "currency": currency,
                "invoices_settled": sum(
                    1 for s in settled if (s.currency, s.customer) == (currency, customer)
                ),
                "average_days_late": days,
            }
            for (currency, customer), days in sorted(
                late.items(), key=lambda kv: (kv[0][0], names.get(kv[0][1], ""), kv[0][1])
            )
        ],
        "aging_trend": aging_trend(conn, book_id, first, last),
    }
