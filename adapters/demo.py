"""`activebilling demo`: months of a mixed business on a simulated clock.

Every step calls the same application services the HTTP handlers call, each
in its own unit of work, with the book's simulated date as "today": billing
runs, payments (late, partial, over), plan changes, cancellations, one-off
invoices, credit notes, refunds and month-end revenue recognition. Beside
that SaaS core, `adapters/demo_industries.py` runs card collection, usage,
telecom, healthcare and MSP customers through the HTTP API. It ends by
sealing the book and running `verify`.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import psycopg

from adapters.demo_industries import Industries, open_api
from adapters.http.ledger_api import moved_clock
from adapters.runtime import Runtime
from adapters.services import create_book_with_chart, verify_everything
from billing.errors import DocumentState, ExceedsAvailable
from billing.periods import month_of
from billing.postgres import billing_runs, catalog, credit_notes, customers, invoices, payments
from billing.postgres import subscriptions as subs
from billing.postgres.recognition import run_recognition
from ledger.postgres.sealer import seal_pending
from ledger.postgres.unit_of_work import unit_of_work

T = TypeVar("T")

# (product, revenue account, charge model, amount, interval) in USD
PLANS: dict[str, tuple[str, str, str, str, str]] = {
    "seat_monthly": ("SaaS seats", "Income:Subscriptions", "per_unit", "12.00", "month"),
    "pro_monthly": ("SaaS Pro", "Income:Subscriptions", "flat", "90.00", "month"),
    "business_monthly": ("SaaS Business", "Income:Subscriptions", "flat", "120.00", "month"),
    "annual": ("SaaS Annual", "Income:Subscriptions", "flat", "1200.00", "year"),
    "postpaid": ("Mobile postpaid plan", "Income:Subscriptions", "flat", "35.00", "month"),
    "retainer": ("MSP retainer", "Income:Services", "flat", "1500.00", "month"),
}
ONE_OFFS = [
    ("MSP hours: network upgrade", "Income:Services", "150.00"),
    ("Project milestone", "Income:Services", "2400.00"),
    ("Office visit (CPT 99213)", "Income:Patient-Services", "180.00"),
    ("Device setup", "Income:Services", "75.00"),
]


class Demo:
    def __init__(self, runtime: Runtime, seed: int) -> None:
        self.runtime = runtime
        self.random = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.book_id = uuid.UUID(int=0)
        self.today = date.min
        self.rank: dict[uuid.UUID, int] = {}  # customer id -> order of creation

    def work(self, fn: Callable[[psycopg.Connection], T]) -> T:
        with unit_of_work(self.runtime.connection) as uow:
            result = fn(uow.conn)
            uow.commit()
        return result

    def attempt(self, what: str, fn: Callable[[psycopg.Connection], Any]) -> None:
        """A business action that the rules may refuse (e.g. nothing left to credit)."""
        try:
            self.work(fn)
            self.counts[what] += 1
        except (DocumentState, ExceedsAvailable):
            self.counts[f"{what}_refused"] += 1

    def move_clock(self, day: date) -> None:
        """As `POST /v1/clock`: what runs on the clock (gateway payouts, disputes) happens."""
        self.work(lambda conn: moved_clock(conn, self.book_id, day))
        self.today = day


def run_demo(
    runtime: Runtime, *, customers_count: int, months: int, seed: int, start: date
) -> dict[str, Any]:
    demo = Demo(runtime, seed)
    book, api_key = demo.work(
        lambda conn: create_book_with_chart(conn, f"Demo {seed}", "USD", start)
    )
    demo.book_id, demo.today = book.id, start
    prices = demo.work(lambda conn: _catalog(conn, book.id))
    subscriptions = demo.work(lambda conn: _customers(demo, conn, prices, customers_count))
    customer_ids = list(subscriptions)
    with open_api(runtime, api_key) as api:
        industries = Industries(api, runtime, book.id, demo.random, demo.counts)
        industries.setup(start)
        for n, customer_id in enumerate(industries.created, start=customers_count):
            demo.rank[uuid.UUID(customer_id)] = n
        month_start = start
        for _ in range(months):
            demo.move_clock(month_start)
            run = billing_runs.run_billing(runtime.connection, book.id, month_start, month_start)
            demo.counts["invoices_from_runs"] += run.invoices_created
            industries.after_billing_run(month_start)
            demo.move_clock(month_start + timedelta(days=9))
            industries.collect_direct_debits(demo.today)  # before transfers pay the rest
            _payments(demo)
            demo.move_clock(month_start + timedelta(days=14))
            _changes(demo, subscriptions, prices)
            _one_offs(demo, customer_ids)
            _credits_and_refunds(demo)
            industries.mid_month(month_start, demo.today)
            last = month_of(month_start).end - timedelta(days=1)
            demo.move_clock(last)
            recognized = run_recognition(runtime.connection, book.id, last, last)
            demo.counts["recognition_entries"] += recognized.entries
            industries.month_end(month_start, last)
            month_start = last + timedelta(days=1)
    seal_pending(runtime.connection, book.id)
    with runtime.connection() as conn:
        problems = verify_everything(conn, book.id)
        totals = conn.execute(
            "select count(*) from journal_entries where book_id = %s", (book.id,)
        ).fetchone()
    return {
        "book_id": str(book.id),
        "api_key": api_key,
        "start": start.isoformat(),
        "end": demo.today.isoformat(),
        "customers": customers_count,
        "months": months,
        "entries": totals[0] if totals else 0,
        "activity": dict(sorted(demo.counts.items())),
        "verify": {"ok": not problems, "discrepancies": len(problems)},
    }


def _catalog(conn: psycopg.Connection, book_id: uuid.UUID) -> dict[str, str]:
    prices: dict[str, str] = {}
    for key, (name, account, model, amount, interval) in PLANS.items():
        product = catalog.create_product(conn, book_id, name, revenue_account=account)
        price = catalog.create_price(
            conn,
            book_id,
            catalog.PriceSpec(
                product=str(product.id),
                currency="USD",
                charge_model=model,
                unit_amount=Decimal(amount),
                interval=interval,
            ),
        )
        prices[key] = str(price.id)
    return prices


def _customers(
    demo: Demo, conn: psycopg.Connection, prices: dict[str, str], count: int
) -> dict[str, str]:
    """Customers, each on one plan; returns customer id → subscription id."""
    out: dict[str, str] = {}
    plans = list(PLANS)
    for n in range(count):
        plan = plans[n % len(plans)]
        customer, _ = customers.upsert_customer(
            conn,
            demo.book_id,
            customers.CustomerSpec(
                name=f"Customer {n + 1:04d}",
                currency="USD",
                email=f"billing{n + 1}@example.com",
                external_id=f"crm-{n + 1}",
                tax_rate=Decimal(demo.random.choice(["0", "0.05", "0.10"])),
                payment_terms_days=demo.random.choice([0, 15, 30]),
            ),
        )
        quantity = Decimal(demo.random.randint(2, 25)) if plan == "seat_monthly" else Decimal(1)
        start = demo.today + timedelta(days=demo.random.choice([0, 0, 0, 3, 14]))
        subscription = subs.create_subscription(
            conn,
            demo.book_id,
            subs.SubscriptionSpec(
                customer=str(customer.id),
                items=[subs.ItemSpec(prices[plan], quantity)],
                start_date=start,
            ),
            demo.today,
        )
        out[str(customer.id)] = str(subscription.id)
        demo.rank[customer.id] = n
        demo.counts["subscriptions"] += 1
    return out


def _invoices(demo: Demo, status: str) -> list[invoices.Invoice]:
    """Invoices in the order the demo made them. Lists come in id order, and ids are
    random: drawing from the seeded generator in that order gave a different book on
    every run with the same seed. One billing run makes many invoices in a transaction
    (one `created_at`), so the customer's place breaks the tie; within one customer's
    transaction (a plan change and its proration) the numbers follow the code's order."""
    with demo.runtime.connection() as conn:
        found = invoices.list_invoices(conn, demo.book_id, status=status, limit=100_000)
    return sorted(
        found,
        key=lambda i: (
            i.created_at,
            demo.rank[i.customer_id],
            i.supply_start or date.min,
            i.number or "",
        ),
    )


