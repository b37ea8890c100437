"""Real-time authorization: 16 clients reserving and capturing on 1,000 wallets.

    .venv/bin/python -m benchmarks.wallet_reservations [--clients 16] [--wallets 1000]
        [--seconds 20] [--pgbench-scale 10]

A book gets `--wallets` prepaid wallets with 1,000.00 each. `--clients`
threads, each with its own application-role connection, loop for
`--seconds`: pick a random wallet, hold 0.50 (`reserve`, one transaction),
then capture 0.37 of it (`capture`, another transaction), as a switch does
at the start and the end of a call; each is one autocommitted statement (the
PL/pgSQL function is the unit of work). Reported: operations/s (a hold or a
capture is one operation) and p50/p99 latency. Baseline in the same run and on
the same server: pgbench TPC-B with the same clients and duration. Goal:
operations/s ÷ tps ≥ 0.5.

CPU, which a loaded machine does not skew as it does throughput: the wallet
clients' server backends (/proc/<pid>/stat) and this process (process_time) per
operation, against pgbench's timed run's backends and its own process per
transaction (polled every 50 ms while pgbench runs, so at most that much of each
is missed); `ops_vs_pgbench_by_cpu` is pgbench's CPU per transaction ÷ ours per
operation, the throughput ratio a CPU-bound machine would give.

Correctness: every wallet's balance = 1,000.00 − its captures, none below 0,
and the ledger's postings on each wallet account sum to that balance.
"""

from __future__ import annotations

import argparse
import random
import re
import threading
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks._common import (
    BenchDatabase,
    analyze,
    backend_cpu_seconds,
    bench_database,
    emit,
    percentile,
    ratio,
    run_pgbench,
)
from billing.postgres import wallets as store

GOAL = 0.5
DAY = date(2026, 3, 1)
# pgbench -i's statements: its backend loads the tables and is not the timed run.
_LOADING = re.compile(r"\s*(copy|vacuum|create|drop|alter|truncate)\b", re.IGNORECASE)


def _children() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


class _PgbenchCpu(threading.Thread):
    """Polls, while pgbench runs, the CPU of its timed run: its backends and its process."""

    def __init__(self, db: BenchDatabase) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.backends: dict[int, float] = {}
        self.loaders: set[int] = set()
        self.clients: dict[int, float] = {}

    def run(self) -> None:
        with self.db.connect(autocommit=True) as conn:
            while not self.stop.wait(0.05):
                rows = conn.execute(
                    "select pid, query from pg_stat_activity where datname = current_database()"
                    " and application_name = 'pgbench'"
                ).fetchall()
                for pid, query in rows:
                    if _LOADING.match(query or ""):
                        self.loaders.add(pid)
                    cpu = backend_cpu_seconds([pid])
                    if cpu is not None:
                        self.backends[pid] = cpu
                for pid in _children():
                    try:
                        timed = b"-T" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    except OSError:
                        continue
                    cpu = backend_cpu_seconds([pid])
                    if timed and cpu is not None:
                        self.clients[pid] = cpu

    def totals(self) -> tuple[float, float]:
        """(server seconds, pgbench process seconds) of the timed run."""
        server = sum(cpu for pid, cpu in self.backends.items() if pid not in self.loaders)
        return server, sum(self.clients.values())


def _ms_per(seconds: float | None, count: int | None) -> float | None:
    return round(seconds * 1000 / count, 3) if seconds is not None and count else None


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
        backend_cpu: list[float | None] = [None] * args.clients
        errors: list[BaseException] = []
        barrier = threading.Barrier(args.clients + 1)
        stop = threading.Event()

        def client(n: int) -> None:
            rng = random.Random(n)
            mine = latencies[n]
            # Autocommit: a hold or a capture is one statement, its own transaction.
            with db.connect(app_role=True, autocommit=True) as conn:
                found = conn.execute("select pg_backend_pid()").fetchone()
                pid = found[0] if found else 0
                barrier.wait()
                before = backend_cpu_seconds([pid])
                while not stop.is_set():
                    wallet = rng.choice(wallets)
                    try:
                        began = time.perf_counter()
                        hold = store.reserve(conn, book_id, wallet, Decimal("0.50"), 300)
                        mine.append(time.perf_counter() - began)
                        began = time.perf_counter()
                        store.capture(conn, book_id, wallet, str(hold.id), Decimal("0.37"), DAY)
                        mine.append(time.perf_counter() - began)
                    except BaseException as exc:  # reported below, the run goes on
                        errors.append(exc)
                after = backend_cpu_seconds([pid])
                if before is not None and after is not None:
                    backend_cpu[n] = after - before

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        barrier.wait()
        began = time.perf_counter()
        client_began = time.process_time()  # all this process's threads
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
        client_cpu = time.process_time() - client_began
        measured = [c for c in backend_cpu if c is not None]
        server_cpu = sum(measured) if len(measured) == args.clients else None
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
        poller = _PgbenchCpu(db)
        poller.start()
        pgbench = run_pgbench(
            db,
            scale=args.pgbench_scale,
            clients=args.clients,
            threads=min(args.clients, 2),
            seconds=int(args.seconds),
        )
        poller.stop.set()
        poller.join()
        pg_server, pg_client = poller.totals()
        tx = pgbench.get("transactions")
        cpu = {
            "server_ms_per_op": _ms_per(server_cpu, len(ms)),
            "client_ms_per_op": _ms_per(client_cpu, len(ms)),
            "pgbench_server_ms_per_tx": _ms_per(pg_server, tx),
            "pgbench_client_ms_per_tx": _ms_per(pg_client, tx),
        }
        ours = None if server_cpu is None else server_cpu + client_cpu
        by_cpu = ratio(
            (pg_server + pg_client) / tx if tx else None, ours / len(ms) if ours and ms else None
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
                "cpu": cpu,
                "ops_vs_pgbench_by_cpu": by_cpu,
                "goal": GOAL,
            }
        )


if __name__ == "__main__":
    main()
