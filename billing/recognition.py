"""Ratable-by-day revenue recognition of a line over its service period.

Recognition is cumulative: through day D a line has recognized
`round(total * elapsed_days / period_days)`, where "through D" means the end
of D, so `elapsed_days = min(D + 1, end) - start` (clamped to the period).
Each run posts the difference from what was recognized before. Because the
last cumulative figure is the total itself, any schedule built from those
differences telescopes to exactly the line total, with no residue to fix up.

A run catches up month by month (`recognition_postings`): what was earned in
each month is dated in that month. A credit note, refund or write-off that
takes deferred revenue is prospective (`scheduled_through`): the rest is
spread over the service days from its date.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from billing.errors import InvalidBillingRequest
from billing.periods import Period, month_of
from billing.proration import fraction_of
from ledger.money import Money, Rounding
from ledger.periods import first_open_day

__all__ = [
    "LineProgress",
    "MonthlyRecognition",
    "check_through",
    "elapsed_days",
    "recognition_due",
    "recognition_postings",
    "recognition_schedule",
    "recognized_through",
    "scheduled_through",
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
    """What the ledger says of one deferred line, as plain data for the rules below."""

    total: Money  # the net amount deferred at finalization (negative for credit lines)
    period: Period
    recognized: Money  # moved to income by earlier runs
    # (effective date, amount) taken out of deferred revenue by credit notes,
    # refunds and write-offs, in date order
    removals: tuple[tuple[date, Money], ...] = ()

    @property
    def removed(self) -> Money:
        return sum((amount for _, amount in self.removals), Money.zero(self.total.currency))

    @property
    def remaining(self) -> Money:
        if not self.removals:
            return self.total - self.recognized
        return self.total - self.recognized - self.removed


def _scheduled(done: Money, amount: Money, start: date, end: date, through: date) -> Money:
    """`done` plus `amount` spread ratably by day over [start, end), through `through`."""
    if start >= end:
        return done + amount
    elapsed = max(0, (min(through + timedelta(days=1), end) - start).days)
    return done + fraction_of(amount, elapsed, (end - start).days)


def scheduled_through(
    total: Money,
    period: Period,
    removals: Sequence[tuple[date, Money]],
    through: date,
) -> Money:
    """Cumulative revenue a line should have recognized by the end of `through`.

    Without removals this is `recognized_through`. Each removal dated by then
    (deferred revenue a credit note, refund or write-off took) is prospective:
    what the schedule had reached the day before stays, and what the line still
    has to recognize in all (its total less every removal so far) is spread
    ratably over the service days from the removal's date, cumulatively
    rounded. Should a removal take more than the schedule had left (runs lagged
    behind it), the schedule stays where it was. Positive amounts; the caller
    handles signs.
    """
    total = total.quantized()
    done, amount, start = Money.zero(total.currency), total, period.start
    to_recognize = total
    for day, removed in removals:
        if day > through:
            break
        at = min(max(day, start), period.end)
        reached = _scheduled(done, amount, start, period.end, at - timedelta(days=1))
        to_recognize -= removed
        done, start = reached, at
        left = to_recognize - reached
        amount = left if left.amount > 0 else Money.zero(total.currency)
    return _scheduled(done, amount, start, period.end, through)


def recognition_postings(
    line: LineProgress, through: date, closed: frozenset[str] = frozenset()
) -> tuple[tuple[date, Money], ...]:
    """What a run through `through` posts for the line, month by month.

    For each calendar month of the service period up to `through`, what was
    earned by the month's last day (or by `through` in its own month) less what
    is already recognized, dated on that day — or on the first open day when
    the month is closed (`closed` holds YYYY-MM names); what would be dated
    after `through` waits for a later run. Never more than remains deferred,
    never backwards, so a repeated run posts nothing and one run through a
    later date posts what monthly runs would have.
    """
    if line.total.amount < 0:  # a credit line: the same rule, mirrored
        mirrored = LineProgress(
            -line.total,
            line.period,
            -line.recognized,
            tuple((day, -amount) for day, amount in line.removals),
        )
        mirrored_postings = recognition_postings(mirrored, through, closed)
        return tuple((on, -amount) for on, amount in mirrored_postings)
    currency = line.total.currency
    posted = line.recognized.amount
    left = line.remaining.amount
    last = min(through, line.period.end - timedelta(days=1))
    out: dict[date, Decimal] = {}
    month = _first_month_due(line).replace(day=1)
    while month <= last and left > 0:
        month = _next_month(month)
        # Dated on the month's last day even when service ends before it, as a
        # month-end run would date it.
        day = min(month - timedelta(days=1), through)
        if line.removals:
            target = scheduled_through(line.total, line.period, line.removals, day)
        else:
            target = recognized_through(line.total, line.period, day)
        due = min(target.amount - posted, left)
        if due > 0:
            on = first_open_day(day, closed) if closed else day
            if on > through:
                break  # later months land on that day or later, past `through` too
            out[on] = out.get(on, Decimal(0)) + due
            posted, left = posted + due, left - due
    return tuple((on, Money(amount, currency)) for on, amount in sorted(out.items()))


def _first_month_due(line: LineProgress) -> date:
    """A day in or before the first month in which the line has something due.
    On days whose exact share (total × elapsed ÷ period days) is at most what is
    recognized, the share rounded to the minor unit is too: a run skips them."""
    period, total, recognized = line.period, line.total.amount, line.recognized.amount
    if line.removals or recognized <= 0 or total <= 0:
        return period.start
    days = int(recognized * period.days / total)
    return period.start + timedelta(days=min(days, period.days - 1))


def _next_month(first: date) -> date:
    return date(first.year + 1, 1, 1) if first.month == 12 else date(first.year, first.month + 1, 1)


def check_through(through: date, today: date) -> None:
    """A run recognizes up to the book's today, never beyond it."""
    if through > today:
        raise InvalidBillingRequest(
            f"through {through} is after the book's today ({today}): revenue is recognized"
            " only for service already delivered; advance the clock first (POST /v1/clock)"
            " or recognize through today",
            through=through.isoformat(),
            today=today.isoformat(),
        )
