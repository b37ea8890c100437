"""Exact money: a Decimal amount and an ISO 4217 currency.

Amounts are built from strings, ints or Decimals only; a float raises because
it cannot carry an exact decimal. Rounding happens only in `round_to_minor`
with a stated mode, and `allocate` splits a total over weights so the parts
always sum exactly to the whole (largest remainder, ties to the earlier part).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

from ledger.currencies import MINOR_UNITS
from ledger.errors import CurrencyMismatch, InvalidMoney, TooPrecise, UnknownCurrency

# Unit prices may carry up to 12 decimal places (ACCOUNTING.md).
MAX_UNIT_PRICE_PLACES = 12
_AMOUNT_RE = re.compile(r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,12})?")


class Rounding(StrEnum):
    HALF_UP = "half_up"
    HALF_EVEN = "half_even"
    DOWN = "down"

    @property
    def decimal_mode(self) -> str:
        return {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN, "down": ROUND_DOWN}[
            self.value
        ]


def minor_unit(currency: str) -> int:
    """Decimal places of the currency's minor unit (JPY 0, USD 2, KWD 3)."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise UnknownCurrency(
            f"unknown currency {currency!r}: use an ISO 4217 code such as USD or EUR",
            currency=currency,
        ) from None


def check_currency(currency: object) -> str:
    if not isinstance(currency, str):
        raise UnknownCurrency("currency must be a three-letter ISO 4217 code")
    minor_unit(currency)
    return currency


def parse_amount(value: object) -> Decimal:
    """A finite Decimal from a decimal string, int or Decimal; floats are refused.

    Strings must be plain decimals ("12.50", "-3"): no exponent, no spaces, no
    thousands separators, at most 12 decimal places.
    """
    if type(value) is str and _AMOUNT_RE.fullmatch(value):
        return Decimal(value)  # the common case (a JSON string); others are checked below
    if isinstance(value, bool | float):
        raise InvalidMoney(
            'amounts must be decimal strings such as "12.50", not JSON numbers or floats',
            value=repr(value),
        )
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidMoney("amount must be a finite number", value=str(value))
        return value
    if isinstance(value, str):
        if not _AMOUNT_RE.fullmatch(value):
            raise InvalidMoney(
                f'{value!r} is not a decimal amount: write it like "1234.56" '
                "(optional minus sign, at most 12 decimal places)",
                value=value,
            )
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
            raise InvalidMoney(f"{value!r} is not a decimal amount", value=value) from None
    raise InvalidMoney(f"amount must be a decimal string, got {type(value).__name__}")


# "12.50" for a currency of 2 places: a decimal written with exactly the currency's
# places (none: no point), as _AMOUNT_RE admits it. By places, built on first use.
_EXACT_TEXT: dict[int, re.Pattern[str]] = {}


def exact_text(text: str, currency: str) -> Money | None:
    """Money.exact(parse_amount(text), currency) for the usual posting amount, a
    string written with exactly the currency's places ("12.50" in USD, "1200" in
    JPY): the same Money, built without parsing and checking it three times.
    None for anything else (the caller takes the general way, which says what
    is wrong)."""
    places = MINOR_UNITS.get(currency) if type(currency) is str else None
    if places is None or places > MAX_UNIT_PRICE_PLACES or type(text) is not str:
        return None
    pattern = _EXACT_TEXT.get(places)
    if pattern is None:
        fraction = rf"\.[0-9]{{{places}}}" if places else ""
        pattern = _EXACT_TEXT[places] = re.compile(rf"-?(0|[1-9][0-9]{{0,17}}){fraction}")
    if not pattern.fullmatch(text):
        return None
    return Money(Decimal(text), currency)


def decimal_places(amount: Decimal) -> int:
    """Places needed to write the amount exactly (12.50 → 1, 12 → 0)."""
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


