"""Batched posting: 1,000 entries per call, one transaction each, against COPY.

    .venv/bin/python -m benchmarks.post_batch [--entries 50000] [--batch 1000]
        [--clients 1] [--http-entries 20000] [--interleave 0]

The entries (alternating 2- and 3-posting, every one crediting the hot
Income:Subscriptions account, dated over 30 days) are built in memory first;
then each batch goes through `ledger.postgres.posting.post_entries` and a
commit, as the application role, with every trigger and constraint of the
schema. The same rows (same ids, request hashes and JSON) are then COPYed
with psycopg's `cursor.copy` into a pair of unconstrained tables (no triggers,
no foreign keys, no indexes, no defaults; NOT NULL kept), one transaction per
batch: the ratio says what the ledger's guarantees cost over raw loading.
Optionally the same kind of batches go over HTTP (`POST
/v1/journal-entries/batch`, one client, sequential). With `--interleave N`,
N more entries go batch by batch through post_entries and COPY in turn, so
both meet the same load: on a shared machine the sequential ratio moves with
whatever else runs during either phase.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from benchmarks._common import (
    HOT_ACCOUNT,
    BenchDatabase,
    account_ids,
    bench_database,
    create_bench_book,
    emit,
    http_server,
    ratio,
    timing_summary,
    warm_up,
)
from billing.postgres.posting import mark_billing_transaction
from ledger.entries import JournalEntry, Posting, build_entry
from ledger.money import Money
from ledger.postgres.posting import AccountDirectory, post_entries, request_hash

GOAL = 30_000
DEBITS = (
    "Assets:Receivable:Trade",
    "Assets:Bank:Operating",
    "Assets:Clearing:Manual",
    "Assets:Receivable:Unbilled",
    "Expenses:Payment-Fees",
)


def make_entries(count: int, start: date, days: int, tag: str) -> list[JournalEntry]:
    entries = []
    for n in range(count):
        cents = 100 + (n * 7919) % 99_900
        amount = Decimal(cents).scaleb(-2)
        debit = DEBITS[n % len(DEBITS)]
        if n % 2:
            tax = Decimal(cents // 10).scaleb(-2)
            postings = [
                Posting(debit, Money(amount + tax, "USD"), customer=f"cus_{n % 5000}"),
                Posting(HOT_ACCOUNT, Money(-amount, "USD"), document=f"invoice:in_{tag}_{n}"),
                Posting("Liabilities:Tax-Payable", Money(-tax, "USD")),
            ]
        else:
            postings = [
                Posting(debit, Money(amount, "USD"), customer=f"cus_{n % 5000}"),
                Posting(HOT_ACCOUNT, Money(-amount, "USD"), document=f"invoice:in_{tag}_{n}"),
            ]
        entries.append(
            build_entry(
                start + timedelta(days=n % days),
                f"bench entry {n}",
                postings,
                idempotency_key=f"bench:{tag}:{n}",
            )
        )
    # The harness holds tens of thousands of entries built up front, which a service
    # never does: left tracked, they cost each full collection ~90 ms, paid by whichever
    # timed phase (posting or COPY) happens to trigger it. Frozen, neither side pays.
    gc.collect()
    gc.freeze()
    return entries


def batches(entries: Sequence[JournalEntry], size: int) -> list[Sequence[JournalEntry]]:
    return [entries[i : i + size] for i in range(0, len(entries), size)]


def run_post_entries(
    db: BenchDatabase, book_id: uuid.UUID, chunks: list[Sequence[JournalEntry]], clients: int
) -> dict[str, Any]:
    times: list[float] = []
    lock = threading.Lock()
    todo = list(enumerate(chunks))

    def worker() -> None:
        directory = AccountDirectory()
        with db.connect(app_role=True) as conn:
            while True:
                with lock:
                    if not todo:
                        return
                    _, chunk = todo.pop(0)
                t0 = time.perf_counter()
                mark_billing_transaction(conn)  # the entries name invoices, as billing's do
                post_entries(conn, book_id, chunk, directory)
                conn.commit()
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    times.append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    entries = sum(len(c) for c in chunks)
    postings = sum(len(e.postings) for c in chunks for e in c)
    return {
        "entries": entries,
        "postings": postings,
        "batches": len(chunks),
        "clients": clients,
        "seconds": round(wall, 3),
        "entries_per_s": round(entries / wall, 1),
        "postings_per_s": round(postings / wall, 1),
        "per_batch": timing_summary(times),
    }


COPY_TABLES = """
create table bench_copy_entries (
  book_id uuid not null, id uuid not null, effective_date date not null,
  recorded_at timestamptz not null, memo text not null, metadata jsonb not null,
  idempotency_key text not null, request_hash text not null, reverses_entry_id uuid,
  txid bigint not null);
create table bench_copy_postings (
  book_id uuid not null, entry_id uuid not null, line_no smallint not null,
  account_id uuid not null, amount numeric not null, currency text not null,
  effective_date date not null, customer_id text, document text, dimensions jsonb not null);
