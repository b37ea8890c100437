"""Ratable-by-day recognition: cumulative figures and monthly schedules."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.periods import Period
from billing.recognition import (
    MonthlyRecognition,
    elapsed_days,
    recognition_due,
    recognition_schedule,
    recognized_through,
)
from ledger.errors import TooPrecise
from ledger.money import Money

YEAR_2026 = Period(date(2026, 1, 1), date(2027, 1, 1))


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def amounts(schedule: list[MonthlyRecognition]) -> list[str]:
    return [str(entry.amount.amount) for entry in schedule]


def test_golden_monthly_from_the_15th() -> None:
    period = Period(date(2026, 1, 15), date(2026, 2, 15))
    assert str(recognized_through(usd("31.00"), period, date(2026, 1, 31)).amount) == "17.00"
    schedule = recognition_schedule(usd("31.00"), period)
    assert [(e.month, e.through) for e in schedule] == [
        (date(2026, 1, 1), date(2026, 1, 31)),
        (date(2026, 2, 1), date(2026, 2, 14)),
    ]
    assert amounts(schedule) == ["17.00", "14.00"]


def test_golden_annual_365() -> None:
    schedule = recognition_schedule(usd("365.00"), YEAR_2026)
    assert amounts(schedule)[:3] == ["31.00", "28.00", "31.00"]
    assert len(schedule) == 12


def test_golden_annual_1200() -> None:
    schedule = recognition_schedule(usd("1200.00"), YEAR_2026)
    assert amounts(schedule)[:2] == ["101.92", "92.05"]
    assert sum((e.amount for e in schedule), usd("0")) == usd("1200.00")


def test_through_is_end_of_day_inclusive() -> None:
    period = Period(date(2026, 1, 15), date(2026, 2, 15))
    assert elapsed_days(period, date(2026, 1, 14)) == 0
    assert elapsed_days(period, date(2026, 1, 15)) == 1
    assert elapsed_days(period, date(2026, 2, 14)) == 31
    assert elapsed_days(period, date(2026, 12, 31)) == 31
    assert recognized_through(usd("31.00"), period, date(2026, 1, 1)) == usd("0.00")
    assert recognized_through(usd("31.00"), period, date(2027, 1, 1)) == usd("31.00")


def test_credit_lines_are_symmetric() -> None:
    schedule = recognition_schedule(usd("-1200.00"), YEAR_2026)
    assert amounts(schedule)[:2] == ["-101.92", "-92.05"]


def test_runs_post_the_difference() -> None:
    period = YEAR_2026
    first = recognition_due(usd("1200.00"), period, date(2026, 1, 31), usd("0"))
    second = recognition_due(usd("1200.00"), period, date(2026, 2, 28), first)
    assert (first, second) == (usd("101.92"), usd("92.05"))


def test_leap_year_annual() -> None:
    schedule = recognition_schedule(usd("366.00"), Period(date(2024, 1, 1), date(2025, 1, 1)))
    assert amounts(schedule)[:3] == ["31.00", "29.00", "31.00"]


def test_jpy_and_kwd() -> None:
    jpy = recognition_schedule(Money.of("10000", "JPY"), YEAR_2026)
    assert amounts(jpy)[:2] == ["849", "767"]  # 849.3, 1616.4
    kwd = recognition_schedule(Money.of("100.000", "KWD"), YEAR_2026)
    assert amounts(kwd)[:2] == ["8.493", "7.671"]  # 8.4932, 16.1644
    assert sum((e.amount for e in kwd), Money.zero("KWD")) == Money.of("100", "KWD")


def test_total_finer_than_the_minor_unit_is_refused() -> None:
    with pytest.raises(TooPrecise):
        recognition_schedule(usd("1.005"), YEAR_2026)


@st.composite
def lines(draw: st.DrawFn) -> tuple[Money, Period]:
    currency = draw(st.sampled_from(["USD", "JPY", "KWD"]))
    total = Money.from_minor_units(draw(st.integers(-(10**12), 10**12)), currency)
    start = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 1, 1)))
    return total, Period(start, start + timedelta(days=draw(st.integers(1, 1100))))


@given(line=lines())
def test_schedule_sums_exactly_to_the_total(line: tuple[Money, Period]) -> None:
    total, period = line
    schedule = recognition_schedule(total, period)
    assert sum((e.amount for e in schedule), Money.zero(total.currency)) == total
    assert all(e.amount.fits_minor_unit() for e in schedule)
    # Every month moves in the direction of the total (cumulative is monotone).
    assert all(e.amount.amount * total.amount >= 0 for e in schedule)
    assert schedule[0].month <= period.start and schedule[-1].through == period.end - timedelta(1)


@given(line=lines(), offset=st.integers(-5, 1200))
def test_negated_total_recognizes_the_negation(line: tuple[Money, Period], offset: int) -> None:
    total, period = line
    day = period.start + timedelta(days=offset)
    assert recognized_through(-total, period, day) == -recognized_through(total, period, day)
