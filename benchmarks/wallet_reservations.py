"""Real-time authorization: 16 clients reserving and capturing on 1,000 wallets.

    .venv/bin/python -m benchmarks.wallet_reservations [--clients 16] [--wallets 1000]
        [--seconds 20] [--pgbench-scale 10]

A book gets `--wallets` prepaid wallets with 1,000.00 each. `--clients`
threads, each with its own application-role connection, loop for
`--seconds`: pick a random wallet, hold 0.50 (`reserve`, one transaction),
then capture 0.37 of it (`capture`, another transaction), as a switch does
at the start and the end of a call. Reported: operations/s (a hold or a
capture is one operation) and p50/p99 latency. Baseline in the same run and on
the same server: pgbench TPC-B with the same clients and duration. Goal:
operations/s ÷ tps ≥ 0.5.

Correctness: every wallet's balance = 1,000.00 − its captures, none below 0,
and the ledger's postings on each wallet account sum to that balance.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from benchmarks._common import (
    BenchDatabase,
    analyze,
    bench_database,
    emit,
    percentile,
    ratio,
    run_pgbench,
)
from billing.postgres import wallets as store

GOAL = 0.5
DAY = date(2026, 3, 1)


def _setup(db: BenchDatabase, count: int) -> tuple[uuid.UUID, list[str]]:
    from adapters.services import create_book_with_chart

    with db.connect(app_role=True) as conn:
        book, _ = create_book_with_chart(conn, "bench wallets", "USD", DAY)
        customer = uuid.uuid4()
        conn.execute(
            "insert into customers (book_id, id, name, currency) values (%s, %s, 'Bench', 'USD')",
            (book.id, customer),
        )
        wallets = []
        for _ in range(count):
            wallet = store.create_wallet(conn, book.id, str(customer), "USD")
            store.top_up(conn, book.id, str(wallet.id), Decimal("1000.00"), DAY)
            wallets.append(str(wallet.id))
        conn.commit()
    return book.id, wallets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--wallets", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--pgbench-scale", type=int, default=10)
    args = parser.parse_args()
    with bench_database() as db:
        book_id, wallets = _setup(db, args.wallets)
        analyze(db)
        latencies: list[list[float]] = [[] for _ in range(args.clients)]
        errors: list[BaseException] = []
        barrier = threading.Barrier(args.clients + 1)
        stop = threading.Event()

        def client(n: int) -> None:
            rng = random.Random(n)
            mine = latencies[n]
            with db.connect(app_role=True) as conn:
                barrier.wait()
                while not stop.is_set():
                    wallet = rng.choice(wallets)
                    try:
                        began = time.perf_counter()
                        hold = store.reserve(conn, book_id, wallet, Decimal("0.50"), 300)
                        conn.commit()
                        mine.append(time.perf_counter() - began)
                        began = time.perf_counter()
                        store.capture(conn, book_id, wallet, str(hold.id), Decimal("0.37"), DAY)
                        conn.commit()
                        mine.append(time.perf_counter() - began)
                    except BaseException as exc:  # reported below, the run goes on
                        conn.rollback()
                        errors.append(exc)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        barrier.wait()
        began = time.perf_counter()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
        ms = [x * 1000 for xs in latencies for x in xs]
        ops = len(ms) / elapsed
        with db.connect() as conn:
            bad: Any = conn.execute(
                "select count(*) from wallets w where (select coalesce(-sum(p.amount), 0)"
                " from postings p where p.book_id = w.book_id and p.account_id = w.account_id)"
                " <> 1000.00 - coalesce((select sum(captured) from wallet_reservations r"
                " where r.book_id = w.book_id and r.wallet_id = w.id and r.status = 'captured'), 0)"
                " and w.book_id = %s",
                (book_id,),
            ).fetchone()
        pgbench = run_pgbench(
            db,
            scale=args.pgbench_scale,
            clients=args.clients,
            threads=min(args.clients, 2),
            seconds=int(args.seconds),
        )
        emit(
            {
                "benchmark": "wallet_reservations",
                "server": db.server_info(),
                "clients": args.clients,
                "wallets": args.wallets,
                "seconds": round(elapsed, 2),
                "operations": len(ms),
                "operations_per_s": round(ops, 1),
                "p50_ms": round(percentile(ms, 50), 2) if ms else None,
                "p99_ms": round(percentile(ms, 99), 2) if ms else None,
                "errors": len(errors),
                "first_error": repr(errors[0]) if errors else None,
                "wallets_not_tied": bad[0],
                "baseline_pgbench": pgbench,
                "ops_vs_pgbench_tps": ratio(ops, pgbench.get("tps")),
                "goal": GOAL,
            }
        )


if __name__ == "__main__":
    main()