def _payments(demo: Demo) -> None:
    for invoice in _invoices(demo, "open"):
        roll = demo.random.random()
        if roll < 0.08:
            continue  # late payer: stays open and ages
        if roll < 0.18:
            amount = (invoice.amount_due / 2).quantize(Decimal("0.01"))
            what = "partial_payments"
        elif roll < 0.26:
            amount = invoice.amount_due + Decimal(demo.random.choice(["10.00", "42.00", "100.00"]))
            what = "overpayments"
        else:
            amount = invoice.amount_due
            what = "payments"
        if amount <= 0:
            continue
        method = demo.random.choice(["bank_transfer", "card", "check"])
        demo.attempt(what, partial(_pay, demo, invoice, amount, method))


def _pay(
    demo: Demo, invoice: invoices.Invoice, amount: Decimal, method: str, conn: psycopg.Connection
) -> None:
    payments.create_payment(
        conn,
        demo.book_id,
        str(invoice.customer_id),
        amount,
        invoice.currency,
        method,
        demo.today,
        invoice_ref=str(invoice.id),
        # Transfers carry the bank's reference, as an operator would record it.
        reference=f"TRF{demo.random.randrange(10**9):09d}" if method == "bank_transfer" else None,
    )


def _cancel(demo: Demo, subscription_id: str, at: str, conn: psycopg.Connection) -> None:
    subs.cancel_subscription(conn, demo.book_id, subscription_id, at, demo.today)


