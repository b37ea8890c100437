"""Money, allocation and entry balancing: worked cases and properties."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.accounts import AccountType, account_type_of, below_minimum
from ledger.currencies import MINOR_UNITS
from ledger.entries import Posting, build_entry, imbalances, reversal_postings
from ledger.errors import (
    CurrencyMismatch,
    InvalidAccountName,
    InvalidEntry,
    InvalidMoney,
    LedgerError,
    TooPrecise,
    UnbalancedEntry,
    UnknownCurrency,
)
from ledger.money import Money, Rounding, allocate, exact_text, minor_unit, parse_amount
from ledger.periods import period_bounds, period_of


def usd(amount: str) -> Money:
    return Money.exact(amount, "USD")


class TestMoney:
    def test_minor_units_come_from_iso_4217(self) -> None:
        assert (minor_unit("JPY"), minor_unit("USD"), minor_unit("KWD")) == (0, 2, 3)

    @pytest.mark.parametrize("value", [1.5, 0.1, float("nan"), True])
    def test_floats_and_bools_are_refused(self, value: object) -> None:
        with pytest.raises(InvalidMoney):
            parse_amount(value)

    @pytest.mark.parametrize(
        "text", ["abc", "1e3", "NaN", "Infinity", " 1.00", "1,00", "01.00", "1.", ".5", "+1", ""]
    )
    def test_only_plain_decimal_strings_parse(self, text: str) -> None:
        with pytest.raises(InvalidMoney):
            parse_amount(text)

    def test_exact_refuses_more_decimals_than_the_currency_has(self) -> None:
        assert Money.exact("1.5", "USD").amount == Decimal("1.50")
        assert Money.exact("1.000", "KWD").amount == Decimal("1.000")
        assert Money.exact("1.500", "USD").amount == Decimal("1.50")  # same value, fewer digits
        for amount, currency in (("1.005", "USD"), ("1.5", "JPY"), ("0.0001", "KWD")):
            with pytest.raises(TooPrecise):
                Money.exact(amount, currency)

    def test_unknown_currency(self) -> None:
        for code in ("XYZ", "usd", "US"):
            with pytest.raises(UnknownCurrency):
                Money.of("1", code)

    def test_rounding_is_explicit(self) -> None:
        assert Money.of("2.345", "USD").round_to_minor().amount == Decimal("2.35")
        assert Money.of("2.345", "USD").round_to_minor(Rounding.HALF_EVEN).amount == Decimal("2.34")
        assert Money.of("-2.345", "USD").round_to_minor().amount == Decimal("-2.35")
        assert Money.of("2.5", "JPY").round_to_minor().amount == Decimal("3")

    def test_currencies_do_not_mix(self) -> None:
        with pytest.raises(CurrencyMismatch):
            _ = usd("1") + Money.exact("1", "EUR")

    def test_allocation_worked_example(self) -> None:
        parts = allocate(usd("100.00"), [1, 1, 1])
        assert [p.amount for p in parts] == [Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]
        parts = allocate(usd("-0.05"), [1, 1])
        assert [p.amount for p in parts] == [Decimal("-0.03"), Decimal("-0.02")]

    def test_allocation_refuses_bad_weights(self) -> None:
        for weights in ([], [0, 0], [1, -1]):
            with pytest.raises(InvalidMoney):
                allocate(usd("1.00"), weights)


currencies = st.sampled_from(["USD", "JPY", "KWD", "EUR", "CLF"])


@st.composite
def money(draw: st.DrawFn) -> Money:
    currency = draw(currencies)
    units = draw(st.integers(min_value=-(10**12), max_value=10**12))
    return Money.from_minor_units(units, currency)


@given(money(), st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20))
def test_allocation_sums_to_the_whole(total: Money, weights: list[int]) -> None:
    if not any(weights):
        weights[0] = 1
    parts = allocate(total, weights)
    assert sum((p.amount for p in parts), Decimal(0)) == total.amount
    assert all(p.fits_minor_unit() for p in parts)
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = total.amount * weight / weight_sum
        assert abs(part.amount - exact) < Decimal(1).scaleb(-minor_unit(total.currency))


@given(money())
def test_minor_units_round_trip(m: Money) -> None:
    assert Money.from_minor_units(m.minor_units, m.currency) == m
    assert Money.exact(str(m.amount), m.currency).amount == m.amount


@given(st.lists(money(), min_size=1, max_size=10))
def test_entries_balanced_by_construction_are_accepted(amounts: list[Money]) -> None:
    postings = [Posting("Expenses:Anything", m) for m in amounts]
    postings += [Posting("Assets:Bank", -m) for m in amounts]
    if all(p.money.is_zero() for p in postings):
        return
    entry = build_entry(date(2026, 1, 1), "generated", postings)
    assert imbalances(entry.postings) == {}
    reversed_entry = build_entry(date(2026, 1, 2), "undo", reversal_postings(entry.postings))
    assert imbalances(list(entry.postings) + list(reversed_entry.postings)) == {}


@given(money(), money())
def test_unbalanced_entries_are_refused(a: Money, b: Money) -> None:
    postings = [Posting("Assets:Bank", a), Posting("Income:Sales", b)]
    if a.currency == b.currency and a.amount + b.amount == 0:
        return
    with pytest.raises((UnbalancedEntry, InvalidEntry)):
        build_entry(date(2026, 1, 1), "x", postings)


class TestEntries:
    def test_a_single_posting_is_not_an_entry(self) -> None:
        with pytest.raises(InvalidEntry):
            build_entry(date(2026, 1, 1), "x", [Posting("Assets:Bank", usd("0"))])

    def test_unbalanced_names_the_difference(self) -> None:
        with pytest.raises(UnbalancedEntry, match=r"USD \+1\.00"):
            build_entry(
                date(2026, 1, 1),
                "x",
                [Posting("Assets:Bank", usd("10.00")), Posting("Income:Sales", usd("-9.00"))],
            )

    def test_balanced_per_currency_not_in_total(self) -> None:
        with pytest.raises(UnbalancedEntry):
            build_entry(
                date(2026, 1, 1),
                "x",
                [
                    Posting("Assets:Bank", usd("10.00")),
                    Posting("Income:Sales", Money.exact("-10.00", "EUR")),
                ],
            )


class TestAccounts:
    def test_types_come_from_the_root(self) -> None:
        assert account_type_of("Assets:Bank:Operating") is AccountType.ASSET
        assert account_type_of("Liabilities:Prepaid-Wallet") is AccountType.LIABILITY
        assert account_type_of("Income:FX:Realized") is AccountType.INCOME

    @pytest.mark.parametrize(
        "name", ["Bank", "Assets", "Assets:", "Assets:bank", "Assets:Bank Account", "Revenue:X"]
    )
    def test_bad_names(self, name: str) -> None:
        with pytest.raises(InvalidAccountName):
            account_type_of(name)

    def test_minimum_is_read_in_the_normal_direction(self) -> None:
        # A wallet (liability) holding 5.00 has a Beancount balance of -5.00.
        assert not below_minimum(Decimal("-5.00"), AccountType.LIABILITY, Decimal(0))
        assert below_minimum(Decimal("0.01"), AccountType.LIABILITY, Decimal(0))
        assert below_minimum(Decimal("-0.01"), AccountType.ASSET, Decimal(0))


def test_periods_are_calendar_months() -> None:
    assert period_of(date(2024, 2, 29)) == "2024-02"
    assert period_bounds("2024-02") == (date(2024, 2, 1), date(2024, 3, 1))
    assert period_bounds("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
    with pytest.raises(InvalidEntry):
        period_bounds("2026-13")


def test_every_listed_currency_has_a_sane_minor_unit() -> None:
    assert all(len(code) == 3 and code.isupper() for code in MINOR_UNITS)
    assert set(MINOR_UNITS.values()) <= {0, 2, 3, 4}


AMOUNT_TEXTS = st.one_of(
    st.sampled_from(
        [
            "12.50",
            "12.5",
            "12",
            "-0.00",
            "0.00",
            "00.10",
            "-12.505",
            "1.500",
            "1e3",
            " 1.00",
            "1,000.00",
            "999999999999999999.99",
            "9999999999999999999.99",
            "0.000000000001",
            "-",
            "",
            "1.",
            ".5",
            "+1.00",
            "1200",
            "1200.0",
        ]
    ),
    st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{0,5})?", fullmatch=True),
)


@given(text=AMOUNT_TEXTS, currency=st.sampled_from(["USD", "JPY", "KWD", "CLF", "XXX", "usd"]))
def test_exact_text_is_money_exact_for_the_usual_amount_and_declines_the_rest(
    text: str, currency: str
) -> None:
    """The HTTP post's shortcut for "12.50" builds what Money.exact builds, and
    leaves every other text to it (which says what is wrong)."""
    try:
        general: Money | None = Money.exact(parse_amount(text), currency)
    except LedgerError:
        general = None
    quick = exact_text(text, currency)
    if quick is not None:
        assert general is not None
        assert quick == general
        assert str(quick.amount) == str(general.amount) == text
    elif general is not None:  # declined: only texts not written with exactly the places
        assert str(general.amount) != text


def test_a_name_validated_once_is_still_validated_as_before() -> None:
    for _ in range(2):  # the second time from the cache
        assert account_type_of("Income:Subscriptions") is AccountType.INCOME
        with pytest.raises(InvalidAccountName):
            account_type_of("Income:subscriptions")
