"""Revenue recognition runs: Deferred-Revenue → Income, per invoice line.

What each line has recognized, and what credits removed, is read from the
Deferred-Revenue postings of the line (document and `line` dimension), so a
run is idempotent by construction: running it again through the same date
finds nothing due. Each invoice's lines post one entry; batches commit
separately so a long run can be resumed.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache

import psycopg

from billing.periods import Period
from billing.postings import DEFERRED, invoice_doc
from billing.recognition import LineProgress, due_for_line
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import post_entries

BATCH_INVOICES = 2000

# A pure rule of a few values; a book has few line shapes (total, service period,
# progress), so a run computes each once instead of once per line.
_due_for_line = lru_cache(maxsize=65536)(due_for_line)

_PROGRESS = """
select p.document, p.dimensions->>'line' as line,
       -sum(p.amount) filter (where p.dimensions->>'via' = 'finalization') as total,
       coalesce(sum(p.amount) filter (where p.dimensions->>'via' = 'recognition'), 0)
         as recognized,
       coalesce(sum(p.amount) filter (
         where p.dimensions->>'via' not in ('finalization', 'recognition')), 0) as removed
  from postings p
 where p.book_id = %(book)s
   and (%(as_of)s::date is null or p.effective_date <= %(as_of)s::date)
   and p.account_id = (select id from accounts where book_id = %(book)s and name = %(deferred)s)
 group by p.document, p.dimensions->>'line'
having sum(p.amount) <> 0
"""

_LINES = """
select l.invoice_id, l.line_no, l.service_start, l.service_end, l.revenue_account,
       i.customer_id, i.currency, i.number
  from invoice_lines l join invoices i on i.book_id = l.book_id and i.id = l.invoice_id
 where l.book_id = %s and l.invoice_id = any(%s) and l.service_start is not null
"""


@dataclass(frozen=True, slots=True)
class DeferredLine:
    """An invoice line with revenue still deferred, and its progress per the ledger."""

    invoice_id: uuid.UUID
    line_no: int
    number: str
    customer_id: uuid.UUID
    revenue_account: str
    progress: LineProgress


def deferred_lines(
    conn: psycopg.Connection, book_id: uuid.UUID, as_of: date | None = None
) -> list[DeferredLine]:
    """Lines whose Deferred-Revenue postings (up to `as_of`, or all) do not net to
    zero: what they deferred, what runs recognized, what credits removed."""
    found: dict[tuple[uuid.UUID, int], tuple[Decimal, Decimal, Decimal]] = {}
    for document, line, total, recognized, removed in conn.execute(
        _PROGRESS, {"book": book_id, "as_of": as_of, "deferred": DEFERRED}
    ):
        if not document or not document.startswith("invoice:") or line is None or total is None:
            continue
        found[(uuid.UUID(document.split(":", 1)[1]), int(line))] = (total, recognized, removed)
    invoice_ids = sorted({invoice for invoice, _ in found})
    lines: list[DeferredLine] = []
    for chunk_start in range(0, len(invoice_ids), 10_000):
        chunk = invoice_ids[chunk_start : chunk_start + 10_000]
        for invoice_id, line_no, start, end, account, customer, currency, number in conn.execute(
            _LINES, (book_id, chunk)
        ):
            sums = found.get((invoice_id, line_no))
            if sums is None:
                continue
            total, recognized, removed = sums
            lines.append(
                DeferredLine(
                    invoice_id,
                    line_no,
                    number or "",
                    customer,
                    account,
                    LineProgress(
                        total=Money(total, currency),
                        period=Period(start, end),
                        recognized=Money(recognized, currency),
                        removed=Money(removed, currency),
                    ),
                )
            )
    return lines


@dataclass(frozen=True, slots=True)
class RecognitionResult:
    through: date
    entries: int
    lines: int
    amount_by_currency: dict[str, Decimal]


def recognition_entries(
    conn: psycopg.Connection, book_id: uuid.UUID, through: date
) -> list[JournalEntry]:
    """The entries a run through `through` would post now (pure of side effects)."""
    due_by_invoice: dict[uuid.UUID, list[tuple[int, str, Money, str, str]]] = defaultdict(list)
    numbers: dict[uuid.UUID, str] = {}
    for line in deferred_lines(conn, book_id):
        if line.progress.period.start > through:
            continue
        due = _due_for_line(line.progress, through)
        if not due.is_zero():
            numbers[line.invoice_id] = line.number
            due_by_invoice[line.invoice_id].append(
                (
                    line.line_no,
                    line.revenue_account,
                    due,
                    str(line.customer_id),
                    f"{line.progress.recognized.amount}",
                )
            )
    entries = []
    for invoice_id, lines in sorted(due_by_invoice.items()):
        doc = invoice_doc(invoice_id)
        postings: list[Posting] = []
        for line_no, account, due, customer, _ in lines:
            dims = {"line": str(line_no), "via": "recognition"}
            postings.append(Posting(DEFERRED, due, customer, doc, dims))
            postings.append(Posting(account, -due, customer, doc, dims))
        # The key names the state it started from, so a repeat is a replay and a
        # later run (after a credit note the same day) is a new entry.
        state = ",".join(f"{n}:{r}" for n, _, _, _, r in lines)
        entries.append(
            build_entry(
                through,
                f"Revenue recognition {numbers[invoice_id]} through {through}",
                postings,
                metadata={"kind": "recognition", "invoice": str(invoice_id)},
                idempotency_key=f"recognition:{invoice_id}:{through}:{state}",
            )
        )
    return entries


def run_recognition(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    book_id: uuid.UUID,
    through: date,
) -> RecognitionResult:
    """Recognize everything due through `through`, in batches of invoices."""
    with connect() as conn:
        entries = recognition_entries(conn, book_id, through)
        conn.rollback()
    totals: dict[str, Decimal] = defaultdict(Decimal)
    lines = 0
    for start in range(0, len(entries), BATCH_INVOICES):
        batch = entries[start : start + BATCH_INVOICES]
        with connect() as conn, conn.transaction():
            post_entries(conn, book_id, batch)
        for entry in batch:
            for posting in entry.postings:
                if posting.account == DEFERRED:
                    totals[posting.currency] += posting.amount
                    lines += 1
    return RecognitionResult(through, len(entries), lines, dict(totals))
