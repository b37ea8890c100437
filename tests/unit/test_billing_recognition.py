"""Ratable-by-day recognition: cumulative figures and monthly schedules."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.errors import InvalidBillingRequest
from billing.periods import Period, month_of
from billing.recognition import (
    LineProgress,
    MonthlyRecognition,
    check_through,
    elapsed_days,
    recognition_due,
    recognition_postings,
    recognition_schedule,
    recognized_through,
    scheduled_through,
)
from billing.reports import waterfall
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


# --- catch-up runs month by month (issue 7, item 3)

JAN_TO_APR = Period(date(2026, 1, 1), date(2026, 4, 1))


def postings(
    line: LineProgress, through: date, closed: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    return [
        (on.isoformat(), str(amount.amount))
        for on, amount in recognition_postings(line, through, closed)
    ]


def test_one_run_through_march_posts_31_28_31_on_each_month_end() -> None:
    line = LineProgress(usd("365.00"), YEAR_2026, usd("0"))
    assert postings(line, date(2026, 3, 31)) == [
        ("2026-01-31", "31.00"),
        ("2026-02-28", "28.00"),
        ("2026-03-31", "31.00"),
    ]


def test_monthly_31_from_jan_15_run_once_through_feb_28_posts_17_then_14() -> None:
    line = LineProgress(usd("31.00"), Period(date(2026, 1, 15), date(2026, 2, 15)), usd("0"))
    # Dated Feb 28 like a month-end run, though service ended on Feb 14.
    assert postings(line, date(2026, 2, 28)) == [("2026-01-31", "17.00"), ("2026-02-28", "14.00")]


def test_a_run_mid_month_is_dated_on_its_own_day_and_the_next_one_catches_up() -> None:
    line = LineProgress(usd("365.00"), YEAR_2026, usd("0"))
    assert postings(line, date(2026, 1, 20)) == [("2026-01-20", "20.00")]
    later = LineProgress(usd("365.00"), YEAR_2026, usd("20.00"))
    assert postings(later, date(2026, 2, 28)) == [("2026-01-31", "11.00"), ("2026-02-28", "28.00")]
    # Already recognized further than the schedule: nothing, never backwards.
    ahead = LineProgress(usd("365.00"), YEAR_2026, usd("59.00"))
    assert postings(ahead, date(2026, 2, 28)) == []


def test_a_closed_month_is_dated_on_the_first_open_day() -> None:
    line = LineProgress(usd("365.00"), YEAR_2026, usd("0"))
    assert postings(line, date(2026, 3, 31), frozenset({"2026-01"})) == [
        ("2026-02-01", "31.00"),
        ("2026-02-28", "28.00"),
        ("2026-03-31", "31.00"),
    ]
    both = frozenset({"2026-01", "2026-02"})
    # The first open day is after the run's date: nothing yet, a later run posts it.
    assert postings(line, date(2026, 2, 28), both) == []
    assert postings(line, date(2026, 3, 31), both) == [
        ("2026-03-01", "59.00"),
        ("2026-03-31", "31.00"),
    ]


def test_a_run_past_the_books_today_is_refused() -> None:
    check_through(date(2026, 3, 31), date(2026, 3, 31))
    with pytest.raises(InvalidBillingRequest) as refused:
        check_through(date(2099, 12, 31), date(2026, 3, 31))
    assert refused.value.status == 422


@settings(deadline=None)
@given(line=lines(), recognized_days=st.integers(0, 400), days=st.integers(0, 1200))
def test_one_run_posts_what_month_end_runs_would(
    line: tuple[Money, Period], recognized_days: int, days: int
) -> None:
    total, period = line
    start = recognized_through(total, period, period.start + timedelta(days=recognized_days))
    through = period.start + timedelta(days=days)
    once = dict(recognition_postings(LineProgress(total, period, start), through))
    monthly: dict[date, Money] = {}
    recognized = start
    month = month_of(period.start)
    while month.start <= through:
        day = min(month.end - timedelta(days=1), through)
        for on, amount in recognition_postings(LineProgress(total, period, recognized), day):
            monthly[on] = monthly.get(on, Money.zero(total.currency)) + amount
            recognized += amount
        month = month_of(month.end)
    assert once == monthly
    assert recognized == max(
        start, recognized_through(total, period, through), key=lambda m: abs(m.amount)
    )


@settings(deadline=None)
@given(line=lines(), recognized_days=st.integers(0, 400), days=st.integers(0, 1200))
def test_each_month_is_dated_with_what_its_schedule_adds(
    line: tuple[Money, Period], recognized_days: int, days: int
) -> None:
    """Against a plain reading of the rule: month by month, the cumulative share
    at the month's last day (or `through`) less what came before."""
    total, period = line
    recognized = recognized_through(total, period, period.start + timedelta(days=recognized_days))
    through = period.start + timedelta(days=days)
    expected = []
    before = recognized
    month = month_of(period.start)
    while month.start <= min(through, period.end - timedelta(days=1)):
        day = min(month.end - timedelta(days=1), through)
        cumulative = recognized_through(total, period, day)
        if abs(cumulative.amount) > abs(before.amount):
            expected.append((day, cumulative - before))
            before = cumulative
        month = month_of(month.end)
    got = recognition_postings(LineProgress(total, period, recognized), through)
    assert list(got) == expected


# --- changes after recognition started are prospective (issue 7, item 4)


