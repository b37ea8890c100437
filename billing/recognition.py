"""Ratable-by-day revenue recognition of a line over its service period.

Recognition is cumulative: through day D a line has recognized
`round(total * elapsed_days / period_days)`, where "through D" means the end
of D, so `elapsed_days = min(D + 1, end) - start` (clamped to the period).
Each run posts the difference from what was recognized before. Because the
last cumulative figure is the total itself, any schedule built from those
differences telescopes to exactly the line total, with no residue to fix up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from billing.periods import Period, month_of
from billing.proration import fraction_of
from ledger.money import Money, Rounding

__all__ = [
    "MonthlyRecognition",
    "elapsed_days",
    "recognition_due",
    "recognition_schedule",
    "recognized_through",
]


@dataclass(frozen=True, slots=True)
class MonthlyRecognition:
    month: date  # first day of the calendar month
    through: date  # last service day recognized in this month (inclusive)
    amount: Money  # recognized in this month alone


def elapsed_days(period: Period, through: date) -> int:
    """Service days of `period` delivered by the end of `through` (0 … period.days)."""
    end = min(through + timedelta(days=1), period.end)
    return max(0, (end - period.start).days)


def recognized_through(
    total: Money, period: Period, through: date, rounding: Rounding = Rounding.HALF_UP
) -> Money:
    """Cumulative revenue recognized for the line by the end of `through`."""
    # quantized() refuses a total finer than the minor unit: the schedule could
    # not then sum to it exactly.
    total = total.quantized()
    return fraction_of(total, elapsed_days(period, through), period.days, rounding)


def recognition_due(
    total: Money,
    period: Period,
    through: date,
    already_recognized: Money,
    rounding: Rounding = Rounding.HALF_UP,
) -> Money:
    """What a recognition run through `through` posts: cumulative minus prior runs."""
    return recognized_through(total, period, through, rounding) - already_recognized


def _month_ends(period: Period) -> Iterator[tuple[date, date]]:
    month = month_of(period.start)
    while month.start < period.end:
        yield month.start, min(month.end, period.end) - timedelta(days=1)
        month = month_of(month.end)


def recognition_schedule(
    total: Money, period: Period, rounding: Rounding = Rounding.HALF_UP
) -> list[MonthlyRecognition]:
    """Month-by-month recognition of the line; the amounts sum exactly to `total`."""
    schedule: list[MonthlyRecognition] = []
    before = Money.zero(total.currency)
    for month, through in _month_ends(period):
        cumulative = recognized_through(total, period, through, rounding)
        schedule.append(MonthlyRecognition(month, through, cumulative - before))
        before = cumulative
    return schedule


@dataclass(frozen=True, slots=True)
class LineProgress:
    """What the ledger says of one deferred line, for a recognition run."""

    total: Money  # the net amount deferred at finalization (negative for credit lines)
    period: Period
    recognized: Money  # moved to income by earlier runs
    removed: Money  # taken out of deferred revenue by credit notes, refunds, write-offs

    @property
    def remaining(self) -> Money:
        return self.total - self.recognized - self.removed


def due_for_line(line: LineProgress, through: date, rounding: Rounding = Rounding.HALF_UP) -> Money:
    """What to recognize now: the schedule of what is still owed to the line
    (its total less what credits removed), minus what was recognized, never past
    what remains deferred and never backwards."""
    base = line.total - line.removed
    target = recognized_through(base, line.period, through, rounding)
    due = target - line.recognized
    remaining = line.remaining
    sign = 1 if line.total.amount >= 0 else -1
    if due.amount * sign <= 0:
        return Money.zero(due.currency)
    if abs(due.amount) > abs(remaining.amount):
        return remaining if remaining.amount * sign > 0 else Money.zero(due.currency)
    return due
