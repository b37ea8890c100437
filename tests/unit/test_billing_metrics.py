"""MRR rules over plain data (billing.metrics)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.discounts import AmountDiscount, PercentDiscount
from billing.metrics import (
    Cohort,
    ItemVersion,
    MonthMrr,
    MrrReport,
    SubscriptionFacts,
    customer_changes,
    customer_mrr,
    customer_mrr_on,
    month_end,
    month_range,
    months_between,
    movements,
    mrr_report,
    report_from_changes,
    shape_changes,
    subscription_mrr,
    usage_mrr,
)
from billing.periods import Interval
from billing.rating import FlatCharge
from billing.subscriptions import Coupon, CouponDuration
from ledger.money import Money

D = Decimal


def _sub(
    amount: str,
    start: date,
    *,
    customer: str = "a",
    interval: Interval = Interval.MONTH,
    count: int = 1,
    **extra: object,
) -> SubscriptionFacts:
    item = ItemVersion(FlatCharge("USD", D(amount)), D(1), start, None)
    return SubscriptionFacts(customer, "USD", start, start, interval, count, (item,), **extra)  # type: ignore[arg-type]


def test_annual_is_a_twelfth_and_week_day_normalized() -> None:
    assert subscription_mrr(
        _sub("1200.00", date(2026, 2, 1), interval=Interval.YEAR), date(2026, 2, 28)
    ) == D("100")
    week = subscription_mrr(
        _sub("12.00", date(2026, 2, 1), interval=Interval.WEEK), date(2026, 2, 28)
    )
    assert week == D(52)
    quarter = _sub("300.00", date(2026, 2, 1), count=3)
    assert subscription_mrr(quarter, date(2026, 2, 28)) == D(100)


def test_out_of_service_counts_nothing() -> None:
    day = date(2026, 3, 31)
    assert subscription_mrr(_sub("100", date(2026, 4, 1)), day) == 0
    assert subscription_mrr(_sub("100", date(2026, 1, 1), cancel_at=date(2026, 3, 31)), day) == 0
    assert subscription_mrr(_sub("100", date(2026, 1, 1), cancel_at=date(2026, 4, 1)), day) == 100
    assert subscription_mrr(_sub("100", date(2026, 1, 1), paused_on=date(2026, 3, 2)), day) == 0
    assert subscription_mrr(_sub("100", date(2026, 3, 1), trial_end=date(2026, 4, 1)), day) == 0
    assert subscription_mrr(_sub("100", date(2026, 3, 1), trial_end=date(2026, 3, 31)), day) == 100


def test_recurring_discounts_reduce_once_does_not() -> None:
    start, day = date(2026, 1, 1), date(2026, 3, 31)
    forever = Coupon(PercentDiscount(D(25)), CouponDuration.FOREVER)
    assert subscription_mrr(_sub("100", start, coupon=forever), day) == D(75)
    off = Coupon(AmountDiscount(Money(D("10.00"), "USD")), CouponDuration.REPEATING, 3)
    assert subscription_mrr(_sub("100", start, coupon=off), day) == D(90)  # third paid period
    assert subscription_mrr(_sub("100", start, coupon=off), date(2026, 4, 30)) == D(100)
    once = Coupon(PercentDiscount(D(50)), CouponDuration.ONCE)
    assert subscription_mrr(_sub("100", start, coupon=once), date(2026, 1, 31)) == D(100)


def test_customer_mrr_rounds_once_per_customer() -> None:
    subs = [_sub("10.00", date(2026, 1, 1), count=3) for _ in range(3)]
    assert customer_mrr(subs, date(2026, 1, 31)) == {("USD", "a"): D("10.00")}


def test_usage_trailing_three_month_average() -> None:
    assert usage_mrr([D(1), D(30), D(60), D(90)]) == D(60)
    assert usage_mrr([D(30)]) == D(10)


def test_golden_movements_reconcile() -> None:
    upgraded = SubscriptionFacts(
        "a",
        "USD",
        date(2026, 1, 10),
        date(2026, 1, 10),
        Interval.MONTH,
        1,
        (
            ItemVersion(FlatCharge("USD", D("100.00")), D(1), date(2026, 1, 10), date(2026, 3, 3)),
            ItemVersion(FlatCharge("USD", D("150.00")), D(1), date(2026, 3, 3), None),
        ),
        cancel_at=date(2026, 5, 1),
    )
    subs = [
        upgraded,
        _sub("1200.00", date(2026, 2, 1), customer="b", interval=Interval.YEAR),
        _sub("100.00", date(2026, 7, 6)),
    ]
    report = mrr_report(subs, date(2026, 1, 1), date(2026, 8, 1))
    got = [
        (
            f"{m.month:%m}",
            m.start,
            m.new,
            m.expansion,
            m.contraction,
            m.churn,
            m.reactivation,
            m.end,
        )
        for m in report.months
    ]
    assert got == [
        ("01", 0, 100, 0, 0, 0, 0, 100),
        ("02", 100, 100, 0, 0, 0, 0, 200),
        ("03", 200, 0, 50, 0, 0, 0, 250),
        ("04", 250, 0, 0, 0, 0, 0, 250),
        ("05", 250, 0, 0, 0, -150, 0, 100),
        ("06", 100, 0, 0, 0, 0, 0, 100),
        ("07", 100, 0, 0, 0, 0, 100, 200),
        ("08", 200, 0, 0, 0, 0, 0, 200),
    ]
    for m in report.months:
        assert m.start + m.new + m.expansion + m.contraction + m.churn + m.reactivation == m.end
    may = report.months[4]
    assert (may.logo_churn_rate, may.revenue_churn_rate, may.nrr, may.grr, may.arpa) == (
        D("0.5000"),
        D("0.6000"),
        D("0.4000"),
        D("0.4000"),
        D("100.00"),
    )
    jan = report.cohorts[0]
    assert (jan.month, jan.customers, jan.start_mrr) == (date(2026, 1, 1), {"a"}, D(100))
    assert jan.retained[date(2026, 5, 1)] == (0, 0)
    assert jan.retained[date(2026, 7, 1)] == (1, D(100))
    # ARPA in August 100.00; revenue churn averaged over the 7 months that had a start
    # (January had none): 0.6 / 7 = 0.0857; 100.00 / 0.0857 = 1166.86.
    assert report.ltv()["USD"] == {
        "arpa": D("100.00"),
        "revenue_churn_rate": D("0.0857"),
        "ltv": D("1166.86"),
    }


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-13", "2026-12", "from must be a month"),
        ("2026-1", "2026-12", "from must be a month"),
        ("2026-01", "26-12", "to must be a month"),
        ("2026-05", "2026-04", "ends (2026-04) before it starts (2026-05)"),
        ("2000-01", "2026-04", "at most 120 months"),
    ],
)
def test_month_range_refuses(first: str, last: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        month_range(first, last)


_DAYS = st.dates(date(2025, 11, 1), date(2027, 2, 1))


@st.composite
def _facts(draw: st.DrawFn) -> SubscriptionFacts:
    start = draw(_DAYS)
    versions = []
    day = start
    for _ in range(draw(st.integers(1, 3))):
        end = draw(st.one_of(st.none(), st.dates(day + timedelta(days=1), day + timedelta(400))))
        amount = draw(st.sampled_from(["9.99", "100.00", "1200.00", "33.33"]))
        versions.append(
            ItemVersion(FlatCharge("USD", D(amount)), D(draw(st.integers(1, 3))), day, end)
        )
        if end is None:
            break
        day = end
    optional = st.one_of(st.none(), _DAYS)
    coupon = draw(st.sampled_from([
        None,
        Coupon(PercentDiscount(D(25)), CouponDuration.FOREVER),
        Coupon(AmountDiscount(Money(D("10.00"), "USD")), CouponDuration.REPEATING, 2),
        Coupon(PercentDiscount(D(50)), CouponDuration.ONCE),
    ]))  # fmt: skip
    return SubscriptionFacts(
        draw(st.sampled_from(["a", "b", "c"])),
        "USD",
        start,
        start,
        draw(st.sampled_from([Interval.MONTH, Interval.YEAR, Interval.WEEK])),
        draw(st.integers(1, 3)),
        tuple(versions),
        trial_end=draw(optional),
        cancel_at=draw(optional),
        paused_on=draw(optional),
        coupon=coupon,
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(_facts(), max_size=6))
def test_rating_only_at_change_days_gives_every_month_ends_figures(
    subs: list[SubscriptionFacts],
) -> None:
    # customer_mrr_on skips subscriptions whose value cannot have changed since the last
    # month end; it must agree with rating every subscription at every month end.
    days = [month_end(m) for m in months_between(date(2025, 10, 1), date(2027, 3, 1))]
    assert customer_mrr_on(subs, days) == [customer_mrr(subs, d) for d in days]


def _report_month_by_month(subs: list[SubscriptionFacts], first: date, last: date) -> MrrReport:
    """The definition mrr_report must agree with: every customer's MRR at every month
    end (customer_mrr), consecutive month ends compared (movements), cohorts by the month
    a customer first had MRR."""
    earliest = min([*(s.start for s in subs), first])
    before: dict[tuple[str, str], Decimal] = {}
    seen: set[tuple[str, str]] = set()
    out: list[MonthMrr] = []
    cohorts: dict[tuple[date, str], Cohort] = {}
    member: dict[tuple[str, str], Cohort] = {}
    for month in months_between(earliest, last):
        after = customer_mrr(subs, month_end(month))
        for key, value in after.items():
            if key not in member:
                cohort = cohorts.setdefault((month, key[0]), Cohort(month, key[0]))
                cohort.customers.add(key[1])
                cohort.start_mrr += value
                member[key] = cohort
        moved = movements(month, before, after, seen)
        if month >= first:
            out.extend(moved[c] for c in sorted(moved))
            for cohort in cohorts.values():
                if cohort.month >= first:
                    kept = [
                        after[(cohort.currency, c)]
                        for c in cohort.customers
                        if (cohort.currency, c) in after
                    ]
                    cohort.retained[month] = (len(kept), sum(kept, Decimal(0)))
        before = after
    return MrrReport(out, [c for (m, _), c in sorted(cohorts.items()) if m >= first])


@st.composite
def _book(draw: st.DrawFn) -> list[SubscriptionFacts]:
    """Subscriptions of a few customers in USD, EUR and JPY (whole yen: rounding to 0
    places), up to eight for one customer."""
    subs = draw(st.lists(_facts(), max_size=8))
    return [
        replace(
            s,
            customer=draw(st.sampled_from(["a", "b", "c", "d"])),
            currency=draw(st.sampled_from(["USD", "USD", "EUR", "JPY"])),
        )
        for s in subs
    ]


@settings(max_examples=300, deadline=None)
@given(_book(), st.sampled_from([date(2025, 10, 1), date(2026, 1, 1), date(2026, 6, 1)]))
def test_report_from_changes_equals_the_month_by_month_definition(
    subs: list[SubscriptionFacts], first: date
) -> None:
    # mrr_report works only from the months in which some customer's MRR changes; its
    # months, movements, customer counts and cohorts must be the month-by-month ones.
    last = date(2027, 3, 1)
    assert mrr_report(subs, first, last) == _report_month_by_month(subs, first, last)


@settings(max_examples=300, deadline=None)
@given(_book(), st.sampled_from([date(2025, 10, 1), date(2026, 1, 1), date(2026, 6, 1)]))
def test_report_from_shapes_equals_the_month_by_month_definition(
    subs: list[SubscriptionFacts], first: date
) -> None:
    # billing.postgres.metrics.mrr gets the subscriptions grouped by shape (all but the
    # customer) and each customer's shapes sorted, not its subscriptions in table order;
    # rated per shape, the report must still be the month-by-month one.
    last = date(2027, 3, 1)
    shapes: list[SubscriptionFacts] = []
    holders: dict[tuple[str, str], list[int]] = {}
    for sub in subs:
        shape = replace(sub, customer="")
        if shape not in shapes:
            shapes.append(shape)
        holders.setdefault((sub.currency, sub.customer), []).append(shapes.index(shape))
    earliest = min([*(s.start for s in subs), first])
    days = [month_end(m) for m in months_between(earliest, last)]
    changes = shape_changes(shapes, [(k, sorted(v)) for k, v in holders.items()], days)
    assert changes == customer_changes(subs, days)
    report = report_from_changes(changes, earliest, first, last)
    assert report == _report_month_by_month(subs, first, last)


def test_report_from_changes_on_churn_and_reactivation() -> None:
    # a: 100.00 from Jan 10, canceled Mar 1, back Jun 6 (reactivation); b: a 1,200.00 year
    # from Feb 1 (new, 100.00), upgraded in April by a second item of 12.00 (expansion).
    subs = [
        _sub("100.00", date(2026, 1, 10), cancel_at=date(2026, 3, 1)),
        _sub("100.00", date(2026, 6, 6)),
        _sub("1200.00", date(2026, 2, 1), customer="b", interval=Interval.YEAR),
        _sub("144.00", date(2026, 4, 15), customer="b", interval=Interval.YEAR),
    ]
    report = mrr_report(subs, date(2026, 1, 1), date(2026, 7, 1))
    assert report == _report_month_by_month(subs, date(2026, 1, 1), date(2026, 7, 1))
    got = [
        (f"{m.month:%m}", m.start, m.new, m.expansion, m.churn, m.reactivation, m.end)
        for m in report.months
    ]
    assert got == [
        ("01", 0, D("100.00"), 0, 0, 0, D("100.00")),
        ("02", D("100.00"), D("100.00"), 0, 0, 0, D("200.00")),
        ("03", D("200.00"), 0, 0, D("-100.00"), 0, D("100.00")),
        ("04", D("100.00"), 0, D("12.00"), 0, 0, D("112.00")),
        ("05", D("112.00"), 0, 0, 0, 0, D("112.00")),
        ("06", D("112.00"), 0, 0, 0, D("100.00"), D("212.00")),
        ("07", D("212.00"), 0, 0, 0, 0, D("212.00")),
    ]
    assert [(c.month.month, c.retained[date(2026, 7, 1)]) for c in report.cohorts] == [
        (1, (1, D("100.00"))),
        (2, (1, D("112.00"))),
    ]
