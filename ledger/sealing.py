"""Tamper evidence: a hash chain over each book's entries in sealed order.

Writers never wait for the seal: a committed entry waits in a queue until the
sealer (one per book at a time) gives it the next sequence number and a
hash that binds the previous seal's hash to the entry's canonical bytes.
Because sequence numbers are handed out after commit, an entry that commits
late simply gets a later number, and a reader following the sequence never
skips it.

Each seal records the format of its hash (`seals.format`) and is checked by
its own format forever, so a book's chain can cross from one format to the next:
- 1: `sha256(previous hash || sha256(canonical entry))`, both as hex text;
- 2 (what the sealer writes): `sha256(previous hash || canonical entry)`, the
  previous hash as its 64 hex digits followed by the canonical JSON bytes:
  one digest per entry instead of two. The previous hash has a fixed length,
  so the message splits one way only.
No hash passes under both formats: a format-1 message is 128 hex digits, a
format-2 message has a `{` after its first 64 bytes (the canonical document
is a JSON object), so flipping a seal's recorded format breaks its hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

GENESIS_HASH = "0" * 64

# The seal formats verify knows (see the module's docstring); a seal of any
# other format is a discrepancy. The sealer writes CURRENT_FORMAT.
FORMATS = (1, 2)
CURRENT_FORMAT = 2


@dataclass(frozen=True, slots=True)
class SealedPosting:
    line_no: int
    account_id: str
    amount: Decimal
    currency: str
    customer: str | None
    document: str | None
    dimensions: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SealedEntry:
    entry_id: str
    effective_date: date
    memo: str
    metadata: Mapping[str, Any]
    idempotency_key: str
    reverses: str | None
    postings: Sequence[SealedPosting]


def _amount(value: Decimal) -> str:
    # The exact value, independent of how many trailing zeros were stored.
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def canonical_bytes(entry: SealedEntry) -> bytes:
    return canonical_row_bytes(
        entry.entry_id,
        entry.effective_date.isoformat(),
        entry.memo,
        entry.metadata,
        entry.idempotency_key,
        entry.reverses,
        [
            [
                p.line_no,
                p.account_id,
                _amount(p.amount),
                p.currency,
                p.customer,
                p.document,
                p.dimensions,
            ]
            for p in sorted(entry.postings, key=lambda p: p.line_no)
        ],
    )


def canonical_row_bytes(
    entry_id: str,
    effective_date: str,
    memo: str,
    metadata: Any,
    idempotency_key: str,
    reverses: str | None,
    postings: list[list[Any]],
) -> bytes:
    """The canonical document from plain values (the bulk paths skip the dataclasses).

    `postings` must already be in line order, each
    `[line_no, account_id, amount, currency, customer, document, dimensions]`
    with the amount as `_amount` writes it (`canonical_amount`).
    """
    document = {
        "id": entry_id,
        "date": effective_date,
        "memo": memo,
        "metadata": metadata,
        "key": idempotency_key,
        "reverses": reverses,
        "postings": postings,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_amount(text: str) -> str:
    """`_amount` of a trailing-zero-free decimal text (PostgreSQL's `trim_scale(x)::text`).

    Past 28 significant digits `Decimal.normalize` rounds to the context's
    precision, so such an amount goes through `_amount` itself.
    """
    return text if len(text) <= 28 else _amount(Decimal(text))


def chain_hash(previous_hash: str, entry: SealedEntry, seal_format: int = CURRENT_FORMAT) -> str:
    return link_hash(previous_hash, canonical_bytes(entry), seal_format)


def link_hash(previous_hash: str, canonical: bytes, seal_format: int = CURRENT_FORMAT) -> str:
    """The seal hash of an entry's canonical bytes after `previous_hash`, in the
    given format; ValueError for a format this code does not know."""
    if seal_format == 2:
        return hashlib.sha256(previous_hash.encode() + canonical).hexdigest()
    if seal_format == 1:
        content = hashlib.sha256(canonical).hexdigest()
        return hashlib.sha256(f"{previous_hash}{content}".encode()).hexdigest()
    raise ValueError(f"unknown seal format {seal_format}")
