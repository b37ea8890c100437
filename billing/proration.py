"""Day-based proration: amount * remaining days / days in that billing period.

The remaining days of `[start, end)` from a change date D are `end - D`: the
change takes effect at the start of D, so D itself is billed at the new
terms. Each prorated amount is rounded once, to the currency's minor unit.
A credit is always the exact negation of the prorated old amount, so a
change that does not change the price nets to zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext
from enum import StrEnum

from billing.periods import InvalidPeriod, Period
from ledger.errors import LedgerError
from ledger.money import Money, Rounding

__all__ = [
    "InvalidProration",
    "ProrationKind",
    "ProrationLine",
    "cancel",
    "change_price",
    "change_quantity",
    "fraction_of",
    "prorate",
    "remaining_days",
]

# Enough digits that amount * n can be divided by a day count without the
# context's own rounding reaching the minor unit (amounts have ≤ 18 + 12 digits).
_PRECISION = 60


class InvalidProration(LedgerError):
    """A proration request that does not make sense (e.g. a negative quantity)."""

    code = "invalid_proration"
    status = 422


class ProrationKind(StrEnum):
    CREDIT = "credit"  # unused time on the old terms, negative
    CHARGE = "charge"  # remaining time on the new terms, positive


@dataclass(frozen=True, slots=True)
class ProrationLine:
    kind: ProrationKind
    amount: Money
    service_period: Period  # the part of the billing period the line covers


def fraction_of(
    amount: Money, numerator: int, denominator: int, rounding: Rounding = Rounding.HALF_UP
) -> Money:
    """`amount * numerator / denominator`, rounded once to the minor unit."""
    if denominator <= 0:
        raise InvalidPeriod("cannot take a fraction over zero days")
    with localcontext(prec=_PRECISION):
        exact = amount.amount * Decimal(numerator) / Decimal(denominator)
        return Money(exact, amount.currency).round_to_minor(rounding)


def remaining_days(period: Period, on: date) -> int:
    """Days of `period` from `on` (included) to its end; `on` may equal the end."""
    if not period.start <= on <= period.end:
        raise InvalidPeriod(
            f"change date {on} is outside the billing period {period}",
            day=on.isoformat(),
            start=period.start.isoformat(),
            end=period.end.isoformat(),
        )
    return (period.end - on).days


def prorate(
    amount: Money, period: Period, on: date, rounding: Rounding = Rounding.HALF_UP
) -> Money:
    """The share of a full-period `amount` for `[on, period.end)`."""
    return fraction_of(amount, remaining_days(period, on), period.days, rounding)


def change_price(
    old: Money,
    new: Money,
    period: Period,
    on: date,
    rounding: Rounding = Rounding.HALF_UP,
) -> list[ProrationLine]:
    """Credit the unused old price and charge the new one for the rest of the period.

    Upgrades and downgrades alike give two lines (credit first); a change on the
    period's end day gives none.
    """
    if remaining_days(period, on) == 0:
        return []
    rest = Period(on, period.end)
    return [
        ProrationLine(ProrationKind.CREDIT, -prorate(old, period, on, rounding), rest),
        ProrationLine(ProrationKind.CHARGE, prorate(new, period, on, rounding), rest),
    ]


def change_quantity(
    unit_price: Money,
    old_quantity: int | Decimal,
    new_quantity: int | Decimal,
    period: Period,
    on: date,
    rounding: Rounding = Rounding.HALF_UP,
) -> list[ProrationLine]:
    """A seat or quantity change: prorate the old and new line totals.

    The line totals are rounded first, as they were (or will be) invoiced, so the
    credit refers to the originally billed amount rather than to a recomputation.
    """
    for quantity in (old_quantity, new_quantity):
        if Decimal(quantity) < 0:
            raise InvalidProration(
                f"quantity must not be negative, got {quantity}", quantity=str(quantity)
            )
    old_total = (unit_price * Decimal(old_quantity)).round_to_minor(rounding)
    new_total = (unit_price * Decimal(new_quantity)).round_to_minor(rounding)
    return change_price(old_total, new_total, period, on, rounding)


def cancel(
    amount: Money, period: Period, on: date, rounding: Rounding = Rounding.HALF_UP
) -> ProrationLine | None:
    """Credit for the unused time when a paid period is cancelled from `on`."""
    if remaining_days(period, on) == 0:
        return None
    credit = -prorate(amount, period, on, rounding)
    return ProrationLine(ProrationKind.CREDIT, credit, Period(on, period.end))
