"""`verify` over a 1M-posting book: postings/s, against a GROUP BY balance check.

    .venv/bin/python -m benchmarks.verify [--postings 1000000] [--runs 2]

The book is the one `benchmarks.reads` builds with `--load sql` (2- and
3-posting entries over 1,096 days, ~30 accounts, UUID v7 ids rising with the
entry number as `post_entries` writes them, written by set-based
`INSERT … SELECT` as the application role so every trigger runs), then sealed
by the real sealer. Timed: `verify_book` (the ledger's checks: balance per
entry and currency, the seal chain re-hashed, unsealed entries, daily and
guarded balances; the entries in two halves, the daily balances and the
seal links are the branches of one statement, which PostgreSQL may run in
parallel workers)
and `verify_everything` (plus billing's ties). The baseline, in the same
run, is one `GROUP BY entry_id, currency` balance check of the same postings.
Both must find nothing on this clean book.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from adapters.services import verify_everything
from benchmarks._common import (
    BenchDatabase,
    account_ids,
    analyze,
    bench_database,
    create_bench_book,
    emit,
    ratio,
)  # fmt: skip
from benchmarks.reads import DAYS, GEN_BOTH, HOT_ACCOUNT, TAX, debit_accounts
from billing.postgres.msp_verify import verify_services
from billing.postgres.verify import verify_cdr_ratings, verify_invoices
from ledger.postgres import verify as ledger_verify
from ledger.postgres.sealer import seal_pending
from ledger.postgres.verify import verify_book
from ledger.sealing import GENESIS_HASH

BASELINE = (
    "select count(*) from (select entry_id, currency from postings where book_id = %s"
    " group by entry_id, currency having sum(amount) <> 0) unbalanced"
)


def load(
    db: BenchDatabase, book_id: uuid.UUID, entries: int, start: date, debits: list[str]
) -> None:
    ids = account_ids(db, book_id)
    params: dict[str, Any] = {
        "book": book_id,
        "start": start,
        "days": DAYS,
        "debits": [ids[n] for n in debits],
        "hot": ids[HOT_ACCOUNT],
        "tax_account": ids[TAX],
    }
    with db.connect(app_role=True) as conn:
        first, chunk_no = 0, 0
        while first < entries:
            last = min(first + (1000 if chunk_no == 0 else 100_000), entries) - 1
            conn.execute(GEN_BOTH, {**params, "first": first, "last": last})
            conn.commit()
            first, chunk_no = last + 1, chunk_no + 1
            if chunk_no == 1:  # plan the triggers' lookups on real statistics
                analyze(db)


def seal_links(conn: psycopg.Connection, book_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """The links' branch alone, under the statement's settings (its hash of the
    seals needs verify's work_mem)."""
    with ledger_verify.planner_settings(conn, ledger_verify._PLAN):
        return conn.execute(
            ledger_verify._LINKS, {"b": book_id, "genesis": GENESIS_HASH}
        ).fetchall()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postings", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2, help="timed runs of each (best is kept)")
    args = parser.parse_args(argv)
    entries = round(args.postings / 2.5)
    last = datetime.now(UTC).date() - timedelta(days=1)
    start = last - timedelta(days=DAYS - 1)
    with bench_database() as db:
        book, _ = create_bench_book(db)
        debits = debit_accounts(account_ids(db, book.id))
        t0 = time.perf_counter()
        load(db, book.id, entries, start, debits)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sealed = seal_pending(lambda: db.connect(app_role=True), book.id)
        seal_s = time.perf_counter() - t0
        analyze(db)
        with db.connect(app_role=True) as conn:
            row = conn.execute(
                "select count(*) from postings where book_id = %s", (book.id,)
            ).fetchone()
            postings = int(row[0]) if row else 0
            first = conn.execute(
                "select id from journal_entries where book_id = %s order by id limit 1", (book.id,)
            ).fetchone()
            id_version = first[0].version if first else None
            baseline_s, book_s, all_s = [], [], []
            found_book: list[object] = []
            found_all: list[object] = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                conn.execute(BASELINE, (book.id,)).fetchone()
                baseline_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                found_book = list(verify_book(conn, book.id))
                book_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                found_all = list(verify_everything(conn, book.id))
                all_s.append(time.perf_counter() - t0)
            checks = {}
            for name, run in (
                # the entries (balance, seal hashes, sealing queue), the daily
                # balances and the seal links: one statement, its branches in
                # parallel when it can; the links' branch alone after it
                ("entries_and_daily_balances", lambda: ledger_verify._checks(conn, book.id)),
                ("seal_links", lambda: seal_links(conn, book.id)),
                ("guarded_balances", lambda: ledger_verify._guarded_balances(conn, book.id)),
            ):
                t0 = time.perf_counter()
                run()
                checks[name] = round(time.perf_counter() - t0, 3)
            for name, fn in (
                ("invoices", verify_invoices),
                ("cdr_ratings", verify_cdr_ratings),
                ("services", verify_services),
            ):
                t0 = time.perf_counter()
                fn(conn, book.id)
                checks[name] = round(time.perf_counter() - t0, 3)
            conn.rollback()
        info = db.server_info()
    base, vb, va = min(baseline_s), min(book_s), min(all_s)
    emit(
        {
            "benchmark": "verify",
            "command": "python -m benchmarks.verify "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "data": {
                "entries": sealed,
                "postings": postings,
                "generated_by": "set-based INSERT … SELECT, entries and postings in one statement",
                # v7 since 2026-12-01 (time-ordered, as post_entries writes them); md5 before
                "entry_id_uuid_version": id_version,
                "load_s": round(load_s, 2),
                "seal_s": round(seal_s, 2),
            },
            "baseline_group_by_s": round(base, 3),
            "verify_book": {
                "seconds": round(vb, 3),
                "postings_per_s": round(postings / vb),
                "discrepancies": len(found_book),
            },
            "verify_everything": {
                "seconds": round(va, 3),
                "postings_per_s": round(postings / va),
                "discrepancies": len(found_all),
            },
            "seconds_per_check": checks,
            "ratio_verify_everything_over_group_by": ratio(va, base),
            "goal": "≥ 500,000 postings/s",
            "server": info,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
