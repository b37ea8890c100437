"""Revenue recognition runs: Deferred-Revenue → Income, per invoice line.

What each line has recognized, and what credits removed (with their dates),
is read from the Deferred-Revenue postings of the line (document and `line`
dimension), so a run is idempotent by construction: running it again through
the same date finds nothing due. A run catches up month by month
(billing.recognition.recognition_postings): each invoice posts one entry per
day its lines recognize on — each month's last day (the run's date in its
own month), or the first open day when that month is closed. Batches commit
separately so a long run can be resumed.
"""

from __future__ import annotations

import hashlib
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
from billing.postgres.posting import post_entries
from billing.postings import DEFERRED, invoice_doc
from billing.recognition import LineProgress, check_through, recognition_postings
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres.books import book_window, closed_periods

BATCH_INVOICES = 2000

# A pure rule of a few values; a book has few line shapes (total, service period,
# progress), so a run computes each once instead of once per line.
_recognition_postings = lru_cache(maxsize=65536)(recognition_postings)

_REMOVAL = "p.dimensions->>'via' not in ('finalization', 'recognition')"

_PROGRESS = f"""
select p.document, p.dimensions->>'line' as line,
       -sum(p.amount) filter (where p.dimensions->>'via' = 'finalization') as total,
       coalesce(sum(p.amount) filter (where p.dimensions->>'via' = 'recognition'), 0)
         as recognized,
       array_agg(p.effective_date order by p.effective_date) filter (where {_REMOVAL})
         as removal_dates,
       array_agg(p.amount order by p.effective_date) filter (where {_REMOVAL})
         as removal_amounts
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
    zero: what they deferred, what runs recognized, what credits removed and when."""
    found: dict[tuple[uuid.UUID, int], tuple[Decimal, Decimal, dict[date, Decimal]]] = {}
    for document, line, total, recognized, dates, amounts in conn.execute(
        _PROGRESS, {"book": book_id, "as_of": as_of, "deferred": DEFERRED}
    ):
        if not document or not document.startswith("invoice:") or line is None or total is None:
            continue
        removals: dict[date, Decimal] = {}
        for day, amount in zip(dates or (), amounts or (), strict=True):
            removals[day] = removals.get(day, Decimal(0)) + amount
        found[(uuid.UUID(document.split(":", 1)[1]), int(line))] = (total, recognized, removals)
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
            total, recognized, removals = sums
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
                        removals=tuple(
                            (day, Money(amount, currency))
                            for day, amount in sorted(removals.items())
                        ),
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
    """The entries a run through `through` would post now (pure of side effects):
    one per invoice and day its lines recognize on."""
    closed = closed_periods(conn, book_id)
    due_by_invoice: dict[uuid.UUID, dict[date, list[Posting]]] = defaultdict(
        lambda: defaultdict(list)
    )
    states: dict[uuid.UUID, list[str]] = defaultdict(list)
    numbers: dict[uuid.UUID, str] = {}
    for line in deferred_lines(conn, book_id):
        if line.progress.period.start > through:
            continue
        amounts = _recognition_postings(line.progress, through, closed)
        if not amounts:
            continue
        numbers[line.invoice_id] = line.number
        progress = line.progress
        states[line.invoice_id].append(
            f"{line.line_no}:{progress.recognized.amount}:{progress.removed.amount}"
        )
        doc = invoice_doc(line.invoice_id)
        customer = str(line.customer_id)
        dims = {"line": str(line.line_no), "via": "recognition"}
        for on, due in amounts:
            on_day = due_by_invoice[line.invoice_id][on]
            on_day.append(Posting(DEFERRED, due, customer, doc, dims))
            on_day.append(Posting(line.revenue_account, -due, customer, doc, dims))
    entries = []
    for invoice_id, by_day in sorted(due_by_invoice.items()):
        # The key names the state the run started from, so a repeat is a replay
        # and a later run (after a credit note the same day) is a new entry;
        # hashed, as an invoice may have many lines.
        state = hashlib.sha256(",".join(states[invoice_id]).encode()).hexdigest()[:32]
        for on, postings in sorted(by_day.items()):
            entries.append(
                build_entry(
                    on,
                    f"Revenue recognition {numbers[invoice_id]} through {on}",
                    postings,
                    metadata={"kind": "recognition", "invoice": str(invoice_id)},
                    idempotency_key=f"recognition:{invoice_id}:{on}:{state}",
                )
            )
    return entries


def run_recognition(
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    book_id: uuid.UUID,
    through: date,
    today: date,
) -> RecognitionResult:
    """Recognize everything due through `through` (never after the book's
    `today`), month by month, in batches of entries."""
    check_through(through, today)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    lines: set[tuple[str | None, str]] = set()
    # One run per book at a time: a second run planned from the same state (through
    # another day of the same month) would post that month's partial share again.
    # The guard's transaction holds the lock until the run ends or its process dies.
    with connect() as guard:
        guard.execute(
            "select pg_advisory_xact_lock(hashtextextended('ab_recognition:' || %s::text, 0))",
            (book_id,),
        )
        with connect() as conn:
            book_window(conn, book_id).check("through", through)
            entries = recognition_entries(conn, book_id, through)
            conn.rollback()
        for start in range(0, len(entries), BATCH_INVOICES):
            batch = entries[start : start + BATCH_INVOICES]
            with connect() as conn, conn.transaction():
                post_entries(conn, book_id, batch)
            for entry in batch:
                for posting in entry.postings:
                    if posting.account == DEFERRED:
                        totals[posting.currency] += posting.amount
                        lines.add((posting.document, posting.dimensions["line"]))
        guard.rollback()
    return RecognitionResult(through, len(entries), len(lines), dict(totals))
