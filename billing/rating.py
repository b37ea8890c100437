"""Charge models: turn a quantity (or a base amount) into a line total.

Models: flat, per_unit, graduated, volume, package and percentage. Prices are
plain Decimals in the charge's currency and may carry up to 12 decimal
places; everything is computed exactly and the line total is rounded once,
to the currency's minor unit, with an explicit mode.

Tiers follow `[{"up_to": int | None, "unit_amount": "0.10", "flat_amount": "0"}]`:
tier i covers quantities above the previous `up_to` through its own, the
last tier is unbounded. Graduated pricing charges each slice of the quantity
at its own tier (adding the flat amount of every tier reached); volume pricing
charges the whole quantity at the one tier it falls in. A quantity of zero
reaches no tier and costs nothing in either model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext
from enum import StrEnum

from ledger.errors import InvalidMoney, LedgerError
from ledger.money import MAX_UNIT_PRICE_PLACES, Money, Rounding, decimal_places, parse_amount

__all__ = [
    "Charge",
    "ChargeModel",
    "FlatCharge",
    "GraduatedCharge",
    "InvalidCharge",
    "InvalidTiers",
    "PackageCharge",
    "PerUnitCharge",
    "PercentageCharge",
    "Tier",
    "VolumeCharge",
    "parse_tiers",
    "rate",
    "validate_tiers",
]

# Quantities and prices together can exceed the default 28 significant digits.
_PRECISION = 60
_TIER_KEYS = frozenset({"up_to", "unit_amount", "flat_amount"})


class InvalidCharge(LedgerError):
    """A price or quantity the charge model cannot rate."""

    code = "invalid_charge"
    status = 422


class InvalidTiers(InvalidCharge):
    """A tier table that is empty, out of order or open-ended before the end."""

    code = "invalid_tiers"


class ChargeModel(StrEnum):
    FLAT = "flat"
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"
    PERCENTAGE = "percentage"


def _price(value: Decimal, what: str) -> Decimal:
    if not value.is_finite() or value < 0:
        raise InvalidCharge(f"{what} must be a non-negative amount, got {value}", field=what)
    if decimal_places(value) > MAX_UNIT_PRICE_PLACES:
        raise InvalidCharge(
            f"{what} has more than {MAX_UNIT_PRICE_PLACES} decimal places: {value}", field=what
        )
    return value


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: int | None  # last quantity in this tier (inclusive); None = unbounded
    unit_amount: Decimal = Decimal(0)
    flat_amount: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        _price(self.unit_amount, "unit_amount")
        _price(self.flat_amount, "flat_amount")


@dataclass(frozen=True, slots=True)
class FlatCharge:
    currency: str
    amount: Decimal
    model = ChargeModel.FLAT


@dataclass(frozen=True, slots=True)
class PerUnitCharge:
    currency: str
    unit_amount: Decimal
    model = ChargeModel.PER_UNIT


@dataclass(frozen=True, slots=True)
class GraduatedCharge:
    currency: str
    tiers: tuple[Tier, ...]
    model = ChargeModel.GRADUATED

    def __post_init__(self) -> None:
        validate_tiers(self.tiers)


@dataclass(frozen=True, slots=True)
class VolumeCharge:
    currency: str
    tiers: tuple[Tier, ...]
    model = ChargeModel.VOLUME

    def __post_init__(self) -> None:
        validate_tiers(self.tiers)


@dataclass(frozen=True, slots=True)
class PackageCharge:
    currency: str
    package_amount: Decimal  # price of one whole package
    package_size: int  # units per package; a started package is a whole package
    model = ChargeModel.PACKAGE


@dataclass(frozen=True, slots=True)
class PercentageCharge:
    percent: Decimal  # 2.5 means 2.5 % of the base amount
    model = ChargeModel.PERCENTAGE


Charge = (
    FlatCharge | PerUnitCharge | GraduatedCharge | VolumeCharge | PackageCharge | PercentageCharge
)


def validate_tiers(tiers: Sequence[Tier]) -> None:
    """Tiers must be non-empty, with positive whole `up_to` strictly ascending
    and only the last one unbounded (`None`)."""
    if not tiers:
        raise InvalidTiers("a tiered charge needs at least one tier")
    previous = 0
    for i, tier in enumerate(tiers):
        last = i == len(tiers) - 1
        if tier.up_to is None:
            if not last:
                raise InvalidTiers(
                    f"tier {i + 1} has no up_to, but only the last tier may be unbounded",
                    tier=i + 1,
                )
            continue
        if isinstance(tier.up_to, bool) or not isinstance(tier.up_to, int):
            raise InvalidTiers(f"tier {i + 1}: up_to must be a whole number or null", tier=i + 1)
        if tier.up_to <= previous:
            raise InvalidTiers(
                f"tier {i + 1}: up_to {tier.up_to} must be greater than {previous}; "
                "tiers go in ascending order of up_to",
                tier=i + 1,
            )
        if last:
            raise InvalidTiers(
                f"the last tier must be unbounded (up_to null) so every quantity has a price; "
                f"it ends at {tier.up_to}",
                tier=i + 1,
            )
        previous = tier.up_to


def parse_tiers(raw: Sequence[Mapping[str, object]]) -> tuple[Tier, ...]:
    """Tiers from their stored form; amounts as decimal strings (floats are refused)."""
    tiers: list[Tier] = []
    for i, item in enumerate(raw):
        unknown = set(item) - _TIER_KEYS
        if unknown:
            raise InvalidTiers(
                f"tier {i + 1}: unknown field(s) {', '.join(sorted(unknown))}; "
                "expected up_to, unit_amount, flat_amount",
                tier=i + 1,
            )
        if "up_to" not in item:
            raise InvalidTiers(f"tier {i + 1}: up_to is required (null for the last)", tier=i + 1)
        up_to = item["up_to"]
        if up_to is not None and (isinstance(up_to, bool) or not isinstance(up_to, int)):
            raise InvalidTiers(f"tier {i + 1}: up_to must be a whole number or null", tier=i + 1)
        try:
            unit = parse_amount(item.get("unit_amount", "0"))
            flat = parse_amount(item.get("flat_amount", "0"))
        except InvalidMoney as exc:
            raise InvalidTiers(f"tier {i + 1}: {exc.message}", tier=i + 1) from None
        tiers.append(Tier(up_to, unit, flat))
    validate_tiers(tiers)
    return tuple(tiers)


def _quantity(quantity: Decimal | int) -> Decimal:
    value = Decimal(quantity)
    if not value.is_finite() or value < 0:
        raise InvalidCharge(f"quantity must be zero or more, got {quantity}")
    return value


def _graduated(tiers: Sequence[Tier], quantity: Decimal) -> Decimal:
    total, floor = Decimal(0), Decimal(0)
    for tier in tiers:
        if quantity <= floor:
            break
        ceiling = quantity if tier.up_to is None else min(quantity, Decimal(tier.up_to))
        total += (ceiling - floor) * tier.unit_amount + tier.flat_amount
        floor = ceiling
    return total


def _volume(tiers: Sequence[Tier], quantity: Decimal) -> Decimal:
    if quantity == 0:
        return Decimal(0)
    tier = next(t for t in tiers if t.up_to is None or quantity <= t.up_to)
    return quantity * tier.unit_amount + tier.flat_amount


def _package(charge: PackageCharge, quantity: Decimal) -> Decimal:
    if isinstance(charge.package_size, bool) or charge.package_size < 1:
        raise InvalidCharge(f"package_size must be at least 1, got {charge.package_size}")
    packages = (quantity / charge.package_size).to_integral_value(rounding=ROUND_CEILING)
    return packages * _price(charge.package_amount, "package_amount")


def rate(
    charge: Charge,
    quantity: Decimal | int = 0,
    *,
    base: Money | None = None,
    rounding: Rounding = Rounding.HALF_UP,
) -> Money:
    """The line total of `charge` for `quantity` (or, for a percentage, of `base`)."""
    with localcontext(prec=_PRECISION):
        if isinstance(charge, PercentageCharge):
            if base is None:
                raise InvalidCharge("a percentage charge needs the base amount it applies to")
            percent = _price(charge.percent, "percent")
            return Money(base.amount * percent / 100, base.currency).round_to_minor(rounding)
        units = _quantity(quantity)
        if isinstance(charge, FlatCharge):
            exact = _price(charge.amount, "amount")
        elif isinstance(charge, PerUnitCharge):
            exact = units * _price(charge.unit_amount, "unit_amount")
        elif isinstance(charge, GraduatedCharge):
            exact = _graduated(charge.tiers, units)
        elif isinstance(charge, VolumeCharge):
            exact = _volume(charge.tiers, units)
        else:
            exact = _package(charge, units)
        return Money(exact, charge.currency).round_to_minor(rounding)
