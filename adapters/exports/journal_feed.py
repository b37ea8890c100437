"""The ERP journal feed: sealed entries after a cursor, as a file and its manifest.

The cursor is the last delivered seal sequence number. Sequence numbers are
gapless per book and assigned by the sealer after an entry commits, one
sealer at a time, so a reader that asks for `seq > cursor` can never pass an
entry that commits late: such an entry simply gets a later number. Readers
seal what is queued first, so a fresh entry is included at once.

A batch is deterministic: the same (format, since, limit, mapping) gives the
same bytes, and every entry carries an external id derived from the book and
its sequence (`AB-<first 8 hex of the book id>-<seq>`), so an ERP that is sent
a batch twice can drop the duplicate. Reversals are entries of their own and
are exported as new journals, never as edits.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from adapters.exports.errors import InvalidCursor, InvalidMapping, UnknownFormat
from ledger.postgres.sealer import seal_pending

FORMATS = ("jsonl", "netsuite", "quickbooks", "xero", "sap")
ERP_FORMATS = FORMATS[1:]
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000

MEDIA_TYPES = {
    "jsonl": "application/jsonl",
    "netsuite": "text/csv; charset=utf-8",
    "quickbooks": "text/csv; charset=utf-8",
    "xero": "text/csv; charset=utf-8",
    "sap": "text/csv; charset=utf-8",
}
EXTENSIONS = {"jsonl": "jsonl", "netsuite": "csv", "quickbooks": "csv", "xero": "csv", "sap": "csv"}


@dataclass(frozen=True, slots=True)
class FeedPosting:
    line_no: int
    account_id: uuid.UUID
    account: str
    code: str | None
    amount: Decimal
    currency: str
    customer: str | None
    document: str | None
    dimensions: dict[str, Any]


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Batch:
    format: str
    since: int
    next_cursor: int
    first_seq: int | None
    last_seq: int | None
    count: int
    lines: int
    totals: dict[str, tuple[Decimal, Decimal]]  # currency → (debits, credits)
    body: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def manifest(self, book_id: uuid.UUID) -> dict[str, Any]:
        return {
            "book_id": str(book_id),
            "format": self.format,
            "since": str(self.since),
            "next_cursor": str(self.next_cursor),
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "count": self.count,
            "lines": self.lines,
            "totals": {
                c: {"debit": str(d), "credit": str(k)} for c, (d, k) in sorted(self.totals.items())
            },
            "sha256": self.sha256,
            "bytes": len(self.body),
        }


def external_id(book_id: uuid.UUID, seq: int) -> str:
    return f"AB-{book_id.hex[:8].upper()}-{seq}"


def check_format(value: str) -> str:
    if value not in FORMATS:
        raise UnknownFormat(
            f"unknown export format {value!r}: use one of {', '.join(FORMATS)}", format=value
        )
    return value


def parse_cursor(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit() or len(value) > 18:
        raise InvalidCursor(
            f"since {value!r} is not a cursor: pass the Next-Cursor of the previous batch"
            " (a sequence number; 0 for the beginning)",
            since=value,
        )
    return int(value)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidCursor(f"limit must be between 1 and {MAX_LIMIT}", limit=limit)
    return limit


_READ = """
select s.seq, s.hash, e.id, e.effective_date, e.recorded_at, e.memo, e.metadata,
       e.reverses_entry_id, p.line_no, p.account_id, a.name, a.code, p.amount, p.currency,
       p.customer_id, p.document, p.dimensions
  from (select seq, hash, entry_id from seals
         where book_id = %(book)s and seq > %(since)s order by seq limit %(limit)s) s
  join journal_entries e on e.book_id = %(book)s and e.id = s.entry_id
  join postings p on p.book_id = %(book)s and p.entry_id = e.id
  join accounts a on a.book_id = %(book)s and a.id = p.account_id
 order by s.seq, p.line_no