@dataclass(frozen=True, slots=True, order=False)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        amount = self.amount
        # Fast path (the common case): a finite Decimal and a known currency code.
        if type(amount) is not Decimal or not amount.is_finite():
            object.__setattr__(self, "amount", parse_amount(amount))
        if type(self.currency) is not str or self.currency not in MINOR_UNITS:
            check_currency(self.currency)

    @classmethod
    def of(cls, amount: object, currency: str) -> Money:
        return cls(parse_amount(amount), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def exact(cls, amount: object, currency: str) -> Money:
        """Money that must already fit the currency's minor unit (postings, payments)."""
        money = cls.of(amount, currency)
        if not money.fits_minor_unit():
            raise TooPrecise(
                f"{amount} has more decimals than {currency} allows ({minor_unit(currency)})",
                amount=str(amount),
                currency=currency,
            )
        return money.quantized()

    @classmethod
    def from_minor_units(cls, units: int, currency: str) -> Money:
        return cls(Decimal(units).scaleb(-minor_unit(currency)), currency)

    @property
    def minor_units(self) -> int:
        """The amount in minor units; the amount must fit the minor unit exactly."""
        if not self.fits_minor_unit():
            raise TooPrecise(f"{self} is not a whole number of minor units")
        return int(self.amount.scaleb(minor_unit(self.currency)))

    def fits_minor_unit(self) -> bool:
        places = minor_unit(self.currency)
        exponent = self.amount.as_tuple().exponent
        # Written with at most the currency's places ("12.50" in USD): it fits, and
        # normalize() (trailing zeros dropped) can only make the places fewer.
        if isinstance(exponent, int) and -exponent <= places:
            return True
        return decimal_places(self.amount) <= places

    def quantized(self) -> Money:
        """Same value written with exactly the currency's decimal places (no rounding)."""
        if self.amount.as_tuple().exponent == -MINOR_UNITS[self.currency]:
            return self  # already written with the currency's places
        if not self.fits_minor_unit():
            raise TooPrecise(f"{self} does not fit {self.currency}'s minor unit")
        return Money(self.amount.quantize(quantum(self.currency)), self.currency)

    def round_to_minor(self, mode: Rounding = Rounding.HALF_UP) -> Money:
        return Money(
            self.amount.quantize(quantum(self.currency), rounding=mode.decimal_mode),
            self.currency,
        )

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(
                f"cannot combine {self.currency} and {other.currency}",
                left=self.currency,
                right=other.currency,
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if not isinstance(factor, Decimal | int) or isinstance(factor, bool):
            raise InvalidMoney("money can only be multiplied by a Decimal or an int")
        return Money(self.amount * factor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def is_zero(self) -> bool:
        return self.amount == 0

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


_QUANTA: dict[str, Decimal] = {}


def quantum(currency: str) -> Decimal:
    """One minor unit of the currency (USD 0.01, JPY 1, KWD 0.001)."""
    found = _QUANTA.get(currency)
    if found is None:
        found = _QUANTA[currency] = Decimal(1).scaleb(-minor_unit(currency))
    return found


def minor_unit_text(amount: Decimal, currency: str) -> str:
    """An amount that fits the minor unit, written with exactly its places ("12.50")."""
    return str(Decimal(amount).quantize(quantum(currency)))


def price_text(amount: Decimal, currency: str) -> str:
    """A unit price: at least the currency's minor-unit places, more only where the price
    carries more ("9.90", "0.0125" and "9.90" again for 9.900000 USD; "120" JPY)."""
    value = Decimal(amount)
    if decimal_places(value) <= minor_unit(currency):
        return minor_unit_text(value, currency)
    return format(value.normalize(), "f")


def allocate(total: Money, weights: Sequence[Decimal | int]) -> list[Money]:
    """Split `total` over `weights` in whole minor units by largest remainder.

    The parts always sum exactly to `total` (which must fit the minor unit).
    Ties in the remainder go to the earlier part, so the result is
    deterministic. Zero weights get zero; all-zero weights are refused.
    """
    if not weights:
        raise InvalidMoney("cannot allocate over no parts")
    if any(Decimal(w) < 0 for w in weights):
        raise InvalidMoney("allocation weights must not be negative")
    weight_sum = sum((Decimal(w) for w in weights), Decimal(0))
    if weight_sum == 0:
        raise InvalidMoney("allocation weights must not all be zero")
    units = total.minor_units
    sign = -1 if units < 0 else 1
    units = abs(units)
    exact = [Decimal(units) * Decimal(w) / weight_sum for w in weights]
    floors = [int(x) for x in exact]  # int() truncates toward zero; all are ≥ 0
    leftover = units - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:leftover]:
        floors[i] += 1
    return [Money.from_minor_units(sign * f, total.currency) for f in floors]
