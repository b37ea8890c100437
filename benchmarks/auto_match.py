"""Auto-match of bank statement lines against postings, with a raw-SQL baseline.

    .venv/bin/python -m benchmarks.auto_match [--lines 100000] [--postings 100000]

A book gets `--postings` payment entries (Assets:Bank:Operating against
Assets:Receivable:Trade) spread over a year: a third carry a bank reference
in their metadata, a third an invoice number (document `invoice:…`), a third
only a customer name. A CSV statement with `--lines` lines is generated from
them (each line echoes what its posting carries, booked 0-2 days later),
except every tenth line, which is noise that matches nothing (a fee of a few
cents), so a tenth of the postings stay unmatched too. Timed, in one run:

- import: `import_statement` of the CSV (parse, de-duplicate, insert);
- auto_match: `run_auto_match` for the account and its commit (load the open
  lines and postings, the pure rules, insert the matches and links in three
  statements, the commit-time check of all of them in one statement: revision
  0030);
- matcher_only: the pure `auto_match` function on the same data;
- baseline: the plain SQL join on amount and a ±3-day date window (what a
  naive matcher would start from; it neither decides ambiguity nor writes).
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from adapters.bank_statements import CsvMapping
from adapters.reconciliation.matching import auto_match
from adapters.reconciliation.statements import import_statement
from adapters.reconciliation.store import open_lines, open_postings, run_auto_match
from benchmarks._common import bench_database, create_bench_book, emit, ratio
from billing.postgres.posting import mark_billing_transaction
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import AccountDirectory, post_entries

BANK = "Assets:Bank:Operating"
START = date(2025, 1, 1)
MAPPING = CsvMapping(
    date_column="date",
    amount_column="amount",
    reference_column="reference",
    description_column="text",
    counterparty_column="name",
    fixed_currency="USD",
)


def _amount(n: int) -> Decimal:
    return Decimal(100 + (n * 7919) % 999_900).scaleb(-2)


def make_entries(count: int) -> list[JournalEntry]:
    entries = []
    for n in range(count):
        money = Money(_amount(n), "USD")
        day = START + timedelta(days=n % 360)
        kind = n % 3
        document = f"invoice:INV-2025-{n:07d}" if kind == 1 else None
        metadata = {"bank_reference": f"BR{n:09d}"} if kind == 0 else {}
        customer = f"Customer {n % 5000} Ltd"
        entries.append(
            build_entry(
                day,
                f"Payment from {customer}",
                [Posting(BANK, money, None, document), Posting("Assets:Receivable:Trade", -money)],
                metadata={**metadata, "customer_name": customer},
                idempotency_key=f"bench-pay-{n}",
            )
        )
    return entries


def make_csv(lines: int, postings: int) -> bytes:
    rows = ["date,amount,reference,text,name"]
    for n in range(lines):
        if n < postings and n % 10 != 9:
            day = START + timedelta(days=n % 360 + n % 3)
            kind = n % 3
            reference = f"BR{n:09d}" if kind == 0 else f"X{n:09d}"
            text = f"Payment INV-2025-{n:07d}" if kind == 1 else "payment"
            rows.append(f"{day},{_amount(n)},{reference},{text},Customer {n % 5000} Ltd")
        else:  # noise: amounts no posting has
            day = START + timedelta(days=n % 360)
            rows.append(f"{day},-0.0{1 + n % 9},N{n:09d},fee,Bank")
    return ("\n".join(rows) + "\n").encode()


def run(lines: int, postings: int) -> dict[str, Any]:
    with bench_database("ab_bench_match") as db:
        book, _ = create_bench_book(db)
        directory = AccountDirectory()
        entries = make_entries(postings)
        started = time.perf_counter()
        with db.connect(app_role=True) as conn:
            for i in range(0, len(entries), 1000):
                mark_billing_transaction(conn)  # payments naming invoices are billing's
                post_entries(conn, book.id, entries[i : i + 1000], directory)
                conn.commit()
        post_seconds = time.perf_counter() - started
        data = make_csv(lines, postings)

        started = time.perf_counter()
        with db.connect(app_role=True) as conn:
            imported = import_statement(
                conn, book.id, account_ref=BANK, data=data, format="csv", csv_mapping=MAPPING
            )
            conn.commit()
        import_seconds = time.perf_counter() - started
        with db.connect(autocommit=True) as owner:  # fresh tables: give the planner statistics
            owner.execute("analyze postings, journal_entries, bank_statement_lines")

        # The pure matcher alone, on what the store loads (read, then rolled back).
        with db.connect(app_role=True) as conn:
            account_id = conn.execute(
                "select id from accounts where book_id = %s and name = %s", (book.id, BANK)
            ).fetchone()[0]  # type: ignore[index]
            started = time.perf_counter()
            open_l = open_lines(conn, book.id, account_id)
            open_p = open_postings(conn, book.id, account_id, date.min, date.max)
            load_seconds = time.perf_counter() - started
            started = time.perf_counter()
            pure = auto_match(open_l, open_p)
            matcher_seconds = time.perf_counter() - started
            conn.rollback()

        started = time.perf_counter()
        with db.connect(app_role=True) as conn:
            outcome = run_auto_match(conn, book.id, account_ref=BANK)
            conn.commit()
        match_seconds = time.perf_counter() - started
        document = outcome.json()

        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            row = conn.execute(
                "select count(*), count(distinct l.id) from bank_statement_lines l"
                " join postings p on p.book_id = l.book_id and p.account_id = l.account_id"
                "  and p.amount = l.amount"
                "  and p.effective_date between l.booking_date - 3 and l.booking_date + 3"
                " where l.book_id = %s and l.account_id = %s",
                (book.id, account_id),
            ).fetchone()
            baseline_seconds = time.perf_counter() - started
        assert row is not None
        return {
            "benchmark": "auto_match",
            "command": f"python -m benchmarks.auto_match --lines {lines} --postings {postings}",
            "server": db.server_info(),
            "statement_lines": lines,
            "postings": postings,
            "setup_post_seconds": round(post_seconds, 3),
            "import": {
                "seconds": round(import_seconds, 3),
                "lines_per_second": round(lines / import_seconds),
                "new_lines": sum(i.new_lines for i in imported),
            },
            "auto_match": {
                "seconds": round(match_seconds, 3),
                "lines_per_second": round(lines / match_seconds),
                "matched_lines": document["matched_lines"],
                "matches": document["matched"],
                "match_rate": document["match_rate"],
                "by_rule": document["by_rule"],
            },
            "breakdown": {
                "load_seconds": round(load_seconds, 3),
                "matcher_only_seconds": round(matcher_seconds, 3),
                "matcher_matches": len(pure.matches),
            },
            "baseline_sql_join_amount_date": {
                "seconds": round(baseline_seconds, 3),
                "candidate_pairs": row[0],
                "lines_with_a_candidate": row[1],
            },
            "auto_match_over_baseline": ratio(match_seconds, baseline_seconds),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--postings", type=int, default=100_000)
    args = parser.parse_args()
    emit(run(args.lines, args.postings))


if __name__ == "__main__":
    main()
