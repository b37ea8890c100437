"""A SEPA collection run, against posting the same payment entries.

    .venv/bin/python -m benchmarks.collection_run [--invoices 1000]

Setup (not timed): a EUR book with `sepa_creditor`, N customers with a SEPA
mandate as default and one finalized invoice of 100.00 each. Timed: one
`create_collection_run` (one transaction: the candidates read and locked,
one payment per invoice allocated to it, the pain.008 written and validated
against its XSD, the run and its transactions stored). Baseline, in the same
database and the same single transaction: the same N payment entries
(Clearing:SEPA | AR) through `billing.postgres.posting.post_entries`. The
ratio says what a run adds on top of posting.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import date
from decimal import Decimal

from adapters.collections.runs import create_collection_run, ensure_account
from benchmarks._common import BenchDatabase, analyze, bench_database, emit, ratio
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.invoices import LineSpec, create_draft, finalize_invoice
from billing.postgres.payment_methods import attach_payment_method
from billing.postgres.posting import post_entries
from billing.postings import Allocation, payment_entry
from ledger.money import Money

DAY = date(2026, 3, 2)
CLEARING = "Assets:Clearing:SEPA"
CREDITOR = {
    "name": "Bench GmbH",
    "iban": "DE89370400440532013000",
    "bic": "COBADEFFXXX",
    "creditor_id": "DE98ZZZ09999999999",
}


def _setup(db: BenchDatabase, count: int) -> tuple[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID]]]:
    from psycopg.types.json import Jsonb

    from adapters.services import create_book_with_chart

    invoices = []
    with db.connect(app_role=True) as conn:
        book, _ = create_book_with_chart(conn, "bench sepa", "EUR", DAY)
        conn.execute(
            "update books set settings = %s where id = %s",
            (Jsonb({"sepa_creditor": CREDITOR}), book.id),
        )
        ensure_account(conn, book.id, CLEARING)
        for n in range(count):
            customer, _ = upsert_customer(
                conn, book.id, CustomerSpec(f"Kunde {n}", "EUR", tax_rate=Decimal(0))
            )
            attach_payment_method(
                conn,
                book.id,
                str(customer.id),
                {
                    "type": "sepa_debit",
                    "iban": "DE02120300000000202051",
                    "bic": "BYLADEM1001",
                    "mandate_id": f"M-{n}",
                    "mandate_date": "2026-01-15",
                    "default": True,
                },
                DAY,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=1000)
    args = parser.parse_args()
    count = args.invoices
    with bench_database("ab_bench_collection_run") as db:
        t0 = time.perf_counter()
        book_id, invoices = _setup(db, count)
        setup_s = time.perf_counter() - t0
        analyze(db)
        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            run = create_collection_run(conn, book_id, "sepa", date(2026, 12, 31), DAY)
            conn.commit()
            run_s = time.perf_counter() - started
        amount = Money(Decimal("100.00"), "EUR")
        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            post_entries(
                conn,
                book_id,
                [
                    payment_entry(
                        uuid.uuid4(), str(c), DAY, amount, CLEARING, [Allocation(str(i), amount)]
                    )
                    for c, i in invoices
                ],
            )
            conn.commit()
            posting_s = time.perf_counter() - started
        run_rate, posting_rate = count / run_s, count / posting_s
        emit(
            {
                "benchmark": "collection_run",
                "server": db.server_info(),
                "invoices": count,
                "setup_seconds": round(setup_s, 2),
                "transactions": run["transaction_count"],
                "run_seconds": round(run_s, 2),
                "run_transactions_per_second": round(run_rate, 1),
                "post_entries_per_second": round(posting_rate, 1),
                "ratio_run_to_posting": ratio(run_rate, posting_rate),
            }
        )


if __name__ == "__main__":
    main()
