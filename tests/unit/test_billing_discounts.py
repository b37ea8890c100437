"""Discounts spread over lines by largest remainder, never above a line."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.discounts import (
    AmountDiscount,
    InvalidDiscount,
    PercentDiscount,
    allocate_discount,
    apply_discounts,
)
from ledger.errors import CurrencyMismatch
from ledger.money import Money


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def test_percent_discount_is_rounded_once_then_allocated() -> None:
    lines = [usd("10.00"), usd("10.00"), usd("10.00")]
    result = allocate_discount(PercentDiscount(Decimal("10")), [usd("3.33")] * 3)
    assert result.applied == usd("1.00")  # 10 % of 9.99 = 0.999
    assert [str(d.amount) for d in result.per_line] == ["0.34", "0.33", "0.33"]
    assert (
        allocate_discount(PercentDiscount(Decimal("100")), lines).discounted(lines)
        == [usd("0")] * 3
    )


def test_amount_discount_is_capped_and_reports_the_rest() -> None:
    result = allocate_discount(AmountDiscount(usd("50.00")), [usd("20.00"), usd("10.00")])
    assert result.per_line == (usd("20.00"), usd("10.00"))
    assert (result.applied, result.unused) == (usd("30.00"), usd("20.00"))


def test_amount_discount_by_largest_remainder() -> None:
    lines = [usd("10.00"), usd("20.00"), usd("30.00")]
    result = allocate_discount(AmountDiscount(usd("10.00")), lines)
    # 1.666…, 3.333…, 5.00 → 1.67, 3.33, 5.00
    assert result.per_line == (usd("1.67"), usd("3.33"), usd("5.00"))


def test_credit_and_zero_lines_get_no_discount() -> None:
    result = allocate_discount(PercentDiscount(Decimal("50")), [usd("10"), usd("-4"), usd("0")])
    assert result.per_line == (usd("5.00"), usd("0"), usd("0"))
    nothing = allocate_discount(AmountDiscount(usd("5")), [usd("-4")])
    assert (nothing.applied, nothing.unused) == (usd("0"), usd("5"))


def test_jpy_and_kwd() -> None:
    jpy = allocate_discount(PercentDiscount(Decimal("15")), [Money.of("333", "JPY")] * 2)
    assert [str(d.amount) for d in jpy.per_line] == ["50", "50"]  # 99.9 → 100
    kwd = allocate_discount(AmountDiscount(Money.of("1.000", "KWD")), [Money.of("1", "KWD")] * 3)
    assert [str(d.amount) for d in kwd.per_line] == ["0.334", "0.333", "0.333"]


def test_sequential_discounts() -> None:
    remaining, allocations = apply_discounts(
        [PercentDiscount(Decimal("10")), AmountDiscount(usd("5.00"))], [usd("60"), usd("40")]
    )
    assert [a.applied for a in allocations] == [usd("10.00"), usd("5.00")]
    assert remaining == [usd("51.00"), usd("34.00")]


def test_invalid_discounts() -> None:
    with pytest.raises(InvalidDiscount) as err:
        PercentDiscount(Decimal("120"))
    assert (err.value.code, err.value.status) == ("invalid_discount", 422)
    with pytest.raises(InvalidDiscount):
        AmountDiscount(usd("-1"))
    with pytest.raises(InvalidDiscount, match="at least one line"):
        allocate_discount(PercentDiscount(Decimal("1")), [])
    with pytest.raises(CurrencyMismatch):
        allocate_discount(AmountDiscount(Money.of("1", "EUR")), [usd("10")])
    with pytest.raises(CurrencyMismatch):
        allocate_discount(PercentDiscount(Decimal("1")), [usd("10"), Money.of("1", "EUR")])


currencies = st.sampled_from(["USD", "JPY", "KWD"])
discounts = st.one_of(
    st.decimals(min_value=0, max_value=100, places=2).map(PercentDiscount),
    st.integers(0, 10**9).map(lambda u: AmountDiscount(Money.from_minor_units(u, "USD"))),
)


@given(units=st.lists(st.integers(-(10**8), 10**8), min_size=1, max_size=15), discount=discounts)
def test_allocation_sums_and_never_exceeds_lines(units: list[int], discount: object) -> None:
    assert isinstance(discount, PercentDiscount | AmountDiscount)
    lines = [Money.from_minor_units(u, "USD") for u in units]
    result = allocate_discount(discount, lines)
    assert sum(result.per_line, Money.zero("USD")) == result.applied
    for line, part in zip(lines, result.per_line, strict=True):
        assert Money.zero("USD") <= part
        assert part <= max(line, Money.zero("USD"), key=lambda m: m.amount)
    if isinstance(discount, AmountDiscount):
        assert result.applied + result.unused == discount.amount


@given(
    units=st.lists(st.integers(0, 10**8), min_size=1, max_size=15),
    currency=currencies,
    percent=st.decimals(min_value=0, max_value=100, places=3),
)
def test_percent_discount_matches_the_rounded_subtotal(
    units: list[int], currency: str, percent: Decimal
) -> None:
    lines = [Money.from_minor_units(u, currency) for u in units]
    result = allocate_discount(PercentDiscount(percent), lines)
    subtotal = sum(lines, Money.zero(currency))
    assert result.applied == (subtotal * percent * Decimal("0.01")).round_to_minor()
    assert result.unused.is_zero()
