"""Reads: trial balance and as-of balance on a book of 1M (or 10M) postings.

    .venv/bin/python -m benchmarks.reads [--postings 1000000] [--runs 50]
        [--load auto|post_entries|sql]

Data: one book with the default chart (~30 accounts); entries alternate
2 postings (a debit account cycling over ~28 accounts / Income:Subscriptions)
and 3 postings (… / Income:Subscriptions / Liabilities:Tax-Payable), dated
over 3 years of days (1,096 days ending yesterday), 2.5 postings per entry.
They are written either through the real `post_entries` path in batches of
1,000 (`--load post_entries`), or, for large books, by set-based
`INSERT … SELECT generate_series` statements of 100,000 entries per
transaction into journal_entries and postings as the application role, so
every trigger (balance check, periods, projections, sealing queue) and
foreign key still runs (`--load sql`; UUID v7 ids rising with the entry
number, as `post_entries` writes them, since 2026-12-01; md5 ids before).
`auto` picks post_entries up to 2M postings. Writes rotate over 4
connections, so the daily balances use several per-backend slots, as under
concurrent writers.

Timed (each `--runs` times, median and p95, wall time from Python, including
the round trip and result conversion): `trial_balance_as_of` at the last day,
`account_balance` of the hot account at the last day and at a mid date;
before and after `compact_balances`. Baselines in the same run: the same
figures computed from the postings table (the un-materialized way) and
`count(*)` of the book's postings.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import psycopg

from benchmarks._common import (
    HOT_ACCOUNT,
    BenchDatabase,
    account_ids,
    analyze,
    bench_database,
    create_bench_book,
    emit,
    ratio,
    timing_summary,
)
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import AccountDirectory, post_entries
from ledger.postgres.queries import account_balance, compact_balances, trial_balance_as_of

DAYS = 1096
TB_GOAL_MS = 50.0
ASOF_GOAL_MS = 10.0
WRITERS = 4
TAX = "Liabilities:Tax-Payable"
T = TypeVar("T")


def debit_accounts(names: dict[str, uuid.UUID]) -> list[str]:
    excluded = {HOT_ACCOUNT, TAX, "Liabilities:Prepaid-Wallet"}  # the last has a minimum
    return sorted(n for n in names if n not in excluded)


def make_batch(first: int, count: int, start: date, debits: list[str]) -> list[JournalEntry]:
    entries = []
    for n in range(first, first + count):
        cents = 100 + (n * 7919) % 99_900
        amount = Decimal(cents).scaleb(-2)
        debit = debits[n % len(debits)]
        postings = [
            Posting(debit, Money(amount, "USD")),
            Posting(HOT_ACCOUNT, Money(-amount, "USD")),
        ]
        if n % 2:
            tax = Decimal(cents // 10).scaleb(-2)
            postings[0] = Posting(debit, Money(amount + tax, "USD"))
            postings.append(Posting(TAX, Money(-tax, "USD")))
        entries.append(
            build_entry(start + timedelta(days=n % DAYS), "", postings, idempotency_key=f"g{n}")
        )
    return entries


def load_post_entries(
    db: BenchDatabase, book_id: uuid.UUID, entries: int, start: date, debits: list[str]
) -> None:
    conns = [db.connect(app_role=True) for _ in range(WRITERS)]
    directory = AccountDirectory()
    try:
        done = 0
        batch_no = 0
        while done < entries:
            count = min(1000, entries - done)
            conn = conns[batch_no % WRITERS]
            post_entries(conn, book_id, make_batch(done, count, start, debits), directory)
            conn.commit()
            done += count
            batch_no += 1
            if batch_no == 2:  # fresh tables: plan the triggers' lookups on real statistics
                analyze(db)
    finally:
        for c in conns:
            c.close()


# Entry n's id, shaped as `post_entries` writes them (UUID v7: 48 bits of Unix
# milliseconds, version 7, the variant bits, the rest random): its millisecond
# is n past midnight of the first day, so ids rise with n as a real book's rise
# with time and its postings lie on the heap in id order. The random bits are
# an md5 of the book and n, so the entries' and the postings' statements agree.
ENTRY_ID = """
(lpad(to_hex((extract(epoch from %(start)s::date) * 1000)::bigint + n), 12, '0') || '7'
 || substr(r.h, 13, 3) || translate(substr(r.h, 16, 1), '0123456789abcdef', '89ab89ab89ab89ab')
 || substr(r.h, 17, 15))::uuid
""".strip()
_RANDOM_BITS = "lateral (select md5(%(book)s::text || ':' || n) as h) r"

GEN_ENTRIES = f"""
insert into journal_entries (book_id, id, effective_date, memo, idempotency_key, request_hash)
select %(book)s, {ENTRY_ID}, %(start)s::date + (n %% %(days)s)::int,
       '', 'g' || n, md5(n::text)
  from generate_series(%(first)s::bigint, %(last)s::bigint) n, {_RANDOM_BITS}
