"""Sales tax / VAT on invoice lines: exclusive or inclusive, per line or per rate.

Tax is never revenue, so each line is split into net and tax. By default
prices are tax-exclusive and tax is rounded per line, then summed; a book may
instead round once per invoice and rate, in which case the rounded rate total
is handed back to the lines by largest remainder so lines and totals agree.
Inclusive prices are split with an explicit rule saying which part is
rounded (the net by default: 2.99 incl. 4 % -> 2.88 net + 0.11 tax); the
other part is the remainder, so net + tax is always the price.
Exempt and reverse-charge lines carry zero tax and keep their treatment as
a marker, so the invoice can print the legal mention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext
from enum import StrEnum

from ledger.errors import LedgerError
from ledger.money import Money, Rounding, minor_unit

__all__ = [
    "InclusiveRounding",
    "InvalidTax",
    "InvoiceTax",
    "RateTotal",
    "TaxLevel",
    "TaxRate",
    "TaxTreatment",
    "TaxableLine",
    "TaxedLine",
    "compute_tax",
    "exclusive_tax",
    "split_inclusive",
]

_PRECISION = 60


class InvalidTax(LedgerError):
    """A tax rate or taxable line that cannot be taxed."""

    code = "invalid_tax"
    status = 422


class TaxTreatment(StrEnum):
    TAXABLE = "taxable"
    EXEMPT = "exempt"
    REVERSE_CHARGE = "reverse_charge"  # the buyer self-assesses; we charge none


class TaxLevel(StrEnum):
    PER_LINE = "per_line"  # round each line's tax, then sum (default)
    PER_INVOICE_RATE = "per_invoice_rate"  # round once per rate on the invoice


class InclusiveRounding(StrEnum):
    NET = "net"  # round the net; tax = price - net
    TAX = "tax"  # round the tax; net = price - tax


@dataclass(frozen=True, slots=True)
class TaxRate:
    code: str  # jurisdiction and rate, e.g. "DE-VAT-19"; tax payable is kept per code
    percent: Decimal  # 19 means 19 %
    treatment: TaxTreatment = TaxTreatment.TAXABLE

    def __post_init__(self) -> None:
        if not self.percent.is_finite() or self.percent < 0:
            raise InvalidTax(
                f"tax rate {self.code!r} must be zero or more percent, got {self.percent}",
                rate=self.code,
            )

    @property
    def charges_tax(self) -> bool:
        return self.treatment is TaxTreatment.TAXABLE


@dataclass(frozen=True, slots=True)
class TaxableLine:
    amount: Money  # the line total: net if exclusive, tax-included price if inclusive
    rate: TaxRate


@dataclass(frozen=True, slots=True)
class TaxedLine:
    net: Money
    tax: Money
    rate: TaxRate

    @property
    def gross(self) -> Money:
        return self.net + self.tax

    @property
    def marker(self) -> TaxTreatment | None:
        """Exempt or reverse charge, for the invoice's legal mention; None if taxed."""
        return None if self.rate.charges_tax else self.rate.treatment


@dataclass(frozen=True, slots=True)
class RateTotal:
    rate: TaxRate
    net: Money
    tax: Money


@dataclass(frozen=True, slots=True)
class InvoiceTax:
    lines: tuple[TaxedLine, ...]  # same order as the input lines
    by_rate: tuple[RateTotal, ...]  # in order of first appearance
    net: Money
    tax: Money

    @property
    def gross(self) -> Money:
        return self.net + self.tax


def exclusive_tax(net: Money, percent: Decimal, rounding: Rounding = Rounding.HALF_UP) -> Money:
    """Tax on a tax-exclusive amount, rounded to the minor unit."""
    with localcontext(prec=_PRECISION):
        return Money(net.amount * percent / 100, net.currency).round_to_minor(rounding)


def split_inclusive(
    gross: Money,
    percent: Decimal,
    rounded: InclusiveRounding = InclusiveRounding.NET,
    rounding: Rounding = Rounding.HALF_UP,
) -> tuple[Money, Money]:
    """(net, tax) of a tax-inclusive price; exactly one part is rounded."""
    gross = gross.quantized()
    with localcontext(prec=_PRECISION):
        if rounded is InclusiveRounding.NET:
            net = Money(gross.amount * 100 / (100 + percent), gross.currency)
            net = net.round_to_minor(rounding)
            return net, gross - net
        tax = Money(gross.amount * percent / (100 + percent), gross.currency)
        tax = tax.round_to_minor(rounding)
        return gross - tax, tax


