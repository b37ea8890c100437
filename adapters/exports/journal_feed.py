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
import json
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from adapters.exports import feed_sql
from adapters.exports.erp_formats import (
    DATE_FORMATS,
    check_mapping,
    check_settings,
    effective_settings,
    header,
    mapping_warnings,
    not_in_base_currency,
    render,
)
from adapters.exports.errors import InvalidCursor, InvalidMapping, UnknownFormat
from adapters.exports.feed import CUSTOMER_JOIN, ErpMapping, FeedEntry, FeedPosting
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
    warnings: tuple[dict[str, Any], ...] = ()  # see erp_formats.check_mapping
    # the body's sha256 when it was computed as the body was read (feed_sql's JSON Lines):
    # derived from the body, so not part of equality
    digest: str | None = field(default=None, compare=False, repr=False)

    @property
    def sha256(self) -> str:
        return self.digest if self.digest is not None else hashlib.sha256(self.body).hexdigest()

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
            "warnings": list(self.warnings),
        }


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


# The sealer numbers a book's seals without gaps, so a batch is the range
# (since, since + limit]: bounded on both sides, the plan reads that range of the
# primary key whatever it guesses for a generic LIMIT (it used to read and sort the
# whole rest of the book per batch, so following the feed slowed as it went).
# Entries and their postings are read apart: each entry's columns are loaded
# once, not once per posting line, and a posting's account (a uuid and two
# texts per row) is a key into the book's accounts, read once per batch.
_READ_ENTRIES = """
select s.seq, s.hash, e.id, e.effective_date, e.recorded_at, e.memo, e.metadata::text,
       e.reverses_entry_id
  from (select seq, hash, entry_id from seals
         where book_id = %(book)s and seq > %(since)s and seq <= %(since)s::bigint + %(limit)s
         order by seq limit %(limit)s) s
  join journal_entries e on e.book_id = %(book)s and e.id = s.entry_id
 order by s.seq
"""

# Sealed entries never change, so the postings of the entries read above are
# these, whatever committed in between.
_READ_POSTINGS = (
    """
select s.seq, p.line_no, p.account_id::text, p.amount, p.currency, p.customer_id, p.document,
       p.dimensions::text, c.name
  from seals s
  join postings p on p.book_id = %(book)s and p.entry_id = s.entry_id
"""
    + CUSTOMER_JOIN
    + """
 where s.book_id = %(book)s and s.seq > %(since)s and s.seq <= %(last)s
 order by s.seq, p.line_no
"""
)


def read_entries(
    conn: psycopg.Connection, book_id: uuid.UUID, since: int, limit: int
) -> list[FeedEntry]:
    heads = conn.execute(
        _READ_ENTRIES, {"book": book_id, "since": since, "limit": limit}
    ).fetchall()
    if not heads:
        return []
    accounts = {
        str(a_id): (a_id, name, code)
        for a_id, name, code in conn.execute(
            "select id, name, code from accounts where book_id = %s", (book_id,)
        ).fetchall()
    }
    rows = conn.execute(
        _READ_POSTINGS, {"book": book_id, "since": since, "last": heads[-1][0]}
    ).fetchall()
    by_seq: dict[int, list[FeedPosting]] = {}
    for seq, line_no, account, amount, currency, customer, document, dimensions, name in rows:
        account_id, account_name, code = accounts[account]
        by_seq.setdefault(seq, []).append(
            FeedPosting(
                line_no, account_id, account_name, code, amount, currency, customer, document,
                # text, parsed only when there are some: most postings have none
                {} if dimensions in (None, "{}") else json.loads(dimensions),
                name,
            )
        )  # fmt: skip
    return [
        FeedEntry(
            seq,
            seal_hash,
            entry_id,
            effective,
            recorded,
            memo,
            # text, parsed only when there is some
            {} if metadata in (None, "{}") else json.loads(metadata),
            reverses,
            tuple(by_seq.get(seq, ())),
        )
        for seq, seal_hash, entry_id, effective, recorded, memo, metadata, reverses in heads
    ]


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
    check_format(fmt)
    check_limit(limit)
    base = conn.execute("select base_currency from books where id = %s", (book_id,)).fetchone()
    base_currency = base[0] if base else ""
    mapping = load_mapping(conn, book_id, fmt)
    return _build_in_sql(conn, book_id, fmt, since, limit, base_currency, mapping)


def build_in_python(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    fmt: str,
    since: int,
    limit: int,
    base_currency: str,
    mapping: ErpMapping,
) -> Batch:
    """The batch from erp_formats' Python layouts: the reference that
    tests/integration/test_feed_sql.py holds the SQL layouts to, byte for byte (and
    Xero's page whose tracking option is a JSON object or array, written as Python's
    repr of it)."""
    entries = read_entries(conn, book_id, since, limit)
    warnings = check_mapping(fmt, entries, mapping)
    body = render(fmt, book_id, base_currency, entries, mapping)
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
        warnings=tuple(warnings),
    )


def _build_in_sql(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    fmt: str,
    since: int,
    limit: int,
    base_currency: str,
    mapping: ErpMapping,
) -> Batch:
    """build_batch with the page read and its lines written by PostgreSQL (feed_sql)."""
    settings = effective_settings(fmt, mapping.settings)
    if fmt == "sap":  # refused before reading: SAP's check needs no lines
        mapping_warnings(fmt, mapping, any_entries=False, taxed=(), unmapped=())
    page = feed_sql.read_page(
        conn,
        book_id,
        fmt,
        since,
        limit,
        base_currency=base_currency,
        settings=settings,
        date_format="YYYYMMDD"
        if fmt == "sap"
        else _TO_CHAR.get(settings.get("date_format", ""), ""),
    )
    if page.composite:  # a Xero tracking option that is an object or an array
        return build_in_python(conn, book_id, fmt, since, limit, base_currency, mapping)
    warnings = mapping_warnings(
        fmt, mapping, any_entries=page.count > 0, taxed=page.taxed, unmapped=page.unmapped
    )
    if page.foreign is not None:  # Xero: refused after the mapping, as check_mapping then render
        raise not_in_base_currency(*page.foreign, base_currency)
    return Batch(
        format=fmt,
        since=since,
        next_cursor=page.last_seq if page.last_seq is not None else since,
        first_seq=page.first_seq,
        last_seq=page.last_seq,
        count=page.count,
        lines=page.lines,
        totals=page.totals,
        body=header(fmt) + page.body,
        warnings=tuple(warnings),
        # the page's hash is the body's when the format has no header row (JSON Lines)
        digest=page.sha256 if not header(fmt) else None,
    )


# erp_formats' date formats as to_char patterns (the same names: MM, DD, YYYY).
_TO_CHAR = {name: name for name in DATE_FORMATS}


def seal_then_build(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    book_id: uuid.UUID,
    fmt: str,
    since: int,
    limit: int = DEFAULT_LIMIT,
    read: Callable[[], AbstractContextManager[psycopg.Connection]] | None = None,
) -> Batch:
    """Seal what is queued (so fresh entries are included), then build the batch
    (on `read`, a replica connection that has replayed the seal, when given)."""
    check_format(fmt)
    check_limit(limit)
    seal_pending(connect, book_id, wait=True)
    with (read or connect)() as conn:
        try:
            return build_batch(conn, book_id, fmt, since, limit)
        finally:
            conn.rollback()
