"""Billing run over usage subscriptions (issue 9): N subscriptions, each a flat
monthly fee and a graduated usage price on an `api_calls` meter, with M events
each in January; the run of Feb 1 rates every subscription's January usage in
arrears and invoices it with February's fee.

    .venv/bin/python -m benchmarks.usage_billing_run [--subscriptions 1000] [--events 100]
    .venv/bin/python -m benchmarks.usage_billing_run --full   # 10,000 × 1,000 (10M events)

Subscriptions are made through the subscription service (one call each, not
timed), January's fees are billed by a first run (not timed), the events go in
by COPY (timed: the ingest baseline), then the Feb 1 run is timed. Baselines in
the same run and database: `post_entries` of as many invoice-shaped entries,
and one SQL statement summing the same events per customer (what rating has to
read at the least). Prints JSON.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg

from benchmarks._common import BenchDatabase, analyze, bench_database, emit, ratio
from benchmarks.post_batch import make_entries
from billing.postgres import catalog, customers
from billing.postgres import subscriptions as subs
from billing.postgres.billing_runs import run_billing
from billing.postgres.posting import post_entries
from ledger.postgres.books import set_clock

JAN = date(2026, 1, 1)
FEB = date(2026, 2, 1)


@contextmanager
def _one(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    yield conn


def _setup(db: BenchDatabase, count: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    from adapters.services import create_book_with_chart

    with db.connect(app_role=True) as conn:
        book, _ = create_book_with_chart(conn, "bench usage billing", "USD", JAN)
        conn.execute(
            "insert into meters (book_id, id, metric, aggregation) values (%s, %s, 'api_calls',"
            " 'sum')",
            (book.id, uuid.uuid4()),
        )
        product = catalog.create_product(conn, book.id, "API", revenue_account="Income:Usage")
        fee = catalog.create_price(
            conn,
            book.id,
            catalog.PriceSpec(
                product=str(product.id),
                currency="USD",
                charge_model="flat",
                unit_amount=Decimal("49.00"),
                interval="month",
            ),
        )
        usage = catalog.create_price(
            conn,
            book.id,
            catalog.PriceSpec(
                product=str(product.id),
                currency="USD",
                charge_model="graduated",
                interval="month",
                metric="api_calls",
                aggregation="sum",
                tiers=[
                    {"up_to": 1000, "unit_amount": "0.10", "flat_amount": "0"},
                    {"up_to": 10000, "unit_amount": "0.05", "flat_amount": "0"},
                    {"up_to": None, "unit_amount": "0.01", "flat_amount": "0"},
                ],
            ),
        )
        people: list[uuid.UUID] = []
        for n in range(count):
            customer, _ = customers.upsert_customer(
                conn, book.id, customers.CustomerSpec(name=f"C{n}", currency="USD")
            )
            subs.create_subscription(
                conn,
                book.id,
                subs.SubscriptionSpec(
                    customer=str(customer.id),
                    items=[subs.ItemSpec(str(fee.id), Decimal(1)), subs.ItemSpec(str(usage.id))],
                    start_date=JAN,
                ),
                JAN,
            )
            people.append(customer.id)
            if n % 500 == 499:
                conn.commit()
        conn.commit()
    return book.id, people


def _copy_events(db: BenchDatabase, book_id: uuid.UUID, people: list[uuid.UUID], per: int) -> float:
    started = time.perf_counter()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    span = 30 * 86400
    with db.connect(app_role=True) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy usage_events (book_id, id, customer_id, metric, quantity, occurred_at)"
                " from stdin"
            ) as copy,
        ):
            for c, customer in enumerate(people):
                for e in range(per):
                    at = start + timedelta(seconds=(c * 7919 + e * 104729) % span)
                    copy.write_row((book_id, f"e{c}-{e}", customer, "api_calls", 1 + e % 40, at))
        conn.commit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100, help="events per subscription")
    parser.add_argument("--full", action="store_true", help="10,000 × 1,000 events")
    args = parser.parse_args()
    count, per = (10_000, 1_000) if args.full else (args.subscriptions, args.events)
    with bench_database("ab_bench_usage_run") as db:
        t0 = time.perf_counter()
        book_id, people = _setup(db, count)
        with db.connect(app_role=True) as conn:
            run_billing(lambda: _one(conn), book_id, JAN, JAN)  # January's fees, not timed
        setup_s = time.perf_counter() - t0
        copy_s = _copy_events(db, book_id, people, per)
        analyze(db)
        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            conn.execute(
                "select customer_id, sum(quantity) from usage_events where book_id = %s"
                " and metric = 'api_calls' and occurred_at >= %s and occurred_at < %s"
                " group by customer_id",
                (book_id, JAN, FEB),
            ).fetchall()
            sum_s = time.perf_counter() - started
            set_clock(conn, book_id, FEB)
            conn.commit()
            started = time.perf_counter()
            run = run_billing(lambda: _one(conn), book_id, FEB, FEB)
            billing_s = time.perf_counter() - started
            usage_lines = conn.execute(
                "select count(*) from invoice_lines l join prices p on p.book_id = l.book_id"
                " and p.id = l.price_id where l.book_id = %s and p.metric is not null",
                (book_id,),
            ).fetchone()
        entries = make_entries(run.invoices_created, FEB, 28, uuid.uuid4().hex[:8])
        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            for first in range(0, len(entries), 1000):
                post_entries(conn, book_id, entries[first : first + 1000])
                conn.commit()
            posting_s = time.perf_counter() - started
        events = count * per
        emit(
            {
                "benchmark": "usage_billing_run",
                "server": db.server_info(),
                "subscriptions": count,
                "events": events,
                "setup_seconds": round(setup_s, 1),
                "copy_events_seconds": round(copy_s, 2),
                "invoices_created": run.invoices_created,
                "usage_lines": usage_lines[0] if usage_lines else None,
                "billing_seconds": round(billing_s, 2),
                "invoices_per_second": round(run.invoices_created / billing_s, 1),
                "events_rated_per_second": round(events / billing_s, 1),
                "baseline_sum_seconds": round(sum_s, 3),
                "ratio_sum_to_billing": ratio(sum_s, billing_s),
                "baseline_post_entries_per_second": round(run.invoices_created / posting_s, 1),
                "ratio_billing_to_posting": ratio(
                    billing_s and run.invoices_created / billing_s, run.invoices_created / posting_s
                ),
            }
        )


if __name__ == "__main__":
    main()
