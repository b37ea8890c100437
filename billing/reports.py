"""Pure report rules: AR aging buckets, waterfall of deferred revenue."""

from __future__ import annotations

from datetime import date, timedelta

from billing.periods import month_of
from billing.recognition import LineProgress, recognition_postings
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
    month after `as_of`: what runs at each month end would post (the same rule
    as a run). What is already earned but not yet recognized by `as_of` falls
    in the first month after it."""
    first = month_of(as_of + timedelta(days=1)).start
    out: dict[date, Money] = {}
    last = max(line.period.end - timedelta(days=1), first)
    for on, amount in recognition_postings(line, last):
        month = max(month_of(on).start, first)
        out[month] = out[month] + amount if month in out else amount
    return sorted(out.items())
