"""MRR movements over N subscriptions × 24 months, against a plain SQL sum.

    .venv/bin/python -m benchmarks.mrr [--subscriptions 2000] [--runs 3]
    .venv/bin/python -m benchmarks.mrr --full        # 100,000 subscriptions

The book gets 1 customer per 3 subscriptions and four recurring prices
(monthly flat 29.00 and per-unit 9.50; annual flat 288.00 and per-unit 96.00,
whole twelfths so the plain sum is exact), and N subscriptions made with
set-based SQL: starts spread over 24 months, one in five canceled some months
later, one in four upgraded (a second item version with a larger quantity)
halfway. Timed: `billing.postgres.metrics.mrr` for the 24 months (read the
subscriptions, items, prices and coupons; every movement per customer and
month; cohorts). Baseline in the same run: one SQL statement summing the same
items in force at each month end, normalized to a month. The report says
whether both give the same MRR at every month end.

Then the console's dashboard (`GET /console/`: a year of MRR movements, the
13-week cash forecast with the subscriptions' scheduled billing, six month-ends
of AR aging) through Litestar's test client in this process, signed in with an
admin key: server time per page, no network.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import date
from decimal import Decimal

from benchmarks._common import BenchDatabase, bench_database, emit, ratio, timing_summary
from billing.metrics import month_end
from billing.postgres.metrics import mrr

FIRST = date(2024, 1, 1)
LAST = date(2025, 12, 1)
TODAY = date(2025, 12, 31)


def _setup(db: BenchDatabase, count: int) -> uuid.UUID:
    from adapters.services import create_book_with_chart

    with db.connect(app_role=True) as conn:
        book, _ = create_book_with_chart(conn, "bench mrr", "USD", TODAY)
        book_id = book.id
        product = uuid.uuid4()
        conn.execute(
            "insert into products (book_id, id, name) values (%s, %s, 'Plan')", (book_id, product)
        )
        prices = [
            ("flat", "29.00", "month"),
            ("per_unit", "9.50", "month"),
            ("flat", "288.00", "year"),
            ("per_unit", "96.00", "year"),
        ]
        ids = [uuid.uuid4() for _ in prices]
        for price_id, (model, amount, interval) in zip(ids, prices, strict=True):
            conn.execute(
                "insert into prices (book_id, id, product_id, currency, charge_model,"
                " unit_amount, interval) values (%s, %s, %s, 'USD', %s, %s, %s)",
                (book_id, price_id, product, model, amount, interval),
            )
        customers = max(1, count // 3)
        conn.execute(
            "insert into customers (book_id, id, name, currency)"
            " select %s, gen_random_uuid(), 'Customer ' || n, 'USD'"
            "   from generate_series(1, %s) n",
            (book_id, customers),
        )
        # Subscription n starts on day 1 + n % 28 of month n % 24; annual when n % 3 = 0;
        # canceled 3 + n % 9 months later when n % 5 = 0. Billing is current (as after a
        # run on TODAY), so the dashboard's cash forecast prices the next 13 weeks' periods,
        # not a backlog of periods never billed.
        conn.execute(
            "with c as (select id, row_number() over (order by id) - 1 as k"
            "             from customers where book_id = %(book)s),"
            " s as (select n, (%(first)s::date + make_interval(months => n %% 24)"
            "                  + make_interval(days => n %% 28))::date as start"
            "         from generate_series(0, %(count)s - 1) n)"
            " insert into subscriptions (book_id, id, customer_id, status, currency, start_date,"
            "   billing_anchor, interval, interval_count, next_period_start, cancel_at, metadata)"
            " select %(book)s, gen_random_uuid(), c.id, 'active', 'USD', s.start, s.start,"
            "        case when s.n %% 3 = 0 then 'year' else 'month' end, 1,"
            # billed through TODAY: the next period starts on the anchor's day in 2026
            "        make_date(2026, case when s.n %% 3 = 0 then extract(month from s.start)::int"
            "                             else 1 end, extract(day from s.start)::int),"
            "        case when s.n %% 5 = 0 then (s.start"
            "             + make_interval(months => 3 + s.n %% 9))::date end,"
            "        jsonb_build_object('n', s.n)"
            "   from s join c on c.k = s.n %% %(customers)s",
            {"book": book_id, "first": FIRST, "count": count, "customers": customers},
        )
        # One item on the cycle's flat or per-unit price; one in four upgraded after 6
        # months (the first version ends, a second with twice the quantity starts).
        conn.execute(
            "insert into subscription_items (book_id, id, subscription_id, price_id, quantity,"
            "   effective_from, effective_to)"
            " select s.book_id, gen_random_uuid(), s.id,"
            "        (case when s.interval = 'month' then %(monthly)s::uuid[]"
            "              else %(annual)s::uuid[] end)[1 + s.n %% 2],"
            "        1 + s.n %% 4, s.start_date,"
            "        case when s.n %% 4 = 0 then (s.start_date + interval '6 months')::date end"
            "   from (select *, (metadata->>'n')::int as n from subscriptions"
            "          where book_id = %(book)s) s"
            " union all"
            " select s.book_id, gen_random_uuid(), s.id,"
            "        (case when s.interval = 'month' then %(monthly)s::uuid[]"
            "              else %(annual)s::uuid[] end)[1 + s.n %% 2],"
            "        2 * (1 + s.n %% 4), (s.start_date + interval '6 months')::date, null"
            "   from (select *, (metadata->>'n')::int as n from subscriptions"
            "          where book_id = %(book)s) s where s.n %% 4 = 0",
            {"book": book_id, "monthly": ids[:2], "annual": ids[2:]},
        )
        conn.commit()
    with db.connect(autocommit=True) as owner:
        owner.execute("vacuum analyze customers, subscriptions, subscription_items, prices")
    return book_id


BASELINE = (
    "select m::date, sum(p.unit_amount * i.quantity"
    "        / case when s.interval = 'year' then 12 else 1 end)"
    "  from generate_series(%(first)s::date, %(last)s::date, interval '1 month') m"
    "  cross join lateral (select (m + interval '1 month - 1 day')::date as d) e"
    "  join subscriptions s on s.book_id = %(book)s and s.start_date <= e.d"
    "   and (s.cancel_at is null or s.cancel_at > e.d)"
    "  join subscription_items i on i.book_id = s.book_id and i.subscription_id = s.id"
    "   and i.effective_from <= e.d and (i.effective_to is null or i.effective_to > e.d)"
    "  join prices p on p.book_id = i.book_id and p.id = i.price_id"
    " group by 1 order by 1"
)


def _dashboard_ms(db: BenchDatabase, book_id: uuid.UUID, runs: int) -> dict[str, float]:
    import re

    from litestar.testing import TestClient

    from adapters.database import DatabaseSettings
    from adapters.http.app import create_app
    from adapters.keys import Role, create_key
    from adapters.runtime import Runtime
    from benchmarks._common import APP_ROLE

    with db.connect(app_role=True) as conn:
        _, key = create_key(conn, book_id, Role.ADMIN, label="bench")
        conn.commit()
    runtime = Runtime(DatabaseSettings(db.url, APP_ROLE))
    try:
        with TestClient(create_app(runtime, run_sealer=False)) as client:
            form = client.get("/console/sign-in").text
            token = re.search(r'name="csrf" value="([^"]+)"', form)
            assert token is not None
            client.post("/console/sign-in", data={"api_key": key, "csrf": token.group(1)})
            times: list[float] = []
            for _ in range(runs):
                started = time.perf_counter()
                page = client.get("/console/")
                times.append((time.perf_counter() - started) * 1000)
                assert page.status_code == 200, page.text[:500]
        return timing_summary(times)
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscriptions", type=int, default=2000)
    parser.add_argument("--full", action="store_true", help="100,000 subscriptions")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    count = 100_000 if args.full else args.subscriptions
    with bench_database("ab_bench_mrr") as db:
        book_id = _setup(db, count)
        with db.connect(app_role=True) as conn:
            metrics_ms: list[float] = []
            baseline_ms: list[float] = []
            for _ in range(args.runs):
                started = time.perf_counter()
                report = mrr(conn, book_id, FIRST, LAST)
                metrics_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                rows = conn.execute(
                    BASELINE, {"book": book_id, "first": FIRST, "last": LAST}
                ).fetchall()
                baseline_ms.append((time.perf_counter() - started) * 1000)
            conn.rollback()
        ends = {m.month: m.end for m in report.months}
        plain = {month: Decimal(total).quantize(Decimal("0.01")) for month, total in rows}
        agree = all(ends.get(month, Decimal(0)) == total for month, total in plain.items())
        metrics_summary = timing_summary(metrics_ms)
        baseline_summary = timing_summary(baseline_ms)
        emit(
            {
                "benchmark": "mrr",
                "subscriptions": count,
                "months": len(plain),
                "through": month_end(LAST).isoformat(),
                "mrr_movements_ms": metrics_summary,
                "plain_sql_sum_ms": baseline_summary,
                "ratio_median": ratio(metrics_summary["median_ms"], baseline_summary["median_ms"]),
                "same_mrr_every_month": agree,
                "last_month_mrr": str(ends.get(LAST, Decimal(0))),
                "console_dashboard_ms": _dashboard_ms(db, book_id, args.runs),
                "server": db.server_info(),
            }
        )


if __name__ == "__main__":
    main()
