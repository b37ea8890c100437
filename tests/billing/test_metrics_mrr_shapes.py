"""MRR from the subscriptions' shapes grouped by PostgreSQL
(billing.postgres.metrics.subscription_shapes, billing.metrics.shape_changes)
equals the rules applied subscription by subscription (subscription_facts,
customer_changes, mrr_report) on a varied real book: monthly, quarterly, annual,
weekly and daily cycles, quantity changes, coupons once / repeating / forever
(percent and amount), cancellations, pauses, trials, USD, EUR and JPY, a price whose
monthly value does not end (annual 100.00), a package price — the steps of every
customer and the whole report, cohorts included."""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from decimal import Decimal

import psycopg

from billing.metrics import (
    customer_changes,
    month_end,
    months_between,
    mrr_report,
    shape_changes,
)
from billing.postgres import metrics as pg_metrics
from tests.conftest import BookFixture

FIRST = date(2024, 1, 1)
LAST = date(2025, 12, 1)


def _varied_book(conn: psycopg.Connection, book_id: uuid.UUID, seed: int) -> None:
    rng = random.Random(seed)
    product = uuid.uuid4()
    conn.execute(
        "insert into products (book_id, id, name) values (%s, %s, 'Plan')", (book_id, product)
    )
    prices: dict[tuple[str, str], list[uuid.UUID]] = {}
    specs = [
        # currency, model, amount, interval (the subscription's cycle picks its prices)
        ("USD", "flat", "29.00", "month"),
        ("USD", "per_unit", "9.50", "month"),
        ("USD", "per_unit", "0.333", "month"),  # rated to 0.33 per unit, half up
        ("USD", "flat", "288.00", "year"),
        ("USD", "flat", "100.00", "year"),  # 8.333… a month: rated in Python
        ("USD", "flat", "7.77", "week"),
        ("USD", "per_unit", "1.25", "day"),
        ("USD", "package", "10.00", "month"),  # package: rated in Python
        ("EUR", "flat", "45.00", "month"),
        ("EUR", "per_unit", "120.00", "year"),
        ("JPY", "flat", "1000", "month"),
        ("JPY", "per_unit", "12000", "year"),
        ("JPY", "per_unit", "333", "week"),
    ]
    for currency, model, amount, interval in specs:
        price = uuid.uuid4()
        conn.execute(
            "insert into prices (book_id, id, product_id, currency, charge_model, unit_amount,"
            " package_size, interval) values (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                book_id,
                price,
                product,
                currency,
                model,
                Decimal(amount),
                5 if model == "package" else None,
                interval,
            ),
        )
        prices.setdefault((currency, interval), []).append(price)
    coupons: list[uuid.UUID | None] = [None, None, None]
    for percent, amount, duration, periods in [
        ("25", None, "once", None),
        ("10", None, "forever", None),
        (None, "5.00", "forever", None),
        ("50", None, "repeating", 3),
        (None, "20.00", "repeating", 2),
    ]:
        coupon = uuid.uuid4()
        conn.execute(
            "insert into coupons (book_id, id, name, percent_off, amount_off, currency, duration,"
            " duration_in_periods) values (%s, %s, 'c', %s, %s, %s, %s, %s)",
            (
                book_id,
                coupon,
                percent,
                amount,
                "USD" if amount else None,
                duration,
                periods,
            ),
        )
        coupons.append(coupon)
    customers = []
    for n in range(40):
        customer = uuid.uuid4()
        currency = ("USD", "USD", "EUR", "JPY")[n % 4]
        conn.execute(
            "insert into customers (book_id, id, name, currency) values (%s, %s, %s, %s)",
            (book_id, customer, f"C{n}", currency),
        )
        customers.append((customer, currency))
    cycles = [("month", 1), ("month", 3), ("month", 1), ("year", 1), ("week", 1), ("day", 1)]
    for n in range(160):
        customer, currency = rng.choice(customers)
        interval, count = rng.choice(cycles)
        choices = prices.get((currency, interval)) or prices[(currency, "month")]
        if (currency, interval) not in prices:
            interval, count = "month", 1
        start = FIRST - timedelta(days=90) + timedelta(days=rng.randrange(0, 800))
        trial_end = start + timedelta(days=rng.choice([14, 30, 45])) if n % 6 == 0 else None
        cancel_at = start + timedelta(days=rng.randrange(20, 500)) if n % 4 == 0 else None
        paused_on = start + timedelta(days=rng.randrange(30, 400)) if n % 9 == 0 else None
        coupon = rng.choice(coupons) if currency == "USD" else rng.choice([None, coupons[3]])
        subscription = uuid.uuid4()
        conn.execute(
            "insert into subscriptions (book_id, id, customer_id, status, currency, start_date,"
            " billing_anchor, interval, interval_count, next_period_start, trial_end, cancel_at,"
            " paused_on, coupon_id) values (%s, %s, %s, 'active', %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s)",
            (
                book_id,
                subscription,
                customer,
                currency,
                start,
                trial_end or start,
                interval,
                count,
                start,
                trial_end,
                cancel_at,
                paused_on,
                coupon,
            ),
        )
        for _ in range(rng.choice([1, 1, 2])):
            price = rng.choice(choices)
            begin = start
            for _version in range(rng.choice([1, 2, 3])):
                end = begin + timedelta(days=rng.randrange(25, 300))
                conn.execute(
                    "insert into subscription_items (book_id, id, subscription_id, price_id,"
                    " quantity, effective_from, effective_to) values (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        book_id,
                        uuid.uuid4(),
                        subscription,
                        price,
                        rng.choice([1, 2, 3, 7]),
                        begin,
                        end,
                    ),
                )
                begin = end
            conn.execute(
                "insert into subscription_items (book_id, id, subscription_id, price_id,"
                " quantity, effective_from) values (%s, %s, %s, %s, %s, %s)",
                (
                    book_id,
                    uuid.uuid4(),
                    subscription,
                    price,
                    rng.choice([1, 4, 10, Decimal("2.50")]),
                    begin,
                ),
            )

    # Every third subscription again for a customer of its currency (sometimes the same
    # one): subscriptions that share a shape, and customers with the same combinations.
    columns = (
        "status, currency, start_date, billing_anchor, interval, interval_count,"
        " next_period_start, trial_end, cancel_at, paused_on, coupon_id"
    )
    originals = conn.execute(
        "select id, currency from subscriptions where book_id = %s order by id", (book_id,)
    ).fetchall()
    for original, currency in originals[::3]:
        copy = uuid.uuid4()
        customer = rng.choice([c for c, cur in customers if cur == currency])
        conn.execute(
            f"insert into subscriptions (book_id, id, customer_id, {columns})"
            f" select book_id, %s, %s, {columns} from subscriptions where id = %s",
            (copy, customer, original),
        )
        conn.execute(
            "insert into subscription_items (book_id, id, subscription_id, price_id, quantity,"
            "   effective_from, effective_to)"
            " select book_id, gen_random_uuid(), %s, price_id, quantity, effective_from,"
            "        effective_to from subscription_items where subscription_id = %s",
            (copy, original),
        )


