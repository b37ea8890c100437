"""Billing periods: anchor-day months, leap days, stubs and period lookup."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import islice, pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.periods import (
    BillingCycle,
    Interval,
    InvalidPeriod,
    Period,
    billing_periods,
    month_of,
    next_period_end,
    period_containing,
)


def periods(cycle: BillingCycle, n: int) -> list[tuple[date, date]]:
    return [(p.start, p.end) for p in islice(billing_periods(cycle), n)]


def test_month_end_anchor_keeps_its_day() -> None:
    anchor = date(2026, 1, 31)
    assert next_period_end(anchor, date(2026, 1, 31), Interval.MONTH) == date(2026, 2, 28)
    assert next_period_end(anchor, date(2026, 2, 28), Interval.MONTH) == date(2026, 3, 31)
    assert next_period_end(anchor, date(2026, 3, 31), Interval.MONTH) == date(2026, 4, 30)


def test_month_end_anchor_in_a_leap_year() -> None:
    anchor = date(2024, 1, 31)
    assert next_period_end(anchor, anchor, Interval.MONTH) == date(2024, 2, 29)
    assert next_period_end(anchor, date(2024, 2, 29), Interval.MONTH) == date(2024, 3, 31)


def test_leap_day_annual_anchor() -> None:
    cycle = BillingCycle(date(2024, 2, 29), date(2024, 2, 29), Interval.YEAR)
    assert periods(cycle, 5) == [
        (date(2024, 2, 29), date(2025, 2, 28)),
        (date(2025, 2, 28), date(2026, 2, 28)),
        (date(2026, 2, 28), date(2027, 2, 28)),
        (date(2027, 2, 28), date(2028, 2, 29)),
        (date(2028, 2, 29), date(2029, 2, 28)),
    ]


def test_quarterly_and_multi_week_counts() -> None:
    anchor = date(2026, 1, 31)
    assert next_period_end(anchor, anchor, Interval.MONTH, 3) == date(2026, 4, 30)
    assert next_period_end(anchor, date(2026, 4, 30), Interval.MONTH, 3) == date(2026, 7, 31)
    monday = date(2026, 1, 5)
    assert next_period_end(monday, monday, Interval.WEEK, 2) == date(2026, 1, 19)
    assert next_period_end(monday, monday, Interval.DAY) == date(2026, 1, 6)


def test_first_period_is_a_stub_up_to_the_anchor() -> None:
    cycle = BillingCycle(date(2026, 1, 15), date(2026, 2, 1), Interval.MONTH)
    assert periods(cycle, 3) == [
        (date(2026, 1, 15), date(2026, 2, 1)),
        (date(2026, 2, 1), date(2026, 3, 1)),
        (date(2026, 3, 1), date(2026, 4, 1)),
    ]


def test_anchor_after_start_in_the_future_still_stubs() -> None:
    # Anchor set to a later date: earlier boundaries are the anchor shifted backwards.
    cycle = BillingCycle(date(2026, 1, 10), date(2026, 6, 20), Interval.MONTH)
    assert periods(cycle, 2) == [
        (date(2026, 1, 10), date(2026, 1, 20)),
        (date(2026, 1, 20), date(2026, 2, 20)),
    ]


def test_billing_periods_until() -> None:
    cycle = BillingCycle(date(2026, 1, 1), date(2026, 1, 1), Interval.MONTH)
    assert len(list(billing_periods(cycle, until=date(2026, 4, 1)))) == 3
    assert len(list(billing_periods(cycle, until=date(2026, 4, 2)))) == 4


def test_period_containing() -> None:
    cycle = BillingCycle(date(2026, 1, 15), date(2026, 1, 31), Interval.MONTH)

    def on(month: int, day: int) -> tuple[date, date]:
        period = period_containing(cycle, date(2026, month, day))
        return period.start, period.end

    assert on(1, 15) == (date(2026, 1, 15), date(2026, 1, 31))  # the stub
    assert on(2, 27) == (date(2026, 1, 31), date(2026, 2, 28))
    assert on(2, 28) == (date(2026, 2, 28), date(2026, 3, 31))
    with pytest.raises(InvalidPeriod) as err:
        period_containing(cycle, date(2026, 1, 14))
    assert err.value.code == "invalid_period"


def test_invalid_inputs_have_clear_errors() -> None:
    with pytest.raises(InvalidPeriod, match="must end after it starts"):
        Period(date(2026, 1, 2), date(2026, 1, 2))
    with pytest.raises(InvalidPeriod, match="interval_count"):
        BillingCycle(date(2026, 1, 1), date(2026, 1, 1), Interval.MONTH, 0)
    assert InvalidPeriod.status == 422


def test_month_of() -> None:
    assert month_of(date(2024, 2, 10)) == Period(date(2024, 2, 1), date(2024, 3, 1))
    assert month_of(date(2026, 12, 31)) == Period(date(2026, 12, 1), date(2027, 1, 1))


dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31))
intervals = st.sampled_from(list(Interval))


@given(start=dates, anchor=dates, interval=intervals, count=st.integers(1, 13))
def test_periods_are_contiguous_and_on_anchor_days(
    start: date, anchor: date, interval: Interval, count: int
) -> None:
    cycle = BillingCycle(start, anchor, interval, count)
    ps = list(islice(billing_periods(cycle), 6))
    assert ps[0].start == start
    for a, b in pairwise(ps):
        assert a.end == b.start
    for p in ps:
        assert p.days > 0
        if interval in (Interval.MONTH, Interval.YEAR):
            # Boundaries keep the anchor day unless the month is too short.
            last = (p.end.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
            assert p.end.day == min(anchor.day, last.day)
    for p in ps[1:]:
        assert next_period_end(anchor, p.start, interval, count) == p.end


@given(
    start=dates,
    anchor=dates,
    interval=intervals,
    count=st.integers(1, 13),
    offset=st.integers(0, 2000),
)
def test_period_containing_contains(
    start: date, anchor: date, interval: Interval, count: int, offset: int
) -> None:
    cycle = BillingCycle(start, anchor, interval, count)
    day = start + timedelta(days=offset)
    period = period_containing(cycle, day)
    assert period.contains(day)
    assert period in list(billing_periods(cycle, until=period.end))