def test_golden_credit_note_on_feb_1_spreads_the_14_left_over_59_days() -> None:
    removals = ((date(2026, 2, 1), usd("45.00")),)
    assert scheduled_through(usd("90.00"), JAN_TO_APR, removals, date(2026, 1, 31)) == usd("31.00")
    # 31.00 + round(14.00 × 28 / 59)
    assert scheduled_through(usd("90.00"), JAN_TO_APR, removals, date(2026, 2, 28)) == usd("37.64")
    assert scheduled_through(usd("90.00"), JAN_TO_APR, removals, date(2026, 3, 31)) == usd("45.00")
    line = LineProgress(usd("90.00"), JAN_TO_APR, usd("31.00"), removals)
    assert postings(line, date(2026, 3, 31)) == [("2026-02-28", "6.64"), ("2026-03-31", "7.36")]


def test_runs_that_lagged_behind_the_change_post_the_same_schedule() -> None:
    removals = ((date(2026, 2, 1), usd("45.00")),)
    line = LineProgress(usd("90.00"), JAN_TO_APR, usd("0"), removals)
    assert postings(line, date(2026, 3, 31)) == [
        ("2026-01-31", "31.00"),
        ("2026-02-28", "6.64"),
        ("2026-03-31", "7.36"),
    ]


def test_a_removal_larger_than_the_schedule_left_recognizes_only_what_is_deferred() -> None:
    # Nothing recognized yet when 80.00 of 90.00 was taken from deferred revenue.
    line = LineProgress(usd("90.00"), JAN_TO_APR, usd("0"), ((date(2026, 2, 1), usd("80.00")),))
    assert postings(line, date(2026, 3, 31)) == [("2026-01-31", "10.00")]


def test_a_removal_before_service_starts_lowers_the_whole_schedule() -> None:
    line = LineProgress(usd("90.00"), JAN_TO_APR, usd("0"), ((date(2025, 12, 20), usd("45.00")),))
    assert postings(line, date(2026, 3, 31)) == [
        ("2026-01-31", "15.50"),
        ("2026-02-28", "14.00"),
        ("2026-03-31", "15.50"),
    ]


def test_two_changes_each_restart_from_their_own_date() -> None:
    removals = ((date(2026, 2, 1), usd("45.00")), (date(2026, 3, 1), usd("4.00")))
    line = LineProgress(usd("90.00"), JAN_TO_APR, usd("37.64"), removals)
    # On Mar 1, 3.36 is left (90.00 − 49.00 removed − 37.64 recognized) over 31 days.
    assert postings(line, date(2026, 3, 31)) == [("2026-03-31", "3.36")]
    # 37.64 + round(3.36 × 15 / 31)
    assert scheduled_through(usd("90.00"), JAN_TO_APR, removals, date(2026, 3, 15)) == usd("39.27")


@settings(deadline=None)
@given(
    line=lines(),
    cuts=st.lists(st.tuples(st.integers(-30, 1200), st.integers(0, 100)), max_size=3),
    run_every=st.integers(7, 60),
)
def test_with_removals_the_line_drains_exactly_and_never_goes_back(
    line: tuple[Money, Period], cuts: list[tuple[int, int]], run_every: int
) -> None:
    total, period = line
    sign = -1 if total.amount < 0 else 1
    removals: list[tuple[date, Money]] = []
    left = total
    for offset, percent in sorted(cuts):
        part = Money.from_minor_units(left.minor_units * percent // 300, total.currency)
        removals.append((period.start + timedelta(days=offset), part))
        left -= part
    progress = LineProgress(total, period, Money.zero(total.currency), tuple(removals))
    day = period.start
    while True:
        for _, amount in recognition_postings(progress, day):
            assert amount.amount * sign > 0
            progress = LineProgress(total, period, progress.recognized + amount, tuple(removals))
        assert progress.remaining.amount * sign >= 0
        if day >= period.end + timedelta(days=run_every):
            break
        day += timedelta(days=run_every)
    # Runs through the end of service leave nothing deferred once every removal is past.
    latest = max([period.end, *(on for on, _ in removals)])
    final = recognition_postings(progress, latest)
    assert progress.remaining == sum((a for _, a in final), Money.zero(total.currency))


def test_the_waterfall_says_what_month_end_runs_will_post() -> None:
    removals = ((date(2026, 2, 1), usd("45.00")),)
    line = LineProgress(usd("90.00"), JAN_TO_APR, usd("31.00"), removals)
    assert waterfall(line, date(2026, 2, 1)) == [
        (date(2026, 2, 1), usd("6.64")),
        (date(2026, 3, 1), usd("7.36")),
    ]
    # January not yet recognized on Feb 15: the catch-up shows in February.
    lagging = LineProgress(usd("90.00"), JAN_TO_APR, usd("0"), removals)
    assert waterfall(lagging, date(2026, 2, 15)) == [
        (date(2026, 2, 1), usd("37.64")),
        (date(2026, 3, 1), usd("7.36")),
    ]


@settings(deadline=None)
@given(line=lines(), recognized_days=st.integers(0, 400), as_of_days=st.integers(-40, 1200))
def test_the_waterfall_sums_to_what_is_deferred(
    line: tuple[Money, Period], recognized_days: int, as_of_days: int
) -> None:
    total, period = line
    recognized = recognized_through(total, period, period.start + timedelta(days=recognized_days))
    progress = LineProgress(total, period, recognized)
    months = waterfall(progress, period.start + timedelta(days=as_of_days))
    assert sum((amount for _, amount in months), Money.zero(total.currency)) == progress.remaining