"""


def copy_batch(
    conn: psycopg.Connection,
    book_id: uuid.UUID,
    names: dict[str, uuid.UUID],
    chunk: Sequence[JournalEntry],
) -> None:
    """One batch's rows, converted as post_entries converts them (ids, request
    hashes, JSON), COPYed raw and committed."""
    now = datetime.now(UTC)
    txid = conn.execute("select pg_current_xact_id()::text::bigint").fetchone()
    assert txid is not None
    with conn.cursor() as cur:
        posting_rows = []
        with cur.copy(
            "copy bench_copy_entries (book_id, id, effective_date, recorded_at, memo,"
            " metadata, idempotency_key, request_hash, reverses_entry_id, txid)"
            " from stdin"
        ) as copy:
            for entry in chunk:
                entry_id = uuid.uuid4()
                copy.write_row(
                    (
                        book_id,
                        entry_id,
                        entry.effective_date,
                        now,
                        entry.memo,
                        json.dumps(entry.metadata, sort_keys=True, default=str),
                        entry.idempotency_key,
                        request_hash(entry),
                        None,
                        txid[0],
                    )
                )
                for line_no, p in enumerate(entry.postings, start=1):
                    posting_rows.append(
                        (
                            book_id,
                            entry_id,
                            line_no,
                            names[p.account],
                            p.money.quantized().amount,
                            p.currency,
                            entry.effective_date,
                            p.customer,
                            p.document,
                            json.dumps(dict(p.dimensions), sort_keys=True),
                        )
                    )
        with cur.copy(
            "copy bench_copy_postings (book_id, entry_id, line_no, account_id, amount,"
            " currency, effective_date, customer_id, document, dimensions) from stdin"
        ) as copy:
            for row in posting_rows:
                copy.write_row(row)
    conn.commit()


def copied_counts(conn: psycopg.Connection) -> tuple[int, int]:
    row = conn.execute(
        "select (select count(*) from bench_copy_entries),"
        " (select count(*) from bench_copy_postings)"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def run_copy(
    db: BenchDatabase, book_id: uuid.UUID, chunks: list[Sequence[JournalEntry]]
) -> dict[str, Any]:
    """The same rows, converted the same way (ids, request hashes, JSON), COPYed raw."""
    names = account_ids(db, book_id)
    with db.connect(autocommit=True) as owner:
        owner.execute(COPY_TABLES)
    times: list[float] = []
    with db.connect() as conn:
        started = time.perf_counter()
        for chunk in chunks:
            t0 = time.perf_counter()
            copy_batch(conn, book_id, names, chunk)
            times.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - started
        entries, postings = copied_counts(conn)
    return {
        "entries": entries,
        "postings": postings,
        "seconds": round(wall, 3),
        "entries_per_s": round(entries / wall, 1),
        "per_batch": timing_summary(times),
        "first_batch_ms": round(times[0], 3),
        "last_batch_ms": round(times[-1], 3),
    }


def run_interleaved(
    db: BenchDatabase, book_id: uuid.UUID, chunks: list[Sequence[JournalEntry]]
) -> dict[str, Any]:
    """Each batch through post_entries and, right beside it, through COPY (which
    goes first alternates), so both meet the same load on a shared machine: the
    ratio of their total times is the figure least moved by other work."""
    names = account_ids(db, book_id)
    post_ms: list[float] = []
    copy_ms: list[float] = []
    # CPU time (ms) of each side: the client's process and the server backend's.
    cpu = {"post": [0.0, 0.0], "copy": [0.0, 0.0]}
    directory = AccountDirectory()
    with db.connect(app_role=True) as app, db.connect() as owner:
        backends = {"post": backend_cpu_ms(app), "copy": backend_cpu_ms(owner)}
        for n, chunk in enumerate(chunks):
            for step in ("post", "copy") if n % 2 == 0 else ("copy", "post"):
                server = backends[step]
                t0, c0, s0 = time.perf_counter(), time.process_time(), server()
                if step == "post":
                    mark_billing_transaction(app)
                    post_entries(app, book_id, chunk, directory)
                    app.commit()
                    post_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    copy_batch(owner, book_id, names, chunk)
                    copy_ms.append((time.perf_counter() - t0) * 1000)
                cpu[step][0] += (time.process_time() - c0) * 1000
                cpu[step][1] += server() - s0
    entries = sum(len(c) for c in chunks)
    per_batch = {
        step: {"client_ms": round(c / len(chunks), 1), "server_ms": round(s / len(chunks), 1)}
        for step, (c, s) in cpu.items()
    }
    return {
        "entries": entries,
        "post_entries_per_s": round(entries / (sum(post_ms) / 1000), 1),
        "copy_entries_per_s": round(entries / (sum(copy_ms) / 1000), 1),
        "post_entries_per_batch": timing_summary(post_ms),
        "copy_per_batch": timing_summary(copy_ms),
        "cpu_per_batch": per_batch,
        "ratio_post_entries_to_copy": ratio(sum(copy_ms), sum(post_ms)),
    }


def backend_cpu_ms(conn: psycopg.Connection) -> Callable[[], float]:
    """The CPU time (ms) so far of the connection's server process, read from
    /proc (the server is on this machine: loopback only); NaN where unreadable."""
    row = conn.execute("select pg_backend_pid()").fetchone()
    conn.commit()
    assert row is not None
    path = Path(f"/proc/{row[0]}/schedstat")

    def read() -> float:
        try:
            return int(path.read_text().split()[0]) / 1e6  # ns on a CPU
        except (OSError, ValueError, IndexError):
            return float("nan")

    return read


def run_http(db: BenchDatabase, key: str, chunks: list[Sequence[JournalEntry]]) -> dict[str, Any]:
    import httpx

    bodies = []
    for chunk in chunks:
        bodies.append(
            json.dumps(
                {
                    "entries": [
                        {
                            "effective_date": e.effective_date.isoformat(),
                            "memo": e.memo,
                            "idempotency_key": e.idempotency_key,
                            "postings": [
                                {
                                    "account": p.account,
                                    "amount": str(p.money.quantized().amount),
                                    "currency": p.currency,
                                }
                                for p in e.postings
                            ],
                        }
                        for e in chunk
                    ]
                }
            ).encode()
        )
    times: list[float] = []
    statuses: dict[int, int] = {}
    with http_server(db, workers=2) as base:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            started = time.perf_counter()
            for body in bodies:
                t0 = time.perf_counter()
                r = http.post("/v1/journal-entries/batch", content=body)
                times.append((time.perf_counter() - t0) * 1000)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            wall = time.perf_counter() - started
    entries = sum(len(c) for c in chunks)
    return {
        "endpoint": "POST /v1/journal-entries/batch (1 client, sequential, keep-alive)",
        "entries": entries,
        "statuses": statuses,
        "seconds": round(wall, 3),
        "entries_per_s": round(entries / wall, 1),
        "per_request": timing_summary(times),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=1, help="concurrent posting connections")
    parser.add_argument("--http-entries", type=int, default=20_000, help="0 skips HTTP")
    parser.add_argument("--days", type=int, default=30, help="effective dates spread over")
    parser.add_argument(
        "--interleave",
        type=int,
        default=0,
        help="then N more entries, each batch through post_entries and COPY in turn "
        "(same load for both; 0 skips)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=2000,
        help="entries posted (untimed) via post_entries, then ANALYZE, before timing "
        "(0: start on empty tables, see README)",
    )
    args = parser.parse_args(argv)

    start = datetime.now(UTC).date() - timedelta(days=args.days)
    t0 = time.perf_counter()
    entries = make_entries(args.entries, start, args.days, "direct")
    build_s = time.perf_counter() - t0
    chunks = batches(entries, args.batch)
    with bench_database() as db:
        book, key = create_bench_book(db)
        warm_up(db, book.id, args.warmup, start)
        direct = run_post_entries(db, book.id, chunks, args.clients)
        copy = run_copy(db, book.id, chunks)
        interleaved = None
        if args.interleave:
            interleaved = run_interleaved(
                db,
                book.id,
                batches(make_entries(args.interleave, start, args.days, "inter"), args.batch),
            )
        http = None
        if args.http_entries:
            http_chunks = batches(
                make_entries(args.http_entries, start, args.days, "http"), args.batch
            )
            http = run_http(db, key, http_chunks)
        with db.connect() as conn:
            row = conn.execute(
                "select (select count(*) from journal_entries where book_id = %(b)s),"
                " (select count(*) from postings where book_id = %(b)s),"
                " (select coalesce(sum(amount), 0) from postings where book_id = %(b)s)",
                {"b": book.id},
            ).fetchone()
        info = db.server_info()
    assert row is not None
    expected = args.warmup + args.entries + (args.http_entries or 0) + args.interleave
    value = ratio(direct["entries_per_s"], copy["entries_per_s"])
    emit(
        {
            "benchmark": "post_batch",
            "command": "python -m benchmarks.post_batch "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "setup": {
                "entries": "alternating 2- and 3-posting entries, each crediting "
                f"{HOT_ACCOUNT}, with customer and document dimensions and an "
                f"idempotency key, dated over {args.days} days; batches of {args.batch}, "
                "one transaction per batch, as the application role",
                "warm_up": f"{args.warmup} entries via post_entries, then VACUUM ANALYZE",
                "build_entries_in_memory_s": round(build_s, 3),
                **info,
            },
            "post_entries": direct,
            "copy_unconstrained": copy,
            "http_batch": http,
            "interleaved": interleaved,
            "ratio_post_entries_to_copy": value,
            "database_check": {
                "entries_in_db": row[0],
                "expected_entries": expected,
                "postings_in_db": row[1],
                "sum_of_postings": str(row[2]),
                "ok": row[0] == expected and row[2] == 0,
            },
            "goal": f"post_entries >= {GOAL} entries/s",
            "goal_met": direct["entries_per_s"] >= GOAL,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
