"""The cash-flow forecast from the ledger (open invoices, customers' payment
history) and the subscription schedules, and its back-test."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal, localcontext

import psycopg

from billing import forecast as rules
from billing.collections import average_days_late
from billing.postgres.billing_runs import scheduled_invoices, scheduled_receipts
from billing.postgres.collections import settlements
from billing.postgres.reports import ar_aging

MAX_WEEKS = 104


def failure_rates(
    conn: psycopg.Connection, book_id: uuid.UUID, through: date
) -> dict[str, Decimal]:
    """Per currency: failed payment amounts over all attempted ones, received by `through`."""
    rows = conn.execute(
        "select currency, coalesce(sum(amount) filter (where status = 'failed'), 0),"
        " sum(amount) from payments where book_id = %s and received_on <= %s"
        " and status in ('succeeded', 'failed') group by currency",
        (book_id, through),
    ).fetchall()
    with localcontext(prec=60):
        return {
            c: (failed / total).quantize(Decimal("0.0001")) for c, failed, total in rows if total
        }


def cash_forecast(
    conn: psycopg.Connection, book_id: uuid.UUID, known: date, weeks: int, *, replay: bool = False
) -> rules.Forecast:
    """Receipts expected for `weeks` weeks from the day after `known`, from what the
    ledger holds at the end of `known` (`replay`: a past day, rebuilt without hindsight
    of the subscriptions too)."""
    first = known + timedelta(days=1)
    last = first + timedelta(days=7 * weeks - 1)
    receivables = [
        rules.Receivable(
            rules.OPEN,
            str(line.customer_id),
            line.currency,
            line.due_date or known,
            line.amount_due,
        )
        for line in ar_aging(conn, book_id, known)
        if line.amount_due > 0
    ]
    settled = settlements(conn, book_id, known)
    late = average_days_late(settled)
    by_currency: dict[str, list[int]] = defaultdict(list)
    for s in settled:
        by_currency[s.currency].append(s.days_late)
    with localcontext(prec=60):
        fallback = {
            c: (Decimal(sum(days)) / len(days)).quantize(Decimal("0.01"))
            for c, days in by_currency.items()
        }
    if replay:
        upcoming = scheduled_invoices(conn, book_id, known, last, replay=True)
        receivables += [
            rules.Receivable(rules.SCHEDULED, str(s.customer_id), s.currency, s.due, s.total.amount)
            for s in upcoming
            if s.total.amount > 0
        ]
    else:
        # Summed per class of lateness and due date (rules.LatenessClasses): a book of
        # 100,000 subscriptions gives a few hundred receivables instead of 100,000s.
        classes = rules.LatenessClasses(late, fallback)
        scheduled = scheduled_receipts(conn, book_id, last, classes)
        receivables += [
            rules.Receivable(rules.SCHEDULED, name, currency, due, amount)
            for (name, currency, due), amount in scheduled.items()
        ]
        late = classes.days_late()
    return rules.forecast(
        receivables, late, fallback, failure_rates(conn, book_id, known), first, weeks
    )


def receipts_by_week(
    conn: psycopg.Connection, book_id: uuid.UUID, first: date, weeks: int
) -> dict[tuple[date, str], Decimal]:
    """What arrived: succeeded payments by the week of their receipt."""
    rows = conn.execute(
        "select (%(first)s + ((received_on - %(first)s) / 7) * 7)::date, currency, sum(amount)"
        "  from payments where book_id = %(book)s and status = 'succeeded'"
        "   and received_on between %(first)s and %(last)s group by 1, 2",
        {"book": book_id, "first": first, "last": first + timedelta(days=7 * weeks - 1)},
    ).fetchall()
    return {(week, currency): amount for week, currency, amount in rows}