"""


def read_entries(
    conn: psycopg.Connection, book_id: uuid.UUID, since: int, limit: int
) -> list[FeedEntry]:
    rows = conn.execute(_READ, {"book": book_id, "since": since, "limit": limit}).fetchall()
    entries: list[FeedEntry] = []
    postings: list[FeedPosting] = []
    for index, row in enumerate(rows):
        postings.append(FeedPosting(*row[8:17]))
        if index + 1 == len(rows) or rows[index + 1][0] != row[0]:
            seq, seal_hash, entry_id, effective, recorded, memo, metadata, reverses = row[:8]
            entries.append(
                FeedEntry(
                    seq,
                    seal_hash,
                    entry_id,
                    effective,
                    recorded,
                    memo,
                    metadata or {},
                    reverses,
                    tuple(postings),
                )
            )
            postings = []
    return entries


def load_mapping(conn: psycopg.Connection, book_id: uuid.UUID, fmt: str) -> ErpMapping:
    if fmt not in ERP_FORMATS:
        return ErpMapping({}, {})
    row = conn.execute(
        "select settings from erp_settings where book_id = %s and erp_format = %s", (book_id, fmt)
    ).fetchone()
    codes = conn.execute(
        "select account_id, erp_code from erp_account_mappings"
        " where book_id = %s and erp_format = %s",
        (book_id, fmt),
    ).fetchall()
    return ErpMapping(row[0] if row else {}, {a: c for a, c in codes})


def save_mapping(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    fmt: str,
    settings: dict[str, Any],
    accounts: dict[str, str],
) -> None:
    """Replace the book's mapping for one ERP: settings and account codes.
    Accounts are named by name or id; unmapped ones fall back (see erp_formats)."""
    from adapters.exports.erp_formats import check_settings

    if fmt not in ERP_FORMATS:
        raise UnknownFormat(
            f"no mapping for {fmt!r}: use one of {', '.join(ERP_FORMATS)}", format=fmt
        )
    check_settings(fmt, settings)
    rows = conn.execute("select id, name from accounts where book_id = %s", (book_id,)).fetchall()
    by_ref = {name: account_id for account_id, name in rows}
    by_ref.update({str(account_id): account_id for account_id, _ in rows})
    resolved: dict[uuid.UUID, str] = {}
    unknown = sorted(ref for ref in accounts if ref not in by_ref)
    if unknown:
        raise InvalidMapping(f"unknown account(s): {', '.join(unknown)}", accounts=unknown)
    for ref, code in accounts.items():
        if not isinstance(code, str) or not code.strip():
            raise InvalidMapping(f"the ERP code for {ref} must be a non-empty string", account=ref)
        resolved[by_ref[ref]] = code.strip()
    conn.execute(
        "insert into erp_settings (book_id, erp_format, settings) values (%s, %s, %s)"
        " on conflict (book_id, erp_format)"
        " do update set settings = excluded.settings, updated_at = now()",
        (book_id, fmt, Jsonb(settings)),
    )
    conn.execute(
        "delete from erp_account_mappings where book_id = %s and erp_format = %s", (book_id, fmt)
    )
    if resolved:
        conn.execute(
            "insert into erp_account_mappings (book_id, erp_format, account_id, erp_code)"
            " select %s, %s, * from unnest(%s::uuid[], %s::text[])",
            (book_id, fmt, list(resolved), list(resolved.values())),
        )


def mapping_document(conn: psycopg.Connection, book_id: uuid.UUID, fmt: str) -> dict[str, Any]:
    from adapters.exports.erp_formats import effective_settings

    mapping = load_mapping(conn, book_id, fmt)
    names: dict[uuid.UUID, str] = dict(
        conn.execute("select id, name from accounts where book_id = %s", (book_id,)).fetchall()
    )
    return {
        "format": fmt,
        "settings": effective_settings(fmt, mapping.settings),
        "accounts": {names[a]: code for a, code in sorted(mapping.codes.items(), key=str)},
    }


def build_batch(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    fmt: str,
    since: int,
    limit: int = DEFAULT_LIMIT,
) -> Batch:
    from adapters.exports.erp_formats import render

    check_format(fmt)
    check_limit(limit)
    base = conn.execute("select base_currency from books where id = %s", (book_id,)).fetchone()
    entries = read_entries(conn, book_id, since, limit)
    mapping = load_mapping(conn, book_id, fmt)
    body = render(fmt, book_id, base[0] if base else "", entries, mapping)
    totals: dict[str, tuple[Decimal, Decimal]] = {}
    lines = 0
    for entry in entries:
        for p in entry.postings:
            lines += 1
            debit, credit = totals.get(p.currency, (Decimal(0), Decimal(0)))
            if p.amount > 0:
                debit += p.amount
            else:
                credit -= p.amount
            totals[p.currency] = (debit, credit)
    return Batch(
        format=fmt,
        since=since,
        next_cursor=entries[-1].seq if entries else since,
        first_seq=entries[0].seq if entries else None,
        last_seq=entries[-1].seq if entries else None,
        count=len(entries),
        lines=lines,
        totals=totals,
        body=body,
    )


def seal_then_build(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    book_id: uuid.UUID,
    fmt: str,
    since: int,
    limit: int = DEFAULT_LIMIT,
) -> Batch:
    """Seal what is queued (so fresh entries are included), then build the batch."""
    check_format(fmt)
    check_limit(limit)
    seal_pending(connect, book_id, wait=True)
    with connect() as conn:
        try:
            return build_batch(conn, book_id, fmt, since, limit)
        finally:
            conn.rollback()
