"""MSP invoicing: the contract billing run over N clients with M approved time
entries each, against posting as many entries with `post_entries`.

    .venv/bin/python -m benchmarks.msp_invoicing [--clients 50] [--entries 20]
    .venv/bin/python -m benchmarks.msp_invoicing --full      # 1,000 clients × 200 entries

The book (simulated clock at the run date) gets N clients, each with one
time-and-materials contract (120.00/h, 15-minute rounding) started a month
before, and M approved entries in that month, made with set-based SQL. Then
`billing.postgres.msp.contract_billing_run` invoices them (one transaction:
one invoice per client through the billing invoice code, each entry marked
invoiced against its line); we report time entries/s. In the same process and
database, N × M 2-/3-posting entries go through `post_entries` 1,000 per call,
and the ratio says what invoicing time costs per entry against posting one.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import date

from benchmarks._common import BenchDatabase, bench_database, emit, ratio
from benchmarks.post_batch import make_entries
from billing.postgres.msp import contract_billing_run
from billing.postgres.posting import post_entries

START = date(2026, 2, 1)
RUN_DATE = date(2026, 3, 1)


def _setup(db: BenchDatabase, clients: int, per_client: int) -> uuid.UUID:
    from adapters.services import create_book_with_chart

    with db.connect(app_role=True) as conn:
        book, _ = create_book_with_chart(conn, "bench msp", "USD", RUN_DATE)
        book_id = book.id
        conn.execute(
            "insert into customers (book_id, id, name, currency)"
            " select %s, gen_random_uuid(), 'Client ' || n, 'USD'"
            "   from generate_series(1, %s) n",
            (book_id, clients),
        )
        conn.execute(
            "insert into contracts (book_id, id, customer_id, type, currency, start_date, terms)"
            " select book_id, gen_random_uuid(), id, 'time_and_materials', 'USD', %s,"
            '        \'{"hourly_rate": "120.00", "rounding": {"increment_minutes": 15}}\''
            "   from customers where book_id = %s",
            (START, book_id),
        )
        # Entry k of a contract: 15 to 240 minutes on day k % 28 of February.
        conn.execute(
            "insert into time_entries (book_id, id, contract_id, customer_id, person, date,"
            "   minutes, rounded_minutes, role, billable, notes, ticket, rate, rate_source,"
            "   amount, status)"
            " select c.book_id, gen_random_uuid(), c.id, c.customer_id, 'Tech ' || (k %% 7),"
            "        %s::date + (k %% 28), m, m, 'engineer', 'billable', 'Work ' || k,"
            "        'T-' || k, 120.00, 'contract', m * 2.00, 'approved'"
            "   from contracts c cross join generate_series(0, %s - 1) k"
            "   cross join lateral (select 15 * (1 + (k %% 16)) as m) x"
            "  where c.book_id = %s",
            (START, per_client, book_id),
        )
        conn.commit()
    with db.connect(autocommit=True) as owner:
        owner.execute("vacuum analyze customers, contracts, time_entries")
    return book_id


def _posting_rate(db: BenchDatabase, book_id: uuid.UUID, count: int, batch: int) -> float:
    entries = make_entries(count, START, 28, uuid.uuid4().hex[:8])
    with db.connect(app_role=True) as conn:
        started = time.perf_counter()
        for first in range(0, count, batch):
            post_entries(conn, book_id, entries[first : first + batch])
            conn.commit()
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--entries", type=int, default=20, help="time entries per client")
    parser.add_argument("--full", action="store_true", help="1,000 clients × 200 entries")
    args = parser.parse_args()
    clients, per_client = (1000, 200) if args.full else (args.clients, args.entries)
    with bench_database("ab_bench_msp") as db:
        t0 = time.perf_counter()
        book_id = _setup(db, clients, per_client)
        setup_s = time.perf_counter() - t0
        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            run = contract_billing_run(conn, book_id, RUN_DATE, RUN_DATE)
            conn.commit()
            run_s = time.perf_counter() - started
            invoiced = conn.execute(
                "select count(*) from time_entries where book_id = %s and status = 'invoiced'",
                (book_id,),
            ).fetchone()
        entries = clients * per_client
        posting_rate = _posting_rate(db, book_id, entries, 1000)
        entry_rate = entries / run_s
        emit(
            {
                "benchmark": "msp_invoicing",
                "server": db.server_info(),
                "clients": clients,
                "time_entries": entries,
                "time_entries_invoiced": invoiced[0] if invoiced else None,
                "invoices_created": len(run.invoices),
                "setup_seconds": round(setup_s, 2),
                "run_seconds": round(run_s, 2),
                "time_entries_per_second": round(entry_rate, 1),
                "post_entries_per_second": round(posting_rate, 1),
                "ratio_invoicing_to_posting": ratio(entry_rate, posting_rate),
            }
        )


if __name__ == "__main__":
    main()
