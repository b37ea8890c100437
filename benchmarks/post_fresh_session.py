"""One long-lived session posting into a fresh database, never analyzed.

    .venv/bin/python -m benchmarks.post_fresh_session [--entries 50000] [--batch 1000]

A new database, autovacuum off on the ledger's tables and no ANALYZE: one
application-role connection posts every batch through
`ledger.postgres.posting.post_entries` (one transaction per batch), so the
triggers plan their lookups on the empty tables of the first batch and keep
those plans for the whole run, as a server whose pool opened on a new book, a
first bulk import of history or a restored database would. The figure is the
last batch's time over the first's: with key lookups it stays near 1; a
lookup planned as a book-wide scan makes it grow with the book (issue 7,
item 8a). The baseline is the same rows COPYed into unconstrained tables in
the same run (as `post_batch`), first and last batch alike.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks._common import BenchDatabase, bench_database, create_bench_book, emit, ratio
from benchmarks.post_batch import batches, make_entries, run_copy
from billing.postgres.posting import mark_billing_transaction
from ledger.entries import JournalEntry
from ledger.postgres.posting import AccountDirectory, post_entries

# Tables the posting path reads by key: no autovacuum may analyze them mid-run.
LEDGER_TABLES = ("journal_entries", "postings", "accounts", "account_balances", "seal_queue")


def run_one_session(
    db: BenchDatabase, book_id: uuid.UUID, chunks: Sequence[Sequence[JournalEntry]]
) -> list[float]:
    """Seconds per batch, every batch in one session."""
    times = []
    with db.connect(app_role=True) as conn:
        directory = AccountDirectory()
        for chunk in chunks:
            t0 = time.perf_counter()
            mark_billing_transaction(conn)  # the entries name invoices, as billing's do
            post_entries(conn, book_id, chunk, directory)
            conn.commit()
            times.append(time.perf_counter() - t0)
    return times


def first_last(times: Sequence[float]) -> dict[str, Any]:
    tenth = max(1, len(times) // 10)
    return {
        "batches": len(times),
        "first_batch_s": round(times[0], 4),
        "last_batch_s": round(times[-1], 4),
        "last_over_first": ratio(times[-1], times[0]),
        # one batch is noisy on a shared machine: the first and last tenths too
        "first_tenth_mean_s": round(sum(times[:tenth]) / tenth, 4),
        "last_tenth_mean_s": round(sum(times[-tenth:]) / tenth, 4),
        "total_s": round(sum(times), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30, help="effective dates spread over")
    args = parser.parse_args(argv)

    start = datetime.now(UTC).date() - timedelta(days=args.days)
    chunks = batches(make_entries(args.entries, start, args.days, "fresh"), args.batch)
    with bench_database("ab_bench_fresh") as db:
        with db.connect(autocommit=True) as owner:
            for table in LEDGER_TABLES:
                owner.execute(f"alter table {table} set (autovacuum_enabled = false)")
        book, _ = create_bench_book(db)
        session = first_last(run_one_session(db, book.id, chunks))
        copy = run_copy(db, book.id, list(chunks))
        with db.connect() as conn:
            row = conn.execute(
                "select (select count(*) from journal_entries where book_id = %(b)s),"
                " (select coalesce(sum(amount), 0) from postings where book_id = %(b)s),"
                " (select count(*) from pg_stat_user_tables"
                "   where relname = any(%(t)s) and (last_analyze is not null"
                "      or last_autoanalyze is not null))",
                {"b": book.id, "t": list(LEDGER_TABLES)},
            ).fetchone()
        info = db.server_info()
    assert row is not None
    copy_batches = copy["per_batch"]
    emit(
        {
            "benchmark": "post_fresh_session",
            "command": "python -m benchmarks.post_fresh_session "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "setup": {
                "entries": f"{args.entries} entries as in post_batch (2 and 3 postings, "
                f"all crediting Income:Subscriptions), batches of {args.batch}, one "
                "transaction each, one application-role session for all of them",
                "statistics": "fresh database, autovacuum off on the ledger's tables, no ANALYZE",
                **info,
            },
            "one_session": session,
            "copy_unconstrained": {
                "first_batch_s": round(copy["first_batch_ms"] / 1000, 4),
                "last_batch_s": round(copy["last_batch_ms"] / 1000, 4),
                "last_over_first": ratio(copy["last_batch_ms"], copy["first_batch_ms"]),
                "per_batch": copy_batches,
            },
            "last_over_first_vs_copy": ratio(
                session["last_over_first"],
                ratio(copy["last_batch_ms"], copy["first_batch_ms"]),
            ),
            "database_check": {
                "entries_in_db": row[0],
                "sum_of_postings": str(row[1]),
                "tables_analyzed_during_run": row[2],
                "ok": row[0] == args.entries and row[1] == 0 and row[2] == 0,
            },
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
