"""Collection rules: the retry schedule after a decline and the gateway entries."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billing.collection import (
    dispute_opened_entry,
    fee_entry,
    next_retry,
    payout_entry,
)
from ledger.money import Money

D = date


def _usd(text: str) -> Money:
    return Money(Decimal(text), "USD")


def test_first_decline_on_feb_2_retries_on_5_7_9() -> None:
    first = [(D(2026, 2, 2), "failed")]
    assert next_retry(first) == D(2026, 2, 5)
    assert next_retry([*first, (D(2026, 2, 5), "failed")]) == D(2026, 2, 7)
    assert next_retry([*first, (D(2026, 2, 5), "failed"), (D(2026, 2, 7), "failed")]) == D(
        2026, 2, 9
    )
    used = [*first, (D(2026, 2, 5), "failed"), (D(2026, 2, 7), "failed"), (D(2026, 2, 9), "failed")]
    assert next_retry(used) is None


def test_no_retry_after_a_success_or_before_any_attempt() -> None:
    assert next_retry([]) is None
    assert next_retry([(D(2026, 2, 2), "failed"), (D(2026, 2, 5), "succeeded")]) is None


def test_requires_action_counts_as_a_failure_and_retry_days_come_from_the_book() -> None:
    assert next_retry([(D(2026, 2, 2), "requires_action")], (1, 2)) == D(2026, 2, 3)


def test_fee_and_payout_entries() -> None:
    fee = fee_entry("p1", "c1", D(2026, 2, 2), "Assets:Clearing:Fake", _usd("3.43"), "ch_1")
    assert sorted((p.account, p.amount) for p in fee.postings) == [
        ("Assets:Clearing:Fake", Decimal("-3.43")),
        ("Expenses:Payment-Fees", Decimal("3.43")),
    ]
    payout = payout_entry("po1", D(2026, 2, 4), "Assets:Clearing:Fake", _usd("104.57"))
    assert sorted((p.account, p.amount) for p in payout.postings) == [
        ("Assets:Bank:Operating", Decimal("104.57")),
        ("Assets:Clearing:Fake", Decimal("-104.57")),
    ]


def test_dispute_opened_108_plus_15() -> None:
    entry = dispute_opened_entry(
        "d1", "p1", "c1", D(2026, 2, 9), "Assets:Clearing:Fake", _usd("108.00"), _usd("15.00")
    )
    assert sorted((p.account, p.amount) for p in entry.postings) == [
        ("Assets:Clearing:Fake", Decimal("-123.00")),
        ("Assets:Disputed-Funds", Decimal("108.00")),
        ("Expenses:Dispute-Fees", Decimal("15.00")),
    ]
