"""What the billing resources' routes share: page size, amount fields and rate text.

Amounts are decimal strings written with the currency's minor unit ("108.00",
JPY "1000", KWD "1.500"); unit prices keep the places they were given (up to
12). Every figure a customer or invoice shows beside what it stores is read
from the ledger's postings.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from ledger.errors import InvalidMoney
from ledger.money import parse_amount

MAX_PAGE = 1000


def rate_text(value: Decimal) -> str:
    """A tax rate fraction with at least two places: "0.10", "0.075", "0.00"."""
    normalized = Decimal(value).normalize()
    if normalized.as_tuple().exponent in range(-1, 100):  # fewer than two places
        normalized = normalized.quantize(Decimal("0.01"))
    return format(normalized, "f")


def opt_date(value: date | None) -> str | None:
    return value.isoformat() if value else None


def decimal_field(value: str, field: str) -> Decimal:
    """An amount from a request field; its error names the field."""
    try:
        return parse_amount(value)
    except InvalidMoney as exc:
        exc.message = f"{field}: {exc.message}"
        exc.fields["field"] = field
        raise