"""

GEN_POSTINGS = f"""
insert into postings (book_id, entry_id, line_no, account_id, amount, currency, effective_date)
select %(book)s, {ENTRY_ID}, l.line_no, l.account_id, l.amount, 'USD',
       %(start)s::date + (n %% %(days)s)::int
  from generate_series(%(first)s::bigint, %(last)s::bigint) n, {_RANDOM_BITS},
       lateral (select ((100 + (n * 7919) %% 99900)::numeric / 100)::numeric(14, 2) as amount,
                       (((100 + (n * 7919) %% 99900) / 10)::numeric / 100)::numeric(14, 2)
                         as tax) a,
       lateral (values
         (1, (%(debits)s::uuid[])[1 + n %% cardinality(%(debits)s::uuid[])],
             a.amount + case when n %% 2 = 1 then a.tax else 0 end),
         (2, %(hot)s::uuid, -a.amount),
         (3, %(tax_account)s::uuid, -a.tax)) l(line_no, account_id, amount)
 where l.line_no < 3 or n %% 2 = 1
"""


# Postings must come from the statement that inserts their entry (cmin check in
# the posting trigger): both inserts in one statement.
GEN_BOTH = (
    "with entries as ("
    + GEN_ENTRIES.strip()
    + " returning 1) "
    + GEN_POSTINGS.strip().replace(
        "where l.line_no < 3", "where (select count(*) from entries) > 0 and (l.line_no < 3"
    )
    + ")"
)


def load_sql(
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
    conns = [db.connect(app_role=True) for _ in range(WRITERS)]
    try:
        first = 0
        chunk_no = 0
        while first < entries:
            size = 1000 if chunk_no == 0 else 100_000
            last = min(first + size, entries) - 1
            conn = conns[chunk_no % WRITERS]
            conn.execute(GEN_BOTH, {**params, "first": first, "last": last})
            conn.commit()
            first = last + 1
            chunk_no += 1
            if chunk_no in (1, 4):  # plan the triggers' lookups on real statistics
                analyze(db)
    finally:
        for c in conns:
            c.close()


def timed(fn: Callable[[], T], runs: int) -> tuple[list[float], T]:
    times = []
    result = fn()  # warm: plans and caches, not timed
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times, result


def measure(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    hot_id: uuid.UUID,
    last: date,
    mid: date,
    runs: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tb_times, tb = timed(lambda: trial_balance_as_of(conn, book_id, last), runs)
    out["trial_balance"] = {**timing_summary(tb_times), "lines": len(tb)}
    for label, day in (("as_of_balance_last_day", last), ("as_of_balance_mid_date", mid)):

        def balance(day: date = day) -> dict[str, Decimal]:
            return account_balance(conn, book_id, hot_id, day)

        times, value = timed(balance, runs)
        out[label] = {
            **timing_summary(times),
            "as_of": day.isoformat(),
            "balance": {k: str(v) for k, v in value.items()},
        }
    conn.rollback()
    return out


def baselines(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    hot_id: uuid.UUID,
    last: date,
    mid: date,
    runs: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    queries = {
        "count_postings_of_book": (
            "select count(*) from postings where book_id = %s",
            (book_id,),
        ),
        "trial_balance_from_postings": (
            "select account_id, currency, sum(amount) from postings"
            " where book_id = %s and effective_date <= %s group by 1, 2",
            (book_id, last),
        ),
        "as_of_balance_from_postings_last_day": (
            "select currency, sum(amount) from postings"
            " where book_id = %s and account_id = %s and effective_date <= %s group by 1",
            (book_id, hot_id, last),
        ),
        "as_of_balance_from_postings_mid_date": (
            "select currency, sum(amount) from postings"
            " where book_id = %s and account_id = %s and effective_date <= %s group by 1",
            (book_id, hot_id, mid),
        ),
    }
    for label, (query, args) in queries.items():

        def run(q: str = query, a: tuple[Any, ...] = args) -> list[tuple[Any, ...]]:
            return conn.execute(q, a).fetchall()

        times, rows = timed(run, runs)
        out[label] = {**timing_summary(times)}
        if label.startswith("as_of"):
            out[label]["balance"] = {c: str(s) for c, s in rows}
    conn.rollback()
    return out


def balance_rows(conn: psycopg.Connection, book_id: uuid.UUID) -> int:
    row = conn.execute(
        "select count(*) from account_balances where book_id = %s", (book_id,)
    ).fetchone()
    conn.rollback()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postings", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--baseline-runs", type=int, default=5)
    parser.add_argument("--load", choices=["auto", "post_entries", "sql"], default="auto")
    args = parser.parse_args(argv)

    entries = round(args.postings / 2.5)
    load = args.load
    if load == "auto":
        load = "post_entries" if args.postings <= 2_000_000 else "sql"
    last = datetime.now(UTC).date() - timedelta(days=1)
    start = last - timedelta(days=DAYS - 1)
    mid = start + timedelta(days=DAYS // 2)
    with bench_database() as db:
        book, _ = create_bench_book(db)
        ids = account_ids(db, book.id)
        debits = debit_accounts(ids)
        t0 = time.perf_counter()
        if load == "post_entries":
            load_post_entries(db, book.id, entries, start, debits)
        else:
            load_sql(db, book.id, entries, start, debits)
        load_s = time.perf_counter() - t0
        analyze(db)
        hot = ids[HOT_ACCOUNT]
        with db.connect(app_role=True) as conn:
            counts = conn.execute(
                "select (select count(*) from journal_entries where book_id = %(b)s),"
                " (select count(*) from postings where book_id = %(b)s),"
                " (select sum(amount) from postings where book_id = %(b)s)",
                {"b": book.id},
            ).fetchone()
            conn.rollback()
            assert counts is not None
            rows_before = balance_rows(conn, book.id)
            before = measure(conn, book.id, hot, last, mid, args.runs)
            base = baselines(conn, book.id, hot, last, mid, args.baseline_runs)
            t1 = time.perf_counter()
            folded = compact_balances(conn, book.id, last + timedelta(days=1))
            conn.commit()
            compact_s = time.perf_counter() - t1
        analyze(db)
        with db.connect(app_role=True) as conn:
            rows_after = balance_rows(conn, book.id)
            after = measure(conn, book.id, hot, last, mid, args.runs)
        info = db.server_info()

    tb_ms = after["trial_balance"]["median_ms"]
    asof_ms = max(
        after["as_of_balance_last_day"]["median_ms"], after["as_of_balance_mid_date"]["median_ms"]
    )
    consistent = (
        before["as_of_balance_last_day"]["balance"]
        == after["as_of_balance_last_day"]["balance"]
        == base["as_of_balance_from_postings_last_day"]["balance"]
        and after["as_of_balance_mid_date"]["balance"]
        == base["as_of_balance_from_postings_mid_date"]["balance"]
    )
    emit(
        {
            "benchmark": "reads",
            "command": "python -m benchmarks.reads "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "data": {
                "generated_by": {
                    "post_entries": "ledger.postgres.posting.post_entries, batches of 1,000 "
                    "entries, one transaction each, as the application role",
                    "sql": "set-based INSERT ... SELECT generate_series (100,000 entries per "
                    "transaction) into journal_entries and postings as the application role: "
                    "all triggers and foreign keys run",
                }[load],
                "shape": "2- and 3-posting entries (debit cycling over "
                f"{len(debits)} accounts / {HOT_ACCOUNT} / {TAX}), {DAYS} days "
                f"({start} .. {last}), {WRITERS} writer connections (balance slots)",
                "entries": counts[0],
                "postings": counts[1],
                "sum_of_postings": str(counts[2]),
                "load_seconds": round(load_s, 1),
                "account_balances_rows_before_compaction": rows_before,
                "account_balances_rows_after_compaction": rows_after,
                "compact_balances": {"rows_written": folded, "seconds": round(compact_s, 3)},
            },
            "setup": info,
            "before_compaction": before,
            "after_compaction": after,
            "baselines_unmaterialized": base,
            "ratios_materialized_to_unmaterialized": {
                "trial_balance_before_compaction": ratio(
                    before["trial_balance"]["median_ms"],
                    base["trial_balance_from_postings"]["median_ms"],
                ),
                "trial_balance_after_compaction": ratio(
                    tb_ms, base["trial_balance_from_postings"]["median_ms"]
                ),
                "as_of_last_day_after_compaction": ratio(
                    after["as_of_balance_last_day"]["median_ms"],
                    base["as_of_balance_from_postings_last_day"]["median_ms"],
                ),
                "as_of_mid_date_after_compaction": ratio(
                    after["as_of_balance_mid_date"]["median_ms"],
                    base["as_of_balance_from_postings_mid_date"]["median_ms"],
                ),
                "trial_balance_to_count_postings": ratio(
                    tb_ms, base["count_postings_of_book"]["median_ms"]
                ),
            },
            "balances_agree_with_postings": consistent,
            "goals": {
                "trial_balance_ms": TB_GOAL_MS,
                "as_of_balance_ms": ASOF_GOAL_MS,
                "trial_balance_met": tb_ms <= TB_GOAL_MS,
                "as_of_balance_met": asof_ms <= ASOF_GOAL_MS,
                "met_before_compaction": before["trial_balance"]["median_ms"] <= TB_GOAL_MS
                and before["as_of_balance_last_day"]["median_ms"] <= ASOF_GOAL_MS,
            },
        }
    )
    return 0 if consistent and counts[2] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
