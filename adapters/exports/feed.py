"""The journal feed's records, shared by the feed (journal_feed) and its layouts (erp_formats).

They live apart so imports go one way: journal_feed → erp_formats → feed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "CUSTOMER_JOIN",
    "CUSTOMER_UUID",
    "ErpMapping",
    "FeedEntry",
    "FeedPosting",
    "external_id",
]

# The customer id a posting `p` carries, as a uuid (null when it is none: the case
# guards the cast).
CUSTOMER_UUID = (
    "case when p.customer_id"
    " ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'"
    " then p.customer_id::uuid end"
)
# The customer a posting `p` names, as `c`: joining on the uuid keeps the primary-key
# lookup available (comparing c.id::text would leave only a scan of the book's customers).
CUSTOMER_JOIN = " left join customers c on c.book_id = p.book_id and c.id = " + CUSTOMER_UUID


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and a
# feed page builds 10,000 postings (4x the construction time). Nothing writes to them.
@dataclass(slots=True)
class FeedPosting:
    line_no: int
    account_id: uuid.UUID
    account: str
    code: str | None
    amount: Decimal
    currency: str
    customer: str | None  # the customer id the posting carries
    document: str | None
    dimensions: dict[str, Any]
    customer_name: str | None = None  # that customer's name, when it is one of the book's

    @property
    def customer_label(self) -> str | None:
        """What an ERP's name column shows: the customer's name, else the id as posted."""
        return self.customer_name or self.customer


@dataclass(slots=True)
class FeedEntry:
    seq: int
    seal_hash: str
    entry_id: uuid.UUID
    effective_date: date
    recorded_at: datetime
    memo: str
    metadata: dict[str, Any]
    reverses: uuid.UUID | None
    postings: tuple[FeedPosting, ...]


@dataclass(frozen=True, slots=True)
class ErpMapping:
    settings: dict[str, Any]
    codes: dict[uuid.UUID, str]


def external_id(book_id: uuid.UUID, seq: int) -> str:
    return f"AB-{book_id.hex[:8].upper()}-{seq}"
