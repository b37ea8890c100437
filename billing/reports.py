"""Pure report rules: AR aging buckets, waterfall of deferred revenue."""

from __future__ import annotations

from datetime import date, timedelta

from billing.periods import month_of
from billing.recognition import LineProgress, due_for_line
from ledger.money import Money

AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")


def aging_bucket(as_of: date, due: date | None) -> str:
    """Days past due at the end of `as_of`: not yet due is current."""
    days = (as_of - due).days if due is not None else 0
    if days <= 0:
        return "current"
    if days <= 30:
        return "1-30"
    if days <= 60:
        return "31-60"
    if days <= 90:
        return "61-90"
    return "90+"


def waterfall(line: LineProgress, as_of: date) -> list[tuple[date, Money]]:
    """When the line's remaining deferred revenue will be recognized, month by
    month after `as_of`, if runs happen at each month end."""
    out: list[tuple[date, Money]] = []
    progress = line
    month = month_of(as_of + timedelta(days=1))
    while not progress.remaining.is_zero() and month.start < line.period.end + timedelta(days=62):
        through = month.end - timedelta(days=1)
        due = due_for_line(progress, through)
        if not due.is_zero():
            out.append((month.start, due))
            progress = LineProgress(
                progress.total, progress.period, progress.recognized + due, progress.removed
            )
        month = month_of(month.end)
    return out
