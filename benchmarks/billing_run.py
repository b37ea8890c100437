"""Billing run over N subscriptions on a simulated clock, against batched posting.

    .venv/bin/python -m benchmarks.billing_run [--subscriptions 5000] [--batch 1000]
                                               [--workers 2]
    .venv/bin/python -m benchmarks.billing_run --full        # 100,000 subscriptions

The book (simulated clock) gets 1 customer per 10 subscriptions, five recurring
prices (three monthly: flat 29.00, per-unit seats 9.50, flat add-on 5.00; two
annual: flat 290.00, per-unit 95.00) and N subscriptions with one to three
items each, two in three monthly and one in three annual, every one starting
on the run date. They are created with set-based SQL (`insert … select …
from generate_series`), so setup is a few statements however large N is.
Then `billing.postgres.billing_runs.run_billing` bills them all for that
date with `--workers` workers side by side, a connection each (each claims a
batch with FOR UPDATE SKIP LOCKED, builds drafts in Python, advances the
subscriptions, COPYs the lines, renders the events, then takes a block of
numbers, posts every finalization entry (one template per invoice shape) with
one `post_entries` call, COPYs the invoices and their events; one transaction
per batch), and we report invoices/s, the total time and the run's CPU seconds
(this process, and its server backends from /proc). In the same process and
database, the same number of 2-/3-posting entries is posted through
`ledger.postgres.posting.post_entries` 1,000 per call (one transaction each,
one connection), and the ratio of the two rates says what billing adds on top
of posting. Goal: 100k invoiced and posted ≤ 30 s.

Then the revenue-recognition run over the same book through the month end
(`billing.postgres.recognition.run_recognition`, Deferred Revenue → Income for
every invoice line with a service period): lines/s and its total time.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import psycopg

from benchmarks._common import (
    BenchDatabase,
    analyze,
    backend_cpu_seconds,
    bench_database,
    emit,
    ratio,
)
from benchmarks.post_batch import make_entries
from billing.postgres.billing_runs import run_billing
from billing.postgres.posting import post_entries  # the baseline entries name invoices
from billing.postgres.recognition import run_recognition

GOAL_SECONDS = 30.0
RUN_DATE = date(2026, 3, 1)
MONTH_END = date(2026, 3, 31)


def _setup(db: BenchDatabase, count: int) -> uuid.UUID:
    from adapters.services import create_book_with_chart

    with db.connect(app_role=True) as conn:
        book, _ = create_book_with_chart(conn, "bench billing", "USD", RUN_DATE)
        book_id = book.id
        conn.execute(
            "insert into products (book_id, id, name) values (%s, %s, 'Plan'), (%s, %s, 'Seats')",
            (book_id, uuid.uuid4(), book_id, uuid.uuid4()),
        )
        product = conn.execute(
            "select id from products where book_id = %s order by name limit 1", (book_id,)
        ).fetchone()
        assert product is not None
        prices = [
            ("flat", "29.00", "month"),
            ("per_unit", "9.50", "month"),
            ("flat", "5.00", "month"),
            ("flat", "290.00", "year"),
            ("per_unit", "95.00", "year"),
        ]
        price_ids = [uuid.uuid4() for _ in prices]
        for price_id, (model, amount, interval) in zip(price_ids, prices, strict=True):
            conn.execute(
                "insert into prices (book_id, id, product_id, currency, charge_model,"
                " unit_amount, interval) values (%s, %s, %s, 'USD', %s, %s, %s)",
                (book_id, price_id, product[0], model, amount, interval),
            )
        customers = max(1, count // 10)
        conn.execute(
            "insert into customers (book_id, id, name, currency, tax_rate)"
            " select %s, gen_random_uuid(), 'Customer ' || n, 'USD',"
            "        case when n %% 4 = 0 then 0.10 else 0 end"
            "   from generate_series(1, %s) n",
            (book_id, customers),
        )
        # Subscription n: annual when n % 3 = 0, else monthly; customer n % customers.
        conn.execute(
            "with c as (select id, row_number() over (order by id) - 1 as k"
            "             from customers where book_id = %(book)s)"
            " insert into subscriptions (book_id, id, customer_id, status, currency, start_date,"
            "   billing_anchor, interval, interval_count, next_period_start, metadata)"
            " select %(book)s, gen_random_uuid(), c.id, 'active', 'USD', %(day)s, %(day)s,"
            "        case when n %% 3 = 0 then 'year' else 'month' end, 1, %(day)s,"
            "        jsonb_build_object('n', n)"
            "   from generate_series(0, %(count)s - 1) n join c on c.k = n %% %(customers)s",
            {"book": book_id, "day": RUN_DATE, "count": count, "customers": customers},
        )
        # One to three items: item i (0..2) exists when i <= n % 3 … spread over the prices
        # of the subscription's cycle (monthly: 0, 1, 2; annual: 3, 4).
        conn.execute(
            "insert into subscription_items (book_id, id, subscription_id, price_id, quantity,"
            "   effective_from)"
            " select s.book_id, gen_random_uuid(), s.id,"
            "        (case when s.interval = 'month' then %(monthly)s::uuid[]"
            "              else %(annual)s::uuid[] end)[i + 1],"
            "        1 + (n %% 5), s.start_date"
            "   from (select *, (metadata->>'n')::int as n from subscriptions"
            "          where book_id = %(book)s) s"
            "   cross join generate_series(0, 2) i"
            "  where i <= s.n %% (case when s.interval = 'month' then 3 else 2 end)",
            {"book": book_id, "monthly": price_ids[:3], "annual": price_ids[3:]},
        )
        conn.commit()
    with db.connect(autocommit=True) as owner:
        owner.execute("vacuum analyze customers, subscriptions, subscription_items, prices")
    return book_id


@contextmanager
def _one(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    yield conn


class _PerThread:
    """One application-role connection per worker thread, kept for the run."""

    def __init__(self, db: BenchDatabase) -> None:
        self.db = db
        self.local = threading.local()
        self.opened: list[psycopg.Connection] = []
        self.lock = threading.Lock()

    @contextmanager
    def __call__(self) -> Iterator[psycopg.Connection]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.db.connect(app_role=True)
            with self.lock:
                self.opened.append(conn)
        yield conn

    def backends(self) -> list[int]:
        return [c.info.backend_pid for c in self.opened]

    def close(self) -> None:
        for conn in self.opened:
            conn.close()


def _posting_rate(db: BenchDatabase, book_id: uuid.UUID, count: int, batch: int) -> float:
    entries = make_entries(count, RUN_DATE, 28, uuid.uuid4().hex[:8])
    with db.connect(app_role=True) as conn:
        started = time.perf_counter()
        for first in range(0, count, batch):
            post_entries(conn, book_id, entries[first : first + batch])
            conn.commit()
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscriptions", type=int, default=5000)
    parser.add_argument("--full", action="store_true", help="100,000 subscriptions")
    parser.add_argument("--batch", type=int, default=1000, help="subscriptions per transaction")
    parser.add_argument(
        "--workers", type=int, default=2, help="batches side by side, a connection each (2)"
    )
    args = parser.parse_args()
    count = 100_000 if args.full else args.subscriptions
    with bench_database("ab_bench_billing") as db:
        t0 = time.perf_counter()
        book_id = _setup(db, count)
        setup_s = time.perf_counter() - t0
        with db.connect(app_role=True) as conn:
            items = conn.execute(
                "select count(*) from subscription_items where book_id = %s", (book_id,)
            ).fetchone()
            connections = _PerThread(db)
            cpu = time.process_time()
            started = time.perf_counter()
            try:
                run = run_billing(
                    connections,
                    book_id,
                    RUN_DATE,
                    RUN_DATE,
                    batch_size=args.batch,
                    workers=args.workers,
                )
                billing_s = time.perf_counter() - started
                client_cpu = time.process_time() - cpu
                server_cpu = backend_cpu_seconds(connections.backends())
                if server_cpu is not None:
                    server_cpu = round(server_cpu, 2)
            finally:
                connections.close()
            posted = conn.execute(
                "select count(*) from journal_entries where book_id = %s", (book_id,)
            ).fetchone()
        analyze(db)
        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            recognized = run_recognition(lambda: _one(conn), book_id, MONTH_END, MONTH_END)
            recognition_s = time.perf_counter() - started
        posting_rate = _posting_rate(db, book_id, run.invoices_created, 1000)
        invoice_rate = run.invoices_created / billing_s
        emit(
            {
                "benchmark": "billing_run",
                "server": db.server_info(),
                "subscriptions": count,
                "subscription_items": items[0] if items else None,
                "setup_seconds": round(setup_s, 2),
                "batch": args.batch,
                "invoices_created": run.invoices_created,
                "entries_posted_by_the_run": posted[0] if posted else None,
                "workers": args.workers,
                "billing_seconds": round(billing_s, 2),
                "billing_client_cpu_seconds": round(client_cpu, 2),
                "billing_server_cpu_seconds": server_cpu,
                "invoices_per_second": round(invoice_rate, 1),
                "post_entries_per_second": round(posting_rate, 1),
                "ratio_billing_to_posting": ratio(invoice_rate, posting_rate),
                "recognition_through": MONTH_END.isoformat(),
                "recognition_entries": recognized.entries,
                "recognition_lines": recognized.lines,
                "recognition_seconds": round(recognition_s, 2),
                "recognition_lines_per_second": round(recognized.lines / recognition_s, 1),
                "goal": f"{100_000} subscriptions in <= {GOAL_SECONDS} s",
                "projected_seconds_for_100k": round(100_000 / invoice_rate, 1),
                "meets_goal": 100_000 / invoice_rate <= GOAL_SECONDS,
            }
        )


if __name__ == "__main__":
    main()
