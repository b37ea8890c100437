"""A dunning run over N overdue invoices, against writing the same outbox rows.

    .venv/bin/python -m benchmarks.dunning_run [--invoices 1000]

Setup (not timed): a book, N `send_invoice` customers with an e-mail address and
one finalized invoice each (100.00 + 8.00 tax, net 30). Timed, each one
transaction per invoice as the API runs it:

- `run_dunning` on the day before the due date minus 2 (the `reminder:-3`
  step: lock, read the invoice and its attempts and steps, render the reminder
  with Jinja, write the message and the step);
- the same run again (every step found done: the cost of a repeated run);
- a run 20 days later with a 1.5 % late fee set (skipping two reminders,
  queueing `reminder:+14`, and finalizing a late-fee invoice each: an entry
  per invoice).

Baseline, same database: one INSERT of an equivalent message row and one of a
step row per invoice, also one transaction per invoice.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from adapters.dunning import run_dunning
from benchmarks._common import BenchDatabase, analyze, bench_database, emit, ratio
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.invoices import LineSpec, create_draft, finalize_invoice
from billing.postgres.settings import change_settings

DAY = date(2026, 2, 2)
DUE = DAY + timedelta(days=30)


def _setup(db: BenchDatabase, count: int) -> tuple[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID]]]:
    from adapters.services import create_book_with_chart

    invoices = []
    with db.connect(app_role=True) as conn:
        book, _ = create_book_with_chart(conn, "bench dunning", "USD", DAY)
        for n in range(count):
            customer, _ = upsert_customer(
                conn,
                book.id,
                CustomerSpec(
                    f"Customer {n}", "USD", email=f"ap{n}@bench.test", tax_rate=Decimal("0.08")
                ),
            )
            draft = create_draft(
                conn, book.id, str(customer.id), [LineSpec("Plan", Decimal(1), Decimal("100.00"))]
            )
            assert draft is not None
            finalize_invoice(conn, book.id, str(draft.id), DAY)
            invoices.append((customer.id, draft.id))
            if n % 500 == 499:
                conn.commit()
        conn.commit()
    return book.id, invoices


def _timed(
    conn: psycopg.Connection, book_id: uuid.UUID, as_of: date
) -> tuple[float, dict[str, Any]]:
    @contextmanager
    def same() -> Iterator[psycopg.Connection]:
        yield conn  # one session, a transaction per invoice (run_dunning commits)

    started = time.perf_counter()
    done = run_dunning(same, book_id, as_of, as_of)
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=1000)
    args = parser.parse_args()
    count = args.invoices
    with bench_database("ab_bench_dunning") as db:
        t0 = time.perf_counter()
        book_id, invoices = _setup(db, count)
        setup_s = time.perf_counter() - t0
        analyze(db)
        with db.connect(app_role=True) as conn:
            first_s, first = _timed(conn, book_id, DUE - timedelta(days=3))
            again_s, again = _timed(conn, book_id, DUE - timedelta(days=3))
            change_settings(conn, book_id, {"dunning": {"late_fee": {"percent": "1.5"}}})
            conn.commit()
            late_s, late = _timed(conn, book_id, DUE + timedelta(days=14))
        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            for customer_id, invoice_id in invoices:
                conn.execute(
                    "insert into messages (book_id, id, customer_id, invoice_id, kind,"
                    " recipient, subject, body) values (%s, %s, %s, %s, 'bench', %s, %s, %s)",
                    (book_id, uuid.uuid4(), customer_id, invoice_id, "x@bench.test", "s", "b"),
                )
                conn.execute(
                    "insert into dunning_steps (book_id, invoice_id, step, kind, on_date, as_of,"
                    " outcome, detail) values (%s, %s, 'bench', 'reminder', %s, %s, 'done', %s)",
                    (book_id, invoice_id, DUE, DUE, Jsonb({})),
                )
                conn.commit()
            baseline_s = time.perf_counter() - started
        base = count / baseline_s
        emit(
            {
                "benchmark": "dunning_run",
                "server": db.server_info(),
                "invoices": count,
                "setup_seconds": round(setup_s, 2),
                "reminder_run": {"seconds": round(first_s, 2), "reminders": first["reminders"]},
                "repeated_run": {"seconds": round(again_s, 2), "reminders": again["reminders"]},
                "late_fee_run": {
                    "seconds": round(late_s, 2),
                    "reminders": late["reminders"],
                    "late_fees": late["late_fees"],
                },
                "baseline_outbox_inserts_per_second": round(base, 1),
                "ratio_reminder_run_to_baseline": ratio(count / first_s, base),
                "ratio_repeated_run_to_baseline": ratio(count / again_s, base),
                "ratio_late_fee_run_to_baseline": ratio(count / late_s, base),
            }
        )


if __name__ == "__main__":
    main()