def test_shapes_give_the_same_mrr_as_each_subscription(
    app_conn: psycopg.Connection, book: BookFixture
) -> None:
    _varied_book(app_conn, book.id, seed=12)
    for first, last in [(FIRST, LAST), (date(2024, 6, 1), date(2025, 3, 1)), (LAST, LAST)]:
        earliest = date(2023, 10, 1)  # the first month any subscription starts in
        days = [month_end(m) for m in months_between(earliest, last)]
        facts = pg_metrics.subscription_facts(app_conn, book.id, month_end(last))
        assert min(f.start for f in facts).replace(day=1) == earliest
        expected = customer_changes(facts, days)
        shapes, holders = pg_metrics.subscription_shapes(app_conn, book.id, month_end(last))
        assert len(shapes) < len(facts)  # some subscriptions share a shape
        assert sum(len(held) for held in holders.values()) == len(facts)
        assert shape_changes(shapes, holders.items(), days) == expected
        assert {k[0] for k in expected} == {"USD", "EUR", "JPY"}
        old = mrr_report(facts, first, last)
        new = pg_metrics.mrr(app_conn, book.id, first, last)
        assert new.months == old.months
        assert [
            (c.month, c.currency, c.customers, c.start_mrr, c.retained) for c in new.cohorts
        ] == [(c.month, c.currency, c.customers, c.start_mrr, c.retained) for c in old.cohorts]
        assert any(m.end for m in new.months)
