"""Invoice discounts: a percentage or a fixed amount, spread over the lines.

The discount is first worked out on the eligible subtotal (rounded once),
then allocated over the lines in proportion to their totals by largest
remainder (`ledger.money.allocate`), so the per-line parts sum exactly to it.
A line never gets more discount than its own total: a fixed amount larger
than the subtotal is capped, and the unused rest is reported rather than
silently dropped. Only positive lines are eligible; credits and zero lines
get nothing, which is what keeps every part within its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from ledger.errors import LedgerError
from ledger.money import Money, Rounding, allocate

__all__ = [
    "AmountDiscount",
    "Discount",
    "DiscountAllocation",
    "InvalidDiscount",
    "PercentDiscount",
    "allocate_discount",
    "apply_discounts",
]

_PRECISION = 60


class InvalidDiscount(LedgerError):
    """A discount that is negative, over 100 %, or has nothing to apply to."""

    code = "invalid_discount"
    status = 422


@dataclass(frozen=True, slots=True)
class PercentDiscount:
    percent: Decimal  # 10 means 10 % off

    def __post_init__(self) -> None:
        if not self.percent.is_finite() or not 0 <= self.percent <= 100:
            raise InvalidDiscount(
                f"a percent discount must be between 0 and 100, got {self.percent}",
                percent=str(self.percent),
            )


@dataclass(frozen=True, slots=True)
class AmountDiscount:
    amount: Money

    def __post_init__(self) -> None:
        if self.amount.amount < 0 or not self.amount.fits_minor_unit():
            raise InvalidDiscount(
                f"an amount discount must be zero or more, in whole minor units: {self.amount}",
                amount=str(self.amount),
            )


Discount = PercentDiscount | AmountDiscount


@dataclass(frozen=True, slots=True)
class DiscountAllocation:
    per_line: tuple[Money, ...]  # discount for each line (>= 0), in input order
    applied: Money  # sum of per_line
    unused: Money  # part of a fixed amount that did not fit (carry it over or drop it)

    def discounted(self, line_totals: Sequence[Money]) -> list[Money]:
        """The line totals after this discount."""
        return [t - d for t, d in zip(line_totals, self.per_line, strict=True)]


def allocate_discount(
    discount: Discount, line_totals: Sequence[Money], rounding: Rounding = Rounding.HALF_UP
) -> DiscountAllocation:
    """Work out the discount on the positive lines and spread it over them."""
    if not line_totals:
        raise InvalidDiscount("a discount needs at least one line to apply to")
    totals = [t.quantized() for t in line_totals]
    currency = totals[0].currency
    zero = Money.zero(currency).quantized()
    eligible = [t if zero < t else zero for t in totals]  # comparing refuses mixed currencies
    subtotal = sum(eligible, zero)
    if isinstance(discount, PercentDiscount):
        with localcontext(prec=_PRECISION):
            wanted = Money(subtotal.amount * discount.percent / 100, currency)
        wanted = wanted.round_to_minor(rounding)
    else:
        wanted = discount.amount.quantized()
    applied = wanted if wanted <= subtotal else subtotal
    weights = [t.minor_units for t in eligible]
    per_line = [zero] * len(totals) if applied.is_zero() else allocate(applied, weights)
    return DiscountAllocation(tuple(per_line), applied, wanted - applied)


def apply_discounts(
    discounts: Sequence[Discount],
    line_totals: Sequence[Money],
    rounding: Rounding = Rounding.HALF_UP,
) -> tuple[list[Money], list[DiscountAllocation]]:
    """Apply discounts in order, each on what the previous ones left."""
    remaining = [t.quantized() for t in line_totals]
    allocations: list[DiscountAllocation] = []
    for discount in discounts:
        allocation = allocate_discount(discount, remaining, rounding)
        remaining = allocation.discounted(remaining)
        allocations.append(allocation)
    return remaining, allocations
