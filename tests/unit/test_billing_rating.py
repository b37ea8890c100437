"""Charge models: flat, per unit, graduated, volume, package, percentage."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.rating import (
    FlatCharge,
    GraduatedCharge,
    InvalidCharge,
    InvalidTiers,
    PackageCharge,
    PercentageCharge,
    PerUnitCharge,
    Tier,
    VolumeCharge,
    parse_tiers,
    rate,
)
from ledger.money import Money, Rounding

TELECOM_TIERS = parse_tiers(
    [
        {"up_to": 1000, "unit_amount": "0.10"},
        {"up_to": 10000, "unit_amount": "0.05"},
        {"up_to": None, "unit_amount": "0.01"},
    ]
)


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def test_golden_graduated_and_volume() -> None:
    graduated = rate(GraduatedCharge("USD", TELECOM_TIERS), 15000)
    volume = rate(VolumeCharge("USD", TELECOM_TIERS), 15000)
    assert str(graduated.amount) == "600.00"
    assert str(volume.amount) == "150.00"


@pytest.mark.parametrize(
    ("quantity", "graduated", "volume"),
    [
        (0, "0.00", "0.00"),
        (1, "0.10", "0.10"),
        (1000, "100.00", "100.00"),
        (1001, "100.05", "50.05"),
        (10000, "550.00", "500.00"),
        (10001, "550.01", "100.01"),
    ],
)
def test_tier_boundaries(quantity: int, graduated: str, volume: str) -> None:
    assert rate(GraduatedCharge("USD", TELECOM_TIERS), quantity) == usd(graduated)
    assert rate(VolumeCharge("USD", TELECOM_TIERS), quantity) == usd(volume)


def test_flat_amounts_per_tier() -> None:
    tiers = parse_tiers(
        [
            {"up_to": 10, "unit_amount": "1", "flat_amount": "5"},
            {"up_to": None, "unit_amount": "0.5", "flat_amount": "2"},
        ]
    )
    # Graduated: 10 * 1 + 5, then 5 * 0.5 + 2; volume: 15 * 0.5 + 2.
    assert rate(GraduatedCharge("USD", tiers), 15) == usd("19.50")
    assert rate(VolumeCharge("USD", tiers), 15) == usd("9.50")


def test_flat_and_per_unit_with_twelve_decimals() -> None:
    assert rate(FlatCharge("USD", Decimal("49.00"))) == usd("49.00")
    per_token = PerUnitCharge("USD", Decimal("0.000001234567"))
    # 1,234,567 tokens * 0.000001234567 = 1.524155677489 → 1.52
    assert rate(per_token, 1234567) == usd("1.52")
    assert rate(per_token, 1234567, rounding=Rounding.DOWN) == usd("1.52")
    assert rate(PerUnitCharge("USD", Decimal("0.005")), 1) == usd("0.01")
    assert rate(PerUnitCharge("USD", Decimal("0.005")), 1, rounding=Rounding.HALF_EVEN) == usd("0")
    with pytest.raises(InvalidCharge, match="12 decimal places"):
        rate(PerUnitCharge("USD", Decimal("0.0000000000001")), 1)


def test_fractional_quantities() -> None:
    hours = PerUnitCharge("USD", Decimal("120"))
    assert rate(hours, Decimal("0.75")) == usd("90.00")
    assert rate(GraduatedCharge("USD", TELECOM_TIERS), Decimal("1000.5")) == usd("100.03")


def test_package_rounds_up_to_whole_packages() -> None:
    sms = PackageCharge("USD", Decimal("5.00"), 100)
    assert rate(sms, 0) == usd("0")
    assert rate(sms, 1) == usd("5.00")
    assert rate(sms, 100) == usd("5.00")
    assert rate(sms, 101) == usd("10.00")
    with pytest.raises(InvalidCharge, match="package_size"):
        rate(PackageCharge("USD", Decimal("5"), 0), 1)


def test_percentage_of_an_amount() -> None:
    fee = PercentageCharge(Decimal("2.9"))
    assert rate(fee, base=usd("123.45")) == usd("3.58")  # 3.58005
    assert rate(fee, base=Money.of("1234", "JPY")) == Money.of("36", "JPY")  # 35.786
    with pytest.raises(InvalidCharge, match="base amount"):
        rate(fee)


def test_jpy_and_kwd() -> None:
    assert rate(PerUnitCharge("JPY", Decimal("0.5")), 3) == Money.of("2", "JPY")  # 1.5
    assert str(rate(PerUnitCharge("JPY", Decimal("0.5")), 3).amount) == "2"
    kwd = rate(GraduatedCharge("KWD", TELECOM_TIERS), Decimal("1000.05"))
    assert str(kwd.amount) == "100.003"  # 100 + 0.0025 rounded half up


def test_negative_quantity_is_refused() -> None:
    with pytest.raises(InvalidCharge, match="quantity"):
        rate(PerUnitCharge("USD", Decimal("1")), -1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "at least one tier"),
        ([{"up_to": None}, {"up_to": None}], "only the last tier may be unbounded"),
        ([{"up_to": 10}, {"up_to": 5}, {"up_to": None}], "ascending"),
        ([{"up_to": 10}, {"up_to": 10}, {"up_to": None}], "ascending"),
        ([{"up_to": 0}, {"up_to": None}], "greater than 0"),
        ([{"up_to": 10}], "last tier must be unbounded"),
        ([{"up_to": 1.5}, {"up_to": None}], "whole number"),
        ([{"up_to": None, "unit_amount": 0.1}], "not JSON numbers or floats"),
        ([{"up_to": None, "price": "1"}], "unknown field"),
        ([{"unit_amount": "1"}], "up_to is required"),
        ([{"up_to": None, "unit_amount": "-1"}], "non-negative"),
    ],
)
def test_invalid_tiers(raw: list[dict[str, object]], message: str) -> None:
    with pytest.raises(InvalidCharge, match=message) as err:
        parse_tiers(raw)
    assert err.value.status == 422


def test_tiers_are_validated_on_the_charge() -> None:
    with pytest.raises(InvalidTiers) as err:
        GraduatedCharge("USD", (Tier(5, Decimal(1)),))
    assert err.value.code == "invalid_tiers"


@given(quantity=st.integers(0, 10**7))
def test_graduated_never_exceeds_first_tier_price(quantity: int) -> None:
    graduated = rate(GraduatedCharge("USD", TELECOM_TIERS), quantity)
    volume = rate(VolumeCharge("USD", TELECOM_TIERS), quantity)
    # With falling unit prices graduated costs at least volume and at most
    # everything at the first tier's price.
    assert volume <= graduated <= usd("0.10") * quantity


@given(a=st.integers(0, 10**6), b=st.integers(0, 10**6))
def test_graduated_is_monotone_in_quantity(a: int, b: int) -> None:
    charge = GraduatedCharge("USD", TELECOM_TIERS)
    low, high = sorted((a, b))
    assert rate(charge, low) <= rate(charge, high)
