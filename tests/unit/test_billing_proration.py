"""Day-based proration: upgrades, quantity changes and cancellations."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.periods import InvalidPeriod, Period
from billing.proration import (
    InvalidProration,
    ProrationKind,
    cancel,
    change_price,
    change_quantity,
    prorate,
)
from ledger.money import Money, Rounding, minor_unit

APRIL = Period(date(2026, 4, 1), date(2026, 5, 1))


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def test_golden_upgrade_on_april_21() -> None:
    credit, charge = change_price(usd("90.00"), usd("120.00"), APRIL, date(2026, 4, 21))
    assert credit.kind is ProrationKind.CREDIT
    assert credit.amount.amount == Decimal("-30.00")
    assert str(credit.amount.amount) == "-30.00"
    assert charge.kind is ProrationKind.CHARGE
    assert str(charge.amount.amount) == "40.00"
    assert credit.service_period == charge.service_period == Period(date(2026, 4, 21), APRIL.end)


def test_downgrade_credits_more_than_it_charges() -> None:
    credit, charge = change_price(usd("120.00"), usd("90.00"), APRIL, date(2026, 4, 21))
    assert (credit.amount, charge.amount) == (usd("-40.00"), usd("30.00"))


def test_rounding_to_minor_unit_half_up_by_default() -> None:
    # 10.00 * 1 / 30 = 0.3333… ; 0.50 * 15 / 30 = 0.25 exactly; 0.05 * 1/2 = 0.025.
    assert prorate(usd("10.00"), APRIL, date(2026, 4, 30)) == usd("0.33")
    half = Period(date(2026, 1, 1), date(2026, 1, 3))
    assert prorate(usd("0.05"), half, date(2026, 1, 2)) == usd("0.03")
    assert prorate(usd("0.05"), half, date(2026, 1, 2), Rounding.HALF_EVEN) == usd("0.02")
    assert prorate(usd("-0.05"), half, date(2026, 1, 2)) == usd("-0.03")


def test_jpy_and_kwd() -> None:
    credit, charge = change_price(
        Money.of("1000", "JPY"), Money.of("3000", "JPY"), APRIL, date(2026, 4, 20)
    )
    # 11 of 30 days: 366.67 → 367 and 1100 exactly.
    assert (credit.amount, charge.amount) == (Money.of("-367", "JPY"), Money.of("1100", "JPY"))
    assert str(credit.amount.amount) == "-367"
    line = cancel(Money.of("10.000", "KWD"), APRIL, date(2026, 4, 10))
    assert line is not None
    assert str(line.amount.amount) == "-7.000"  # 21/30 of 10
    assert prorate(Money.of("1.000", "KWD"), APRIL, date(2026, 4, 30)) == Money.of("0.033", "KWD")


def test_leap_february() -> None:
    feb = Period(date(2024, 2, 1), date(2024, 3, 1))
    assert prorate(usd("29.00"), feb, date(2024, 2, 29)) == usd("1.00")


def test_quantity_change_uses_rounded_line_totals() -> None:
    lines = change_quantity(usd("9.99"), 3, 5, APRIL, date(2026, 4, 16))
    # 29.97 and 49.95 for 15 of 30 days: 14.985 → 14.99, 24.975 → 24.98.
    assert [line.amount for line in lines] == [usd("-14.99"), usd("24.98")]
    with pytest.raises(InvalidProration) as err:
        change_quantity(usd("9.99"), 3, -1, APRIL, date(2026, 4, 16))
    assert err.value.code == "invalid_proration"


def test_cancellation_credits_unused_time() -> None:
    line = cancel(usd("90.00"), APRIL, date(2026, 4, 1))
    assert line is not None and line.amount == usd("-90.00")
    assert cancel(usd("90.00"), APRIL, APRIL.end) is None
    assert change_price(usd("90.00"), usd("120.00"), APRIL, APRIL.end) == []


def test_change_outside_the_period_is_refused() -> None:
    with pytest.raises(InvalidPeriod, match="outside the billing period"):
        prorate(usd("90.00"), APRIL, date(2026, 5, 2))
    with pytest.raises(InvalidPeriod):
        change_price(usd("90.00"), usd("1.00"), APRIL, date(2026, 3, 31))
    with pytest.raises(InvalidPeriod):
        change_price(usd("90.00"), usd("1.00"), APRIL, date(2026, 5, 2))
    with pytest.raises(InvalidPeriod):
        cancel(usd("90.00"), APRIL, date(2026, 5, 2))


minor_units = st.integers(-(10**9), 10**9)
currencies = st.sampled_from(["USD", "JPY", "KWD"])


@st.composite
def period_and_day(draw: st.DrawFn) -> tuple[Period, date]:
    start = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 1, 1)))
    length = draw(st.integers(1, 400))
    offset = draw(st.integers(0, length))
    return Period(start, start + timedelta(days=length)), start + timedelta(days=offset)


@given(units=minor_units, currency=currencies, pd=period_and_day())
def test_same_price_change_nets_to_zero(units: int, currency: str, pd: tuple[Period, date]) -> None:
    period, day = pd
    price = Money.from_minor_units(units, currency)
    lines = change_price(price, price, period, day)
    assert sum((line.amount for line in lines), Money.zero(currency)).is_zero()


@given(old=minor_units, new=minor_units, currency=currencies, pd=period_and_day())
def test_credit_and_charge_are_consistent(
    old: int, new: int, currency: str, pd: tuple[Period, date]
) -> None:
    period, day = pd
    old_price = Money.from_minor_units(old, currency)
    new_price = Money.from_minor_units(new, currency)
    lines = change_price(old_price, new_price, period, day)
    if day == period.end:
        assert lines == []
        return
    credit, charge = lines
    # Credit is exactly the negated share of the old price a cancellation gives,
    # and is never more than the price itself; both shares round the same way.
    cancelled = cancel(old_price, period, day)
    assert cancelled is not None and credit.amount == cancelled.amount
    assert abs(credit.amount.amount) <= abs(old_price.amount)
    assert charge.amount == -prorate(-new_price, period, day)
    assert credit.amount.fits_minor_unit() and charge.amount.fits_minor_unit()
    if day == period.start:
        assert credit.amount == -old_price and charge.amount == new_price
    # Within half a minor unit of the exact day fraction.
    exact = new_price.amount * (period.end - day).days / period.days
    assert abs(charge.amount.amount - exact) <= Decimal(1).scaleb(-minor_unit(currency)) / 2