def _apportion(exact: Sequence[Decimal], target: Money) -> list[Money]:
    """Split the rounded `target` over signed exact shares by largest remainder.

    `ledger.money.allocate` takes non-negative weights only; invoice lines may
    be negative (credits), so this floors each exact share and hands the
    missing minor units to the largest fractional parts (ties: earlier line).
    """
    scale = minor_unit(target.currency)
    with localcontext(prec=_PRECISION):
        units = [x.scaleb(scale) for x in exact]
        floors = [int(u.to_integral_value(rounding=ROUND_FLOOR)) for u in units]
    leftover = target.minor_units - sum(floors)
    if not 0 <= leftover <= len(floors):  # pragma: no cover - target is round(sum(exact))
        raise InvalidTax(f"cannot apportion {target} over the lines' exact tax")
    order = sorted(range(len(floors)), key=lambda i: (-(units[i] - floors[i]), i))
    for i in order[:leftover]:
        floors[i] += 1
    return [Money.from_minor_units(f, target.currency) for f in floors]


def _per_line(
    line: TaxableLine, inclusive: bool, rounded: InclusiveRounding, rounding: Rounding
) -> TaxedLine:
    amount = line.amount.quantized()
    zero = Money.zero(amount.currency).quantized()
    if not line.rate.charges_tax:
        return TaxedLine(amount, zero, line.rate)
    if inclusive:
        net, tax = split_inclusive(amount, line.rate.percent, rounded, rounding)
        return TaxedLine(net, tax, line.rate)
    return TaxedLine(amount, exclusive_tax(amount, line.rate.percent, rounding), line.rate)


def _per_rate(
    lines: Sequence[TaxableLine], inclusive: bool, rounded: InclusiveRounding, rounding: Rounding
) -> list[TaxedLine]:
    """Lines sharing one rate: round the rate total once, then apportion it."""
    rate = lines[0].rate
    amounts = [line.amount.quantized() for line in lines]
    if not rate.charges_tax:
        return [TaxedLine(a, Money.zero(a.currency).quantized(), rate) for a in amounts]
    total = _sum(amounts)
    p = rate.percent
    with localcontext(prec=_PRECISION):
        if inclusive:
            exact = [a.amount * p / (100 + p) for a in amounts]
            tax_total = split_inclusive(total, p, rounded, rounding)[1]
        else:
            exact = [a.amount * p / 100 for a in amounts]
            tax_total = exclusive_tax(total, p, rounding)
    taxes = _apportion(exact, tax_total)
    nets = [a - t for a, t in zip(amounts, taxes, strict=True)] if inclusive else amounts
    return [TaxedLine(n, t, rate) for n, t in zip(nets, taxes, strict=True)]


def compute_tax(
    lines: Sequence[TaxableLine],
    *,
    inclusive: bool = False,
    level: TaxLevel = TaxLevel.PER_LINE,
    inclusive_rounding: InclusiveRounding = InclusiveRounding.NET,
    rounding: Rounding = Rounding.HALF_UP,
) -> InvoiceTax:
    """Tax every line of one invoice and total it per rate."""
    if not lines:
        raise InvalidTax("an invoice needs at least one line to compute tax")
    groups: dict[TaxRate, list[int]] = {}
    for i, line in enumerate(lines):
        groups.setdefault(line.rate, []).append(i)
    taxed: list[TaxedLine | None] = [None] * len(lines)
    for indexes in groups.values():
        group = [lines[i] for i in indexes]
        if level is TaxLevel.PER_LINE:
            results = [_per_line(line, inclusive, inclusive_rounding, rounding) for line in group]
        else:
            results = _per_rate(group, inclusive, inclusive_rounding, rounding)
        for i, result in zip(indexes, results, strict=True):
            taxed[i] = result
    done = [t for t in taxed if t is not None]
    by_rate = tuple(
        RateTotal(
            rate,
            _sum([done[i].net for i in indexes]),
            _sum([done[i].tax for i in indexes]),
        )
        for rate, indexes in groups.items()
    )
    return InvoiceTax(
        tuple(done), by_rate, _sum([r.net for r in by_rate]), _sum([r.tax for r in by_rate])
    )


def _sum(amounts: Sequence[Money]) -> Money:
    return sum(amounts[1:], amounts[0])
