"""Telecom invoicing's CDR read as history grows: month 12 against month 1.

    .venv/bin/python -m benchmarks.telecom_invoicing [--months 12] [--cdrs 1000] [--repeat 5]

A book in GBP with `cdr_rating`'s rate plan and one postpaid subscriber gets `--cdrs`
CDRs a month; each month they are imported and rated, then invoiced the way the
billing run does it (`unbilled_cdrs`, `cdr_lines`, `mark_billed`). The invoicing read
(`unbilled_cdrs`, `--repeat` times, median) is timed every month before the month is
marked billed. Baseline in the same run: a plain select of the same CDRs and their
ratings by key. Goal: month 12 costs what month 1 does (ratio ~1), not 12 times it.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from benchmarks._common import analyze, bench_database, emit, ratio
from benchmarks.cdr_rating import PLAN
from billing.postgres import telecom as store
from billing.postgres.telecom_billing import RatePlanItem, cdr_lines, mark_billed, unbilled_cdrs

SUBSCRIBER = "+447700000001"


def _month(n: int) -> date:
    return date(2026 + (n - 1) // 12, (n - 1) % 12 + 1, 1)


def _cdrs(month: int, count: int) -> list[tuple[int, dict[str, Any]]]:
    first = datetime.combine(_month(month), datetime.min.time(), UTC)
    step = 27 * 86400 // count
    return [
        (
            n,
            {
                "id": f"m{month:02d}-{n:05d}",
                "subscriber": SUBSCRIBER,
                "event_type": "voice",
                "start": (first + timedelta(seconds=n * step)).isoformat(),
                "destination": "+447700900123",
                "duration_seconds": str(30 + n % 600),
            },
        )
        for n in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--cdrs", type=int, default=1000, help="CDRs a month")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    months: list[dict[str, Any]] = []
    with bench_database() as db:
        from adapters.services import create_book_with_chart

        with db.connect(app_role=True) as conn:
            book, _ = create_book_with_chart(conn, "bench invoicing", "GBP", date(2026, 1, 1))
            store.create_rate_plan(conn, book.id, PLAN)
            customer = uuid.uuid4()
            conn.execute(
                "insert into customers (book_id, id, name, currency)"
                " values (%s, %s, 'Bench', 'GBP')",
                (book.id, customer),
            )
            conn.execute(
                "insert into telecom_subscribers (book_id, subscriber, customer_id, rate_plan)"
                " values (%s, %s, %s, 'Bench')",
                (book.id, SUBSCRIBER, customer),
            )
            conn.commit()
        item = RatePlanItem(uuid.uuid4(), SUBSCRIBER, "Bench", "Europe/London")
        for month in range(1, args.months + 1):
            before = _month(month + 1)
            with db.connect(app_role=True) as conn:
                result = store.import_cdrs(conn, book.id, _cdrs(month, args.cdrs))
                assert not result.rejected, result.rejected[:3]
                conn.commit()
                run = store.rate_through(conn, book.id, before)
                conn.commit()
                assert run.rated == args.cdrs, run
            analyze(db)
            with db.connect(app_role=True) as conn:
                reads, plain = [], []
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    pending = unbilled_cdrs(conn, book.id, [item], before).get(
                        item.subscription_id, []
                    )
                    reads.append(time.perf_counter() - began)
                    conn.rollback()
                ids = [c.id for c in pending]
                assert len(ids) == args.cdrs, len(ids)
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    conn.execute(
                        "select c.subscriber, c.id, c.start, c.event_type, r.zone,"
                        " r.billed_quantity, r.included, r.amount from cdrs c"
                        " join cdr_ratings r on r.book_id = c.book_id and r.cdr_id = c.id"
                        " where c.book_id = %s and c.id = any(%s)"
                        " order by c.subscriber, c.start, c.id",
                        (book.id, ids),
                    ).fetchall()
                    plain.append(time.perf_counter() - began)
                    conn.rollback()
                began = time.perf_counter()
                pending = unbilled_cdrs(conn, book.id, [item], before)[item.subscription_id]
                _, billed = cdr_lines(pending, item, before, None, "GBP")
                mark_billed(conn, book.id, {uuid.uuid4(): billed})
                conn.commit()
                invoicing = time.perf_counter() - began
                assert len(billed) == args.cdrs
            read_ms = statistics.median(reads) * 1000
            plain_ms = statistics.median(plain) * 1000
            months.append(
                {
                    "month": month,
                    "history_cdrs": month * args.cdrs,
                    "read_ms": round(read_ms, 2),
                    "baseline_plain_select_ms": round(plain_ms, 2),
                    "read_vs_baseline": ratio(read_ms, plain_ms),
                    "invoicing_ms": round(invoicing * 1000, 2),
                }
            )
        first, last = months[0], months[-1]
        emit(
            {
                "benchmark": "telecom_invoicing",
                "server": db.server_info(),
                "months": args.months,
                "cdrs_a_month": args.cdrs,
                "repeat": args.repeat,
                "per_month": months,
                "read_last_vs_first": ratio(last["read_ms"], first["read_ms"]),
                "baseline_last_vs_first": ratio(
                    last["baseline_plain_select_ms"], first["baseline_plain_select_ms"]
                ),
                "invoicing_last_vs_first": ratio(last["invoicing_ms"], first["invoicing_ms"]),
            }
        )


if __name__ == "__main__":
    main()
