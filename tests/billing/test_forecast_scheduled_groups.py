"""The cash forecast prices scheduled billing once per group of subscriptions that bill
alike (billing_runs.scheduled_receipts); it must give exactly what pricing every
subscription's periods one by one (scheduled_invoices) gives, on a varied book."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import psycopg

from adapters.runtime import Runtime
from billing import forecast as rules
from billing.postgres.billing_runs import scheduled_invoices, scheduled_receipts
from billing.postgres.forecast import cash_forecast
from billing.postgres.settings import change_settings
from tests.conftest import make_book

KNOWN = date(2026, 1, 1)
THROUGH = KNOWN + timedelta(days=7 * 13)

# (currency, model, unit_amount, package_size, interval, interval_count)
PRICES = [
    ("USD", "flat", "29.00", None, "month", 1),
    ("USD", "per_unit", "3.333", None, "month", 1),
    ("USD", "package", "20.00", 5, "month", 1),
    ("USD", "flat", "288.00", None, "year", 1),
    ("USD", "flat", "75.00", None, "month", 3),
    ("USD", "per_unit", "4.10", None, "week", 1),
    ("EUR", "flat", "19.99", None, "month", 1),
    ("EUR", "per_unit", "240.00", None, "year", 1),
]
# (percent_off, amount_off, currency, duration, periods)
COUPONS = [
    ("25", None, None, "repeating", 2),
    (None, "5.00", "USD", "forever", None),
    ("10", None, None, "once", None),
    ("50", None, None, "forever", None),
]
# (tax_rate, treatment, terms, days)
TERMS = [
    ("0", "taxable", "net", 30),
    ("0.1", "taxable", "net", 14),
    ("0.075", "taxable", "end_of_month", 15),
    ("0.2", "exempt", "due_on_receipt", 0),
    ("0.19", "reverse_charge", "net", 45),
]


def _varied_book(conn: psycopg.Connection, book_id: uuid.UUID) -> None:
    """Monthly, quarterly, weekly and annual subscriptions in USD and EUR: trials (with
    and without a stub to the anchor), cancellations at a period end and inside a
    period, pauses, a canceled one, coupons, quantity changes and added items inside
    the 13 weeks, versions ended before them, and customers who share a shape."""
    product = uuid.uuid4()
    conn.execute(
        "insert into products (book_id, id, name) values (%s, %s, 'Plan')", (book_id, product)
    )
    prices: list[tuple[uuid.UUID, str, str, int]] = []
    for currency, model, amount, package, interval, count in PRICES:
        price = uuid.uuid4()
        conn.execute(
            "insert into prices (book_id, id, product_id, currency, charge_model, unit_amount,"
            " package_size, interval, interval_count) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (book_id, price, product, currency, model, amount, package, interval, count),
        )
        prices.append((price, currency, interval, count))
    coupons = []
    for percent, amount, currency, duration, periods in COUPONS:
        coupon = uuid.uuid4()
        conn.execute(
            "insert into coupons (book_id, id, name, percent_off, amount_off, currency, duration,"
            " duration_in_periods) values (%s, %s, 'C', %s, %s, %s, %s, %s)",
            (book_id, coupon, percent, amount, currency, duration, periods),
        )
        coupons.append(coupon)
    customers: dict[str, list[uuid.UUID]] = defaultdict(list)
    for n in range(30):
        currency = "EUR" if n % 4 == 3 else "USD"
        rate, treatment, terms, days = TERMS[n % len(TERMS)]
        customer = uuid.uuid4()
        conn.execute(
            "insert into customers (book_id, id, name, currency, tax_rate, tax_treatment,"
            " payment_terms, payment_terms_days) values (%s, %s, %s, %s, %s, %s, %s, %s)",
            (book_id, customer, f"Customer {n}", currency, rate, treatment, terms, days),
        )
        customers[currency].append(customer)
    for n in range(160):
        price, currency, interval, count = prices[n % len(prices)]
        # A fifth of the subscriptions repeat an earlier one's shape for another customer.
        shape = n - 5 if n % 5 == 4 else n
        start = date(2025, 1, 1) + timedelta(days=(shape * 37) % 420)
        anchor = start
        trial_end = None
        if shape % 9 == 1:  # a trial ending in the window; the anchor is trial_end or earlier
            trial_end = KNOWN + timedelta(days=shape % 40)
            start = KNOWN - timedelta(days=10)
            anchor = trial_end if shape % 2 else start
        next_start = trial_end or start
        if interval in ("month", "year") and trial_end is None and start <= KNOWN:
            # billed through KNOWN: the next period starts on the anchor's day after it
            step = 12 * count if interval == "year" else count
            while next_start <= KNOWN:
                month = next_start.month - 1 + step
                year = next_start.year + month // 12
                day = min(anchor.day, 28)
                next_start = date(year, month % 12 + 1, day)
            anchor = anchor.replace(day=min(anchor.day, 28))
        elif interval == "week" and trial_end is None:
            while next_start <= KNOWN:
                next_start += timedelta(days=7 * count)
        cancel_at = None
        if shape % 7 == 2:
            cancel_at = next_start + timedelta(days=12)  # inside a period: a stub
        elif shape % 7 == 5:
            cancel_at = KNOWN + timedelta(days=40)
        paused_on = KNOWN + timedelta(days=50) if shape % 11 == 3 else None
        status = "canceled" if shape % 13 == 6 else ("trialing" if trial_end else "active")
        coupon = coupons[shape % len(coupons)] if shape % 3 == 0 else None
        if coupon == coupons[1] and currency != "USD":
            coupon = None
        subscription = uuid.uuid4()
        conn.execute(
            "insert into subscriptions (book_id, id, customer_id, status, currency, start_date,"
            " billing_anchor, interval, interval_count, trial_end, next_period_start,"
            " cancel_at, paused_on, coupon_id)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                book_id,
                subscription,
                customers[currency][n % len(customers[currency])],
                status,
                currency,
                start,
                anchor,
                interval,
                count,
                trial_end,
                next_start,
                cancel_at,
                paused_on,
                coupon,
            ),
        )
        versions: list[tuple[uuid.UUID, int, date, date | None]] = []
        quantity = 1 + shape % 4
        if shape % 4 == 1:  # a quantity change inside the 13 weeks
            change = max(start, KNOWN) + timedelta(days=20 + shape % 30)
            versions += [(price, quantity, start, change), (price, quantity + 2, change, None)]
        elif shape % 4 == 2:  # an old version ended before the window, and a second item
            versions += [(price, 7, start, start + timedelta(days=5))]
            versions += [(price, quantity, start + timedelta(days=5), None)]
            same = [p for p in prices if p[1:] == (currency, interval, count) and p[0] != price]
            if same:
                versions += [(same[0][0], 2, KNOWN + timedelta(days=30), None)]
        else:
            versions += [(price, quantity, start, None)]
        for item_price, item_quantity, effective_from, effective_to in versions:
            conn.execute(
                "insert into subscription_items (book_id, id, subscription_id, price_id,"
                " quantity, effective_from, effective_to) values (%s, %s, %s, %s, %s, %s, %s)",
                (
                    book_id,
                    uuid.uuid4(),
                    subscription,
                    item_price,
                    item_quantity,
                    effective_from,
                    effective_to,
                ),
            )


def _one_by_one(
    conn: psycopg.Connection, book_id: uuid.UUID
) -> dict[tuple[str, str, date], Decimal]:
    out: dict[tuple[str, str, date], Decimal] = defaultdict(Decimal)
    for s in scheduled_invoices(conn, book_id, KNOWN, THROUGH, replay=False):
        if s.total.amount > 0:
            out[(str(s.customer_id), s.currency, s.due)] += s.total.amount
    return dict(out)


def test_grouped_pricing_equals_pricing_each_subscription(
    runtime: Runtime, app_conn: psycopg.Connection
) -> None:
    book = make_book(runtime, "USD", KNOWN)
    _varied_book(app_conn, book.id)
    for tax_level in ("per_line", "per_invoice"):
        change_settings(app_conn, book.id, {"tax_level": tax_level})
        expected = _one_by_one(app_conn, book.id)
        got = scheduled_receipts(app_conn, book.id, THROUGH)
        # A session whose DateStyle writes dates day-first reads the same schedule.
        app_conn.execute("set datestyle = 'SQL, DMY'")
        assert scheduled_receipts(app_conn, book.id, THROUGH) == got
        app_conn.execute("reset datestyle")
        # The book is varied enough to mean something: both currencies, many customers and
        # due dates, and customers with several invoices due the same day.
        assert {currency for _, currency, _ in expected} == {"USD", "EUR"}
        assert len(expected) > 100
        invoices = scheduled_invoices(app_conn, book.id, KNOWN, THROUGH, replay=False)
        assert len(invoices) > len(expected)
        assert got == expected
        # And so the forecast itself, with the rules fed either way.
        plan = cash_forecast(app_conn, book.id, KNOWN, 13)
        first = KNOWN + timedelta(days=1)
        old = rules.forecast(
            [
                rules.Receivable(rules.SCHEDULED, str(s.customer_id), s.currency, s.due, a)
                for s in scheduled_invoices(app_conn, book.id, KNOWN, THROUGH, replay=False)
                if (a := s.total.amount) > 0
            ],
            {},
            {},
            {},
            first,
            13,
        )
        assert plan == old
        assert sum(w.scheduled_billing for w in plan.weeks) > 0
