from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal

import pytest

from ledger.sealing import (
    GENESIS_HASH,
    SealedEntry,
    SealedPosting,
    canonical_bytes,
    chain_hash,
    link_hash,
)


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


def test_the_hash_algorithm_is_unchanged() -> None:
    # Pinned with the original implementation: the bulk paths (sealer, verify)
    # build the same canonical bytes from plain values, so seals made before
    # and after stay valid. Unicode, escapes, nested metadata, unsorted lines.
    pinned = SealedEntry(
        entry_id="e1",
        effective_date=date(2026, 1, 1),
        memo='mé\n"q',
        metadata={"b": 1, "a": [2.5, "☃"], "c": None},
        idempotency_key="k",
        reverses="r1",
        postings=[
            SealedPosting(
                2, "acc-2", Decimal("-10.50"), "USD", "c1", "invoice:1", {"x": "y", "a": True}
            ),
            SealedPosting(1, "acc-1", Decimal("10.500"), "USD", None, None, {}),
        ],
    )
    assert chain_hash(GENESIS_HASH, pinned, 1) == (
        "3f83a70f03e863be7fd02fed9fccb64ce82834f531a70c676b33e4d65d143d83"
    )
    # Format 2: one digest of the previous hash's hex digits then the canonical bytes.
    assert chain_hash(GENESIS_HASH, pinned, 2) == chain_hash(GENESIS_HASH, pinned)
    assert chain_hash(GENESIS_HASH, pinned, 2) == (
        hashlib.sha256(GENESIS_HASH.encode() + canonical_bytes(pinned)).hexdigest()
    )


@pytest.mark.parametrize("seal_format", [1, 2])
def test_each_format_binds_the_previous_hash_and_every_amount(seal_format: int) -> None:
    base = chain_hash(GENESIS_HASH, entry(), seal_format)
    assert base != chain_hash(GENESIS_HASH, entry("10.01"), seal_format)
    assert base != chain_hash("1" * 64, entry(), seal_format)


def test_a_hash_does_not_pass_under_the_other_format() -> None:
    """Flipping a seal's recorded format (a downgrade) must break its hash."""
    canonical = canonical_bytes(entry())
    assert link_hash(GENESIS_HASH, canonical, 1) != link_hash(GENESIS_HASH, canonical, 2)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown seal format 3"):
        link_hash(GENESIS_HASH, b"{}", 3)