def _change(
    demo: Demo, subscription_id: str, item: subs.ItemSpec, proration: str, conn: psycopg.Connection
) -> None:
    subs.change_subscription(
        conn, demo.book_id, subscription_id, [item], demo.today, proration, demo.today
    )


def _credit(
    demo: Demo, invoice: invoices.Invoice, credit_to: str, conn: psycopg.Connection
) -> None:
    credit_notes.create_credit_note(
        conn,
        demo.book_id,
        str(invoice.id),
        demo.today,
        amount=(invoice.total / 10).quantize(Decimal("0.01")),
        reason="service credit",
        credit_to=credit_to,
    )


def _refund(demo: Demo, payment: payments.Payment, conn: psycopg.Connection) -> None:
    payments.create_refund(
        conn,
        demo.book_id,
        (payment.amount / 4).quantize(Decimal("0.01")),
        demo.today,
        payment_ref=str(payment.id),
        reason="goodwill",
    )


def _changes(demo: Demo, subscriptions: dict[str, str], prices: dict[str, str]) -> None:
    for customer_id, subscription_id in list(subscriptions.items()):
        roll = demo.random.random()
        if roll < 0.04:
            at = demo.random.choice(["now", "period_end"])
            demo.attempt("cancellations", partial(_cancel, demo, subscription_id, at))
            del subscriptions[customer_id]
        elif roll < 0.10:
            with demo.runtime.connection() as conn:
                current = subs.get_subscription(conn, demo.book_id, subscription_id, demo.today)
            if not current.items or current.status in ("canceled", "paused"):
                continue
            price_id = str(current.items[0].price_id)
            swap = {
                prices["pro_monthly"]: "business_monthly",
                prices["business_monthly"]: "pro_monthly",
            }
            if price_id in swap:
                target = subs.ItemSpec(prices[swap[price_id]], Decimal(1))
                what = "upgrades" if swap[price_id] == "business_monthly" else "downgrades"
            elif price_id == prices["seat_monthly"]:
                quantity = max(
                    Decimal(1), current.items[0].quantity + demo.random.choice([-2, 3, 5])
                )
                target = subs.ItemSpec(price_id, quantity)
                what = "seat_changes"
            else:
                continue
            proration = demo.random.choice(["invoice_now", "next_invoice"])
            demo.attempt(what, partial(_change, demo, subscription_id, target, proration))


def _one_offs(demo: Demo, customer_ids: list[str]) -> None:
    for customer_id in demo.random.sample(customer_ids, k=max(1, len(customer_ids) // 5)):
        description, account, amount = demo.random.choice(ONE_OFFS)
        quantity = Decimal(demo.random.choice([1, 2, 3]))

        def one_off(
            conn: psycopg.Connection,
            c: str = customer_id,
            d: str = description,
            a: str = account,
            u: str = amount,
            q: Decimal = quantity,
        ) -> None:
            draft = invoices.create_draft(
                conn,
                demo.book_id,
                c,
                [invoices.LineSpec(d, q, Decimal(u), revenue_account=a)],
            )
            assert draft is not None
            invoices.finalize_invoice(conn, demo.book_id, str(draft.id), demo.today)

        demo.attempt("one_off_invoices", one_off)


def _credits_and_refunds(demo: Demo) -> None:
    paid = _invoices(demo, "paid")
    with demo.runtime.connection() as conn:
        every = payments.list_payments(conn, demo.book_id, limit=100_000)
    # The 200 most recent, newest first. Not by creation time: card charges after a
    # billing run go in invoice-id order, and ids are random; the customer's place and
    # the amount make the order the same for a seed.
    recent = sorted(
        every,
        key=lambda p: (p.received_on, demo.rank[p.customer_id], p.amount, p.method),
        reverse=True,
    )[:200]
    for invoice in demo.random.sample(paid, k=min(len(paid), 2)):
        if invoice.total <= 0:
            continue
        credit_to = demo.random.choice(["customer_credit", "refund"])
        demo.attempt("credit_notes", partial(_credit, demo, invoice, credit_to))
    for payment in demo.random.sample(recent, k=min(len(recent), 1)):
        demo.attempt("refunds", partial(_refund, demo, payment))
