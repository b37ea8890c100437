"""The ERP journal feed: rows/s following the whole feed, per format, against COPY.

    .venv/bin/python -m benchmarks.journal_feed [--postings 250000] [--limit 10000]
        [--formats jsonl,netsuite,sap]  (also quickbooks, xero)

The book is built as in `benchmarks.reads` through `post_entries` (batches of 1,000) and
sealed. Each format is followed from cursor 0 to the end in batches of
`--limit` entries through `journal_feed.build_batch` (the work behind
`GET /v1/exports/journal`: read, render, hash). A row is one posting line.
Baseline: `COPY (the same join) TO STDOUT (FORMAT csv)` read by psycopg in
the same run, the raw cost of getting those rows out of PostgreSQL.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg

from adapters.exports import journal_feed
from benchmarks._common import (
    account_ids,
    analyze,
    backend_cpu_seconds,
    bench_database,
    create_bench_book,
    emit,
    ratio,
)
from benchmarks.reads import DAYS, debit_accounts, load_post_entries
from ledger.postgres.sealer import seal_pending

COPY = """
copy (select s.seq, e.id, e.effective_date, e.memo, p.line_no, a.name, a.code, p.amount,
             p.currency, p.customer_id, p.document
        from seals s
        join journal_entries e on e.book_id = s.book_id and e.id = s.entry_id
        join postings p on p.book_id = e.book_id and p.entry_id = e.id
        join accounts a on a.book_id = p.book_id and a.id = p.account_id
       where s.book_id = '{book}' order by s.seq, p.line_no) to stdout (format csv)
"""


def backend_cpu(conn: psycopg.Connection) -> float | None:
    """CPU seconds of the connection's server process so far (user + system), when the
    server runs on this machine: less dependent on the box's load than wall time."""
    return backend_cpu_seconds([conn.info.backend_pid])


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postings", type=int, default=250_000)
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--formats", default="jsonl,netsuite,sap")
    args = parser.parse_args(argv)
    entries = round(args.postings / 2.5)
    last = datetime.now(UTC).date() - timedelta(days=1)
    start = last - timedelta(days=DAYS - 1)
    results: dict[str, object] = {}
    with bench_database() as db:
        book, _ = create_bench_book(db)
        load_post_entries(db, book.id, entries, start, debit_accounts(account_ids(db, book.id)))
        analyze(db)
        sealed = seal_pending(lambda: db.connect(app_role=True), book.id)
        analyze(db)
        with db.connect(app_role=True) as conn:
            t0 = time.perf_counter()
            server0 = backend_cpu(conn)
            copied = 0
            rows = 0
            with conn.cursor().copy(COPY.format(book=book.id)) as copy:
                for block in copy:
                    copied += len(block)
                    rows += bytes(block).count(b"\n")
            copy_s = time.perf_counter() - t0
            copy_server_cpu = _spent(server0, backend_cpu(conn))
            conn.rollback()
            # SAP refuses a file without its company code, Xero the book's tax lines
            # without their tax rate (erp_formats.check_mapping).
            journal_feed.save_mapping(conn, book.id, "sap", {"company_code": "1000"}, {})
            journal_feed.save_mapping(conn, book.id, "xero", {"tax_line_rate": "No VAT"}, {})
            conn.commit()
            for fmt in args.formats.split(","):
                since, lines, size, batches = 0, 0, 0, 0
                t0 = time.perf_counter()
                cpu0 = time.process_time()
                server0 = backend_cpu(conn)
                while True:
                    batch = journal_feed.build_batch(conn, book.id, fmt, since, args.limit)
                    _ = batch.sha256
                    if batch.count == 0:
                        break
                    lines += batch.lines
                    size += len(batch.body)
                    batches += 1
                    since = batch.next_cursor
                conn.rollback()
                seconds = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
                server_cpu = _spent(server0, backend_cpu(conn))
                results[fmt] = {
                    "seconds": round(seconds, 3),
                    # this process's CPU (reading, rendering, hashing): less load-dependent
                    "client_cpu_s": round(cpu, 3),
                    "client_cpu_ms_per_page": round(1000 * cpu / max(batches, 1), 1),
                    "server_cpu_s": server_cpu,
                    "rows": lines,
                    "rows_per_s": round(lines / seconds),
                    "batches": batches,
                    "bytes": size,
                    "ratio_to_copy_rows_per_s": ratio(lines / seconds, rows / copy_s),
                }
        info = db.server_info()
    emit(
        {
            "benchmark": "journal_feed",
            "command": "python -m benchmarks.journal_feed "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "data": {"entries": sealed, "postings": rows, "limit": args.limit},
            "baseline_copy": {
                "seconds": round(copy_s, 3),
                "rows_per_s": round(rows / copy_s),
                "bytes": copied,
                "server_cpu_s": copy_server_cpu,
            },
            "formats": results,
            "server": info,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
