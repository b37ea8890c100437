"""Journal entries and postings: immutable records, balanced per currency.

The zero-sum rule is checked here, when an entry is built, and again by
PostgreSQL when the statement inserting the entry ends (its statement-level
triggers; no posting can join the entry later), so neither a bug here
nor a raw SQL session can store an unbalanced entry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from ledger.accounts import account_type_of
from ledger.errors import InvalidEntry, UnbalancedEntry
from ledger.money import Money

MAX_POSTINGS = 1000


@dataclass(frozen=True, slots=True)
class Posting:
    account: str  # Beancount-style account name
    money: Money  # signed: debit positive, credit negative
    customer: str | None = None
    document: str | None = None  # source document, e.g. "invoice:in_123"
    dimensions: Mapping[str, str] = field(default_factory=dict)

    @property
    def amount(self) -> Decimal:
        return self.money.amount

    @property
    def currency(self) -> str:
        return self.money.currency


@dataclass(frozen=True, slots=True)
class JournalEntry:
    effective_date: date
    memo: str
    postings: tuple[Posting, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    reverses: str | None = None  # id of the entry this one reverses


def imbalances(postings: Sequence[Posting]) -> dict[str, Decimal]:
    """Per-currency sums that are not zero (empty for a balanced entry)."""
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for posting in postings:
        sums[posting.currency] += posting.amount
    return {currency: total for currency, total in sums.items() if total != 0}


def build_entry(
    effective_date: date,
    memo: str,
    postings: Sequence[Posting],
    *,
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    reverses: str | None = None,
) -> JournalEntry:
    """Validate and freeze an entry: two or more postings, balanced per currency."""
    if len(postings) < 2:
        raise InvalidEntry("a journal entry needs at least two postings")
    if len(postings) > MAX_POSTINGS:
        raise InvalidEntry(f"a journal entry may have at most {MAX_POSTINGS} postings")
    if len(memo) > 1000:
        raise InvalidEntry("memo is longer than 1000 characters")
    for posting in postings:
        account_type_of(posting.account)
        posting.money.quantized()  # raises TooPrecise for sub-minor-unit amounts
    off = imbalances(postings)
    if off:
        detail = ", ".join(f"{currency} {total:+}" for currency, total in sorted(off.items()))
        raise UnbalancedEntry(
            f"postings must sum to zero in each currency; off by {detail}",
            imbalance={currency: str(total) for currency, total in off.items()},
        )
    if all(p.money.is_zero() for p in postings):
        raise InvalidEntry("a journal entry must move some money: every posting is zero")
    return JournalEntry(
        effective_date=effective_date,
        memo=memo,
        postings=tuple(postings),
        metadata=dict(metadata or {}),
        idempotency_key=idempotency_key,
        reverses=reverses,
    )


def reversal_postings(postings: Sequence[Posting]) -> list[Posting]:
    """The postings that undo `postings`: same accounts and dimensions, opposite signs."""
    return [
        Posting(p.account, -p.money, p.customer, p.document, dict(p.dimensions)) for p in postings
    ]
