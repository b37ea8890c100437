from __future__ import annotations

from datetime import date
from decimal import Decimal

from ledger.sealing import GENESIS_HASH, SealedEntry, SealedPosting, canonical_bytes, chain_hash


def entry(amount: str = "10.00") -> SealedEntry:
    return SealedEntry(
        entry_id="e1",
        effective_date=date(2026, 1, 1),
        memo="m",
        metadata={"b": 1, "a": 2},
        idempotency_key="k",
        reverses=None,
        postings=[
            SealedPosting(1, "acc-1", Decimal(amount), "USD", None, None, {}),
            SealedPosting(2, "acc-2", -Decimal(amount), "USD", "c1", "invoice:1", {"x": "y"}),
        ],
    )


def test_hash_depends_on_every_amount_and_the_previous_hash() -> None:
    base = chain_hash(GENESIS_HASH, entry())
    assert base == chain_hash(GENESIS_HASH, entry())
    assert base != chain_hash(GENESIS_HASH, entry("10.01"))
    assert base != chain_hash("1" * 64, entry())


def test_trailing_zeros_do_not_change_the_content() -> None:
    assert canonical_bytes(entry("10.00")) == canonical_bytes(entry("10.0"))
    assert canonical_bytes(entry("0.00")) == canonical_bytes(entry("0"))
