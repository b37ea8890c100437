"""Tax: exclusive and inclusive, per line or per invoice and rate, exemptions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.tax import (
    InclusiveRounding,
    InvalidTax,
    TaxableLine,
    TaxLevel,
    TaxRate,
    TaxTreatment,
    compute_tax,
    exclusive_tax,
    split_inclusive,
)
from ledger.money import Money

VAT4 = TaxRate("XX-4", Decimal("4"))
VAT19 = TaxRate("DE-VAT-19", Decimal("19"))


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def test_golden_inclusive_split_rounding_the_net() -> None:
    net, tax = split_inclusive(usd("2.99"), Decimal("4"))
    assert (str(net.amount), str(tax.amount)) == ("2.88", "0.11")
    net, tax = split_inclusive(usd("2.99"), Decimal("4"), InclusiveRounding.TAX)
    assert (str(net.amount), str(tax.amount)) == ("2.87", "0.12")  # 0.115 rounded up


def test_exclusive_per_line_is_the_default() -> None:
    lines = [TaxableLine(usd("0.10"), VAT19)] * 3
    result = compute_tax(lines)
    assert [str(line.tax.amount) for line in result.lines] == ["0.02", "0.02", "0.02"]
    assert result.tax == usd("0.06")
    assert result.gross == usd("0.36")


def test_per_invoice_and_rate_rounds_once_and_apportions() -> None:
    lines = [TaxableLine(usd("0.10"), VAT19)] * 3
    result = compute_tax(lines, level=TaxLevel.PER_INVOICE_RATE)
    assert result.tax == usd("0.06")  # 0.057
    assert [str(line.tax.amount) for line in result.lines] == ["0.02", "0.02", "0.02"]
    lines = [TaxableLine(usd("0.10"), VAT4)] * 3
    result = compute_tax(lines, level=TaxLevel.PER_INVOICE_RATE)
    assert result.tax == usd("0.01")  # 0.012, where per line would give 0.00
    assert compute_tax(lines).tax == usd("0.00")
    assert [str(line.tax.amount) for line in result.lines] == ["0.01", "0.00", "0.00"]


def test_per_invoice_handles_credit_lines() -> None:
    lines = [TaxableLine(usd("100.05"), VAT19), TaxableLine(usd("-10.05"), VAT19)]
    result = compute_tax(lines, level=TaxLevel.PER_INVOICE_RATE)
    assert result.tax == usd("17.10")
    assert [line.tax for line in result.lines] == [usd("19.01"), usd("-1.91")]


def test_inclusive_invoice() -> None:
    lines = [TaxableLine(usd("2.99"), VAT4)] * 3
    per_line = compute_tax(lines, inclusive=True)
    assert (per_line.net, per_line.tax) == (usd("8.64"), usd("0.33"))
    per_rate = compute_tax(lines, inclusive=True, level=TaxLevel.PER_INVOICE_RATE)
    assert (per_rate.net, per_rate.tax) == (usd("8.63"), usd("0.34"))  # 8.97 / 1.04 = 8.625
    assert all(line.gross == usd("2.99") for line in per_rate.lines)


def test_totals_per_rate_and_markers() -> None:
    exempt = TaxRate("EXEMPT", Decimal("0"), TaxTreatment.EXEMPT)
    reverse = TaxRate("EU-RC", Decimal("19"), TaxTreatment.REVERSE_CHARGE)
    lines = [
        TaxableLine(usd("100.00"), VAT19),
        TaxableLine(usd("50.00"), exempt),
        TaxableLine(usd("200.00"), reverse),
        TaxableLine(usd("10.00"), VAT19),
    ]
    result = compute_tax(lines)
    assert [line.tax for line in result.lines] == [usd("19"), usd("0"), usd("0"), usd("1.90")]
    assert [line.marker for line in result.lines] == [
        None,
        TaxTreatment.EXEMPT,
        TaxTreatment.REVERSE_CHARGE,
        None,
    ]
    assert [(t.rate.code, t.net, t.tax) for t in result.by_rate] == [
        ("DE-VAT-19", usd("110.00"), usd("20.90")),
        ("EXEMPT", usd("50.00"), usd("0")),
        ("EU-RC", usd("200.00"), usd("0")),
    ]
    assert (result.net, result.tax) == (usd("360.00"), usd("20.90"))
    inclusive = compute_tax(lines[2:3], inclusive=True)
    assert (inclusive.net, inclusive.tax) == (usd("200.00"), usd("0"))


def test_jpy_and_kwd() -> None:
    assert exclusive_tax(Money.of("1015", "JPY"), Decimal("10")) == Money.of("102", "JPY")
    assert str(exclusive_tax(Money.of("1015", "JPY"), Decimal("10")).amount) == "102"
    net, tax = split_inclusive(Money.of("1.000", "KWD"), Decimal("5"))
    assert (str(net.amount), str(tax.amount)) == ("0.952", "0.048")


def test_invalid_rates_and_empty_invoices() -> None:
    with pytest.raises(InvalidTax) as err:
        TaxRate("BAD", Decimal("-1"))
    assert (err.value.code, err.value.status) == ("invalid_tax", 422)
    with pytest.raises(InvalidTax, match="at least one line"):
        compute_tax([])


line_amounts = st.lists(st.integers(-(10**8), 10**8), min_size=1, max_size=12)
percents = st.sampled_from([Decimal(p) for p in ("0", "4", "5.5", "7.25", "19", "21", "33.3")])


@given(
    units=line_amounts,
    percent=percents,
    inclusive=st.booleans(),
    level=st.sampled_from(list(TaxLevel)),
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_lines_add_up_to_rate_totals(
    units: list[int], percent: Decimal, inclusive: bool, level: TaxLevel, currency: str
) -> None:
    rate = TaxRate("R", percent)
    lines = [TaxableLine(Money.from_minor_units(u, currency), rate) for u in units]
    result = compute_tax(lines, inclusive=inclusive, level=level)
    zero = Money.zero(currency)
    assert sum((line.tax for line in result.lines), zero) == result.tax
    assert sum((line.net for line in result.lines), zero) == result.net
    for line, taxed in zip(lines, result.lines, strict=True):
        if inclusive:
            assert taxed.gross == line.amount
        else:
            assert taxed.net == line.amount
    total = sum((line.amount for line in lines), zero)
    if level is TaxLevel.PER_INVOICE_RATE:
        if inclusive:
            assert result.tax == split_inclusive(total, percent)[1]
        else:
            assert result.tax == exclusive_tax(total, percent)
