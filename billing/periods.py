"""Billing periods: half-open date ranges `[start, end)` cut at anchor dates.

A cycle is an interval (day, week, month, year) times a count, pinned to a
billing anchor date. The boundaries are the anchor shifted by whole cycles,
each computed from the anchor itself rather than from the previous boundary,
so a short month never drags the day down for good: an anchor of Jan 31
gives Feb 28, then Mar 31 again; a Feb 29 annual anchor gives Feb 28 in
common years and Feb 29 again in leap years. When a subscription starts
between two boundaries its first period is a stub up to the next one.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from ledger.errors import LedgerError

__all__ = [
    "BillingCycle",
    "Interval",
    "InvalidPeriod",
    "Period",
    "anchor_date",
    "billing_periods",
    "month_of",
    "next_period_end",
    "period_containing",
]


class InvalidPeriod(LedgerError):
    """A period, cycle or date that cannot describe billing time."""

    code = "invalid_period"
    status = 422


class Interval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


@dataclass(frozen=True, slots=True)
class Period:
    """The half-open date range `[start, end)`: `end` is the first day not included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidPeriod(
                f"a period must end after it starts: [{self.start}, {self.end})",
                start=self.start.isoformat(),
                end=self.end.isoformat(),
            )

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"


@dataclass(frozen=True, slots=True)
class BillingCycle:
    """How a subscription is billed: from `start`, with boundaries on anchor dates."""

    start: date
    anchor: date
    interval: Interval
    count: int = 1

    def __post_init__(self) -> None:
        _check_count(self.count)


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidPeriod(
            f"interval_count must be a positive whole number, got {count!r}", count=repr(count)
        )


def _add_months(anchor: date, months: int) -> date:
    # Clamp to the month's last day, but always from the anchor's own day.
    index = anchor.year * 12 + anchor.month - 1 + months
    year, month = divmod(index, 12)
    day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
    return date(year, month + 1, day)


def _step(interval: Interval, count: int) -> tuple[int, int]:
    """(months, days) in one cycle; exactly one is non-zero."""
    if interval is Interval.DAY:
        return 0, count
    if interval is Interval.WEEK:
        return 0, 7 * count
    if interval is Interval.MONTH:
        return count, 0
    return 12 * count, 0


def anchor_date(anchor: date, interval: Interval, count: int, n: int) -> date:
    """The n-th boundary: `anchor` shifted by n cycles (n may be negative)."""
    _check_count(count)
    months, days = _step(Interval(interval), count)
    if months:
        return _add_months(anchor, n * months)
    return anchor + timedelta(days=n * days)


def _index_after(anchor: date, day: date, interval: Interval, count: int) -> int:
    """The smallest n whose boundary falls strictly after `day`."""
    months, days = _step(Interval(interval), count)
    if days:
        return (day - anchor).days // days + 1
    # Floor division puts boundary n in a month at or before day's month, so
    # either it is already after `day` or boundary n + 1 (a later month) is.
    elapsed = (day.year - anchor.year) * 12 + day.month - anchor.month
    n = elapsed // months
    return n if _add_months(anchor, n * months) > day else n + 1


def next_period_end(anchor: date, start: date, interval: Interval, count: int = 1) -> date:
    """End of the period that begins on `start`: the first anchor date after it.

    When `start` is itself an anchor date this is one full cycle later; when it
    is not (a stub), it is the next anchor date.
    """
    _check_count(count)
    return anchor_date(anchor, interval, count, _index_after(anchor, start, interval, count))


def billing_periods(cycle: BillingCycle, until: date | None = None) -> Iterator[Period]:
    """The cycle's periods in order, the first possibly a stub.

    Without `until` the iterator is endless; with it, it stops before the first
    period starting on or after `until`.
    """
    n = _index_after(cycle.anchor, cycle.start, cycle.interval, cycle.count)
    start = cycle.start
    while until is None or start < until:
        end = anchor_date(cycle.anchor, cycle.interval, cycle.count, n)
        yield Period(start, end)
        start, n = end, n + 1


def period_containing(cycle: BillingCycle, day: date) -> Period:
    """The billing period of `cycle` that includes `day`."""
    if day < cycle.start:
        raise InvalidPeriod(
            f"{day} is before the billing cycle starts ({cycle.start})",
            day=day.isoformat(),
            start=cycle.start.isoformat(),
        )
    n = _index_after(cycle.anchor, day, cycle.interval, cycle.count)
    previous = anchor_date(cycle.anchor, cycle.interval, cycle.count, n - 1)
    end = anchor_date(cycle.anchor, cycle.interval, cycle.count, n)
    return Period(max(cycle.start, previous), end)


def month_of(day: date) -> Period:
    """The calendar month containing `day`, as a period."""
    first = day.replace(day=1)
    return Period(first, _add_months(first, 1))
