"""Auto-collection through the fake gateway, against posting the same entries.

    .venv/bin/python -m benchmarks.auto_collection [--invoices 1000]
    .venv/bin/python -m benchmarks.auto_collection --full      # 10,000 invoices

Setup (not timed): a book on a simulated clock, N customers
(`charge_automatically`, a pm_card_visa card as default) with one finalized
invoice each of 100.00 + 8.00 tax. Timed: every invoice is charged with
`adapters.gateways.collection.pay_invoice`, one transaction per charge as the
API does (customer and invoice row locks, the attempt row, the fake gateway's
charge and balance rows, the payment with its allocation, the fee entry).
Baseline, in the same database: the same two entries per invoice (Clearing |
AR and Payment-Fees | Clearing) through `billing.postgres.posting.post_entries`,
also one transaction per invoice. The ratio says what collection adds on top
of posting.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import date
from decimal import Decimal

from adapters.gateways.collection import ensure_account, pay_invoice
from benchmarks._common import BenchDatabase, analyze, bench_database, emit, ratio
from billing.collection import fee_entry
from billing.postgres.customers import CustomerSpec, upsert_customer
from billing.postgres.invoices import LineSpec, create_draft, finalize_invoice
from billing.postgres.payment_methods import attach_payment_method
from billing.postgres.posting import post_entries
from billing.postings import Allocation, payment_entry
from ledger.money import Money

DAY = date(2026, 2, 2)
CLEARING = "Assets:Clearing:Fake"


def _setup(db: BenchDatabase, count: int) -> tuple[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID]]]:
    from adapters.services import create_book_with_chart

    invoices = []
    with db.connect(app_role=True) as conn:
        book, _ = create_book_with_chart(conn, "bench collection", "USD", DAY)
        ensure_account(conn, book.id, CLEARING)
        for n in range(count):
            customer, _ = upsert_customer(
                conn,
                book.id,
                CustomerSpec(
                    f"Customer {n}",
                    "USD",
                    tax_rate=Decimal("0.08"),
                    collection_method="charge_automatically",
                ),
            )
            attach_payment_method(
                conn,
                book.id,
                str(customer.id),
                {"type": "card", "gateway": "fake", "token": "pm_card_visa", "default": True},
                DAY,
            )
            draft = create_draft(
                conn,
                book.id,
                str(customer.id),
                [LineSpec("Plan", Decimal(1), Decimal("100.00"))],
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
    parser.add_argument("--full", action="store_true", help="10,000 invoices")
    args = parser.parse_args()
    count = 10_000 if args.full else args.invoices
    with bench_database("ab_bench_collection") as db:
        t0 = time.perf_counter()
        book_id, invoices = _setup(db, count)
        setup_s = time.perf_counter() - t0
        analyze(db)
        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            for _, invoice_id in invoices:
                pay_invoice(conn, book_id, str(invoice_id), None, DAY)
                conn.commit()
            collect_s = time.perf_counter() - started
            paid = conn.execute(
                "select count(*) from payment_attempts where book_id = %s"
                " and outcome = 'succeeded'",
                (book_id,),
            ).fetchone()
        amount, fee = Money(Decimal("108.00"), "USD"), Money(Decimal("3.43"), "USD")
        with db.connect(app_role=True) as conn:
            started = time.perf_counter()
            for customer_id, invoice_id in invoices:
                payment_id = uuid.uuid4()
                entries = [
                    payment_entry(
                        payment_id,
                        str(customer_id),
                        DAY,
                        amount,
                        CLEARING,
                        [Allocation(str(invoice_id), amount)],
                    ),
                    fee_entry(payment_id, str(customer_id), DAY, CLEARING, fee, "ch_bench"),
                ]
                post_entries(conn, book_id, entries)
                conn.commit()
            posting_s = time.perf_counter() - started
        charge_rate = count / collect_s
        posting_rate = count / posting_s
        emit(
            {
                "benchmark": "auto_collection",
                "server": db.server_info(),
                "invoices": count,
                "setup_seconds": round(setup_s, 2),
                "charges_succeeded": paid[0] if paid else None,
                "collection_seconds": round(collect_s, 2),
                "charges_per_second": round(charge_rate, 1),
                "post_entries_pairs_per_second": round(posting_rate, 1),
                "ratio_collection_to_posting": ratio(charge_rate, posting_rate),
            }
        )


if __name__ == "__main__":
    main()
