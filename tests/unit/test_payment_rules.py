"""Pure payment rules: card numbers refused anywhere, ABA checksums, the gateway fee,
business days for payouts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing.errors import InvalidBillingRequest
from billing.payment_methods import (
    GatewayFee,
    aba_valid,
    add_business_days,
    contains_card_number,
    gateway_fee,
    luhn_valid,
    refuse_card_numbers,
)
from ledger.money import Money

FEE = GatewayFee(Decimal("2.9"), Decimal("0.30"))


def test_visa_test_number_passes_luhn_and_a_changed_digit_does_not() -> None:
    assert luhn_valid("4242424242424242")
    assert not luhn_valid("4242424242424241")


@pytest.mark.parametrize(
    "body",
    [
        {"type": "card", "number": "4242424242424242"},
        {"type": "card", "token": "4242 4242 4242 4242"},
        {"type": "card", "metadata": {"note": "card 4111-1111-1111-1111 from phone"}},
        {"type": "card", "tags": [["378282246310005"]]},
        {"type": "card", "number": 4242424242424242},
    ],
)
def test_a_full_card_number_in_any_field_is_seen(body: object) -> None:
    assert contains_card_number(body)
    with pytest.raises(InvalidBillingRequest):
        refuse_card_numbers(body)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "card", "token": "pm_card_visa", "last4": "4242"},
        {"type": "card", "number": "4242424242424241"},  # fails Luhn
        {"type": "card", "number": "424242424242"},  # 12 digits
        {"type": "sepa_debit", "iban": "BE68539007547034"},  # IBANs have their own check
        {"type": "us_bank_account", "account_number": "4242424242424242"},
    ],
)
def test_tokens_short_runs_and_bank_fields_are_not_card_numbers(body: object) -> None:
    assert not contains_card_number(body)


def test_aba_checksum() -> None:
    assert aba_valid("110000000")  # Stripe's test routing number
    assert aba_valid("021000021")
    assert not aba_valid("021000022")
    assert not aba_valid("12345678")
    assert not aba_valid("02100002a")


def test_fee_on_108_is_3_43_half_up() -> None:
    assert gateway_fee(Money(Decimal("108.00"), "USD"), FEE) == Money(Decimal("3.43"), "USD")


def test_fee_rounds_half_up_at_the_half_cent() -> None:
    # 50.00 × 2.9 % = 1.45 + 0.30 = 1.75; 0.50 × 2.9 % = 0.0145 + 0.30 = 0.3145 → 0.31
    assert gateway_fee(Money(Decimal("50.00"), "USD"), FEE).amount == Decimal("1.75")
    assert gateway_fee(
        Money(Decimal("100.00"), "USD"), GatewayFee(Decimal("0.005"), Decimal(0))
    ).amount == Decimal("0.01")


def test_payout_two_business_days_after_capture() -> None:
    assert add_business_days(date(2026, 2, 2), 2) == date(2026, 2, 4)  # Mon → Wed
    assert add_business_days(date(2026, 2, 5), 2) == date(2026, 2, 9)  # Thu → Mon
    assert add_business_days(date(2026, 2, 6), 2) == date(2026, 2, 10)  # Fri → Tue
    assert add_business_days(date(2026, 2, 7), 2) == date(2026, 2, 10)  # Sat → Tue
